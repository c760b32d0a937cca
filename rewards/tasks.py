"""Celery tasks: thin wrappers that run the coupon jobs of ``rewards.jobs``.

Same options as ``loyalty.tasks`` (``core.jobs.JOB_OPTIONS``): the birthday and monthly jobs
hold their lock and commit chunk by chunk; coupon expiry is chunk tasks (``members.jobs``).
A retry or a redelivery does no harm; a held lock or a database outage is retried later
with backoff.
"""

from celery import shared_task

from core.jobs import CHUNK_OPTIONS, JOB_OPTIONS
from members.jobs import MEMBER_CHUNK, chunk_run, chunked_dispatch

from . import jobs


@shared_task(name="rewards.issue_birthday_coupons", **JOB_OPTIONS)
def issue_birthday_coupons() -> dict:
    return jobs.issue_birthday_coupons()


@shared_task(name="rewards.issue_monthly_benefits", **JOB_OPTIONS)
def issue_monthly_benefits() -> dict:
    return jobs.issue_monthly_benefits()


@shared_task(name="rewards.job_chunk", **CHUNK_OPTIONS)
def job_chunk(name: str, run: int, lo: int) -> dict | None:
    """One member-id range of a chunked coupon job (``name`` is its dispatcher's task name)."""
    return chunk_run(name, run, lo, CHUNK_STEPS[name])


@shared_task(name="rewards.expire_coupons", bind=True, chunked=True, **JOB_OPTIONS)
def expire_coupons(self) -> dict:
    """Chunked (members.jobs.chunked_dispatch): one chunk task per member-id range."""
    return chunked_dispatch(self, chunk_task=job_chunk, size=MEMBER_CHUNK, result_key="expired")


CHUNK_STEPS = {"rewards.expire_coupons": jobs.expire_coupons_chunk}

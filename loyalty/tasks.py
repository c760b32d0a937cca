"""Celery tasks: thin wrappers that run the scheduled jobs of ``loyalty.jobs``.

Release, expiry and the pre-expiry notices are *chunked*: the scheduled task is a
dispatcher that starts a run (``members.jobs.chunked_dispatch``: one ``JobChunk`` per range
of member ids) and queues one short chunk task per range; each chunk does its range and
marks it done in one transaction, so a redelivered or re-sent chunk does nothing twice,
and the job counts as done (``JobRun.last_success_at``) only when its last chunk is. The
tier sweep and the birthday points are one task each, under the job lock.

The options are ``core.jobs.JOB_OPTIONS`` / ``CHUNK_OPTIONS`` (base ``JobTask``): a held
lock, a database outage or the soft time limit is retried later with backoff
(docs/jobs.md).
"""

from celery import shared_task

from core.jobs import CHUNK_OPTIONS, JOB_OPTIONS
from members.jobs import MEMBER_CHUNK, chunk_run, chunked_dispatch

from . import jobs

__all__ = ["JOB_OPTIONS"]  # engagement.tasks imports it from here


@shared_task(name="loyalty.job_chunk", **CHUNK_OPTIONS)
def job_chunk(name: str, run: int, lo: int) -> dict | None:
    """One member-id range of a chunked loyalty job (``name`` is its dispatcher's task name)."""
    return chunk_run(name, run, lo, CHUNK_STEPS[name])


@shared_task(name="loyalty.release_matured_points", bind=True, chunked=True, **JOB_OPTIONS)
def release_matured_points(self) -> dict:
    return chunked_dispatch(self, chunk_task=job_chunk, size=jobs.ledger_chunk_size(), result_key="entries")


@shared_task(name="loyalty.expire_due_points", bind=True, chunked=True, **JOB_OPTIONS)
def expire_due_points(self) -> dict:
    return chunked_dispatch(
        self, chunk_task=job_chunk, size=jobs.ledger_chunk_size(), result_key="entries", ranges=jobs.expiry_ranges
    )


@shared_task(name="loyalty.send_expiry_notices", bind=True, chunked=True, **JOB_OPTIONS)
def send_expiry_notices(self) -> dict:
    return chunked_dispatch(self, chunk_task=job_chunk, size=MEMBER_CHUNK, result_key="notices")


CHUNK_STEPS = {
    "loyalty.release_matured_points": jobs.release_chunk,
    "loyalty.expire_due_points": jobs.expire_chunk,
    "loyalty.send_expiry_notices": jobs.expiry_notices_chunk,
}


@shared_task(name="loyalty.evaluate_tiers", **JOB_OPTIONS)
def evaluate_tiers() -> dict:
    return jobs.evaluate_tiers()


@shared_task(name="loyalty.issue_birthday_benefits", **JOB_OPTIONS)
def issue_birthday_benefits() -> dict:
    return jobs.issue_birthday_benefits()

"""Celery tasks: thin wrappers that run the scheduled jobs of ``loyalty.jobs``.

Each job holds its own lock and commits chunk by chunk, so a retry, a redelivery (late
acks: a task is acknowledged only when it finished) or a second beat does no harm. The
options are ``core.jobs.JOB_OPTIONS`` (base ``JobTask``): a copy that finds the lock
taken, or the database down, is retried later with backoff (docs/jobs.md).
"""

from celery import shared_task
from django.conf import settings

from core.jobs import JOB_OPTIONS

from . import jobs

__all__ = ["JOB_OPTIONS"]  # engagement.tasks imports it from here


@shared_task(name="loyalty.release_matured_points", **JOB_OPTIONS)
def release_matured_points() -> dict:
    return jobs.lots_release_matured_job(workers=settings.LOYALTY_JOB_WORKERS)


@shared_task(name="loyalty.expire_due_points", **JOB_OPTIONS)
def expire_due_points() -> dict:
    return jobs.lots_expire_due_job(workers=settings.LOYALTY_JOB_WORKERS)


@shared_task(name="loyalty.send_expiry_notices", **JOB_OPTIONS)
def send_expiry_notices() -> dict:
    return jobs.send_expiry_notices()


@shared_task(name="loyalty.evaluate_tiers", **JOB_OPTIONS)
def evaluate_tiers() -> dict:
    return jobs.evaluate_tiers()


@shared_task(name="loyalty.issue_birthday_benefits", **JOB_OPTIONS)
def issue_birthday_benefits() -> dict:
    return jobs.issue_birthday_benefits()

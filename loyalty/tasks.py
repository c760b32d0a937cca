"""Celery tasks: thin wrappers that run the scheduled jobs of ``loyalty.jobs``.

Each job holds its own lock and commits chunk by chunk, so a retry, a redelivery (late
acks: a task is acknowledged only when it finished) or a second beat does no harm: the
copy that finds the lock taken returns "skipped". A database hiccup (OperationalError)
is retried with exponential backoff.
"""

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from . import jobs

# The jobs walk every member, so they get more time than the default task limits.
# Keep them under the Redis broker's visibility_timeout (config/settings.py), or Redis
# hands a still-running job to a second worker (which then finds the lock and skips).
JOB_OPTIONS = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "retry_kwargs": {"max_retries": 5},
    "soft_time_limit": 50 * 60,
    "time_limit": 55 * 60,
}


@shared_task(name="loyalty.release_matured_points", **JOB_OPTIONS)
def release_matured_points() -> dict | str:
    return jobs.lots_release_matured_job(workers=settings.LOYALTY_JOB_WORKERS)


@shared_task(name="loyalty.expire_due_points", **JOB_OPTIONS)
def expire_due_points() -> dict | str:
    return jobs.lots_expire_due_job(workers=settings.LOYALTY_JOB_WORKERS)


@shared_task(name="loyalty.send_expiry_notices", **JOB_OPTIONS)
def send_expiry_notices() -> dict | str:
    return jobs.send_expiry_notices()


@shared_task(name="loyalty.evaluate_tiers", **JOB_OPTIONS)
def evaluate_tiers() -> dict | str:
    return jobs.evaluate_tiers()


@shared_task(name="loyalty.issue_birthday_benefits", **JOB_OPTIONS)
def issue_birthday_benefits() -> dict | str:
    return jobs.issue_birthday_benefits()

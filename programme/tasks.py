"""Celery tasks of the paid membership jobs (``programme.jobs``), on the ``ledger`` queue:
they give points and coupons. Thin: the job holds its lock; ``JOB_OPTIONS`` retries a
copy that finds it taken, or the database down (docs/jobs.md)."""

from celery import shared_task

from core.jobs import JOB_OPTIONS

from . import jobs


@shared_task(name="programme.renew_memberships", queue="ledger", **JOB_OPTIONS)
def renew_memberships() -> dict:
    return jobs.memberships_renew()


@shared_task(name="programme.membership_housekeeping", queue="ledger", **JOB_OPTIONS)
def membership_housekeeping() -> dict:
    return jobs.memberships_housekeeping()

"""Celery tasks: thin wrappers that run the coupon jobs of ``rewards.jobs``.

Same options as ``loyalty.tasks`` (``core.jobs.JOB_OPTIONS``): each job holds its own lock
and commits chunk by chunk, so a retry or a redelivery does no harm; a held lock or a
database outage is retried later with backoff.
"""

from celery import shared_task

from core.jobs import JOB_OPTIONS

from . import jobs


@shared_task(name="rewards.issue_birthday_coupons", **JOB_OPTIONS)
def issue_birthday_coupons() -> dict:
    return jobs.issue_birthday_coupons()


@shared_task(name="rewards.issue_monthly_benefits", **JOB_OPTIONS)
def issue_monthly_benefits() -> dict:
    return jobs.issue_monthly_benefits()


@shared_task(name="rewards.expire_coupons", **JOB_OPTIONS)
def expire_coupons() -> dict:
    return jobs.expire_coupons()

"""Celery tasks: thin wrappers that run the coupon jobs of ``rewards.jobs``.

Same options as ``loyalty.tasks``: each job holds its own lock and commits chunk by chunk,
so a retry or a redelivery does no harm; a database hiccup is retried with backoff.
"""

from celery import shared_task

from loyalty.tasks import JOB_OPTIONS

from . import jobs


@shared_task(name="rewards.issue_birthday_coupons", **JOB_OPTIONS)
def issue_birthday_coupons() -> dict | str:
    return jobs.issue_birthday_coupons()


@shared_task(name="rewards.issue_monthly_benefits", **JOB_OPTIONS)
def issue_monthly_benefits() -> dict | str:
    return jobs.issue_monthly_benefits()


@shared_task(name="rewards.expire_coupons", **JOB_OPTIONS)
def expire_coupons() -> dict | str:
    return jobs.expire_coupons()

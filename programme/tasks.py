"""Celery tasks of the programme's jobs (``programme.jobs``), routed to the ``ledger``
queue by ``CELERY_TASK_ROUTES`` (``PROGRAMME_QUEUE``): they give points and coupons.
Thin: the job holds its lock; ``JOB_OPTIONS`` retries a copy that finds it taken, or the
database down (docs/jobs.md)."""

from celery import shared_task

from core.jobs import JOB_OPTIONS
from members.models import Member

from . import badges, jobs


@shared_task(name="programme.renew_memberships", **JOB_OPTIONS)
def renew_memberships() -> dict:
    return jobs.memberships_renew()


@shared_task(name="programme.membership_housekeeping", **JOB_OPTIONS)
def membership_housekeeping() -> dict:
    return jobs.memberships_housekeeping()


@shared_task(name="programme.badges_sweep", **JOB_OPTIONS)
def badges_sweep() -> dict:
    return jobs.badges_sweep()


@shared_task(name="programme.evaluate_badges", ignore_result=True, max_retries=3)
def evaluate_badges(member_id: int) -> int:
    """One member's badges after an event (``programme.signals``); returns how many were new."""
    member = Member.objects.filter(pk=member_id).first()
    return len(badges.badges_evaluate(member=member)) if member is not None else 0

"""Celery tasks of consumer operations: thin wrappers around the engagement services.

They reuse the loyalty jobs' lock (``loyalty.jobs.guarded``): a second copy of a task that
finds the lock taken returns "skipped" instead of running side by side.
"""

from celery import shared_task

from loyalty.jobs import guarded
from loyalty.tasks import JOB_OPTIONS

from . import journeys


@shared_task(name="engagement.run_journeys", **JOB_OPTIONS)
def run_journeys() -> dict | str:
    """Every active journey's triggers since the look-back window (engagement.journeys)."""
    return guarded("engagement.run_journeys")(journeys.journeys_run)()


@shared_task(name="engagement.reward_referrals", **JOB_OPTIONS)
def reward_referrals() -> dict | str:
    """Reward (or reject) the referrals whose new member's first order is settled (engagement.referrals)."""
    from .referrals import referrals_reward

    return guarded("engagement.reward_referrals")(referrals_reward)()

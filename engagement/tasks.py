"""Celery tasks of the engagement programmes: thin wrappers around the engagement services.

The journeys' tasks are ``operations.tasks`` (journeys combine segments, rewards and notices).

They use the jobs' lock (``core.jobs.guarded``): a second copy of a task that
finds the lock taken returns "skipped" instead of running side by side.
"""

from celery import shared_task

from core.jobs import guarded
from loyalty.tasks import JOB_OPTIONS


@shared_task(name="engagement.reward_referrals", **JOB_OPTIONS)
def reward_referrals() -> dict | str:
    """Reward (or reject) the referrals whose new member's first order is settled (engagement.referrals)."""
    from .referrals import referrals_reward

    return guarded("engagement.reward_referrals")(referrals_reward)()

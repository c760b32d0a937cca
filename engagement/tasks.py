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


@shared_task(name="engagement.run_journey", **JOB_OPTIONS)
def run_journey(journey_id: int) -> dict | str:
    """One journey now (the admin's "Run now"), under the hourly run's lock."""
    from .models import Journey

    journey = Journey.objects.select_related("audience", "tag").filter(pk=journey_id).first()
    if journey is None:
        return "gone"
    return guarded("engagement.run_journeys")(journeys.journey_run)(journey)


@shared_task(name="engagement.reward_referrals", **JOB_OPTIONS)
def reward_referrals() -> dict | str:
    """Reward (or reject) the referrals whose new member's first order is settled (engagement.referrals)."""
    from .referrals import referrals_reward

    return guarded("engagement.reward_referrals")(referrals_reward)()

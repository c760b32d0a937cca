"""Celery tasks of the operations layer (and the notification outbox's sender): thin, they call services.

The tasks keep the names they were registered under before they moved here
(``members.*``, ``engagement.*``): beat's schedules in the database refer to them.
"""

from celery import shared_task

from core import jobs
from core.jobs import JOB_OPTIONS, JobTask
from engagement.models import Journey
from members.jobs import jobs_watch
from members.notifications import notifications_send_pending

from . import journeys
from .lifecycle import members_refresh_profiles
from .segments import auto_tags_refresh


@shared_task(name="members.send_notifications", base=JobTask)
def send_pending_notifications(limit: int = 2000) -> dict[str, int]:
    return notifications_send_pending(limit=limit)


@shared_task(name="members.refresh_lifecycle", **JOB_OPTIONS)
def refresh_lifecycle() -> dict | str:
    """Nightly stage and RFM refresh (operations.lifecycle) under the job lock; retried later if it runs elsewhere."""
    with jobs.job_lock("members.refresh_lifecycle") as acquired:
        if not acquired:
            return jobs.SKIPPED
        return members_refresh_profiles()


# --- member imports in the background (operations.imports, docs/import.md) ---


@shared_task(
    name="members.check_import",
    base=JobTask,
    soft_time_limit=30 * 60,
    time_limit=35 * 60,
)
def check_import(job_id: int) -> str:
    """Check every row of an uploaded member file (writes no member)."""
    from .imports import import_job_check

    return import_job_check(job_id).status


@shared_task(
    name="members.run_import",
    base=JobTask,
    # A stop (time limit, lost worker) keeps the committed chunks; a rerun resumes after them.
    soft_time_limit=2 * 60 * 60,
    time_limit=2 * 60 * 60 + 300,
)
def run_import(job_id: int) -> str:
    """Import a confirmed member file in chunks; resumable."""
    from .imports import import_job_run

    return import_job_run(job_id).status


# --- journeys (operations.journeys, docs/journeys.md); the names are the ones beat knows ---


@shared_task(name="engagement.run_journeys", **JOB_OPTIONS)
def run_journeys() -> dict | str:
    """Every active journey's triggers since the look-back window (operations.journeys); retried if the lock is held."""
    return jobs.guarded("engagement.run_journeys")(journeys.journeys_run)()


@shared_task(name="engagement.run_journey", **JOB_OPTIONS)
def run_journey(journey_id: int) -> dict | str:
    """One journey now (the admin's "Run now"), under the hourly run's lock."""
    journey = Journey.objects.select_related("audience").filter(pk=journey_id).first()
    if journey is None:
        return "gone"
    return jobs.guarded("engagement.run_journeys")(journeys.journey_run)(journey)


@shared_task(name="operations.refresh_auto_tags", **JOB_OPTIONS)
def refresh_auto_tags() -> dict | str:
    """Nightly: every rule-based tag's members made its segment's (operations.segments.auto_tags_refresh)."""
    return jobs.guarded("operations.refresh_auto_tags")(auto_tags_refresh)()


# --- the watchdog (members.jobs.jobs_watch, docs/jobs.md "Lost tasks") ---


@shared_task(name="operations.watch_jobs", base=JobTask)
def watch_jobs() -> dict:
    """Every 5 minutes: send again the chunks of stalled runs, scheduled tasks that were lost, stuck imports."""
    from .imports import import_jobs_resume_stuck

    result = jobs_watch(exclude=("operations.watch_jobs",))
    result["imports_resumed"] = len(import_jobs_resume_stuck())
    return result

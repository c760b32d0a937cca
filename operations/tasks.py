"""Celery tasks of the members app: thin, they call services."""

from celery import shared_task
from django.db import OperationalError

from .notifications import notifications_send_pending


@shared_task(
    name="members.send_notifications",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_kwargs={"max_retries": 5},
)
def send_pending_notifications(limit: int = 2000) -> dict[str, int]:
    return notifications_send_pending(limit=limit)


@shared_task(
    name="members.refresh_lifecycle",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    retry_kwargs={"max_retries": 5},
    soft_time_limit=50 * 60,  # walks every member, like the loyalty jobs (loyalty/tasks.py)
    time_limit=55 * 60,
)
def refresh_lifecycle() -> dict | str:
    """Nightly stage and RFM refresh (members.lifecycle) under the job lock; "skipped" if it runs elsewhere."""
    from loyalty import jobs
    from members.lifecycle import members_refresh_profiles

    with jobs.job_lock("members.refresh_lifecycle") as acquired:
        if not acquired:
            return jobs.SKIPPED
        return members_refresh_profiles()


# --- member imports in the background (members.imports, docs/import.md) ---


@shared_task(
    name="members.check_import",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_kwargs={"max_retries": 5},
    soft_time_limit=30 * 60,
    time_limit=35 * 60,
)
def check_import(job_id: int) -> str:
    """Check every row of an uploaded member file (writes no member)."""
    from .imports import import_job_check

    return import_job_check(job_id).status


@shared_task(
    name="members.run_import",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_kwargs={"max_retries": 5},
    # A stop (time limit, lost worker) keeps the committed chunks; a rerun resumes after them.
    soft_time_limit=2 * 60 * 60,
    time_limit=2 * 60 * 60 + 300,
)
def run_import(job_id: int) -> str:
    """Import a confirmed member file in chunks; resumable."""
    from .imports import import_job_run

    return import_job_run(job_id).status

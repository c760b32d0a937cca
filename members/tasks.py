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

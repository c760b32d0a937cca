"""Celery tasks: thin wrappers that call the ledger services."""

from celery import shared_task
from django.db import OperationalError

from . import services


@shared_task(
    name="loyalty.release_matured_points",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_kwargs={"max_retries": 5},
)
def release_matured_points() -> int:
    return services.lots_release_matured()


@shared_task(
    name="loyalty.expire_due_points",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_kwargs={"max_retries": 5},
)
def expire_due_points() -> int:
    return services.lots_expire_due()

"""Celery tasks for webhooks, on the ``contact`` queue: thin, they call the services."""

from celery import shared_task

from .collect import events_collect
from .services import endpoint_deliver_due, endpoints_due


@shared_task(name="webhooks.collect_and_dispatch", queue="contact", ignore_result=True)
def collect_and_dispatch() -> int:
    """Collect new events, then one delivery task per endpoint with something due."""
    events_collect()
    endpoints = endpoints_due()
    for endpoint_id in endpoints:
        deliver_endpoint.delay(endpoint_id)
    return len(endpoints)


@shared_task(name="webhooks.deliver_endpoint", queue="contact", ignore_result=True, soft_time_limit=300)
def deliver_endpoint(endpoint_id: int) -> dict:
    return endpoint_deliver_due(endpoint_id)

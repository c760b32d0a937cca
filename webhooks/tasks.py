"""Celery tasks for webhooks, on the queue ``CELERY_TASK_ROUTES`` gives them: thin, they call the services."""

import time

from celery import shared_task

from .collect import events_collect
from .services import endpoint_deliver_due, endpoints_due

COLLECT_SECONDS = 45  # one run collects for at most this long (a big bulk award is many batches)


def collect_for_a_while() -> int:
    """Collect batch after batch until nothing new is left or the time is up."""
    started, total = time.monotonic(), 0
    while time.monotonic() - started < COLLECT_SECONDS:
        new = events_collect()
        total += new
        if new == 0:
            break
    return total


@shared_task(name="webhooks.collect_and_dispatch", ignore_result=True)
def collect_and_dispatch() -> int:
    """Collect new events, then one delivery task per endpoint with something due."""
    collect_for_a_while()
    endpoints = endpoints_due()
    for endpoint_id in endpoints:
        deliver_endpoint.delay(endpoint_id)
    return len(endpoints)


@shared_task(name="webhooks.deliver_endpoint", ignore_result=True, soft_time_limit=300, time_limit=330)
def deliver_endpoint(endpoint_id: int) -> dict:
    return endpoint_deliver_due(endpoint_id)

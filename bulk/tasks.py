"""Celery tasks of bulk jobs, on the queue ``CELERY_TASK_ROUTES`` gives them: thin, they call the services."""

from celery import shared_task

from .services import job_run_chunk


@shared_task(name="bulk.run_chunk", ignore_result=True, acks_late=True, soft_time_limit=600)
def run_chunk(job_id: int, first: int, last: int) -> dict:
    return job_run_chunk(job_id=job_id, first=first, last=last)


def enqueue(job_id: int, first: int, last: int) -> None:
    """What the services call after commit to start a chunk."""
    run_chunk.delay(job_id, first, last)

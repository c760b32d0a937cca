"""Celery tasks of bulk jobs, on the queue ``CELERY_TASK_ROUTES`` gives them: thin, they call the services."""

from celery import shared_task

from .services import job_run_chunk, jobs_resume_stalled


# Both limits given: a soft limit above the project's CELERY_TASK_TIME_LIMIT (360 s) makes
# celery refuse to queue the task at all.
@shared_task(name="bulk.run_chunk", ignore_result=True, acks_late=True, soft_time_limit=540, time_limit=600)
def run_chunk(job_id: int, first: int, last: int) -> dict:
    return job_run_chunk(job_id=job_id, first=first, last=last)


@shared_task(name="bulk.resume_stalled", ignore_result=True)
def resume_stalled() -> list[int]:
    """The watchdog: jobs whose chunk tasks were lost are sent again."""
    return jobs_resume_stalled(enqueue=enqueue)


def enqueue(job_id: int, first: int, last: int) -> None:
    """What the services call after commit to start a chunk."""
    run_chunk.delay(job_id, first, last)

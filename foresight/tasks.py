"""Celery tasks of foresight's jobs: thin, the job holds its lock (docs/jobs.md)."""

from celery import shared_task

from core.jobs import JOB_OPTIONS

from . import leakage


@shared_task(name="foresight.leakage_scan", **JOB_OPTIONS)
def leakage_scan() -> dict | str:
    return leakage.leakage_scan()

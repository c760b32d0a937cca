"""The workers' half of the job metrics (config.metrics): how each task run went, in the shared cache.

Loaded into every worker through CELERY_IMPORTS. After each task: runs by outcome
(success, skipped: a guarded job that found its lock taken, failure), total and last
duration, last success time. Kept in the cache (CACHE_URL, Redis in production) so
/metrics on any web machine sees what every worker machine did. With the per-process
memory cache (development) the web process sees nothing of the workers'.
"""

import logging
import time

from celery.signals import task_postrun, task_prerun
from django.core.cache import cache

logger = logging.getLogger(__name__)

_PREFIX = "loyalty:jobstat"
_FIELDS = ("success", "skipped", "failure", "ms", "last_ms", "last_success")
_started: dict[str, float] = {}


def _key(task: str, field: str) -> str:
    return f"{_PREFIX}:{task}:{field}"


def _add(key: str, amount: int) -> None:
    cache.add(key, 0, None)
    cache.incr(key, amount)


def job_run_record(task: str, *, outcome: str, seconds: float, finished_at: float) -> None:
    """Counts one run of ``task`` (outcome: success, skipped or failure)."""
    _add(_key(task, outcome), 1)
    _add(_key(task, "ms"), int(seconds * 1000))
    cache.set(_key(task, "last_ms"), int(seconds * 1000), None)
    if outcome == "success":
        cache.set(_key(task, "last_success"), finished_at, None)


def job_stats(tasks: list[str]) -> dict[str, dict]:
    """What the workers recorded for these tasks: {task: {success, skipped, failure, seconds, ...}}."""
    keys = [_key(task, field) for task in tasks for field in _FIELDS]
    values = cache.get_many(keys)
    stats: dict[str, dict] = {}
    for task in tasks:
        got = {field: values.get(_key(task, field)) for field in _FIELDS}
        if all(value is None for value in got.values()):
            continue
        stats[task] = {
            "success": got["success"] or 0,
            "skipped": got["skipped"] or 0,
            "failure": got["failure"] or 0,
            "seconds": (got["ms"] or 0) / 1000,
            "last_seconds": (got["last_ms"] or 0) / 1000,
            "last_success": got["last_success"],
        }
    return stats


@task_prerun.connect
def _task_started(task_id=None, **_):
    if task_id:
        _started[task_id] = time.monotonic()


@task_postrun.connect
def _task_finished(task_id=None, task=None, retval=None, state=None, **_):
    started = _started.pop(task_id, None)
    if started is None or task is None:
        return
    if state == "SUCCESS":
        outcome = "skipped" if retval == "skipped" else "success"
    elif state == "RETRY":
        outcome = "skipped"
    else:
        outcome = "failure"
    try:
        job_run_record(task.name, outcome=outcome, seconds=time.monotonic() - started, finished_at=time.time())
    except Exception as error:  # the cache down must not fail the task
        logger.warning("job metrics not recorded for %s: %s: %s", task.name, type(error).__name__, error)

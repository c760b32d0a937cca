"""Member-id chunking for the scheduled jobs: one transaction per range of member ids.

A job split this way keeps what it committed when it is stopped halfway, and a rerun picks
up the rest. The lock that keeps two copies of a job apart is ``core.jobs``. Date-keyed
jobs (birthdays, monthly coupons) catch up on missed periods through :func:`job_periods`.
"""

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from celery import current_app
from celery.signals import task_prerun, task_success
from django.db import connection, transaction
from django.db.models import Count, Max, Min, Sum
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.db import is_postgresql
from core.jobs import JobTask

from .models import JobChunk, JobRun, Member

logger = logging.getLogger(__name__)

# Member ids per chunk: small enough that a chunk's transaction (and its row locks) stays
# short, big enough that the per-chunk overhead does not dominate.
MEMBER_CHUNK = 5000


# --- chunking -----------------------------------------------------------------------------


def member_id_ranges(*, size: int = MEMBER_CHUNK) -> Iterator[tuple[int, int]]:
    """Half-open ranges ``[lo, hi)`` of ``size`` member ids covering every member."""
    bounds = Member.objects.aggregate(lo=Min("id"), hi=Max("id"))
    if bounds["lo"] is None:
        return
    for lo in range(bounds["lo"], bounds["hi"] + 1, size):
        yield lo, min(lo + size, bounds["hi"] + 1)


def run_in_member_chunks(
    step: Callable[[int, int], int],
    *,
    size: int = MEMBER_CHUNK,
    workers: int = 1,
    ranges: Iterable[tuple[int, int]] | None = None,
) -> dict[str, float]:
    """Call ``step(lo, hi)`` for every member-id range, each in its own transaction.

    The ranges are ``size`` member ids each, or ``ranges`` when given (half-open, disjoint,
    in member-id order: a job that sizes its chunks by its own work, such as the expiry by
    due lots).

    With ``workers`` > 1 (PostgreSQL), that many threads take ranges side by side, each
    on its own connection; ranges hold disjoint members, so they never wait on each other.
    Returns the summed counts ``step`` returned, the number of chunks and the longest
    chunk in seconds (how long one transaction held its row locks).
    """

    def run(bounds: tuple[int, int]) -> tuple[int, float]:
        started = time.monotonic()
        with transaction.atomic():
            count = step(*bounds)
        return count, time.monotonic() - started

    if ranges is None:
        ranges = member_id_ranges(size=size)
    if workers > 1 and is_postgresql():
        results = _run_in_threads(run, iter(ranges), workers)
    else:
        results = [run(bounds) for bounds in ranges]
    longest = max((seconds for _count, seconds in results), default=0.0)
    return {"count": sum(count for count, _s in results), "chunks": len(results), "longest_chunk_s": round(longest, 3)}


def _run_in_threads(run: Callable[[tuple[int, int]], tuple[int, float]], ranges: Iterator, workers: int) -> list:
    """``run`` over ``ranges`` on ``workers`` threads, each taking the next range until none
    is left, on its own connection for all of them (closed when the thread is done: a new
    connection a range cost more than some ranges' work). A range that fails stops the
    others from taking more; its error is raised once every thread has stopped."""
    guard = threading.Lock()
    failed = threading.Event()

    def take() -> tuple[int, int] | None:
        with guard:
            return None if failed.is_set() else next(ranges, None)

    def worker() -> list:
        done = []
        try:
            while (bounds := take()) is not None:
                done.append(run(bounds))
        except BaseException:
            failed.set()
            raise
        finally:
            connection.close()  # this thread's own connection
        return done

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(worker) for _worker in range(workers)]
    return [result for future in futures for result in future.result()]


# --- catching up on missed periods ----------------------------------------------------------


def job_periods(name: str, *, current: dt.date, following: Callable[[dt.date], dt.date], limit: int) -> list[dt.date]:
    """The periods job ``name`` still owes, oldest first, ending with ``current``.

    Every period after the last one recorded by :func:`job_period_done` (``following`` steps
    from one period's date to the next), at most ``limit`` of them (older ones are logged
    and given up: a job down for longer than that is an incident, not a catch-up). A job
    never run, or a run for a date at or before the last one (by hand), owes ``current``.
    """
    last = JobRun.objects.filter(name=name).values_list("last_period", flat=True).first()
    if last is None or last >= current:
        return [current]
    periods = []
    period = following(last)
    while period <= current:
        periods.append(period)
        period = following(period)
    if len(periods) > limit:
        logger.warning(
            "job %s: %s periods missed since %s; catching up on the last %s", name, len(periods), last, limit
        )
        periods = periods[-limit:]
    return periods


def job_period_done(name: str, *, period: dt.date, now: dt.datetime | None = None) -> None:
    """Record that job ``name`` finished ``period`` (never moves the record back)."""
    now = now or timezone.now()
    with transaction.atomic():
        run, created = JobRun.objects.select_for_update().get_or_create(
            name=name, defaults={"last_period": period, "last_success_at": now}
        )
        if not created and (run.last_period is None or period >= run.last_period):
            run.last_period, run.last_success_at = period, now
            run.save(update_fields=["last_period", "last_success_at"])


# --- chunked runs: a dispatcher, one short task per member-id range -----------------------

# A run with chunks left and no chunk finished for this long lost tasks (a worker killed,
# the broker restarted without its queue): the watchdog, or the next dispatch, sends the
# chunks still pending again. Much longer than a chunk (about a second), shorter than
# the Redis visibility timeout (CELERY_VISIBILITY_TIMEOUT, 600 s).
STALE_AFTER = dt.timedelta(minutes=5)

# A run still unfinished this long after it started has a chunk that keeps failing (a bug,
# logged at each try): the next dispatch gives it up and starts a new run, so the ranges
# done in it get their new work. Far longer than a run (1000 chunks, minutes).
ABANDON_AFTER = dt.timedelta(hours=6)

# A chunk step: (lo, hi, params) -> the count of what it did, inside the chunk's transaction.
ChunkStep = Callable[[int, int, dict], int]


def chunked_run_start(
    name: str,
    *,
    chunk_task: str,
    size: int,
    params: dict | None = None,
    now: dt.datetime | None = None,
    ranges: Callable[[], Iterable[tuple[int, int]]] | None = None,
) -> tuple[JobRun, list[JobChunk], bool]:
    """Start run number n+1 of chunked job ``name``: one :class:`JobChunk` per member-id range
    (``size`` ids each, or what ``ranges()`` returns, called only when a run starts).

    Returns ``(run, chunks to send, started)``. A run still in progress is not started
    again (two beats, two dispatches of the same tick: one run); if it made no progress for
    :data:`STALE_AFTER`, its pending chunks are returned to be sent again; if it started
    more than :data:`ABANDON_AFTER` ago, it is given up (logged) and a new run starts.
    The caller sends one ``chunk_task`` per chunk after this function's transaction committed.
    """
    now = now or timezone.now()
    with transaction.atomic():
        run, _created = JobRun.objects.select_for_update().get_or_create(name=name)
        abandoned = run.run_started_at is not None and run.run_started_at < now - ABANDON_AFTER
        if run.run and run.finished_at is None and run.chunk_task and not abandoned:
            if run.progress_at and run.progress_at > now - STALE_AFTER:
                return run, [], False
            logger.warning(
                "job %s: run %s made no progress since %s; sending its chunks again", name, run.run, run.progress_at
            )
            JobRun.objects.filter(pk=run.pk).update(progress_at=now)
            return run, chunks_pending(run), False
        if run.run and run.finished_at is None and run.chunk_task:
            logger.error(
                "job %s: run %s started at %s never finished (%s chunks left); starting a new run",
                name,
                run.run,
                run.run_started_at,
                len(chunks_pending(run)),
            )
        run.run += 1
        # progress_at: when the run started, then when its last chunk finished.
        run.started_at = run.run_started_at = run.progress_at = now
        run.finished_at = None
        run.chunk_task, run.params = chunk_task, params or {}
        bounds = member_id_ranges(size=size) if ranges is None else ranges()
        chunks = [JobChunk(job=run, run=run.run, lo=lo, hi=hi) for lo, hi in bounds]
        JobChunk.objects.bulk_create(chunks, batch_size=1000)
        run.chunks = len(chunks)
        if not chunks:
            run.finished_at = run.last_success_at = now
        run.save()
        # Chunks of runs before the last few are history nobody reads.
        JobChunk.objects.filter(job=run, run__lt=run.run - 2).delete()
    return run, chunks, True


def chunks_pending(run: JobRun) -> list[JobChunk]:
    """The chunks of ``run``'s current run that are not done yet, in member-id order."""
    return list(JobChunk.objects.filter(job=run, run=run.run, done_at__isnull=True).order_by("lo"))


def chunk_run(name: str, run: int, lo: int, step: ChunkStep) -> dict | None:
    """Do chunk ``lo`` of run ``run`` of job ``name`` once: ``step`` and the chunk's mark in one transaction.

    A copy of the same chunk (redelivered, sent again by the watchdog) waits on the
    chunk's row lock, then finds it done and does nothing: returns None. The chunk that
    finishes the run's last pending range marks the run finished (``last_success_at``).
    """
    started = time.monotonic()
    job = JobRun.objects.filter(name=name).values("pk", "params").first()
    if job is None:
        return None
    with transaction.atomic():
        chunk = (
            JobChunk.objects.select_for_update().filter(job_id=job["pk"], run=run, lo=lo, done_at__isnull=True).first()
        )
        if chunk is None:
            return None
        count = step(chunk.lo, chunk.hi, job["params"] or {})
        now = timezone.now()
        chunk.done_at, chunk.count, chunk.seconds = now, count, round(time.monotonic() - started, 3)
        chunk.save(update_fields=["done_at", "count", "seconds"])
    JobRun.objects.filter(pk=job["pk"], run=run, progress_at__lt=now).update(progress_at=now)
    finished = False
    if not JobChunk.objects.filter(job_id=job["pk"], run=run, done_at__isnull=True).exists():
        finished = bool(
            JobRun.objects.filter(pk=job["pk"], run=run, finished_at__isnull=True).update(
                finished_at=now, last_success_at=now
            )
        )
        if finished:
            logger.info("job %s: run %s finished: %s", name, run, run_totals(name, run))
    return {"count": count, "finished": finished}


def run_totals(name: str, run: int) -> dict:
    """What run ``run`` of job ``name`` did so far: summed counts, chunks done of all, longest chunk."""
    rows = JobChunk.objects.filter(job__name=name, run=run)
    done = rows.filter(done_at__isnull=False).aggregate(count=Sum("count"), longest=Max("seconds"), n=Count("id"))
    return {
        "count": done["count"] or 0,
        "chunks": rows.count(),
        "chunks_done": done["n"],
        "longest_chunk_s": done["longest"] or 0.0,
    }


def chunk_params_now(params: dict) -> dt.datetime:
    """The moment a chunk works at: the run's fixed ``now`` (a test, a run by hand) or the real now."""
    return dt.datetime.fromisoformat(params["now"]) if params.get("now") else timezone.now()


# --- every job task's start and success, for the watchdog ---------------------------------


def _untracked(sender, args, kwargs) -> bool:
    # Tasks with arguments (chunks, imports, one journey) are not scheduled jobs.
    return not isinstance(sender, JobTask) or bool(args) or bool(kwargs)


@task_prerun.connect(weak=False)
def _job_task_started(sender=None, args=None, kwargs=None, **_extra) -> None:
    if _untracked(sender, args, kwargs):
        return
    now = timezone.now()
    if not JobRun.objects.filter(name=sender.name).update(started_at=now):
        JobRun.objects.get_or_create(name=sender.name, defaults={"started_at": now})


@task_success.connect(weak=False)
def _job_task_succeeded(sender=None, **_extra) -> None:
    request = getattr(sender, "request", None)
    if _untracked(sender, getattr(request, "args", None), getattr(request, "kwargs", None)):
        return
    if getattr(sender, "chunked", False):
        return  # a dispatcher's success is not the job's: its last chunk records that
    JobRun.objects.filter(name=sender.name).update(last_success_at=timezone.now())


# --- the watchdog ---------------------------------------------------------------------------

# A scheduled task that beat sent this long ago and that no worker started was lost (the
# broker restarted without it, a queue nobody consumes): the watchdog sends it again.
# Longer than beat's lag in writing last_run_at (django-celery-beat syncs every 3 min)
# plus a busy queue's wait.
LOST_AFTER = dt.timedelta(minutes=10)
# Beat and the workers may run on machines whose clocks differ a little.
CLOCK_SKEW = dt.timedelta(minutes=1)

Send = Callable[[str, list, str | None], None]


def send_task(name: str, args: list, queue: str | None) -> None:
    """Queue task ``name`` (registered in this process) with ``args``, on ``queue`` or its route."""
    options = {"queue": queue} if queue else {}
    current_app.tasks[name].apply_async(args=args, **options)


def jobs_watch(*, now: dt.datetime | None = None, send: Send = send_task, exclude: tuple[str, ...] = ()) -> dict:
    """Send again what was lost: the pending chunks of stalled runs, and scheduled tasks that never ran.

    - A chunked run with chunks pending and no progress for :data:`STALE_AFTER`: its
      pending chunks (a chunk done meanwhile does nothing the second time).
    - An enabled beat schedule of a job task (no arguments) that beat sent more than
      :data:`LOST_AFTER` ago, and that no worker started since: the task, once per
      :data:`LOST_AFTER`.
    - A job task that started, did not succeed, and was not seen again for its time limit
      plus :data:`LOST_AFTER` (its worker died and the broker lost the message): the task.
    Returns the counts of what it sent.
    """
    now = now or timezone.now()
    chunks = lost = 0
    stalled = JobRun.objects.filter(run__gt=0, finished_at__isnull=True, progress_at__lt=now - STALE_AFTER).exclude(
        chunk_task=""
    )
    for run in stalled:
        pending = chunks_pending(run)
        logger.warning(
            "watchdog: job %s run %s stalled since %s; sending %s chunks again",
            run.name,
            run.run,
            run.progress_at,
            len(pending),
        )
        for chunk in pending:
            send(run.chunk_task, [run.name, run.run, chunk.lo], run.params.get("queue"))
        chunks += len(pending)
        JobRun.objects.filter(pk=run.pk).update(progress_at=now)

    runs = {run.name: run for run in JobRun.objects.all()}
    schedules = PeriodicTask.objects.filter(enabled=True, last_run_at__isnull=False, last_run_at__lt=now - LOST_AFTER)
    for periodic in schedules.exclude(task__in=exclude):
        task = current_app.tasks.get(periodic.task)
        if not isinstance(task, JobTask) or periodic.args not in ("", "[]") or periodic.kwargs not in ("", "{}"):
            continue
        run = runs.get(periodic.task)
        started = run.started_at if run else None
        if run and run.resent_at and run.resent_at > now - LOST_AFTER:
            continue
        never_started = started is None or started < periodic.last_run_at - CLOCK_SKEW
        limit = dt.timedelta(seconds=task.time_limit or 0) + LOST_AFTER
        died = (
            not getattr(task, "chunked", False)
            and started is not None
            and started < now - limit
            and (run.last_success_at is None or run.last_success_at < started)
        )
        if not (never_started or died):
            continue
        logger.warning(
            "watchdog: %s sent by beat at %s, last started %s; sending it again",
            periodic.task,
            periodic.last_run_at,
            started,
        )
        send(periodic.task, [], periodic.queue or None)
        JobRun.objects.update_or_create(name=periodic.task, defaults={"resent_at": now})
        lost += 1
    return {"chunks_resent": chunks, "tasks_resent": lost}


def chunked_dispatch(
    task,
    *,
    chunk_task,
    size: int,
    params: dict | None = None,
    result_key: str = "count",
    ranges: Callable[[], Iterable[tuple[int, int]]] | None = None,
) -> dict:
    """The body of a chunked job's dispatcher task ``task``: start a run, queue ``chunk_task`` per chunk
    (member-id ranges of ``size``, or ``ranges()``: see :func:`chunked_run_start`).

    The chunks go to the queue the dispatcher came from (the route of its kind, or the
    queue a schedule names). Run eagerly (``task.apply()``: tests, ``manage.py shell``)
    the chunks run here, one after the other, and the run's totals are returned.
    """
    params = dict(params or {})
    eager = bool(task.request.is_eager)
    queue = None if eager else (task.request.delivery_info or {}).get("routing_key")
    if queue:
        params["queue"] = queue
    run, chunks, started = chunked_run_start(
        task.name, chunk_task=chunk_task.name, size=size, params=params, ranges=ranges
    )
    if eager:
        for chunk in chunks:
            # Not throw=True: that would let a chunk's retry escape into this task.
            outcome = chunk_task.apply(args=[task.name, run.run, chunk.lo])
            if outcome.failed():
                raise outcome.result
    else:
        options = {"queue": queue} if queue else {}
        # One producer for all: about 3 ms a message instead of 4 (1000 chunks at 1M members).
        with task.app.producer_or_acquire() as producer:
            for chunk in chunks:
                chunk_task.apply_async(args=[task.name, run.run, chunk.lo], producer=producer, **options)
    totals = run_totals(task.name, run.run)
    result = {
        "run": run.run,
        "started": started,
        "chunks": totals["chunks"],
        "chunks_sent": len(chunks),
    }
    if eager:
        result.update({result_key: totals["count"], "longest_chunk_s": totals["longest_chunk_s"]})
    return result


# A job beat sent this long ago that has not succeeded since is overdue (for /readyz and
# the operators): longer than a job's time limit plus the watchdog's re-send, shorter than
# a day.
OVERDUE_AFTER = dt.timedelta(hours=1)


def jobs_overdue(*, now: dt.datetime | None = None) -> list[str]:
    """Names of the scheduled job tasks that beat sent more than :data:`OVERDUE_AFTER` ago
    and that have not succeeded since (a chunked job: its last chunk has not finished)."""
    now = now or timezone.now()
    done = dict(JobRun.objects.values_list("name", "last_success_at"))
    overdue = []
    for task, sent in PeriodicTask.objects.filter(
        enabled=True, last_run_at__isnull=False, last_run_at__lt=now - OVERDUE_AFTER
    ).values_list("task", "last_run_at"):
        if not isinstance(current_app.tasks.get(task), JobTask):
            continue
        succeeded = done.get(task)
        if succeeded is None or succeeded < sent - CLOCK_SKEW:
            overdue.append(task)
    return sorted(set(overdue))

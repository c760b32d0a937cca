"""Prometheus metrics at ``/metrics`` (docs/deploy.md, "Metrics").

prometheus-client rather than django-prometheus: django-prometheus measures the database
and cache by swapping their ENGINE/BACKEND for its own wrappers, which would sit between
the replica router and the pooler settings, and its figures are per view and per model,
while the ones that matter here (ledger entries per kind, jobs, queues, the outbox) are
ours to write either way. The client library gives the registry, the text format and
gunicorn's multi-process mode.

Served only to a request with ``Authorization: Bearer <METRICS_TOKEN>`` or from an
address in METRICS_ALLOWED_NETWORKS (the connection's peer, never a forwarded header);
anything else gets a plain 404, as if the path did not exist. Answered by
``MetricsMiddleware`` before the host check, so Prometheus can scrape a machine by address.

Per process, summed over gunicorn's workers through PROMETHEUS_MULTIPROC_DIR:
``loyalty_http_requests_total{route,method,status}`` and
``loyalty_http_request_duration_seconds{route,method}`` (``route`` is the URL pattern,
e.g. ``api/v1/pos/orders/``, never the raw path, so ids do not explode the series).

Read from the database (the replica when there is one) and the broker at each scrape,
at most every METRICS_CACHE_SECONDS, so a scrape costs a few indexed queries:
``loyalty_ledger_entries_total{kind,currency}`` (counted incrementally by id, the running
totals kept in the shared cache), ``loyalty_job_last_success_timestamp_seconds{job}``
(members.JobRun), ``loyalty_job_last_sent_timestamp_seconds{job}`` (beat),
``loyalty_job_runs_total{job,outcome}``, ``loyalty_job_duration_seconds_sum{job}``,
``loyalty_job_last_duration_seconds{job}`` and the worker's own
``loyalty_job_last_success...`` (written by the workers' celery signals into the shared
cache, config.metrics_celery), ``loyalty_queue_depth{queue}``,
``loyalty_outbox_backlog`` (notifications not sent), ``loyalty_outbox_oldest_age_seconds``
and ``loyalty_import_backlog`` (member imports waiting).
"""

import hmac
import ipaddress
import logging
import os
import time

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotFound
from django.views.decorators.cache import never_cache
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"

REQUESTS = Counter(
    "loyalty_http_requests", "HTTP requests answered, by URL pattern, method and status", ["route", "method", "status"]
)
LATENCY = Histogram(
    "loyalty_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL pattern and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def _route(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.route or match.view_name or "unmatched"


def metrics_allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS)


class MetricsMiddleware:
    """Counts and times every request below it; answers /metrics itself (before the host check)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.rstrip("/") == METRICS_PATH:
            return metrics_view(request)
        started = time.perf_counter()
        response = self.get_response(request)
        route = _route(request)
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        LATENCY.labels(route, request.method).observe(time.perf_counter() - started)
        return response


# --- what the database and the broker say, at scrape time --------------------------------

_ENTRIES_CACHE_KEY = "loyalty:metrics:ledger_entries"
_SNAPSHOT_CACHE_KEY = "loyalty:metrics:snapshot"


def _ledger_entry_totals() -> dict[tuple[str, str], int]:
    """Entries per (kind, currency) since the start, counting only ids past the last count."""
    from django.core.cache import cache
    from django.db.models import Count

    from loyalty.models import LedgerEntry

    state = cache.get(_ENTRIES_CACHE_KEY) or {"last_id": 0, "totals": {}}
    newest = LedgerEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    if newest > state["last_id"]:
        rows = (
            LedgerEntry.objects.filter(id__gt=state["last_id"], id__lte=newest)
            .values("kind", "account__currency")
            .annotate(n=Count("id"))
            .order_by()
        )
        counts: dict[str, int] = dict(state["totals"])
        for kind, currency, n in rows.values_list("kind", "account__currency", "n"):
            label = f"{kind}|{currency}"
            counts[label] = counts.get(label, 0) + n
        state = {"last_id": newest, "totals": counts}
        cache.set(_ENTRIES_CACHE_KEY, state, None)
    return {tuple(label.split("|", 1)): n for label, n in state["totals"].items()}


def queue_names() -> list[str]:
    names = {settings.CELERY_TASK_DEFAULT_QUEUE, "ledger", "contact", "bulk"}
    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or {}
    if isinstance(routes, dict):
        for route in routes.values():
            queue = route.get("queue") if isinstance(route, dict) else None
            if isinstance(queue, str):
                names.add(queue)
    return sorted(names)


def _queue_depths() -> dict[str, int]:
    from config.celery import app

    depths: dict[str, int] = {}
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        channel = conn.default_channel
        for name in queue_names():
            try:
                depths[name] = channel.queue_declare(queue=name, passive=True).message_count
            except Exception:  # a queue nobody declared yet (amqp) holds nothing
                depths[name] = 0
    return depths


def _snapshot() -> dict:
    """Everything read from the database and the broker, cached for METRICS_CACHE_SECONDS."""
    from django.core.cache import cache
    from django.db.models import Max, Min
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    from members.models import ImportJob, JobRun, Notification

    from .metrics_celery import job_stats
    from .routers import replica_reads

    cached = cache.get(_SNAPSHOT_CACHE_KEY)
    if cached is not None:
        return cached
    snapshot: dict = {"errors": []}
    with replica_reads():
        snapshot["entries"] = _ledger_entry_totals()
        snapshot["job_success"] = {
            name: moment.timestamp() for name, moment in JobRun.objects.values_list("name", "last_success_at")
        }
        snapshot["job_sent"] = {
            task: moment.timestamp()
            for task, moment in PeriodicTask.objects.filter(enabled=True, last_run_at__isnull=False)
            .values("task")
            .annotate(at=Max("last_run_at"))
            .values_list("task", "at")
        }
        unsent = Notification.objects.filter(sent_at__isnull=True).aggregate(oldest=Min("created_at"))
        snapshot["outbox"] = Notification.objects.filter(sent_at__isnull=True).count()
        snapshot["outbox_oldest_age"] = (timezone.now() - unsent["oldest"]).total_seconds() if unsent["oldest"] else 0.0
        # Checking or importing: work a worker has to do (checked ones wait for staff).
        snapshot["imports"] = ImportJob.objects.filter(
            status__in=[ImportJob.Status.CHECKING, ImportJob.Status.IMPORTING]
        ).count()
    from config.celery import app

    # The scheduled ones and every task this code base defines (celery's own aside); the
    # apps' tasks modules are imported on first use, as a worker does at start.
    app.loader.import_default_modules()
    tasks = {task for (task,) in PeriodicTask.objects.values_list("task")}
    tasks |= {name for name in app.tasks if not name.startswith("celery.")}
    snapshot["job_stats"] = job_stats(sorted(tasks))
    try:
        snapshot["queues"] = _queue_depths()
    except Exception as error:
        logger.warning("metrics: queue depth unavailable: %s: %s", type(error).__name__, error)
        snapshot["queues"] = {}
        snapshot["errors"].append("broker")
    cache.set(_SNAPSHOT_CACHE_KEY, snapshot, getattr(settings, "METRICS_CACHE_SECONDS", 15))
    return snapshot


class _DatabaseCollector:
    def collect(self):
        snapshot = _snapshot()
        entries = CounterMetricFamily(
            "loyalty_ledger_entries", "Ledger entries written, by kind and currency", labels=["kind", "currency"]
        )
        for (kind, currency), n in sorted(snapshot["entries"].items()):
            entries.add_metric([kind, currency], n)
        yield entries
        success = GaugeMetricFamily(
            "loyalty_job_last_success_timestamp_seconds",
            "When a scheduled job last finished its work (members.JobRun, or the worker's report)",
            labels=["job"],
        )
        finished = dict(snapshot["job_success"])
        for task, stats in snapshot["job_stats"].items():
            if stats.get("last_success"):
                finished[task] = max(finished.get(task, 0), stats["last_success"])
        for name, moment in sorted(finished.items()):
            success.add_metric([name], moment)
        yield success
        sent = GaugeMetricFamily(
            "loyalty_job_last_sent_timestamp_seconds", "When beat last sent a scheduled job", labels=["job"]
        )
        for task, moment in sorted(snapshot["job_sent"].items()):
            sent.add_metric([task], moment)
        yield sent
        runs = CounterMetricFamily(
            "loyalty_job_runs", "Job task runs seen by the workers, by outcome", labels=["job", "outcome"]
        )
        duration = CounterMetricFamily(
            "loyalty_job_duration_seconds", "Total time the workers spent in a job task", labels=["job"]
        )
        last = GaugeMetricFamily(
            "loyalty_job_last_duration_seconds", "How long a job task's last run took", labels=["job"]
        )
        for task, stats in snapshot["job_stats"].items():
            for outcome in ("success", "skipped", "failure"):
                runs.add_metric([task, outcome], stats.get(outcome, 0))
            duration.add_metric([task], stats.get("seconds", 0.0))
            last.add_metric([task], stats.get("last_seconds", 0.0))
        yield runs
        yield duration
        yield last
        depth = GaugeMetricFamily("loyalty_queue_depth", "Tasks waiting in a celery queue", labels=["queue"])
        for name, n in sorted(snapshot["queues"].items()):
            depth.add_metric([name], n)
        yield depth
        yield GaugeMetricFamily("loyalty_outbox_backlog", "Notifications waiting to be sent", value=snapshot["outbox"])
        yield GaugeMetricFamily(
            "loyalty_outbox_oldest_age_seconds",
            "Age of the oldest notification waiting to be sent",
            value=snapshot["outbox_oldest_age"],
        )
        yield GaugeMetricFamily("loyalty_import_backlog", "Member imports not finished", value=snapshot["imports"])


def _registry() -> CollectorRegistry:
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every gunicorn worker's files in the folder, added up.
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, LATENCY):
            registry.register(collector)
    registry.register(_DatabaseCollector())
    return registry


@never_cache
def metrics_view(request):
    if not metrics_allowed(request):
        return HttpResponseNotFound("Not Found", content_type="text/plain")
    try:
        body = generate_latest(_registry())
    except Exception as error:  # the database or cache down: say so, do not 500 the scraper
        logger.warning("metrics: %s: %s", type(error).__name__, error)
        return HttpResponse(f"# metrics unavailable: {type(error).__name__}\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)

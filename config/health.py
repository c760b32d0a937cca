"""``/healthz`` and ``/readyz`` for load balancers and supervisors (docs/deploy.md).

``/healthz``: the process is alive and answers; it touches nothing else, so a database
outage does not make a load balancer kill every web process at once.
``/readyz``: this process can serve: the database answers and has every migration on
disk applied, the broker and the cache answer, and beat has ticked recently. JSON
``{"status": "ok"|"fail", "checks": {name: "ok" | "fail: why"}}``, 200 or 503. Three
bounded queries and two round trips; the details of a failure go to the log, not to the
(public) response.

Our own views rather than django-health-check: one dependency less, and the two checks
that matter most here (unapplied migrations, beat freshness) are ours to write anyway.

``HealthCheckMiddleware`` sits first in MIDDLEWARE and answers both paths before
anything reads the Host header, so a load balancer can probe the machine's address when
DJANGO_ALLOWED_HOSTS lists only the public name; SECURE_REDIRECT_EXEMPT keeps them off
the https redirect too. The URL routes are the same views, for tools that resolve them.

Beat freshness: django-celery-beat's ``PeriodicTasks.last_update`` only changes when a
schedule is edited, so it says nothing about beat running. Beat writes each task's
``last_run_at`` when it sends it (flushed at least every few minutes), and the release of
matured points runs every 15 minutes, so the newest ``last_run_at`` of the enabled tasks
older than LOYALTY_READYZ_BEAT_MAX_AGE_MINUTES (default 30) means beat has stopped. Right
after ``manage.py deploy`` nothing has run yet: tasks changed within that age count as
fresh.
"""

import datetime as dt
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.models import Max
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from .routers import replica_configured, replica_lag_seconds

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

_expected_leaves: set[tuple[str, str]] | None = None


def _migration_leaves() -> set[tuple[str, str]]:
    """The last migration of every app on disk; read once, the files do not change under a process."""
    global _expected_leaves
    if _expected_leaves is None:
        loader = MigrationLoader(None, ignore_no_migrations=True)
        _expected_leaves = set(loader.graph.leaf_nodes())
    return _expected_leaves


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations")
        applied = set(cursor.fetchall())
    missing = sorted(f"{app}.{name}" for app, name in _migration_leaves() - applied)
    if missing:
        raise RuntimeError(f"unapplied migrations (run manage.py deploy): {', '.join(missing[:5])}")
    return "ok"


_redis_clients: dict = {}


def check_broker() -> str:
    from config.celery import app

    url = app.conf.broker_write_url or app.conf.broker_url
    if url.startswith(("redis://", "rediss://")):
        # A kept client with its pool: one PING round trip, not a new connection per probe.
        import redis

        client = _redis_clients.get(url)
        if client is None:
            client = _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        return "ok"
    with app.connection_for_write() as conn:
        # One try: a load balancer asks again in a few seconds anyway.
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    return "ok"


def check_cache() -> str:
    key = "loyalty:readyz"
    value = str(time.monotonic_ns())
    cache.set(key, value, 30)
    if cache.get(key) != value:
        raise RuntimeError("the cache did not give back what was just written")
    return "ok"


def check_beat() -> str:
    from django_celery_beat.models import PeriodicTask

    max_age = dt.timedelta(minutes=getattr(settings, "LOYALTY_READYZ_BEAT_MAX_AGE_MINUTES", 30))
    newest = PeriodicTask.objects.filter(enabled=True).aggregate(ran=Max("last_run_at"), changed=Max("date_changed"))
    if newest["ran"] is None and newest["changed"] is None:
        raise RuntimeError("no periodic tasks: run manage.py deploy")
    latest = max(moment for moment in (newest["ran"], newest["changed"]) if moment is not None)
    age = timezone.now() - latest
    if age > max_age:
        raise RuntimeError(f"beat's last tick was {int(age.total_seconds() // 60)} minutes ago")
    return "ok"


CHECKS = {"database": check_database, "broker": check_broker, "cache": check_cache, "beat": check_beat}
# The beat check reads the database: no point asking when the database failed.
_NEEDS_DATABASE = {"beat"}


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    checks: dict[str, str] = {}
    for name, check in CHECKS.items():
        if name in _NEEDS_DATABASE and checks.get("database") != "ok":
            checks[name] = "fail: database not ready"
            continue
        try:
            checks[name] = check()
        except Exception as error:  # any failure is "not ready", never a 500
            logger.warning("readyz: %s check failed: %s: %s", name, type(error).__name__, error)
            detail = str(error) if isinstance(error, RuntimeError) else type(error).__name__
            checks[name] = f"fail: {detail}"
    ok = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if ok else "fail", "checks": checks}
    if replica_configured():
        # Shown, not counted: past the limit reporting reads go to the primary (config.routers),
        # so a lagging replica must not take every web process out of the load balancer.
        try:
            lag = replica_lag_seconds()
            body["replica_lag_seconds"] = round(lag, 3)
            limit = settings.DATABASE_REPLICA_MAX_LAG_SECONDS
            body["replica"] = "ok" if lag <= limit else f"lagging more than {limit} s: reporting reads on the primary"
        except Exception as error:
            logger.warning("readyz: replica check failed: %s: %s", type(error).__name__, error)
            body["replica_lag_seconds"] = None
            detail = str(error) if isinstance(error, RuntimeError) else type(error).__name__
            body["replica"] = f"unreachable ({detail}): reporting reads on the primary"
    return JsonResponse(body, status=200 if ok else 503)


class HealthCheckMiddleware:
    """Answers /healthz and /readyz before the host check and the https redirect."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info.rstrip("/")
        if path == HEALTH_PATH:
            return healthz(request)
        if path == READY_PATH:
            return readyz(request)
        return self.get_response(request)

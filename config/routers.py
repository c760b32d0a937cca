"""Reporting reads to the streaming replica, everything else to the primary (docs/deploy.md).

Active when DATABASE_REPLICA_URL is set (the ``replica`` alias). Reads go to the replica
only inside a reporting scope: a GET request whose path matches DATABASE_REPLICA_PATHS
(the dashboard, the segment list with its counts, exports, the staff figures, member
data exports, /metrics; ``ReplicaScopeMiddleware``) or code inside ``replica_reads()``. Even there a
read goes to the primary when:

- the model is not reporting data (sign-in, sessions, tokens, lockouts, schedules: a
  replica a few milliseconds behind must never sign someone out);
- the scope has written anything (a read after a write sees that write);
- it runs inside a transaction on the primary (a service reads what it will decide on);
- the replica is down or more than DATABASE_REPLICA_MAX_LAG_SECONDS behind (asked at
  most every few seconds per connection): the primary can serve everything.

Writes always go to the primary; migrations run on the primary only.
"""

import contextlib
import contextvars
import functools
import logging
import re
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

logger = logging.getLogger(__name__)

REPLICA = "replica"
# Apps whose reads may come from the replica: the members' and the ledger's data.
REPORTING_APPS = frozenset({"members", "loyalty", "rewards", "engagement", "operations", "core"})
# How long a replica health answer is kept (per process).
_PROBE_SECONDS = 5.0

LAG_SQL = (
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)


@dataclass
class _Scope:
    wrote: bool = False
    reads: dict = field(default_factory=lambda: {REPLICA: 0, DEFAULT_DB_ALIAS: 0})


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("replica_scope", default=None)


@contextlib.contextmanager
def replica_reads():
    """Reporting reads inside this block may come from the replica (until the block writes)."""
    scope = _Scope()
    token = _scope.set(scope)
    try:
        # A write the router does not see (raw SQL on the primary) ends replica reads too.
        with connections[DEFAULT_DB_ALIAS].execute_wrapper(functools.partial(_note_writes, scope)):
            yield scope
    finally:
        _scope.reset(token)


def _note_writes(scope: _Scope, execute, sql, params, many, context):
    if not str(sql).lstrip()[:6].upper().startswith("SELECT"):
        scope.wrote = True
    return execute(sql, params, many, context)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def replica_lag_seconds() -> float:
    """Seconds the replica is behind the primary (0 when it has replayed all it received)."""
    with connections[REPLICA].cursor() as cursor:
        cursor.execute(LAG_SQL)
        (lag,) = cursor.fetchone()
    if lag is None:
        raise RuntimeError("DATABASE_REPLICA_URL is not a replica (pg_is_in_recovery() is false)")
    return float(lag)


_probe: dict[str, tuple[float, bool]] = {}


def _replica_usable() -> bool:
    now = time.monotonic()
    checked = _probe.get("replica")
    if checked and now - checked[0] < _PROBE_SECONDS:
        return checked[1]
    try:
        usable = replica_lag_seconds() <= settings.DATABASE_REPLICA_MAX_LAG_SECONDS
        if not usable:
            logger.warning(
                "replica lags more than %s s: reporting reads go to the primary",
                settings.DATABASE_REPLICA_MAX_LAG_SECONDS,
            )
    except Exception as error:
        logger.warning("replica unusable, reporting reads go to the primary: %s: %s", type(error).__name__, error)
        connections[REPLICA].close()
        usable = False
    _probe["replica"] = (now, usable)
    return usable


class ReplicaRouter:
    def db_for_read(self, model, **hints):
        scope = _scope.get()
        alias = DEFAULT_DB_ALIAS
        if (
            scope is not None
            and not scope.wrote
            and model._meta.app_label in REPORTING_APPS
            and not connections[DEFAULT_DB_ALIAS].in_atomic_block
            and _replica_usable()
        ):
            alias = REPLICA
        if scope is not None:
            scope.reads[alias] += 1
        return alias

    def db_for_write(self, model, **hints):
        scope = _scope.get()
        if scope is not None:
            scope.wrote = True
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True  # one database, two copies

    def allow_migrate(self, db, app_label, **hints):
        return db == DEFAULT_DB_ALIAS


class ReplicaScopeMiddleware:
    """Opens a reporting scope for the paths in DATABASE_REPLICA_PATHS (a no-op without a replica)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.paths = [re.compile(pattern) for pattern in settings.DATABASE_REPLICA_PATHS]

    def __call__(self, request):
        # Only reads: a form posted on those pages (an export's options, a segment's edit)
        # reads what it validates on the primary.
        if (
            request.method in ("GET", "HEAD")
            and replica_configured()
            and any(pattern.search(request.path_info) for pattern in self.paths)
        ):
            with replica_reads():
                return self.get_response(request)
        return self.get_response(request)

"""Run by test_replica.py in a process of its own, with DATABASE_URL and DATABASE_REPLICA_URL
pointing at the throwaway primary and its streaming replica. Prints one JSON object.

Replay on the replica is paused after the first members are there, so the replica is
behind by a known amount: a read the router sends to the replica misses the member
written after the pause, a read it sends to the primary sees it.
"""

import json
import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connections, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from config import routers  # noqa: E402
from loyalty.tests.factories import MemberFactory, StoreFactory  # noqa: E402
from members.models import Member, Store  # noqa: E402


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.05)


def replica_count() -> int:
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM members_member")
        return cursor.fetchone()[0]


def replica_queries(call) -> tuple[object, int]:
    replica = connections["replica"]
    replica.force_debug_cursor = True
    replica.queries_log.clear()
    try:
        result = call()
    finally:
        replica.force_debug_cursor = False
    return result, len(replica.queries_log)


out: dict = {}
# Until the lag part below, the replica counts as fresh however slow this machine is.
LAG_LIMIT = settings.DATABASE_REPLICA_MAX_LAG_SECONDS
settings.DATABASE_REPLICA_MAX_LAG_SECONDS = 3600
store = StoreFactory()
MemberFactory.create_batch(3, home_store=store)
admin = get_user_model().objects.create_superuser("replica-admin", password="not-a-real-password-42")
wait_for(lambda: replica_count() == 3)
wait_for(lambda: routers.replica_lag_seconds() == 0)

with connections["replica"].cursor() as cursor:
    cursor.execute("SELECT pg_wal_replay_pause()")
MemberFactory(home_store=store)  # on the primary only, from now on

out["primary_outside_scope"] = Member.objects.count()
with routers.replica_reads():
    out["replica_in_scope"] = Member.objects.count()
    out["auth_in_scope_sees_new_user"] = get_user_model().objects.filter(username="replica-admin").exists()
    with transaction.atomic():
        out["in_transaction"] = Member.objects.count()
    out["before_write"] = Member.objects.count()
    Store.objects.filter(pk=store.pk).update(name="renamed")
    out["after_write"] = Member.objects.count()
with routers.replica_reads():
    with connections["default"].cursor() as cursor:  # a raw write the router does not see
        cursor.execute("UPDATE members_store SET city = 'Hangzhou' WHERE id = %s", [store.pk])
    out["after_raw_write"] = Member.objects.count()

# A reporting page reads the replica, a member page does not.
client = Client()
client.force_login(admin)
cache.clear()
response, n = replica_queries(lambda: client.get("/admin/dashboard/"))
out["dashboard"] = [response.status_code, n]
response, n = replica_queries(lambda: client.get("/admin/members/member/"))
out["member_list"] = [response.status_code, n]
response, n = replica_queries(lambda: client.get("/admin/members/segment/"))
out["segment_list"] = [response.status_code, n]
response, n = replica_queries(lambda: client.post("/admin/dashboard/"))
out["dashboard_post_replica_queries"] = n

# Replay paused with a write waiting: the lag grows past the limit (1 s here) and the
# router leaves the replica aside; /readyz shows it.
settings.DATABASE_REPLICA_MAX_LAG_SECONDS = LAG_LIMIT
wait_for(lambda: routers.replica_lag_seconds() > LAG_LIMIT + 0.2)
routers._probe.clear()
with routers.replica_reads():
    out["lagging_in_scope"] = Member.objects.count()
ready = client.get("/readyz").json()
out["readyz_lagging"] = [ready.get("replica_lag_seconds"), ready.get("replica")]

with connections["replica"].cursor() as cursor:
    cursor.execute("SELECT pg_wal_replay_resume()")
wait_for(lambda: replica_count() == 4 and routers.replica_lag_seconds() == 0)
routers._probe.clear()
ready = client.get("/readyz").json()
out["readyz_caught_up"] = [ready.get("replica_lag_seconds"), ready.get("replica")]
with routers.replica_reads() as scope:
    out["caught_up_in_scope"] = Member.objects.count()
    out["scope_reads"] = scope.reads

json.dump(out, sys.stdout)

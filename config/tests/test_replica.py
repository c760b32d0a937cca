"""The read replica, against a real streaming replica (config.routers, docs/deploy.md).

A session fixture makes a primary on a free port from a dump of this run's test database
and a replica of it on another with pg_basebackup, and removes both at the end. The
scenario (replica_scenario.py) runs in its own process, whose settings have
DATABASE_REPLICA_URL, and pauses replay on the replica so that where a read went shows in
what it returns.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from . import pgcluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def primary_and_replica(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        source = connection.settings_dict
    primary = pgcluster.primary_create(pgcluster.free_port())
    clusters = [primary]
    try:
        pgcluster.database_copy(
            [
                "-h",
                source["HOST"] or "127.0.0.1",
                "-p",
                str(source["PORT"] or 5432),
                "-U",
                source["USER"] or "postgres",
                source["NAME"],
            ],
            primary,
            "loyalty",
        )
        # Rows the test database may hold from the fixtures of earlier tests are not ours.
        primary.psql("loyalty", "TRUNCATE members_member, members_store, auth_user RESTART IDENTITY CASCADE")
        replica = pgcluster.replica_create(primary, pgcluster.free_port())
        clusters.append(replica)
        yield primary, replica
    finally:
        pgcluster.remove(*clusters)


def test_reporting_reads_go_to_the_replica_and_the_rest_to_the_primary(primary_and_replica):
    primary, replica = primary_and_replica
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env |= {
        "DJANGO_ENV": "development",
        "DATABASE_URL": primary.url("loyalty"),
        "DATABASE_REPLICA_URL": replica.url("loyalty"),
        "DATABASE_REPLICA_MAX_LAG_SECONDS": "1",
        "CACHE_URL": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "config.tests.replica_scenario"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # 3 members replayed, a 4th on the primary only.
    assert out["primary_outside_scope"] == 4
    assert out["replica_in_scope"] == 3
    assert out["auth_in_scope_sees_new_user"] is True  # sign-in data: always the primary
    assert out["in_transaction"] == 4  # a service's reads inside its transaction
    assert out["before_write"] == 3
    assert out["after_write"] == 4  # a read after a write in the same scope
    assert out["after_raw_write"] == 4
    dashboard_status, dashboard_replica_queries = out["dashboard"]
    assert dashboard_status == 200 and dashboard_replica_queries > 0
    assert out["member_list"] == [200, 0]
    segment_status, segment_replica_queries = out["segment_list"]
    assert segment_status == 200 and segment_replica_queries > 0
    assert out["dashboard_post_replica_queries"] == 0  # a POST reads the primary
    # Past DATABASE_REPLICA_MAX_LAG_SECONDS the replica is left aside, and /readyz says so.
    assert out["lagging_in_scope"] == 4
    lag, verdict = out["readyz_lagging"]
    assert lag > 1 and verdict.startswith("lagging more than 1 s")
    assert out["readyz_caught_up"] == [0.0, "ok"]
    assert out["caught_up_in_scope"] == 4
    assert out["scope_reads"]["replica"] == 1


def test_readyz_without_a_replica_shows_no_replica_fields(client, db):
    body = client.get("/readyz").json()
    assert "replica" not in body and "replica_lag_seconds" not in body

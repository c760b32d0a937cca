"""Job and connection settings: retry bounds of the job tasks, health checks on persistent connections."""

import json
import os
import subprocess
import sys

import psycopg
import pytest
from django.db import close_old_connections, connection
from django.test import Client

from core import jobs


def settings_with(**env) -> dict:
    """``config.settings.DATABASES["default"]`` as a fresh process with ``env`` sees it."""
    code = "import json, config.settings as s; print(json.dumps(s.DATABASES['default'], default=str))"
    environ = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_persistent_connections_are_health_checked():
    persistent = settings_with(DATABASE_CONN_MAX_AGE="60")
    assert (persistent["CONN_MAX_AGE"], persistent["CONN_HEALTH_CHECKS"]) == (60, True)
    per_request = settings_with(DATABASE_CONN_MAX_AGE="0")
    assert (per_request["CONN_MAX_AGE"], per_request["CONN_HEALTH_CHECKS"]) == (0, False)


def test_job_retry_delays_grow_to_the_cap_and_keep_a_lower_bound():
    delays = [jobs.retry_delay(n) for n in range(20)]
    assert 1 <= delays[0] <= 2
    assert all(jobs.JOB_RETRY_BACKOFF_MAX / 2 <= delay <= jobs.JOB_RETRY_BACKOFF_MAX for delay in delays[9:])


@pytest.mark.django_db(transaction=True)
def test_an_idle_persistent_connection_killed_by_the_server_does_not_make_a_500(admin_user):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL")
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    saved = {key: connection.settings_dict[key] for key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS")}
    connection.settings_dict.update(CONN_MAX_AGE=600, CONN_HEALTH_CHECKS=True)
    connection.close()  # reopened with these settings

    def request() -> int:
        # What the real handler does at each request's start (the test client leaves it out).
        close_old_connections()
        return client.get("/admin/").status_code

    try:
        assert request() == 200
        pid = connection.connection.info.backend_pid  # the connection the next request reuses
        params = connection.get_connection_params()
        with psycopg.connect(
            dbname=params["dbname"],
            user=params.get("user"),
            host=params.get("host"),
            port=params.get("port"),
            autocommit=True,
        ) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert request() == 200  # not 500 or 503: the dead connection was replaced
        assert connection.connection.info.backend_pid != pid
    finally:
        connection.settings_dict.update(saved)
        connection.close()

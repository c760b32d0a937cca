"""Prometheus metrics at /metrics (config.metrics): who may read them and what they say."""

import datetime as dt
import re

import pytest
from django.core.cache import cache
from django.utils import timezone

from config.metrics_celery import job_run_record
from loyalty import services
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import JobRun, Notification

TOKEN = "t" * 32


@pytest.fixture
def metrics_settings(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    cache.clear()
    return settings


def _value(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(key) == value for key, value in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in the metrics")


@pytest.mark.django_db
def test_metrics_are_hidden_without_the_token_or_an_internal_address(client, metrics_settings):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token-wrong-token-wrong").status_code == 404
    metrics_settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    # A forwarded header does not make a request internal: only the connection's address counts.
    metrics_settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


@pytest.mark.django_db
def test_metrics_are_served_by_address_whatever_the_host_header(client, metrics_settings):
    metrics_settings.ALLOWED_HOSTS = ["members.example.com"]
    response = client.get("/metrics", HTTP_HOST="10.0.0.7:8000", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")


@pytest.mark.django_db
def test_metrics_count_requests_ledger_entries_jobs_queues_and_the_outbox(
    client, metrics_settings, django_assert_max_num_queries
):
    member = MemberFactory()
    store = StoreFactory()
    services.order_earn(member=member, store=store, number="M-1", amount="88.00")
    client.get("/api/v1/me/")  # 401: counted by its URL pattern, not its path
    JobRun.objects.create(name="rewards.monthly", last_period=dt.date(2026, 1, 1), last_success_at=timezone.now())
    # The outbox's state, as a sender that is behind leaves it.
    Notification.objects.create(member=member, kind=Notification.Kind.OTHER, title="t", dedupe_key="metrics-1")
    job_run_record("loyalty.release_matured_points", outcome="success", seconds=1.5, finished_at=1_800_000_000.0)
    job_run_record("loyalty.release_matured_points", outcome="skipped", seconds=0.01, finished_at=1_800_000_100.0)

    with django_assert_max_num_queries(12):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    text = response.content.decode()
    assert _value(text, "loyalty_http_requests_total", route="api/v1/me/", method="GET", status="401") >= 1
    assert _value(text, "loyalty_http_request_duration_seconds_count", route="api/v1/me/", method="GET") >= 1
    assert _value(text, "loyalty_ledger_entries_total", kind="earn", currency="points") == 1
    assert _value(text, "loyalty_ledger_entries_total", kind="earn", currency="growth") == 1
    assert _value(text, "loyalty_job_last_success_timestamp_seconds", job="rewards.monthly") > 0
    assert _value(text, "loyalty_job_runs_total", job="loyalty.release_matured_points", outcome="success") == 1
    assert _value(text, "loyalty_job_runs_total", job="loyalty.release_matured_points", outcome="skipped") == 1
    assert _value(text, "loyalty_job_duration_seconds_total", job="loyalty.release_matured_points") == 1.51
    assert _value(text, "loyalty_job_last_duration_seconds", job="loyalty.release_matured_points") == 0.01
    assert (
        _value(text, "loyalty_job_last_success_timestamp_seconds", job="loyalty.release_matured_points")
        == 1_800_000_000.0
    )
    for queue in ("ledger", "contact", "bulk"):
        assert _value(text, "loyalty_queue_depth", queue=queue) >= 0
    assert _value(text, "loyalty_outbox_backlog") == Notification.objects.filter(sent_at__isnull=True).count() >= 1
    assert _value(text, "loyalty_outbox_oldest_age_seconds") >= 0
    assert _value(text, "loyalty_import_backlog") == 0

    # A second earn is counted from where the first count stopped.
    services.order_earn(member=member, store=store, number="M-2", amount="10.00")
    cache.delete("loyalty:metrics:snapshot")
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert _value(text, "loyalty_ledger_entries_total", kind="earn", currency="points") == 2


def test_sentry_and_s3_media_are_set_up_from_the_environment():
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import django; django.setup(); import sentry_sdk; "
        "from django.core.files.storage import storages; s = storages['default']; "
        "c = sentry_sdk.get_client(); "
        "print(c.is_active(), sorted(i for i in c.integrations if i in ('django', 'celery')), "
        "c.options['send_default_pii'], type(s).__name__, s.bucket_name, s.endpoint_url)"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("SENTRY_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SENTRY_DSN": "http://public@127.0.0.1:9/1",
        "MEDIA_S3_BUCKET": "loyalty-media",
        "MEDIA_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split(maxsplit=3)[:3] == ["True", "['celery',", "'django']"]
    assert done.stdout.split()[-4:] == ["False", "S3Storage", "loyalty-media", "http://127.0.0.1:9000"]

"""/healthz and /readyz: JSON, cheap, reachable by address, never redirected to https."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config import health


@pytest.fixture
def scheduled(db):
    call_command("setup_periodic_tasks", verbosity=0)


def test_healthz_answers_without_the_database(client):
    # No django_db mark: any query would raise here.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_green_and_cheap(client, scheduled, django_assert_max_num_queries):
    health._migration_leaves()  # the migration files are read once per process
    with django_assert_max_num_queries(2):
        response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "cache": "ok", "beat": "ok"}}


@pytest.mark.django_db
def test_readyz_fails_when_beat_has_stopped(client, scheduled):
    long_ago = timezone.now() - dt.timedelta(hours=2)
    PeriodicTask.objects.update(last_run_at=long_ago, date_changed=long_ago)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["beat"].startswith("fail: beat's last tick was 120 minutes ago")
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_readyz_is_fresh_after_a_recent_tick(client, scheduled):
    long_ago = timezone.now() - dt.timedelta(hours=2)
    PeriodicTask.objects.update(date_changed=long_ago, last_run_at=long_ago)
    PeriodicTask.objects.filter(task="loyalty.release_matured_points").update(last_run_at=timezone.now())
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_fails_without_schedules(client):
    PeriodicTask.objects.all().delete()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["beat"] == "fail: no periodic tasks: run manage.py deploy"


@pytest.mark.django_db
def test_readyz_fails_on_an_unapplied_migration(client, scheduled):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'loyalty'")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith(
        "fail: unapplied migrations (run manage.py deploy): loyalty."
    )


@pytest.mark.django_db
def test_readyz_fails_when_the_broker_is_unreachable(client, scheduled, settings):
    from config.celery import app

    old = app.conf.broker_write_url
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_write_url = old
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("fail: ")


@pytest.mark.django_db
def test_readyz_fails_when_the_cache_is_unreachable(client, scheduled, settings):
    from django.core.cache import caches

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    try:
        response = client.get("/readyz")
    finally:
        caches["default"].close()
    assert response.status_code == 503
    assert response.json()["checks"]["cache"].startswith("fail: ")


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@pytest.mark.django_db
def test_reachable_by_address_and_not_redirected_to_https(client, scheduled, settings, path):
    settings.ALLOWED_HOSTS = ["members.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = client.get(path, HTTP_HOST="10.0.0.7:8000")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    # Anything else by address is still refused by the host check (400) ...
    assert client.get("/admin/login/", HTTP_HOST="10.0.0.7:8000").status_code == 400
    # ... and sent to https under the public name.
    assert client.get("/admin/login/", HTTP_HOST="members.example.com").status_code == 301


def test_redirect_exemption_covers_the_health_paths(settings):
    import re

    for path in ("healthz", "readyz"):
        assert any(re.search(pattern, path) for pattern in settings.SECURE_REDIRECT_EXEMPT)

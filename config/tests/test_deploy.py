"""`manage.py deploy` and the production start: one command, clear messages on a bad DATABASE_URL."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django_celery_beat.models import PeriodicTask

ROOT = Path(__file__).resolve().parents[2]
REAL_KEY = "k" * 20 + "3f9a0c7d1e5b8a2c4d6e8f0a1b3c5d7e9f" + "x" * 10
GOOD_DATABASE = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/loyalty")


def _run(args, **env):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def _production(**env):
    return dict(
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=REAL_KEY,
        DJANGO_ALLOWED_HOSTS="members.example.com",
        CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
        **env,
    )


BAD_DATABASES = [
    ("postgres://postgres@127.0.0.1:1/loyalty", "cannot reach a database server at 127.0.0.1:1"),
    (GOOD_DATABASE.rsplit("/", 1)[0] + "/no_such_db_golive", "the database 'no_such_db_golive' does not exist"),
    ("postgres://no_such_user_golive@127.0.0.1:5432/postgres", "refused the user 'no_such_user_golive'"),
]


@pytest.mark.django_db
def test_deploy_creates_schedules_and_roles(capsys, monkeypatch):
    # The browser tests set this for Playwright in the same process; check --deploy
    # rightly refuses it (async.E001), and no deployment sets it.
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)
    PeriodicTask.objects.all().delete()
    Group.objects.all().delete()
    call_command("deploy", verbosity=0)
    assert PeriodicTask.objects.filter(task="loyalty.release_matured_points", enabled=True).exists()
    assert Group.objects.exists()
    out = capsys.readouterr().out
    assert "==> migrate" in out and "==> check --deploy" in out and "Deploy steps done." in out


@pytest.mark.django_db
def test_deploy_fails_clearly_when_the_configuration_is_not_fit_for_production():
    # Development settings (DEBUG on and so on) fail check --deploy at WARNING.
    with pytest.raises(CommandError, match="not fit for production"):
        call_command("deploy", verbosity=0, fail_level="WARNING")


@pytest.mark.parametrize(("url", "message"), BAD_DATABASES)
def test_deploy_names_what_is_wrong_with_the_database(url, message):
    result = _run(["manage.py", "deploy"], DJANGO_ENV="development", DATABASE_URL=url)
    assert result.returncode != 0
    assert message in result.stderr
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("url", "message"), BAD_DATABASES)
def test_production_web_start_refuses_a_bad_database(url, message):
    result = _run(["-c", "import config.wsgi"], **_production(DATABASE_URL=url))
    assert result.returncode == 3, result.stderr
    assert "Cannot start:" in result.stderr
    assert message in result.stderr
    assert "DATABASE_URL" in result.stderr


def test_production_web_start_with_a_good_database():
    # Any database the server has will do: the start checks the connection, not the schema.
    reachable = GOOD_DATABASE.rsplit("/", 1)[0] + "/postgres"
    result = _run(["-c", "import config.wsgi"], **_production(DATABASE_URL=reachable))
    assert result.returncode == 0, result.stderr

"""Production mode refuses unsafe settings; with real ones `check --deploy` is clean."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REAL_KEY = "k" * 20 + "3f9a0c7d1e5b8a2c4d6e8f0a1b3c5d7e9f" + "x" * 10


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/loyalty")
    environment.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": REAL_KEY, "DJANGO_ALLOWED_HOSTS": "x.example.com", "DATABASE_URL": ""}, "DATABASE_URL"),
        (
            {"DJANGO_SECRET_KEY": REAL_KEY, "DJANGO_ALLOWED_HOSTS": "x.example.com", "CELERY_BROKER_URL": ""},
            "CELERY_BROKER_URL",
        ),
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": REAL_KEY}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_SECRET_KEY": REAL_KEY, "DJANGO_ALLOWED_HOSTS": "x.example.com", "DJANGO_DEBUG": "1"}, "DJANGO_DEBUG"),
    ],
)
def test_production_mode_refuses_to_start_without_real_settings(env, message):
    result = run_manage("check", DJANGO_ENV="production", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_settings_pass_check_deploy():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=REAL_KEY,
        DJANGO_ALLOWED_HOSTS="members.example.com",
        # Production signs members in by SMS: a provider with its keys and an approved
        # template (without them outreach.W001/W002 warn, tested in outreach/tests).
        OUTREACH_SMS_PROVIDERS="aliyun",
        ALIYUN_SMS_ACCESS_KEY_ID="LTAI-test",
        ALIYUN_SMS_ACCESS_KEY_SECRET="secret-from-the-console",
        ALIYUN_SMS_SIGN_NAME="Demo Coffee",
        OUTREACH_SMS_TEMPLATES='{"one_time_code": {"aliyun": "SMS_123456789", "params": ["code"]}}',
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_without_an_sms_provider_warns_at_check_deploy():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=REAL_KEY,
        DJANGO_ALLOWED_HOSTS="members.example.com",
    )
    assert result.returncode != 0
    assert "outreach.W001" in result.stderr and "OUTREACH_SMS_PROVIDERS" in result.stderr


def test_malformed_setting_names_the_variable():
    result = run_manage("check", DJANGO_DEBUG="maybe")
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be true or false" in result.stderr
    result = run_manage("check", LOYALTY_POINTS_EXPIRY="rolling:soon")
    assert result.returncode != 0
    assert "LOYALTY_POINTS_EXPIRY" in result.stderr

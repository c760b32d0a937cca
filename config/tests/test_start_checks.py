"""A production web process, worker or beat with a bad database or broker stops at start, saying why."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_deploy import BAD_DATABASES, GOOD_DATABASE, _production

ROOT = Path(__file__).resolve().parents[2]
REACHABLE_DATABASE = GOOD_DATABASE.rsplit("/", 1)[0] + "/postgres"
BAD_BROKER = "redis://127.0.0.1:1/0"
CELERY = str(Path(sys.executable).with_name("celery"))


def _start(args: list[str], **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment.update(_production())
    environment.update(env)
    return subprocess.run(args, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


def test_production_web_start_refuses_an_unreachable_broker():
    result = _start(
        [sys.executable, "-c", "import config.wsgi"], DATABASE_URL=REACHABLE_DATABASE, CELERY_BROKER_URL=BAD_BROKER
    )
    assert result.returncode == 3, result.stderr
    assert "Cannot start: cannot reach the broker at 127.0.0.1:1 (redis)" in result.stderr
    assert "CELERY_BROKER_URL" in result.stderr and "Traceback" not in result.stderr


def test_production_worker_start_refuses_an_unreachable_broker():
    # Without the check the worker would retry the broker for ever.
    result = _start(
        [CELERY, "-A", "config", "worker", "--pool=solo", "--queues=golive-start-check"],
        DATABASE_URL=REACHABLE_DATABASE,
        CELERY_BROKER_URL=BAD_BROKER,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Cannot start the celery worker: cannot reach the broker at 127.0.0.1:1" in result.stderr


# One bad database is enough here: test_deploy.py covers each message for the web start.
@pytest.mark.parametrize(("url", "message"), BAD_DATABASES[1:2])
def test_production_worker_and_beat_start_refuse_a_bad_database(url, message):
    worker = _start([CELERY, "-A", "config", "worker", "--pool=solo", "--queues=golive-start-check"], DATABASE_URL=url)
    assert worker.returncode == 3, worker.stderr[-2000:]
    assert "Cannot start the celery worker:" in worker.stderr and message in worker.stderr
    beat = _start([CELERY, "-A", "config", "beat", "--pidfile="], DATABASE_URL=url)
    assert beat.returncode == 3, beat.stderr[-2000:]
    assert "Cannot start celery beat:" in beat.stderr and "DATABASE_URL" in beat.stderr

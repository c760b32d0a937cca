"""A production process checks its database and broker once when it starts (docs/deploy.md).

A wrong DATABASE_URL or CELERY_BROKER_URL then stops the process at once with a message
naming the variable and what in it to fix, instead of a web process answering every
request with an error page or a worker retrying for ever. The web checks in
config/wsgi.py; workers and beat through celery's ``worker_init`` and ``beat_init``
signals (this module is in CELERY_IMPORTS; beat also when it imports it). Exit status 3: gunicorn reads it as "worker
failed to boot" and stops, and the systemd units do not restart on it.
"""

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from celery.signals import beat_init, worker_init
from django.conf import settings
from django.core.checks import ERROR
from django.db import connections

from operations.management.commands.deploy import database_problem
from outreach.checks import sms_settings

START_FAILED = 3


def broker_problem() -> str | None:
    """What is wrong with CELERY_BROKER_URL, in words naming it; None if the broker answers."""
    from .health import check_broker

    try:
        check_broker()
    except Exception as error:
        parts = urlsplit(settings.CELERY_BROKER_URL)
        where = f"{parts.hostname or 'localhost'}:{parts.port or ''}".rstrip(":")
        # The first line of the client's message, never the URL: it may hold a password.
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        lowered = first_line.lower()
        if "auth" in lowered or "password" in lowered or "access refused" in lowered:
            fix = f"the broker at {where} refused the credentials: fix the user or password in"
        else:
            fix = f"cannot reach the broker at {where} ({parts.scheme}): start it there or fix the host and port in"
        return f"{fix} CELERY_BROKER_URL. ({first_line})"
    return None


def delivery_problems() -> list[str]:
    """The SMS settings' errors (a provider on without its keys: every code would fail),
    which stop the start; their warnings (no SMS provider at all: a brand may sign members
    in through the mini-program only) are printed and the process starts."""
    problems = []
    for check in sms_settings(None):
        text = f"{check.msg} {check.hint or ''}".strip()
        if check.level >= ERROR:
            problems.append(text)
        else:
            print(f"Warning ({check.id}): {text}", file=sys.stderr, flush=True)
    return problems


def start_problems(*, broker: bool = True) -> list[str]:
    problems = [problem for problem in [database_problem()] if problem]
    problems += delivery_problems()
    connections.close_all()  # each process (gunicorn worker, celery child) opens its own
    if broker:
        problem = broker_problem()
        if problem:
            problems.append(problem)
    return problems


def exit_if_misconfigured(process: str) -> None:
    """In production: print every problem and exit 3; otherwise do nothing."""
    if os.environ.get("DJANGO_ENV") != "production":
        return
    problems = start_problems()
    if problems:
        for problem in problems:
            print(f"Cannot start {process}: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(START_FAILED)


@worker_init.connect
def _worker_starting(**_):
    exit_if_misconfigured("the celery worker")


@beat_init.connect
def _beat_starting(**_):
    exit_if_misconfigured("celery beat")


# Beat builds its database scheduler (which reads the database) before it sends beat_init;
# it imports this module (CELERY_IMPORTS) before that, so beat is checked here.
if Path(sys.argv[0]).name == "celery" and "beat" in sys.argv[1:]:
    exit_if_misconfigured("celery beat")

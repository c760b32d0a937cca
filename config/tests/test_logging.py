"""Request ids: taken or made by the middleware, on every log record, in JSON lines, and
carried to the celery tasks a request queues (a real worker on the test broker)."""

import json
import logging
import queue
import uuid

import pytest
from celery.contrib.testing.worker import start_worker
from django.http import HttpResponse
from django.test import RequestFactory

from config.celery import app as celery_app
from config.logging import JsonFormatter, RequestIdFilter, RequestIdMiddleware, request_id_var

seen: queue.Queue = queue.Queue()


@celery_app.task(name="config.tests.log_request_id")
def log_request_id():
    logging.getLogger("config.tests.task").info("task ran")
    seen.put(request_id_var.get())


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []
        self.addFilter(RequestIdFilter())

    def emit(self, record):
        self.records.append(record)


def _through_middleware(view, **headers):
    request = RequestFactory().get("/somewhere", **headers)
    return request, RequestIdMiddleware(view)(request)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123_x.y:z", True), ("", False), ("bad id\nwith newline", False), ("x" * 129, False), ("<script>", False)],
)
def test_request_id_is_taken_when_well_formed_else_made(sent, kept):
    headers = {"HTTP_X_REQUEST_ID": sent} if sent else {}
    request, response = _through_middleware(lambda request: HttpResponse("ok"), **headers)
    if kept:
        assert response["X-Request-ID"] == sent
    else:
        assert response["X-Request-ID"] != sent
        assert len(response["X-Request-ID"]) == 32
    assert request.request_id == response["X-Request-ID"]
    assert request_id_var.get() is None  # reset after the request


def test_every_record_during_a_request_carries_the_id_and_json_lines_are_json():
    handler = Collect()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("config.tests.request")
    logger.addHandler(handler)
    try:

        def view(request):
            logger.warning("member %s looked up", 42, extra={"store": "S1"})
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
            return HttpResponse("ok")

        _through_middleware(view, HTTP_X_REQUEST_ID="req-1")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    ids = [record.request_id for record in handler.records]
    assert ids == ["req-1", "req-1", "-"]
    first, second, _ = (json.loads(handler.format(record)) for record in handler.records)
    assert first["message"] == "member 42 looked up"
    assert first["request_id"] == "req-1"
    assert first["level"] == "WARNING"
    assert first["logger"] == "config.tests.request"
    assert first["store"] == "S1"
    assert "ValueError: boom" in second["exception"]


def test_json_is_the_production_default_and_text_the_development_one():
    import os
    import subprocess
    import sys

    code = "from django.conf import settings; print(settings.LOGGING['handlers']['console']['formatter'])"
    base = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    production = dict(
        base,
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY="k" * 60,
        DJANGO_ALLOWED_HOSTS="x.example.com",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    run = [sys.executable, "-c", "import django; django.setup(); " + code]
    assert subprocess.run(run, env=production, capture_output=True, text=True, timeout=60).stdout.strip() == "json"
    development = dict(base, DJANGO_ENV="development", DJANGO_SETTINGS_MODULE="config.settings")
    assert subprocess.run(run, env=development, capture_output=True, text=True, timeout=60).stdout.strip() == "text"
    wrong = dict(development, DJANGO_LOG_FORMAT="xml")
    result = subprocess.run(run, env=wrong, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DJANGO_LOG_FORMAT" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_tasks_queued_during_a_request_log_its_id_in_the_worker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.conf.task_always_eager = False
    handler = Collect()
    task_logger = logging.getLogger("config.tests.task")
    task_logger.addHandler(handler)
    task_logger.setLevel(logging.INFO)
    # A queue of its own: test runs share the Redis (pytest-xdist workers), and a worker on
    # the default queue could take another run's tasks, or another run's worker ours.
    task_queue = f"test-logging-{uuid.uuid4().hex[:12]}"
    try:
        with start_worker(celery_app, perform_ping_check=False, shutdown_timeout=10, queues=[task_queue]):

            def view(request):
                log_request_id.apply_async(queue=task_queue)
                return HttpResponse("queued")

            _through_middleware(view, HTTP_X_REQUEST_ID="req-from-web")
            log_request_id.apply_async(queue=task_queue)  # queued outside any request: no id
            got = sorted([seen.get(timeout=20), seen.get(timeout=20)], key=str)
    finally:
        task_logger.removeHandler(handler)
    assert got == [None, "req-from-web"]
    assert sorted(record.request_id for record in handler.records) == ["-", "req-from-web"]


def test_a_celery_worker_logs_through_our_json_formatter_and_filter():
    import os
    import subprocess
    import sys

    code = (
        "import django, logging; django.setup(); from config.celery import app; app.log.setup(loglevel='INFO'); "
        "handlers = logging.getLogger().handlers; "
        "print(sorted({type(f).__name__ for h in handlers for f in h.filters}), "
        "sorted({type(h.formatter).__name__ for h in handlers}))"
    )
    env = dict(os.environ, DJANGO_LOG_FORMAT="json", DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "['RequestIdFilter'] ['JsonFormatter']", result.stderr

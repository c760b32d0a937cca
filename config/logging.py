"""Request ids and JSON log lines (docs/deploy.md, "Logs").

``RequestIdMiddleware`` (first in MIDDLEWARE) takes the client's or proxy's X-Request-ID
when it is well-formed, else makes one, puts it on the response and in a context
variable for the rest of the request. ``RequestIdFilter`` copies it onto every log
record, ``JsonFormatter`` writes one JSON object a line (DJANGO_LOG_FORMAT=json).
The celery signals at the end carry the id to tasks queued during the request, so a
worker's log lines for them carry the same id.
"""

import contextvars
import datetime as dt
import json
import logging
import re
import uuid

from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

HEADER = "X-Request-ID"
# The task message header the id travels in (namespaced: celery's own headers are bare names).
TASK_HEADER = "loyalty_request_id"
# Letters, digits and - _ . : up to 128: covers UUIDs, nginx's $request_id and most
# tracing ids, and keeps a client from writing newlines or markup into our logs.
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def request_id_clean(value: str | None) -> str | None:
    """The id if it is well-formed, else None (the caller then makes a new one)."""
    if value and _WELL_FORMED.match(value):
        return value
    return None


def request_id_new() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_clean(request.META.get("HTTP_X_REQUEST_ID")) or request_id_new()
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[HEADER] = request_id
        return response


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record ("-" outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get() or "-"
        return True


# Attributes every LogRecord has; whatever else a record carries came from ``extra=``.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get() or "-",
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# --- celery: the id travels with the tasks a request queues -----------------------------


@setup_logging.connect(dispatch_uid="loyalty-celery-logging")
def _celery_uses_our_logging(**kwargs) -> None:
    """Workers and beat log through settings.LOGGING (JSON, request id) instead of celery's own handler.

    With a receiver on this signal celery leaves the root logger alone.
    """
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


@before_task_publish.connect(dispatch_uid="loyalty-request-id-publish")
def _request_id_to_task(headers=None, **kwargs) -> None:
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


_task_tokens: dict[str, contextvars.Token] = {}


@task_prerun.connect(dispatch_uid="loyalty-request-id-prerun")
def _request_id_from_task(task_id=None, task=None, **kwargs) -> None:
    request = getattr(task, "request", None)
    # Custom message headers become attributes of the task's request (celery 5).
    request_id = request_id_clean(
        getattr(request, TASK_HEADER, None) or (getattr(request, "headers", None) or {}).get(TASK_HEADER)
    )
    if request_id and task_id:
        _task_tokens[task_id] = request_id_var.set(request_id)


@task_postrun.connect(dispatch_uid="loyalty-request-id-postrun")
def _request_id_task_done(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        request_id_var.reset(token)

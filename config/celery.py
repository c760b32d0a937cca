"""The celery app (cookiecutter-django's celery_app.py shape): settings under CELERY_*."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The request id travels to the tasks a request queues (signals in config.logging).
from . import logging as _request_id_signals  # noqa: E402, F401

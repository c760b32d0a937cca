"""gunicorn settings: `gunicorn -c config/gunicorn.py config.wsgi` (docs/deploy.md).

Sized from the machine, each knob overridable from the environment:
GUNICORN_BIND (0.0.0.0:8000), GUNICORN_WORKERS (2 x cores + 1), GUNICORN_THREADS (4),
GUNICORN_TIMEOUT (30 s), GUNICORN_GRACEFUL_TIMEOUT (30 s), GUNICORN_KEEPALIVE (5 s),
GUNICORN_MAX_REQUESTS (1000, with jitter), GUNICORN_ACCESS_LOG (- for stderr, "" for none),
PROMETHEUS_MULTIPROC_DIR (a new temporary folder; emptied at start).

The access log is one JSON object a line, with the request id that
config.logging.RequestIdMiddleware put on the response, so an access line and the
application's lines for one request share an id.
"""

import datetime as dt
import json
import multiprocessing
import os
import shutil
import tempfile

from gunicorn.glogging import Logger


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {value!r}.") from None


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = _int("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count() + 1)
threads = _int("GUNICORN_THREADS", 4)
# Threads only with the threaded worker: a request waiting on PostgreSQL frees its thread.
worker_class = "gthread" if threads > 1 else "sync"
timeout = _int("GUNICORN_TIMEOUT", 30)
# On SIGTERM, requests in flight get this long to finish before the worker is killed.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycled now and then, so a slow leak in a library never grows without bound.
max_requests = _int("GUNICORN_MAX_REQUESTS", 1000)
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# The proxy in front speaks X-Forwarded-For; Django reads it (LOYALTY_TRUSTED_PROXIES).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")


class JsonAccessLogger(Logger):
    """The access log as JSON: json.dumps escapes what a client puts in a path or agent."""

    def access(self, resp, req, environ, request_time):
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict or self.cfg.syslog):
            return
        headers = {name.lower(): value for name, value in (resp.headers or [])}
        entry = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "type": "access",
            "request_id": headers.get("x-request-id", "-"),
            "remote": environ.get("REMOTE_ADDR", "-"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING", ""),
            "status": int(str(resp.status).split()[0]) if resp.status else None,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "user_agent": environ.get("HTTP_USER_AGENT", ""),
            "referer": environ.get("HTTP_REFERER", ""),
        }
        try:
            self.access_log.info(json.dumps(entry, ensure_ascii=False))
        except Exception:  # a broken log line must never break the response
            self.exception("access log line failed")


# The class itself, not a dotted path: the master need not import the config package.
logger_class = JsonAccessLogger


# Prometheus (config.metrics): each worker process writes its request figures into this
# folder and /metrics adds up every worker's. Emptied at start: figures of a previous
# run's processes would otherwise be counted again. Set before the workers load the app.
_metrics_dir_made = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="loyalty-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server):
    os.makedirs(_metrics_dir, exist_ok=True)
    for name in os.listdir(_metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(_metrics_dir, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _metrics_dir_made:  # a folder of our own making goes with us
        shutil.rmtree(_metrics_dir, ignore_errors=True)

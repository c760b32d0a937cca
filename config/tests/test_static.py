"""Static files in production without a separate server: whitenoise under gunicorn.

Runs what a deployer runs: collectstatic with DEBUG off into a fresh STATIC_ROOT, then
gunicorn with config/gunicorn.py on a free port (bounded waits). Also checks the JSON
access log carries the request id.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, **headers: str):
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, dict(response.headers), response.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    static_root = tmp_path_factory.mktemp("static")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "GUNICORN_"))}
    env.update(
        DJANGO_ENV="development",
        DJANGO_DEBUG="false",
        DJANGO_STATIC_ROOT=str(static_root),
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="2",
    )
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert collected.returncode == 0, collected.stderr
    port = _free_port()
    env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
    log = static_root / "gunicorn.log"
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    _get(f"http://127.0.0.1:{port}/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        pytest.fail(f"gunicorn did not start: {log.read_text()}")
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}", static_root, log
        finally:
            server.terminate()
            server.wait(timeout=40)


def test_admin_css_is_served_by_the_app(served):
    base, static_root, _log = served
    status, headers, body = _get(f"{base}/static/admin/css/base.css")
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert b"body" in body


def test_hashed_names_are_cached_for_ever_and_compressed(served):
    base, static_root, _log = served
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    hashed = manifest["paths"]["admin/css/base.css"]
    assert hashed != "admin/css/base.css"
    status, headers, _body = _get(f"{base}/static/{hashed}", **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert "immutable" in headers["Cache-Control"]
    assert headers.get("Content-Encoding") == "gzip"


def test_access_log_is_json_with_the_request_id(served):
    base, _static_root, log = served
    status, headers, _body = _get(f"{base}/static/admin/css/base.css", **{"X-Request-ID": "probe-4711"})
    assert headers["X-Request-ID"] == "probe-4711"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"time"')]
        access = [line for line in lines if line.get("type") == "access" and line["request_id"] == "probe-4711"]
        if access:
            break
        time.sleep(0.1)
    assert access, log.read_text()
    assert access[0]["path"] == "/static/admin/css/base.css"
    assert access[0]["status"] == 200
    assert access[0]["method"] == "GET"

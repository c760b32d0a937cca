"""A local shop system for the demo: receives webhooks, checks each signature the way
docs/webhooks.md shows a receiver should, and prints the events it accepted.

    .venv/bin/python manage.py webhook_receiver            # http://127.0.0.1:8765/hooks

Add an endpoint with that URL in the admin (Webhooks > Webhook endpoints); the receiver
reads the secret of the endpoint(s) with its URL from the database at each request, so it
may be started before or after the endpoint is added (or pass ``--secret whsec_...``).
"""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.management.base import BaseCommand
from django.db import connection

from webhooks.models import Endpoint
from webhooks.services import SIGNATURE_HEADER, verify

SHOWN = ("member_number", "order_number", "currency", "kind", "amount", "balance_after", "to_tier", "name")


def make_server(host: str, port: int, *, secret: str = "", write=print) -> ThreadingHTTPServer:
    """The receiver's HTTP server (not started); ``write`` gets one line per request."""
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            header = self.headers.get(SIGNATURE_HEADER, "")
            url = f"http://{self.headers.get('Host', '')}{self.path}"
            if secret:
                secrets = [secret]
            else:
                try:
                    secrets = list(Endpoint.objects.filter(url=url).values_list("secret", flat=True))
                finally:
                    connection.close()  # each request is its own thread: no connection left behind
            if not any(verify(s, header, body) for s in secrets):
                write(f"REJECTED  {url}: the signature does not verify (no endpoint with this URL, or another secret)")
                return self._answer(400, b"bad signature")
            event = json.loads(body)
            again = " (again: already processed, skipped)" if event["id"] in seen else ""
            seen.add(event["id"])
            data = event.get("data", {})
            summary = ", ".join(f"{key}={data[key]}" for key in SHOWN if data.get(key) not in (None, ""))
            write(f"verified  {event['type']:<22} {event['id']}  {summary}{again}")
            self._answer(200, b"ok")

        def _answer(self, status: int, text: bytes):
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

    return ThreadingHTTPServer((host, port), Handler)


class Command(BaseCommand):
    help = "Run a local webhook receiver that verifies signatures and prints the events (the demo's shop system)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--secret", default="", help="The endpoint's signing secret (default: read it by URL).")

    def handle(self, *args, host: str, port: int, secret: str, **options):
        server = make_server(host, port, secret=secret, write=lambda line: self.stdout.write(line))
        self.stdout.write(
            f"Receiving webhooks at http://{host}:{port}/hooks: add an endpoint with this URL in the admin "
            "(Webhooks > Webhook endpoints). Events arrive within a minute of a change "
            "(or at once with `manage.py webhooks_deliver`). Ctrl-C stops."
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

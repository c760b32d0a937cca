"""A stand-in for Aliyun SMS on this machine, for the demo: it checks each request's
signature (RPC signature v1, with the ``ALIYUN_SMS_*`` keys of this environment), answers
the way Aliyun documents (``{"Code": "OK", "BizId": ...}``, or ``SignatureDoesNotMatch``),
and prints each message, so a member can sign in with the code it shows.

    export OUTREACH_SMS_PROVIDERS=aliyun ALIYUN_SMS_ENDPOINT=http://127.0.0.1:8025/ \\
           ALIYUN_SMS_ACCESS_KEY_ID=demo-id ALIYUN_SMS_ACCESS_KEY_SECRET=demo-secret ALIYUN_SMS_SIGN_NAME=Demo
    .venv/bin/python manage.py sms_stub      # then `make run` in another terminal, same variables

Not for production: it sends nothing to anyone.
"""

import base64
import hashlib
import hmac
import json
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def _pct(value: str) -> str:
    # Written apart from outreach.providers.aliyun, from Aliyun's document, like the tests' stub.
    return urllib.parse.quote(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def make_server(host: str, port: int, *, key_id: str, secret: str, write=print) -> ThreadingHTTPServer:
    """The stub's HTTP server (not started); ``write`` gets one line per message."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            params = dict(urllib.parse.parse_qsl(body))
            given = params.pop("Signature", "")
            canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items()))
            to_sign = f"POST&{_pct('/')}&{_pct(canonical)}"
            expected = base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest())
            request_id = str(uuid.uuid4())
            if params.get("AccessKeyId") != key_id:
                write(f"REFUSED   unknown AccessKeyId {params.get('AccessKeyId')!r}")
                return self._answer(404, {"Code": "InvalidAccessKeyId.NotFound", "RequestId": request_id})
            if not hmac.compare_digest(given, expected.decode()):
                write("REFUSED   the signature does not match (another ALIYUN_SMS_ACCESS_KEY_SECRET?)")
                return self._answer(400, {"Code": "SignatureDoesNotMatch", "RequestId": request_id})
            biz_id = f"{uuid.uuid4().int % 10**18}^0"
            write(
                f"SMS to {params.get('PhoneNumbers')} [{params.get('SignName')}] template "
                f"{params.get('TemplateCode')}: {params.get('TemplateParam')}"
            )
            self._answer(200, {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id})

        def _answer(self, status: int, answer: dict):
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return ThreadingHTTPServer((host, port), Handler)


class Command(BaseCommand):
    help = "Run a local stand-in for Aliyun SMS that checks signatures and prints each message (demo only)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8025)

    def handle(self, *args, host: str, port: int, **options):
        if settings.PRODUCTION:
            raise CommandError("sms_stub is for development: it would swallow every member's SMS.")
        cfg = settings.OUTREACH_ALIYUN
        if not cfg.get("access_key_id") or not cfg.get("access_key_secret"):
            raise CommandError(
                "Set ALIYUN_SMS_ACCESS_KEY_ID and ALIYUN_SMS_ACCESS_KEY_SECRET (any values, the same for "
                "`make run`), and OUTREACH_SMS_PROVIDERS=aliyun ALIYUN_SMS_ENDPOINT=http://127.0.0.1:8025/."
            )
        server = make_server(
            host, port, key_id=cfg["access_key_id"], secret=cfg["access_key_secret"], write=self.stdout.write
        )
        if "aliyun" not in settings.OUTREACH_SMS_PROVIDERS:
            self.stdout.write("Note: OUTREACH_SMS_PROVIDERS does not name aliyun here; the web process needs it.")
        self.stdout.write(f"Aliyun SMS stub at http://{host}:{port}/ (Ctrl-C stops).")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

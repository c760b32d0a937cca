"""Local stand-ins for the providers' HTTP APIs, started by the tests (no internet).

Each stub checks the request the way the provider does (signature, credentials, token),
answers with the provider's documented success and error bodies, and can be told to
answer an error code (``fail_with``), to be slow (``delay``) or to be down (stop it).
The signature checks are written here from the providers' documents, apart from the
code under test, so a mistake in one does not hide in the other.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stub:
    """A threaded HTTP server on a free port; ``requests`` keeps what it received."""

    def __init__(self, handler_class):
        self.requests: list[dict] = []
        self.fail_with: list = []  # codes answered in turn, before answering success
        self.delay = 0.0
        stub = self

        class Handler(handler_class):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self._serve("POST")

            def do_GET(self):
                self._serve("GET")

            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if stub.delay:
                    time.sleep(stub.delay)
                stub.requests.append({"method": method, "path": self.path, "headers": dict(self.headers), "body": body})
                status, answer = self.answer(stub, method, body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next_failure(self):
        return self.fail_with.pop(0) if self.fail_with else None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- Aliyun: RPC signature v1 (https://help.aliyun.com/document_detail/315526.html) --------
ALIYUN_ID, ALIYUN_SECRET = "LTAI-test-id", "aliyun-test-secret"


def _pct(value: str) -> str:
    return urllib.parse.quote(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


class AliyunHandler(BaseHTTPRequestHandler):
    def answer(self, stub, method, body):
        params = dict(urllib.parse.parse_qsl(body.decode()))
        given = params.pop("Signature", "")
        canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items()))
        to_sign = f"{method}&{_pct('/')}&{_pct(canonical)}"
        expected = base64.b64encode(hmac.new(f"{ALIYUN_SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest())
        request_id = str(uuid.uuid4())
        if params.get("AccessKeyId") != ALIYUN_ID:
            return 404, {
                "Code": "InvalidAccessKeyId.NotFound",
                "Message": "Specified access key is not found.",
                "RequestId": request_id,
            }
        if given != expected.decode():
            return 400, {
                "Code": "SignatureDoesNotMatch",
                "Message": "Specified signature is not matched with our calculation.",
                "RequestId": request_id,
            }
        failure = stub.next_failure()
        if failure:
            return 200, {"Code": failure, "Message": f"stub says {failure}", "RequestId": request_id}
        return 200, {
            "Code": "OK",
            "Message": "OK",
            "BizId": f"{len(stub.requests)}00619746936498440^0",
            "RequestId": request_id,
        }


# --- Tencent Cloud: TC3-HMAC-SHA256 (https://cloud.tencent.com/document/api/382/52072) ----
TENCENT_ID, TENCENT_KEY = "AKID-test-id", "tencent-test-key"


class TencentHandler(BaseHTTPRequestHandler):
    def answer(self, stub, method, body):
        h = {k.lower(): v for k, v in self.headers.items()}
        request_id = str(uuid.uuid4())
        timestamp = int(h.get("x-tc-timestamp", "0"))
        date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
        auth = h.get("authorization", "")
        signed = auth.split("SignedHeaders=")[-1].split(",")[0]
        canonical_headers = "".join(
            f"{name}:{h.get(name, '').lower() if name == 'x-tc-action' else h.get(name, '')}\n"
            for name in signed.split(";")
        )
        canonical = f"POST\n/\n\n{canonical_headers}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        scope = f"{date}/sms/tc3_request"
        to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"

        def mac(key, msg):
            return hmac.new(key, msg.encode(), hashlib.sha256).digest()

        key = mac(mac(mac(("TC3" + TENCENT_KEY).encode(), date), "sms"), "tc3_request")
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if (
            f"Credential={TENCENT_ID}/{scope}" not in auth
            or not auth.endswith(f"Signature={expected}")
            or abs(time.time() - timestamp) > 300
            or "content-type" not in signed.split(";")
        ):
            return 200, {
                "Response": {
                    "Error": {
                        "Code": "AuthFailure.SignatureFailure",
                        "Message": "The provided credentials could not be validated.",
                    },
                    "RequestId": request_id,
                }
            }
        payload = json.loads(body)
        failure = stub.next_failure()
        if failure and failure.startswith("Error:"):
            return 200, {"Response": {"Error": {"Code": failure[6:], "Message": "stub"}, "RequestId": request_id}}
        phone = payload["PhoneNumberSet"][0]
        status = {
            "SerialNo": f"2028:{len(stub.requests)}",
            "PhoneNumber": phone,
            "Fee": 1,
            "SessionContext": "",
            "Code": failure or "Ok",
            "Message": "send success" if not failure else "stub",
            "IsoCode": "CN",
        }
        return 200, {"Response": {"SendStatusSet": [status], "RequestId": request_id}}


# --- WeChat: access token and subscribeMessage.send ---------------------------------------
WECHAT_APPID, WECHAT_SECRET = "wx-test-app", "wechat-test-secret"


class WechatHandler(BaseHTTPRequestHandler):
    def answer(self, stub, method, body):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/cgi-bin/token":
            if query.get("appid") != WECHAT_APPID or query.get("secret") != WECHAT_SECRET:
                return 200, {"errcode": 40013, "errmsg": "invalid appid"}
            stub.tokens = getattr(stub, "tokens", 0) + 1
            stub.valid_token = f"token-{stub.tokens}"
            return 200, {"access_token": stub.valid_token, "expires_in": 7200}
        if url.path == "/cgi-bin/message/subscribe/send":
            if query.get("access_token") != getattr(stub, "valid_token", None):
                return 200, {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
            failure = stub.next_failure()
            if failure:
                return 200, {"errcode": failure, "errmsg": "stub"}
            return 200, {"errcode": 0, "errmsg": "ok", "msgid": 1700000000 + len(stub.requests)}
        return 404, {"errcode": 404}

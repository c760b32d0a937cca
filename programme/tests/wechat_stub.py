"""A local stand-in for WeChat Pay API v3: checks the merchant's request signatures, signs
its answers with a platform key, and makes signed, encrypted payment notifications."""

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def _pem_private(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_public(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class WeChatPayStub:
    api_v3_key = "0123456789abcdef0123456789abcdef"

    def __init__(self) -> None:
        self.merchant = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.requests: list[tuple[str, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not stub.merchant_signed(self.command, self.path, self.headers.get("Authorization", ""), body):
                    return self.answer(401, {"code": "SIGN_ERROR", "message": "bad signature"})
                payload = json.loads(body)
                stub.requests.append((self.path, payload))
                if self.path == "/v3/pay/transactions/jsapi":
                    return self.answer(200, {"prepay_id": f"wx{payload['out_trade_no']}"})
                if self.path == "/v3/refund/domestic/refunds":
                    return self.answer(200, {"refund_id": "50000000382019052709732678859", "status": "SUCCESS"})
                return self.answer(404, {"code": "NOT_FOUND"})

            def answer(self, code: int, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(code)
                for name, value in stub.sign_headers(raw).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def config(self) -> dict:
        return {
            "api_base": f"http://127.0.0.1:{self.server.server_address[1]}",
            "mch_id": "1900000109",
            "app_id": "wxd678efh567hg6787",
            "merchant_serial": "MERCHANT1",
            "merchant_private_key": _pem_private(self.merchant),
            "platform_serial": "PLATFORM1",
            "platform_public_key": _pem_public(self.platform),
            "api_v3_key": self.api_v3_key,
            "notify_url": "https://example.com/api/v1/programme/payments/wechat/notify/",
            "timeout": 3,
        }

    def merchant_signed(self, method: str, path: str, authorization: str, body: bytes) -> bool:
        fields = dict(
            part.split("=", 1) for part in authorization.removeprefix("WECHATPAY2-SHA256-RSA2048 ").split(",")
        )
        fields = {k: v.strip('"') for k, v in fields.items()}
        message = f"{method}\n{path}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body.decode()}\n".encode()
        try:
            self.merchant.public_key().verify(
                base64.b64decode(fields["signature"]), message, padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception:
            return False
        return True

    def sign_headers(self, body: bytes, *, timestamp: int | None = None) -> dict:
        timestamp, nonce = str(timestamp or int(time.time())), secrets.token_hex(16)
        signature = self.platform.sign(
            f"{timestamp}\n{nonce}\n".encode() + body + b"\n", padding.PKCS1v15(), hashes.SHA256()
        )
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": base64.b64encode(signature).decode(),
            "Wechatpay-Serial": "PLATFORM1",
        }

    def notification(self, *, order_number: str, transaction_id: str, total: int, state: str = "SUCCESS"):
        nonce = secrets.token_hex(6)
        plain = json.dumps(
            {
                "out_trade_no": order_number,
                "transaction_id": transaction_id,
                "trade_state": state,
                "amount": {"total": total, "payer_total": total, "currency": "CNY"},
            }
        ).encode()
        ciphertext = AESGCM(self.api_v3_key.encode()).encrypt(nonce.encode(), plain, b"transaction")
        body = json.dumps(
            {
                "id": secrets.token_hex(8),
                "event_type": "TRANSACTION.SUCCESS",
                "resource_type": "encrypt-resource",
                "resource": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "ciphertext": base64.b64encode(ciphertext).decode(),
                    "associated_data": "transaction",
                    "nonce": nonce,
                    "original_type": "transaction",
                },
            }
        ).encode()
        return self.sign_headers(body), body

"""Payment adapters: how a plan order is paid, how a payment notification is verified,
how an automatic renewal is charged and a payment refunded.

An adapter never changes the database: ``services`` asks it for the client's payment
parameters, hands it a notification's headers and body to verify, and records what it
answers. Adapters are named in ``PROGRAMME_PAYMENT_ADAPTERS`` (name -> class path);
``PROGRAMME_PAYMENT_ADAPTER`` is the one new orders use.

- ``FakeAdapter`` (development, tests, the demo): notifications signed with HMAC-SHA256
  under ``PROGRAMME_FAKE_PAYMENT_SECRET``; ``sign`` makes one, so the member page's "test
  payment" button and the renewal job go through the same verification as a real one.
- ``WeChatPayAdapter``: the shape of WeChat Pay API v3. Requests to the platform are signed
  with the merchant's RSA key (``WECHATPAY2-SHA256-RSA2048``); notifications are verified
  with the platform's public key over ``timestamp\\nnonce\\nbody\\n`` (at most 5 minutes
  old) and their resource decrypted with the API v3 key (AES-256-GCM).
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from django.conf import settings
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from core.errors import LoyaltyError

NOTIFICATION_MAX_AGE = 300  # seconds: an older signed notification is refused (replay of a captured one)


@dataclass(frozen=True)
class PaymentNotice:
    """What a verified notification says: this order was paid (or not) under this payment id."""

    order_number: str
    payment_id: str
    amount: Decimal
    paid: bool


@dataclass(frozen=True)
class SignedNotification:
    headers: dict[str, str]
    body: bytes


class PaymentAdapter(Protocol):
    name: str

    def check_ready(self) -> None:
        """Refuse (``payments_not_configured``) while the adapter cannot take a payment."""

    def start(self, order) -> dict:
        """The parameters the member's client needs to pay ``order``."""

    def verify(self, *, headers: Mapping[str, str], body: bytes) -> PaymentNotice:
        """Check a notification's signature and read it; raise ``payment_signature_invalid``."""

    def charge(self, order) -> SignedNotification | None:
        """Charge an automatic renewal; a notification now, or None when it will come later."""

    def refund(self, order) -> str:
        """Refund ``order`` in full; the platform's refund id. Idempotent by the order number."""

    def acknowledge(self, *, ok: bool, message: str = "") -> tuple[int, dict]:
        """The status and JSON body the platform expects in answer to its notification."""


def _invalid(reason: str) -> LoyaltyError:
    return LoyaltyError(
        "payment_signature_invalid", _("The payment notification is not valid: %(reason)s") % {"reason": reason}
    )


def _amount(value) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise _invalid(_("the amount is not a number")) from None
    if not amount.is_finite() or amount < 0:
        raise _invalid(_("the amount is not a number"))
    return amount


def _fresh(timestamp: str) -> None:
    try:
        age = abs(time.time() - int(timestamp))
    except (TypeError, ValueError):
        raise _invalid(_("no valid timestamp")) from None
    if age > NOTIFICATION_MAX_AGE:
        raise _invalid(_("it is too old"))


def _header(headers: Mapping[str, str], name: str) -> str:
    # Django's request.headers is case-insensitive; a plain dict may not be.
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


# --- the fake adapter -------------------------------------------------------------------------


class FakeAdapter:
    """Pays nothing; signs and verifies its notifications like a real platform would."""

    name = "fake"

    def _secret(self) -> bytes:
        return (settings.PROGRAMME_FAKE_PAYMENT_SECRET or settings.SECRET_KEY).encode()

    def _signature(self, timestamp: str, body: bytes) -> str:
        return hmac.new(self._secret(), timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()

    def sign(self, *, order_number: str, payment_id: str, amount: Decimal, paid: bool = True) -> SignedNotification:
        body = json.dumps(
            {"order_number": order_number, "payment_id": payment_id, "amount": str(amount), "paid": paid},
            sort_keys=True,
        ).encode()
        timestamp = str(int(time.time()))
        return SignedNotification(
            {"X-Fake-Timestamp": timestamp, "X-Fake-Signature": self._signature(timestamp, body)}, body
        )

    def check_ready(self) -> None:
        """Always ready: the secret falls back to SECRET_KEY."""

    def start(self, order) -> dict:
        return {"adapter": self.name, "order_number": order.number, "amount": str(order.amount)}

    def verify(self, *, headers: Mapping[str, str], body: bytes) -> PaymentNotice:
        timestamp = _header(headers, "X-Fake-Timestamp")
        _fresh(timestamp)
        expected = self._signature(timestamp, body)
        if not hmac.compare_digest(expected, _header(headers, "X-Fake-Signature")):
            raise _invalid(_("the signature does not match"))
        try:
            data = json.loads(body)
            return PaymentNotice(
                order_number=str(data["order_number"]),
                payment_id=str(data["payment_id"]),
                amount=_amount(data["amount"]),
                paid=bool(data["paid"]),
            )
        except (ValueError, KeyError, TypeError):
            raise _invalid(_("the body cannot be read")) from None

    def charge(self, order) -> SignedNotification | None:
        return self.sign(order_number=order.number, payment_id=f"fake-{order.number}", amount=order.amount)

    def refund(self, order) -> str:
        return f"fake-refund-{order.number}"

    def acknowledge(self, *, ok: bool, message: str = "") -> tuple[int, dict]:
        return (200, {"ok": True}) if ok else (400, {"ok": False, "message": message})


# --- WeChat Pay API v3 ------------------------------------------------------------------------


class WeChatPayAdapter:
    """WeChat Pay API v3 (JSAPI: the mini-program pays; 委托代扣 contracts for renewals)."""

    name = "wechat"

    # What a merchant must configure before the adapter can take or check a payment.
    REQUIRED = ("mch_id", "app_id", "merchant_serial", "merchant_private_key", "platform_public_key", "api_v3_key")

    def __init__(self, config: Mapping | None = None) -> None:
        self.config = dict(config if config is not None else settings.PROGRAMME_WECHAT_PAY)

    def check_ready(self) -> None:
        """Refuse, in words, while the merchant's WeChat Pay settings are missing (the
        production default before a brand sells plans), instead of failing on an empty key."""
        missing = [name for name in self.REQUIRED if not self.config.get(name)]
        if missing:
            raise LoyaltyError(
                "payments_not_configured",
                _("Paid membership cannot take payments yet: WeChat Pay is not set up. Please try again later."),
            )

    # keys ----------------------------------------------------------------------------------
    def _merchant_key(self):
        return load_pem_private_key(self.config["merchant_private_key"].encode(), password=None)

    def _platform_key(self):
        return load_pem_public_key(self.config["platform_public_key"].encode())

    def _sign(self, message: str) -> str:
        signature = self._merchant_key().sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def _platform_signed(self, headers: Mapping[str, str], body: bytes) -> None:
        timestamp, nonce = _header(headers, "Wechatpay-Timestamp"), _header(headers, "Wechatpay-Nonce")
        _fresh(timestamp)
        serial = _header(headers, "Wechatpay-Serial")
        if self.config.get("platform_serial") and serial != self.config["platform_serial"]:
            raise _invalid(_("it is signed with an unknown platform certificate"))
        try:
            signature = base64.b64decode(_header(headers, "Wechatpay-Signature"), validate=True)
            message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
            self._platform_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            raise _invalid(_("the signature does not match")) from None

    # requests to the platform ----------------------------------------------------------------
    def _request(self, method: str, path: str, payload: dict) -> dict:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = self._sign(f"{method}\n{path}\n{timestamp}\n{nonce}\n{body}\n")
        authorization = (
            f'WECHATPAY2-SHA256-RSA2048 mchid="{self.config["mch_id"]}",nonce_str="{nonce}",'
            f'signature="{signature}",timestamp="{timestamp}",serial_no="{self.config["merchant_serial"]}"'
        )
        request = urllib.request.Request(
            self.config["api_base"].rstrip("/") + path,
            data=body.encode(),
            method=method,
            headers={"Authorization": authorization, "Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.get("timeout", 10)) as response:
                raw, headers = response.read(), dict(response.headers)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise LoyaltyError(
                "payment_unavailable", _("WeChat Pay did not answer (%(error)s). Try again shortly.") % {"error": error}
            ) from None
        self._platform_signed(headers, raw)  # an answer not signed by the platform is not its answer
        return json.loads(raw or b"{}")

    def start(self, order) -> dict:
        self.check_ready()
        openid = order.member.wechat_openid
        if not openid:
            raise LoyaltyError(
                "wechat_openid_required", _("Open the mini-program to pay with WeChat: this member has no openid yet.")
            )
        answer = self._request(
            "POST",
            "/v3/pay/transactions/jsapi",
            {
                "appid": self.config["app_id"],
                "mchid": self.config["mch_id"],
                "description": order.plan.name[:127],
                "out_trade_no": order.number,
                "notify_url": self.config["notify_url"],
                "amount": {"total": int(order.amount * 100), "currency": "CNY"},
                "payer": {"openid": openid},
            },
        )
        package = f"prepay_id={answer['prepay_id']}"
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        pay_sign = self._sign(f"{self.config['app_id']}\n{timestamp}\n{nonce}\n{package}\n")
        return {
            "adapter": self.name,
            "appId": self.config["app_id"],
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": pay_sign,
        }

    def verify(self, *, headers: Mapping[str, str], body: bytes) -> PaymentNotice:
        self.check_ready()
        self._platform_signed(headers, body)
        try:
            resource = json.loads(body)["resource"]
            plain = AESGCM(self.config["api_v3_key"].encode()).decrypt(
                resource["nonce"].encode(),
                base64.b64decode(resource["ciphertext"]),
                (resource.get("associated_data") or "").encode(),
            )
            data = json.loads(plain)
            return PaymentNotice(
                order_number=str(data["out_trade_no"]),
                payment_id=str(data["transaction_id"]),
                amount=_amount(data["amount"]["total"]) / 100,
                paid=data["trade_state"] == "SUCCESS",
            )
        except (InvalidTag, ValueError, KeyError, TypeError):
            raise _invalid(_("the body cannot be read")) from None

    def charge(self, order) -> SignedNotification | None:
        self.check_ready()
        contract = order.member.paid_membership.payment_contract
        if not contract:
            raise LoyaltyError(
                "auto_debit_contract_missing", _("No WeChat auto-debit contract is signed for this membership.")
            )
        self._request(
            "POST",
            "/v3/papay/pay/transactions/apply",
            {
                "appid": self.config["app_id"],
                "mchid": self.config["mch_id"],
                "description": order.plan.name[:127],
                "out_trade_no": order.number,
                "notify_url": self.config["notify_url"],
                "contract_id": contract,
                "amount": {"total": int(order.amount * 100), "currency": "CNY"},
            },
        )
        return None  # the result comes as a signed notification

    def refund(self, order) -> str:
        self.check_ready()
        answer = self._request(
            "POST",
            "/v3/refund/domestic/refunds",
            {
                "transaction_id": order.payment_id,
                "out_refund_no": f"{order.number}R",
                "amount": {"refund": int(order.amount * 100), "total": int(order.amount * 100), "currency": "CNY"},
            },
        )
        if answer.get("status") not in ("SUCCESS", "PROCESSING"):
            raise LoyaltyError(
                "payment_refund_failed",
                _("WeChat Pay refused the refund: %(status)s") % {"status": answer.get("status", "?")},
            )
        return str(answer["refund_id"])

    def acknowledge(self, *, ok: bool, message: str = "") -> tuple[int, dict]:
        return (200, {"code": "SUCCESS", "message": "OK"}) if ok else (400, {"code": "FAIL", "message": message})


def adapter_names() -> list[str]:
    return list(settings.PROGRAMME_PAYMENT_ADAPTERS)


def get_adapter(name: str | None = None) -> PaymentAdapter:
    """The adapter called ``name`` (default ``PROGRAMME_PAYMENT_ADAPTER``); refuses an unknown one."""
    name = name or settings.PROGRAMME_PAYMENT_ADAPTER
    path = settings.PROGRAMME_PAYMENT_ADAPTERS.get(name)
    if path is None:
        raise LoyaltyError(
            "payment_adapter_unknown",
            _("Unknown payment method “%(name)s”. Use one of: %(names)s.")
            % {"name": name, "names": ", ".join(adapter_names())},
        )
    return import_string(path)()

"""Tencent Cloud SMS (``SendSms``, API 2021-01-11), signature TC3-HMAC-SHA256.

Canonical request: ``POST\\n/\\n\\n`` + the signed headers (content-type, host,
x-tc-action, lower-case) + their names + the SHA-256 of the JSON body. String to sign:
``TC3-HMAC-SHA256\\n<timestamp>\\n<date>/sms/tc3_request\\n<sha256 of the canonical
request>``; the key is derived HMAC-SHA256 by HMAC-SHA256 from ``"TC3" + SecretKey`` over
the UTC date, the service and ``tc3_request``. Error codes:
https://cloud.tencent.com/document/api/382/55981
"""

import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.parse

from django.conf import settings

from .base import BadRecipient, GiveUp, Message, TemporaryError, http_call

API_VERSION = "2021-01-11"
SERVICE = "sms"
SIGNED_HEADERS = "content-type;host;x-tc-action"
CONTENT_TYPE = "application/json; charset=utf-8"

BAD_RECIPIENT = {
    "InvalidParameterValue.IncorrectPhoneNumber",
    "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.PhoneNumberOnBlacklist",
    "UnsupportedOperation.UnsupportedRegion",
}
TEMPORARY_PREFIXES = ("LimitExceeded.PhoneNumber", "InternalError", "RequestLimitExceeded")
TEMPORARY = {"FailedOperation.FailResolvePacket", "LimitExceeded.DeliveryFrequencyLimit"}


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature(*, secret_key: str, host: str, action: str, payload: bytes, timestamp: int) -> str:
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    canonical_headers = f"content-type:{CONTENT_TYPE}\nhost:{host}\nx-tc-action:{action.lower()}\n"
    canonical = "\n".join(["POST", "/", "", canonical_headers, SIGNED_HEADERS, hashlib.sha256(payload).hexdigest()])
    scope = f"{date}/{SERVICE}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), SERVICE), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(*, secret_id: str, secret_key: str, host: str, action: str, payload: bytes, timestamp: int) -> str:
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    sig = signature(secret_key=secret_key, host=host, action=action, payload=payload, timestamp=timestamp)
    return (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{date}/{SERVICE}/tc3_request, "
        f"SignedHeaders={SIGNED_HEADERS}, Signature={sig}"
    )


def _classify(code: str, text: str) -> Exception:
    if code in BAD_RECIPIENT:
        return BadRecipient(code, text)
    if code in TEMPORARY or code.startswith(TEMPORARY_PREFIXES):
        return TemporaryError(code, text)
    return GiveUp(code, text)


class TencentSms:
    name = "tencent"

    def send(self, message: Message, *, template: str) -> str:
        cfg = settings.OUTREACH_TENCENT
        endpoint = cfg.get("endpoint", "https://sms.tencentcloudapi.com/")
        host = cfg.get("host") or urllib.parse.urlsplit(endpoint).netloc
        payload = json.dumps(
            {
                "PhoneNumberSet": [message.recipient],
                "SmsSdkAppId": cfg["sdk_app_id"],
                "SignName": cfg["sign_name"],
                "TemplateId": template,
                "TemplateParamSet": [str(value) for value in message.params.values()],
            },
            ensure_ascii=False,
        ).encode()
        timestamp = int(time.time())
        headers = {
            "Authorization": authorization(
                secret_id=cfg["secret_id"],
                secret_key=cfg["secret_key"],
                host=host,
                action="SendSms",
                payload=payload,
                timestamp=timestamp,
            ),
            "Content-Type": CONTENT_TYPE,
            "Host": host,
            "X-TC-Action": "SendSms",
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Version": API_VERSION,
            "X-TC-Region": cfg.get("region", "ap-guangzhou"),
        }
        _status, answer = http_call("POST", endpoint, body=payload, headers=headers)
        response = answer.get("Response", {})
        if "Error" in response:
            error = response["Error"]
            raise _classify(str(error.get("Code", "")), str(error.get("Message", ""))[:200])
        statuses = response.get("SendStatusSet") or [{}]
        first = statuses[0]
        code = str(first.get("Code", "missing_status"))
        if code == "Ok":
            return str(first.get("SerialNo", ""))
        raise _classify(code, str(first.get("Message", ""))[:200])

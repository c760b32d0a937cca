"""Aliyun SMS (dysmsapi, ``SendSms``, API version 2017-05-25), RPC signature version 1.0.

The request is a form POST of the common and action parameters; the signature is
HMAC-SHA1 with key ``AccessKeySecret + "&"`` over ``POST&%2F&`` + the percent-encoded,
sorted, percent-encoded query (RFC 3986: space %20, ``*`` %2A, ``~`` kept), base64.
Success is ``{"Code": "OK", "BizId": ...}``; the BizId is the message id the delivery
reports name. Error codes: https://help.aliyun.com/document_detail/101346.html
"""

import base64
import datetime as dt
import hashlib
import hmac
import json
import urllib.parse
import uuid

from django.conf import settings

from .base import BadRecipient, GiveUp, Message, TemporaryError, http_call

API_VERSION = "2017-05-25"

BAD_RECIPIENT = {"isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_IN_BLACK", "isv.PHONE_NUMBER_ILLEGAL"}
TEMPORARY = {
    "isv.BUSINESS_LIMIT_CONTROL",  # per-number flow control (1/min, 5/hour): later
    "isv.DAY_LIMIT_CONTROL",
    "isp.SYSTEM_ERROR",
    "isp.GATEWAY_ERROR",
    "Throttling.User",
    "Throttling",
    "ServiceUnavailable",
    "InternalError",
}


def percent_encode(value: str) -> str:
    return urllib.parse.quote(str(value), safe="-_.~")


def string_to_sign(method: str, params: dict) -> str:
    query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    return f"{method}&{percent_encode('/')}&{percent_encode(query)}"


def sign(secret: str, method: str, params: dict) -> str:
    digest = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def phone_number(e164: str) -> str:
    """Mainland numbers without the country code; others as country code + number."""
    return e164[3:] if e164.startswith("+86") else e164.lstrip("+")


class AliyunSms:
    name = "aliyun"

    def send(self, message: Message, *, template: str) -> str:
        cfg = settings.OUTREACH_ALIYUN
        params = {
            "AccessKeyId": cfg["access_key_id"],
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": cfg.get("region", "cn-hangzhou"),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
            "PhoneNumbers": phone_number(message.recipient),
            "SignName": cfg["sign_name"],
            "TemplateCode": template,
            "TemplateParam": json.dumps(message.params, ensure_ascii=False, separators=(",", ":")),
        }
        params["Signature"] = sign(cfg["access_key_secret"], "POST", params)
        status, answer = http_call(
            "POST",
            cfg.get("endpoint", "https://dysmsapi.aliyuncs.com/"),
            body=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        code = str(answer.get("Code", f"http_{status}"))
        if code == "OK":
            return str(answer.get("BizId", ""))
        text = str(answer.get("Message", ""))[:200]
        if code in BAD_RECIPIENT:
            raise BadRecipient(code, text)
        if code in TEMPORARY or status == 429:
            raise TemporaryError(code, text)
        raise GiveUp(code, text)

"""Mini-program sign-in: exchange a login code for the user's openid, and a phone code for the number.

The adapter is chosen by ``settings.LOYALTY_MINIPROGRAM_ADAPTER`` (a dotted path):

- ``members.miniprogram.FakeAdapter`` (development and tests): maps each code to a fixed
  openid and can act out the platform's errors, so no network is needed;
- ``members.miniprogram.WeChatAdapter`` (production): calls WeChat's ``jscode2session``
  and ``getuserphonenumber`` over HTTPS with ``WECHAT_APP_ID`` / ``WECHAT_APP_SECRET``.

Both raise ``LoyaltyError`` with stable codes: ``miniprogram_invalid_code`` (40029, 40163:
a bad or used code), ``miniprogram_rate_limited`` (45011), ``miniprogram_unavailable``
(the platform is busy or unreachable), ``miniprogram_error`` (anything else).
The session key the platform returns is handed to the caller and never stored or returned
by the API: we need nothing it protects.
"""

import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.core.cache import cache
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from core.errors import LoyaltyError

from .phone import normalize_phone


@dataclass(frozen=True)
class Session:
    openid: str
    unionid: str | None
    session_key: str

    def __repr__(self) -> str:  # keep the session key out of logs and tracebacks
        return f"Session(openid={self.openid!r}, unionid={self.unionid!r}, session_key=***)"


class MiniProgramAdapter(Protocol):
    def code_to_session(self, code: str) -> Session:
        """The user behind a ``wx.login`` code."""

    def phone_from_code(self, code: str) -> str:
        """The phone number (E.164) behind a ``getPhoneNumber`` button code."""


def get_adapter() -> MiniProgramAdapter:
    return import_string(settings.LOYALTY_MINIPROGRAM_ADAPTER)()


def _platform_error(errcode: int, errmsg: str = "") -> LoyaltyError:
    if errcode in (40029, 40163, 40226):
        return LoyaltyError("miniprogram_invalid_code", _("The mini-program code is invalid or was already used."))
    if errcode == 45011:
        return LoyaltyError(
            "miniprogram_rate_limited",
            _("Too many sign-ins from this mini-program user. Wait a minute."),
            retry_after=60,
        )
    if errcode == -1:
        return LoyaltyError("miniprogram_unavailable", _("The mini-program platform is busy. Try again shortly."))
    return LoyaltyError(
        "miniprogram_error",
        _("The mini-program platform refused the request (error %(errcode)s).") % {"errcode": errcode},
        errmsg=errmsg,
    )


_CODE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


def _check_code(code: str) -> str:
    if not isinstance(code, str) or not _CODE.match(code):
        raise LoyaltyError("miniprogram_invalid_code", _("The mini-program code is invalid or was already used."))
    return code


class FakeAdapter:
    """Development and tests: every code is a fixed user, no network.

    ``code_to_session("alice")`` is openid ``fake-openid-alice`` (unionid
    ``fake-unionid-alice``); ``phone_from_code("13800138000")`` is ``+8613800138000``
    (any spelling ``normalize_phone`` takes). ``fail-<errcode>`` acts out that platform
    error: ``fail-40029`` invalid code, ``fail-45011`` rate limited, ``fail--1`` busy.
    """

    def code_to_session(self, code: str) -> Session:
        code = self._maybe_fail(code)
        return Session(openid=f"fake-openid-{code}", unionid=f"fake-unionid-{code}", session_key=secrets.token_hex(16))

    def phone_from_code(self, code: str) -> str:
        code = self._maybe_fail(code)
        try:
            return normalize_phone(code)
        except LoyaltyError:
            raise _platform_error(40029) from None

    @staticmethod
    def _maybe_fail(code: str) -> str:
        code = _check_code(code)
        if code.startswith("fail-"):
            try:
                errcode = int(code.removeprefix("fail-"))
            except ValueError:
                errcode = 40029
            raise _platform_error(errcode)
        return code


Transport = Callable[[str, str, dict | None], dict]


def urllib_transport(method: str, url: str, body: dict | None) -> dict:
    """HTTPS with a short timeout; returns the JSON answer or raises ``miniprogram_unavailable``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - fixed https URLs
            return json.loads(response.read().decode())
    except (urllib.error.URLError, TimeoutError, ValueError):
        raise LoyaltyError(
            "miniprogram_unavailable", _("The mini-program platform is busy. Try again shortly.")
        ) from None


class WeChatAdapter:
    """WeChat mini-program: ``jscode2session`` and ``getuserphonenumber``.

    The access token ``getuserphonenumber`` needs is fetched with the app secret and kept
    in the cache until shortly before it expires.
    """

    BASE = "https://api.weixin.qq.com"

    def __init__(self, transport: Transport | None = None, app_id: str | None = None, secret: str | None = None):
        self.transport = transport or urllib_transport
        self.app_id = app_id if app_id is not None else settings.WECHAT_APP_ID
        self.secret = secret if secret is not None else settings.WECHAT_APP_SECRET
        if not self.app_id or not self.secret:
            raise LoyaltyError("miniprogram_unavailable", _("Mini-program sign-in is not configured on this server."))

    def _call(self, method: str, path: str, params: dict, body: dict | None = None) -> dict:
        answer = self.transport(method, f"{self.BASE}{path}?{urllib.parse.urlencode(params)}", body)
        errcode = int(answer.get("errcode") or 0)
        if errcode:
            raise _platform_error(errcode, str(answer.get("errmsg", "")))
        return answer

    def code_to_session(self, code: str) -> Session:
        answer = self._call(
            "GET",
            "/sns/jscode2session",
            {
                "appid": self.app_id,
                "secret": self.secret,
                "js_code": _check_code(code),
                "grant_type": "authorization_code",
            },
        )
        if not answer.get("openid") or not answer.get("session_key"):
            raise _platform_error(-2, "no openid in answer")
        return Session(
            openid=answer["openid"], unionid=answer.get("unionid") or None, session_key=answer["session_key"]
        )

    def _access_token(self) -> str:
        key = f"wechat-access-token:{self.app_id}"
        token = cache.get(key)
        if token:
            return token
        answer = self._call(
            "GET", "/cgi-bin/token", {"grant_type": "client_credential", "appid": self.app_id, "secret": self.secret}
        )
        token = answer["access_token"]
        cache.set(key, token, max(60, int(answer.get("expires_in", 7200)) - 300))
        return token

    def phone_from_code(self, code: str) -> str:
        answer = self._call(
            "POST",
            "/wxa/business/getuserphonenumber",
            {"access_token": self._access_token()},
            {"code": _check_code(code)},
        )
        info = answer.get("phone_info") or {}
        number = info.get("purePhoneNumber") or ""
        country = info.get("countryCode") or ""
        if not number:
            raise _platform_error(-2, "no phone number in answer")
        return normalize_phone(f"+{country}{number}" if country else number)

"""WeChat mini-program subscription messages (``subscribeMessage.send``).

The access token (``/cgi-bin/token``, valid ``expires_in`` seconds, 7200) is kept in the
Django cache (Redis in production) so every web and worker process shares one: WeChat
allows 2,000 token fetches a day and each fetch invalidates the previous token after five
minutes, so processes that fetched their own would keep knocking each other out. One
process fetches at a time (a cache ``add`` lock); a send answered 40001/42001 (token
invalid or expired) drops the cached token and is tried once more with a fresh one.
"""

import json
import time
import urllib.parse

from django.conf import settings
from django.core.cache import cache

from .base import BadRecipient, GiveUp, Message, TemporaryError, http_call

TOKEN_KEY = "outreach:wechat:access_token"
LOCK_KEY = "outreach:wechat:token_lock"
TOKEN_INVALID = {40001, 42001, 40014}
BAD_RECIPIENT = {40003, 43101, 43107}  # openid invalid; member refused / no subscription left
TEMPORARY = {-1, 45009, 45011}  # system busy; rate limits


def _base() -> str:
    return settings.OUTREACH_WECHAT.get("endpoint", "https://api.weixin.qq.com").rstrip("/")


def access_token(*, stale: str = "") -> str:
    """The shared access token, fetched when the cache has none, or still has ``stale``
    (the token WeChat just refused). One process fetches at a time; the others wait for
    its token instead of fetching their own (each fetch replaces the last token)."""

    def cached() -> str | None:
        token = cache.get(TOKEN_KEY)
        return token if token and token != stale else None

    token = cached()
    if token:
        return token
    cfg = settings.OUTREACH_WECHAT
    locked = False
    for _ in range(20):
        locked = cache.add(LOCK_KEY, "1", timeout=10)
        token = cached()  # the lock's last holder may have just stored one
        if token:
            if locked:
                cache.delete(LOCK_KEY)
            return token
        if locked:
            break
        time.sleep(0.1)
    try:
        query = urllib.parse.urlencode(
            {"grant_type": "client_credential", "appid": cfg["app_id"], "secret": cfg["app_secret"]}
        )
        _status, answer = http_call("GET", f"{_base()}/cgi-bin/token?{query}")
        token = answer.get("access_token")
        if not token:
            code = answer.get("errcode")
            if code in TEMPORARY:
                raise TemporaryError(f"wechat_{code}", str(answer.get("errmsg", "")))
            raise GiveUp(f"wechat_token_{code}", str(answer.get("errmsg", ""))[:200])
        # Renew five minutes early so a token never expires between read and use.
        cache.set(TOKEN_KEY, token, timeout=max(60, int(answer.get("expires_in", 7200)) - 300))
        return token
    finally:
        if locked:  # never another process's lock (after two seconds it fetches without one)
            cache.delete(LOCK_KEY)


def template_data(fields: dict, message: Message) -> dict:
    """The template's ``data``: each keyword (``thing1``, ``time2`` ...) from a message field.

    A source is ``title``, ``body``, ``date`` (the message's day) or ``params.<name>``.
    WeChat refuses a ``thing`` value over 20 characters, so it is cut with an ellipsis.
    """
    data = {}
    for keyword, source in fields.items():
        if source.startswith("params."):
            value = str(message.params.get(source.removeprefix("params."), ""))
        elif source == "date":
            value = f"{message.created_at:%Y-%m-%d}" if message.created_at else ""
        else:
            value = str(getattr(message, source, ""))
        if keyword.startswith("thing") and len(value) > 20:
            value = value[:19] + "…"
        data[keyword] = {"value": value}
    return data


class WechatSubscribe:
    name = "wechat"

    def send(self, message: Message, *, template: dict) -> str:
        body = json.dumps(
            {
                "touser": message.recipient,
                "template_id": template["template_id"],
                "page": template.get("page", "pages/index/index"),
                "miniprogram_state": settings.OUTREACH_WECHAT.get("state", "formal"),
                "lang": "zh_CN",
                "data": template_data(template["fields"], message),
            },
            ensure_ascii=False,
        ).encode()
        token = ""
        for attempt in range(2):
            token = access_token(stale=token)
            _status, answer = http_call(
                "POST",
                f"{_base()}/cgi-bin/message/subscribe/send?access_token={urllib.parse.quote(token)}",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            code = answer.get("errcode", 0)
            if code == 0:
                return str(answer.get("msgid", ""))
            if code in TOKEN_INVALID and attempt == 0:
                continue  # fetched again unless another process already did
            text = str(answer.get("errmsg", ""))[:200]
            if code in BAD_RECIPIENT:
                raise BadRecipient(f"wechat_{code}", text)
            if code in TEMPORARY or code in TOKEN_INVALID:
                raise TemporaryError(f"wechat_{code}", text)
            raise GiveUp(f"wechat_{code}", text)
        raise TemporaryError("wechat_token")  # pragma: no cover - the loop returns or raises

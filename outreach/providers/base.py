"""What every provider returns or raises, and the one HTTP call they share.

A provider's ``send(message)`` returns the provider's message id, or raises one of:

- :class:`TemporaryError`: try again later (throttled, gateway busy, timeout, down);
- :class:`BadRecipient`: this phone number, address or openid cannot receive: no retry,
  and no other provider of the same channel is tried;
- :class:`GiveUp`: this provider cannot send this message (template not approved, account
  out of credit, bad signature): no retry here; the next provider or channel is tried.
"""

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from django.conf import settings


class DeliveryError(Exception):
    def __init__(self, code: str, message: str = ""):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class TemporaryError(DeliveryError):
    pass


class BadRecipient(DeliveryError):
    pass


class GiveUp(DeliveryError):
    pass


@dataclass
class Message:
    """One message on its way: the provider picks what it needs."""

    kind: str
    recipient: str  # E.164 phone, email address or openid
    title: str
    body: str
    params: dict = field(default_factory=dict)  # template parameters by name
    created_at: object = None


def http_call(method: str, url: str, *, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """One request with ``OUTREACH_HTTP_TIMEOUT``; returns (status, JSON body).

    A timeout, a refused connection, a 5xx answer or a body that is not JSON is a
    :class:`TemporaryError`: the provider may well answer next time.
    """
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=settings.OUTREACH_HTTP_TIMEOUT) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        raise TemporaryError("unreachable", str(getattr(error, "reason", error))[:200]) from None
    if status >= 500:
        raise TemporaryError(f"http_{status}", raw[:200].decode(errors="replace"))
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        raise TemporaryError("bad_response", raw[:200].decode(errors="replace")) from None

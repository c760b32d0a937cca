"""Delivering events to endpoints: signed, retried with backoff, in order per member
(docs/webhooks.md).

Each endpoint is delivered by its own task (``webhooks.deliver_endpoint``), so a slow or
dead receiver only holds up itself; each request has ``WEBHOOK_TIMEOUT`` seconds. A run
sends the endpoint's due deliveries in event order; a member's event waits while an
earlier event of that member to the same endpoint is not delivered. Any answer but 2xx is
a failure: retried after 1, 2, 4 ... minutes (at most an hour apart); an endpoint
failing for ``WEBHOOK_DISABLE_AFTER`` (a day) is disabled and staff are told (the admins'
email and the log). Its deliveries stay pending: enabling it again sends them.
"""

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.mail import send_mail
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from core.jobs import job_lock

from .models import Endpoint, Event, WebhookDelivery

logger = logging.getLogger(__name__)
Status = WebhookDelivery.Status
SIGNATURE_HEADER = "Loyalty-Signature"
STUCK = dt.timedelta(minutes=10)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header: ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (docs/webhooks.md): the signature matches and is fresh."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def event_body(event: Event) -> bytes:
    return json.dumps(
        {
            "id": str(event.event_id),
            "type": event.type,
            "occurred_at": event.occurred_at.isoformat(),
            "data": event.payload,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a hop: it could point a POST into a private network."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def url_problem(url: str) -> str:
    """Why events may not go to ``url`` ("" when they may). Unless
    ``WEBHOOK_ALLOW_PRIVATE_URLS``: https only, and every address the host resolves to
    public (not loopback, private, link-local, reserved or multicast)."""
    if settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        return ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return _("only https URLs receive webhooks")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except OSError:
        return _("cannot resolve %(host)s") % {"host": parts.hostname}
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            return _("%(host)s resolves to a non-public address (%(ip)s)") % {"host": parts.hostname, "ip": ip}
    return ""


def _post(endpoint: Endpoint, event: Event) -> tuple[dict, int | None, str, str]:
    body = event_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "loyalty-webhooks/1",
        "Loyalty-Event-Id": str(event.event_id),
        "Loyalty-Event-Type": event.type,
        SIGNATURE_HEADER: sign(endpoint.secret, int(time.time()), body),  # the clock the receiver checks
    }
    refused = url_problem(endpoint.url)
    if refused:
        return headers, None, "", refused
    request = urllib.request.Request(endpoint.url, data=body, method="POST", headers=headers)
    try:
        with _opener.open(request, timeout=settings.WEBHOOK_TIMEOUT) as response:
            return headers, response.status, response.read(2000).decode(errors="replace"), ""
    except urllib.error.HTTPError as error:
        return headers, error.code, error.read(2000).decode(errors="replace"), f"HTTP {error.code}"
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        return headers, None, "", str(getattr(error, "reason", error))[:300] or "unreachable"


def backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(minutes=min(2 ** (attempts - 1), 60))


def _blocked(delivery: WebhookDelivery) -> bool:
    """An earlier event of the same member to this endpoint is not delivered yet."""
    if delivery.member_id_copy is None:
        return False
    return WebhookDelivery.objects.filter(
        endpoint_id=delivery.endpoint_id,
        member_id_copy=delivery.member_id_copy,
        status__in=[Status.PENDING, Status.SENDING],
        event_id__lt=delivery.event_id,
    ).exists()


def endpoint_deliver_due(endpoint_id: int, *, now: dt.datetime | None = None, limit: int = 200) -> dict[str, int]:
    """Send an endpoint's due deliveries, oldest event first; stops at the first failure
    (the receiver is likely down: the rest wait for the next run) and after
    ``WEBHOOK_RUN_SECONDS``. One run per endpoint at a time: a slow receiver's runs do
    not pile up on the workers (a second returns at once, ``busy``). Returns counts."""
    with job_lock(f"webhooks.endpoint.{endpoint_id}") as locked:
        if not locked:
            return {"delivered": 0, "failed": 0, "waiting": 0, "busy": 1}
        return _deliver_due(endpoint_id, now=now, limit=limit)


def _deliver_due(endpoint_id: int, *, now: dt.datetime | None, limit: int) -> dict[str, int]:
    now = now or timezone.now()
    started = time.monotonic()
    counts = {"delivered": 0, "failed": 0, "waiting": 0}
    endpoint = Endpoint.objects.filter(pk=endpoint_id, is_active=True).first()
    if endpoint is None:
        return counts
    # A worker killed mid-request leaves a delivery "sending" (and the member's later
    # events waiting behind it): after STUCK it is sent again; the receiver dedupes by id.
    WebhookDelivery.objects.filter(endpoint=endpoint, status=Status.SENDING, next_attempt_at__lt=now - STUCK).update(
        status=Status.PENDING
    )
    due = list(
        WebhookDelivery.objects.filter(endpoint=endpoint, status=Status.PENDING, next_attempt_at__lte=now)
        .select_related("event")
        .order_by("event_id")[:limit]
    )
    held: set[int] = set()
    for delivery in due:
        if time.monotonic() - started > settings.WEBHOOK_RUN_SECONDS:
            break  # a slow receiver: the rest go on the next run
        if delivery.member_id_copy in held or _blocked(delivery):
            held.add(delivery.member_id_copy)
            counts["waiting"] += 1
            continue
        claimed = WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.PENDING).update(
            status=Status.SENDING, attempts=F("attempts") + 1, next_attempt_at=now
        )
        if claimed != 1:
            continue
        attempts = delivery.attempts + 1
        headers, code, answer, error = _post(endpoint, delivery.event)
        fields = {
            "request_headers": headers,
            "response_status": code,
            "response_body": answer[:2000],
            "error": error[:300],
            "attempts": attempts,
        }
        if code is not None and 200 <= code < 300:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(status=Status.DELIVERED, delivered_at=now, **fields)
            if endpoint.failing_since:
                Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
                endpoint.failing_since = None
            counts["delivered"] += 1
            continue
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=Status.PENDING, next_attempt_at=now + backoff(attempts), **fields
        )
        counts["failed"] += 1
        _failing(endpoint, now, error or f"HTTP {code}")
        break
    return counts


def _failing(endpoint: Endpoint, now: dt.datetime, error: str) -> None:
    if endpoint.failing_since is None:
        Endpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
        return
    if now - endpoint.failing_since < dt.timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER):
        return
    reason = f"failing since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC: {error}"[:200]
    if Endpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
        is_active=False, disabled_at=now, disabled_reason=reason
    ):
        logger.warning("webhook endpoint %s (%s) disabled: %s", endpoint.pk, endpoint.url, reason)
        _tell_staff(endpoint, reason)


def _tell_staff(endpoint: Endpoint, reason: str) -> None:
    """The site's ADMINS and every active staff user who may change endpoints get an email."""
    User = get_user_model()
    perm = Permission.objects.filter(codename="change_endpoint", content_type__app_label="webhooks")
    staff = User.objects.filter(is_active=True, is_staff=True).filter(
        Q(is_superuser=True) | Q(user_permissions__in=perm) | Q(groups__permissions__in=perm)
    )
    recipients = {email for _name, email in settings.ADMINS} | set(
        staff.exclude(email="").values_list("email", flat=True).distinct()
    )
    if not recipients:
        return
    body = _(
        "%(name)s (%(url)s) was disabled: %(reason)s.\n\n"
        "Its pending deliveries wait. Fix the receiver, then tick the endpoint in the admin "
        "(Webhooks > Webhook endpoints) and run “Enable again”; events that came while it "
        "was disabled are read with GET /api/v1/webhooks/endpoints/<id>/events/ (docs/webhooks.md)."
    ) % {"name": endpoint.name, "url": endpoint.url, "reason": reason}
    send_mail(
        _("Webhook endpoint disabled: %(name)s") % {"name": endpoint.name},
        body,
        None,
        sorted(recipients),
        fail_silently=True,
    )


def endpoints_due(*, now: dt.datetime | None = None) -> list[int]:
    """Active endpoints with a delivery due: one delivery task each."""
    now = now or timezone.now()
    return list(
        Endpoint.objects.filter(is_active=True, deliveries__status=Status.PENDING, deliveries__next_attempt_at__lte=now)
        .distinct()
        .values_list("pk", flat=True)
    )


def deliveries_send_again(*, deliveries, now: dt.datetime | None = None) -> int:
    """Queue deliveries to be sent again now (the admin's "send again"), delivered ones too:
    the receiver deduplicates on the event id."""
    now = now or timezone.now()
    return (
        WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries])
        .exclude(status=Status.SENDING)
        .update(status=Status.PENDING, next_attempt_at=now)
    )


def endpoint_enable(*, endpoint: Endpoint) -> None:
    """Turn a disabled endpoint back on; its pending deliveries go out on the next run."""
    Endpoint.objects.filter(pk=endpoint.pk).update(
        is_active=True, failing_since=None, disabled_at=None, disabled_reason=""
    )


def events_for_endpoint(*, endpoint: Endpoint, after: int = 0, limit: int = 100):
    """The events the endpoint subscribes to (its types and stores) since it was added,
    oldest first, after an event id: what it was sent, and also what came while it was
    disabled, which was never queued to it."""
    events = Event.objects.filter(pk__gt=after, created_at__gte=endpoint.created_at)
    if endpoint.events:
        events = events.filter(type__in=endpoint.events)
    stores = list(endpoint.stores.values_list("pk", flat=True))
    if stores:
        scope = Q()
        for store_id in stores:
            scope |= Q(store_ids__contains=[store_id])
        events = events.filter(scope)
    return events.order_by("pk")[:limit]

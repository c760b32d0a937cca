"""Events collected from the rows that record each change (docs/webhooks.md).

Every change a shop system hears about is already an immutable row written in the
change's own transaction: a ledger entry, an order, a refund, a tier change, a coupon, a
redemption, a member. The collector turns committed rows into events, once each
(``Event`` is unique on ``source`` + ``source_id``), so there is no event for a
rolled-back change and no committed change without its event, without the ledger
services knowing webhooks exist. Rows come in id order; because ids are handed out
before commit, a row with a smaller id can commit after a larger one: each run looks
back ``LOOKBACK`` ids behind the newest collected and takes what is still missing.
State changes on existing rows (a coupon used, a redemption cancelled, a member erased)
are read by their timestamp, ``LOOKBACK_TIME`` back; a member's profile, which changes
again and again, by its ``updated_at``, one event per value (``Event.source_at``).

Events are written in the order their changes happened, so the event id is the order
per member that deliveries keep.
"""

import datetime as dt
from collections.abc import Callable

from django.db import transaction
from django.db.models import Exists, Max, Min, OuterRef
from django.utils import timezone

from core.jobs import job_lock
from loyalty.models import LedgerEntry, Order, Refund, TierChange
from members.models import Member
from rewards.models import Coupon, Redemption

from .models import Endpoint, Event, EventType, WebhookDelivery

LOOKBACK = 5000
LOOKBACK_TIME = dt.timedelta(days=2)
BATCH = 2000


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def _member_fields(member: Member | None) -> dict:
    if member is None:
        return {"member_number": None}
    return {"member_number": member.member_number}


def _entry(entry: LedgerEntry) -> tuple:
    return (
        EventType.POINTS_CHANGED,
        entry.member,
        [s for s in (entry.store_id, entry.member.home_store_id) if s],
        entry.created_at,
        {
            **_member_fields(entry.member),
            "entry_id": entry.pk,
            "currency": entry.currency,
            "kind": entry.kind,
            "amount": entry.amount,
            "pending_amount": entry.pending_amount,
            "balance_after": entry.balance_after,
            "pending_after": entry.pending_after,
            "order_number": entry.order.number if entry.order_id else None,
            "store": entry.store.code if entry.store_id else None,
            "reason": entry.reason,
        },
    )


def _order(order: Order) -> tuple:
    return (
        EventType.ORDER_EARNED,
        order.member,
        [order.store_id, order.member.home_store_id],
        order.created_at,
        {
            **_member_fields(order.member),
            "order_number": order.number,
            "store": order.store.code,
            "amount": str(order.amount),
            "occurred_at": _iso(order.occurred_at),
            "status": order.status,
        },
    )


def _refund(refund: Refund) -> tuple:
    order = refund.order
    return (
        EventType.ORDER_REFUNDED,
        order.member,
        [order.store_id, order.member.home_store_id],
        refund.created_at,
        {
            **_member_fields(order.member),
            "order_number": order.number,
            "refund_number": refund.number,
            "store": order.store.code,
            "amount": str(refund.amount),
        },
    )


def _tier(change: TierChange) -> tuple:
    return (
        EventType.TIER_CHANGED,
        change.member,
        [change.member.home_store_id],
        change.created_at,
        {
            **_member_fields(change.member),
            "from_tier": change.from_tier.code if change.from_tier_id else None,
            "to_tier": change.to_tier.code,
            "reason": change.reason,
        },
    )


def _coupon(coupon: Coupon, event_type: str, at) -> tuple:
    return (
        event_type,
        coupon.member,
        [s for s in (coupon.used_store_id, coupon.member.home_store_id) if s],
        at,
        {
            **_member_fields(coupon.member),
            "coupon_code": coupon.code,
            "title": coupon.title,
            "kind": coupon.kind,
            "expires_at": _iso(coupon.expires_at),
            "used_at": _iso(coupon.used_at),
            "used_store": coupon.used_store.code if coupon.used_store_id else None,
        },
    )


def _redemption(redemption: Redemption, event_type: str, at) -> tuple:
    return (
        event_type,
        redemption.member,
        [redemption.member.home_store_id],
        at,
        {
            **_member_fields(redemption.member),
            "redemption_id": redemption.pk,
            "reward": redemption.reward.name,
            "points_cost": redemption.points_cost,
            "coupon_code": redemption.coupon.code if redemption.coupon_id else None,
        },
    )


def _member(member: Member, event_type: str, at) -> tuple:
    payload = _member_fields(member)
    if event_type == EventType.MEMBER_CREATED:
        payload |= {
            "joined_at": _iso(member.joined_at),
            "home_store": member.home_store.code if member.home_store_id else None,
        }
    if event_type == EventType.MEMBER_UPDATED:
        # The profile as it is now (two edits between collector runs arrive as one event).
        payload |= {
            "phone": member.phone,
            "name": member.name,
            "gender": member.gender,
            "birthday": member.birthday.isoformat() if member.birthday else None,
            "email": member.email,
            "home_store": member.home_store.code if member.home_store_id else None,
            "status": member.status,
            "marketing_consent": {
                "sms": member.sms_consent_at is not None,
                "email": member.email_consent_at is not None,
                "wechat": member.wechat_consent_at is not None,
            },
            "updated_at": _iso(member.updated_at),
        }
    return event_type, member, [member.home_store_id], at, payload


# source -> (candidate rows, how a row becomes an event, its time field, read by time (True) or by id)
SOURCES: dict[str, tuple[Callable, Callable, str, bool]] = {
    "member": (
        lambda: Member.objects.select_related("home_store"),
        lambda m: _member(m, EventType.MEMBER_CREATED, m.joined_at),
        "joined_at",
        False,
    ),
    "order": (lambda: Order.objects.select_related("member", "store"), _order, "created_at", False),
    "refund": (lambda: Refund.objects.select_related("order__member", "order__store"), _refund, "created_at", False),
    "entry": (lambda: LedgerEntry.objects.select_related("member", "order", "store"), _entry, "created_at", False),
    "tier": (lambda: TierChange.objects.select_related("member", "from_tier", "to_tier"), _tier, "created_at", False),
    "coupon": (
        lambda: Coupon.objects.select_related("member", "used_store"),
        lambda c: _coupon(c, EventType.COUPON_ISSUED, c.issued_at),
        "issued_at",
        False,
    ),
    "redemption": (
        lambda: Redemption.objects.select_related("member", "reward", "coupon"),
        lambda r: _redemption(r, EventType.REDEMPTION_CREATED, r.created_at),
        "created_at",
        False,
    ),
    "coupon_used": (
        lambda: Coupon.objects.select_related("member", "used_store").filter(used_at__isnull=False),
        lambda c: _coupon(c, EventType.COUPON_USED, c.used_at),
        "used_at",
        True,
    ),
    "redemption_cancelled": (
        lambda: Redemption.objects.select_related("member", "reward", "coupon").filter(cancelled_at__isnull=False),
        lambda r: _redemption(r, EventType.REDEMPTION_CANCELLED, r.cancelled_at),
        "cancelled_at",
        True,
    ),
    "member_erased": (
        lambda: Member.objects.select_related("home_store").filter(erased_at__isnull=False),
        lambda m: _member(m, EventType.MEMBER_ERASED, m.erased_at),
        "erased_at",
        True,
    ),
    # Versioned: a member changes again and again; each ``updated_at`` (stamped by the
    # database when a profile column changes, members migration 0010) is one event.
    "member_updated": (
        lambda: Member.objects.select_related("home_store").filter(erased_at__isnull=True),
        lambda m: _member(m, EventType.MEMBER_UPDATED, m.updated_at),
        "updated_at",
        True,
    ),
}
VERSIONED = {"member_updated"}
# Within one moment, the order a receiver expects: the member, the order, its points.
PRIORITY = {name: n for n, name in enumerate(SOURCES)}


def _candidates(source: str, now: dt.datetime, start: dt.datetime) -> list:
    """Rows of ``source`` not yet made events, changed since ``start`` (the first endpoint)."""
    queryset, _build, time_field, by_time = SOURCES[source]
    seen_q = Event.objects.filter(source=source)
    since = max(start, now - LOOKBACK_TIME) if by_time else start
    if not by_time:
        newest = seen_q.aggregate(m=Max("source_id"))["m"] or 0
        low = max(0, newest - LOOKBACK)
        seen = set(seen_q.filter(source_id__gt=low).values_list("source_id", flat=True))
        rows = list(queryset().filter(pk__gt=low, **{f"{time_field}__gte": since}).order_by("pk")[: BATCH + len(seen)])
    else:
        # Not yet an event: NOT EXISTS in the database, so a big import's 50,000 changed
        # members are not read back into Python on every run for two days.
        seen_q = seen_q.filter(source_id=OuterRef("pk"))
        if source in VERSIONED:
            seen_q = seen_q.filter(source_at=OuterRef(time_field))
        else:
            seen_q = seen_q.filter(source_at__isnull=True)
        return list(
            queryset()
            .filter(**{f"{time_field}__gte": since})
            .exclude(Exists(seen_q))
            .order_by(time_field, "pk")[:BATCH]
        )
    return [row for row in rows if row.pk not in seen][:BATCH]


def events_collect(*, now: dt.datetime | None = None) -> int:
    """Turn committed rows into events and queue a delivery per subscribed endpoint.

    One collector at a time (a job lock; a second call returns 0). Returns the number of
    new events. Safe to run any number of times: each row becomes one event.
    """
    now = now or timezone.now()
    with job_lock("webhooks.collect") as locked:
        if not locked:
            return 0
        # Nothing before the first endpoint: a brand adding webhooks is not sent its history.
        start = Endpoint.objects.aggregate(first=Min("created_at"))["first"]
        if start is None:
            return 0
        with transaction.atomic():
            found = []
            for source, (_q, build, _t, _b) in SOURCES.items():
                for row in _candidates(source, now, start):
                    event_type, member, stores, at, payload = build(row)
                    version = at if source in VERSIONED else None
                    found.append((at, PRIORITY[source], row.pk, source, version, event_type, member, stores, payload))
            if not found:
                return 0
            found.sort(key=lambda item: (item[0], item[1], item[2]))
            events = Event.objects.bulk_create(
                [
                    Event(
                        type=event_type,
                        member=member,
                        store_ids=sorted({s for s in stores if s}),
                        payload=payload,
                        occurred_at=at,
                        source=source,
                        source_id=pk,
                        source_at=version,
                        created_at=now,
                    )
                    for at, _p, pk, source, version, event_type, member, stores, payload in found
                ]
            )
            _queue(events, now)
            return len(events)


def _queue(events: list[Event], now: dt.datetime) -> None:
    endpoints = list(Endpoint.objects.filter(is_active=True).prefetch_related("stores"))
    rows = []
    for endpoint in endpoints:
        scope = {store.pk for store in endpoint.stores.all()}
        for event in events:
            if endpoint.wants(event.type) and (not scope or scope & set(event.store_ids)):
                rows.append(
                    WebhookDelivery(
                        event=event,
                        endpoint=endpoint,
                        member_id_copy=event.member_id,
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
    WebhookDelivery.objects.bulk_create(rows, batch_size=1000)

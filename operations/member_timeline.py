"""One timeline of a member for the member page: orders, ledger entries, coupons, tier
changes, lifecycle stage changes, journey runs, staff actions and notifications, newest
first, a page at a time; and the open lots and coupons shown beside it.

Each source is read newest first with ``LIMIT offset + size + 1`` over its (member, time)
index, the rows merged in Python and the page cut out; so a page costs one query per
source whatever the length of the history, and pages stop at ``MAX_PAGE`` (the full lists
are a link away). Asking for some kinds only (``kinds=("order",)``) reads those sources
only. An order's earned points and growth are shown on the order's row (one subquery), not
as ledger rows of their own.
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Case, F, IntegerField, OuterRef, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from engagement.models import JourneyRun
from loyalty.models import Currency, LedgerEntry, Lot, Order, TierChange
from members.models import Member, Notification, StaffAction, StageChange
from rewards.models import Coupon

PAGE_SIZE = 20
MAX_PAGE = 50


@dataclass(frozen=True)
class Event:
    at: dt.datetime
    kind: str  # a code for the row's style: order, ledger, coupon, tier, stage, journey, staff, notice
    label: str  # the kind in the page's language
    text: str
    points: int | None = None  # change to available + pending points, when the row moves points
    growth: int | None = None
    tiebreak: int = 0


@dataclass(frozen=True)
class TimelinePage:
    events: list[Event]
    page: int
    has_next: bool
    has_previous: bool


def _thousands(value) -> str:
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    return f"{value:,}"


def _signed(value: int) -> str:
    return f"{value:+,}"


def _entry_sum(currency: str):
    return Coalesce(
        Subquery(
            LedgerEntry.objects.filter(order=OuterRef("pk"), currency=currency, kind=LedgerEntry.Kind.EARN)
            .values("order")
            .annotate(total=Sum("amount") + Sum("pending_amount"))
            .values("total")[:1],
            output_field=IntegerField(),
        ),
        0,
    )


def _orders(member: Member, limit: int) -> list[Event]:
    rows = (
        Order.objects.filter(member=member)
        .select_related("store")
        .annotate(earned_points=_entry_sum(Currency.POINTS), earned_growth=_entry_sum(Currency.GROWTH))
        .order_by("-occurred_at", "-id")[:limit]
    )
    events = []
    for order in rows:
        text = _("Order %(number)s at %(store)s: ¥%(amount)s") % {
            "number": order.number,
            "store": order.store.name,
            "amount": _thousands(order.amount),
        }
        if order.points_paid_amount:
            text += " · " + _("¥%(amount)s paid with points") % {"amount": _thousands(order.points_paid_amount)}
        if order.refunded_amount:
            text += " · " + _("¥%(amount)s refunded") % {"amount": _thousands(order.refunded_amount)}
        events.append(
            Event(
                order.occurred_at,
                "order",
                _("Order"),
                text,
                points=order.earned_points or None,
                growth=order.earned_growth or None,
                tiebreak=order.pk,
            )
        )
    return events


_ENTRY_COLUMNS = (
    "id",
    "kind",
    "currency",
    "amount",
    "pending_amount",
    "balance_after",
    "reason",
    "order_id",
    "operator_id",
    "created_at",
    "order__number",
    "operator__username",
)


def _entries(member: Member, limit: int) -> list[Event]:
    rows = (
        LedgerEntry.objects.filter(member=member)
        .exclude(kind=LedgerEntry.Kind.EARN, order__isnull=False)
        .select_related("order", "operator")
        # The columns the row shows (not ``detail``, the breakdown): the timeline's widest read.
        .only(*_ENTRY_COLUMNS)
        .order_by("-created_at", "-id")[:limit]
    )
    events = []
    for entry in rows:
        parts = [entry.get_kind_display().capitalize()]
        if entry.order_id:
            parts.append(_("order %(number)s") % {"number": entry.order.number})
        if entry.reason:
            parts.append(entry.reason)
        if entry.operator_id:
            parts.append(_("by %(staff)s") % {"staff": entry.operator.get_username()})
        moved = entry.amount + entry.pending_amount
        if entry.kind == LedgerEntry.Kind.RELEASE:
            moved = 0  # pending to available: the total does not change
        is_points = entry.currency == Currency.POINTS
        parts.append(_("balance after %(n)s") % {"n": _thousands(entry.balance_after)})
        events.append(
            Event(
                entry.created_at,
                "ledger",
                _("Points") if is_points else _("Growth"),
                " · ".join(parts),
                points=(moved or None) if is_points else None,
                growth=None if is_points else (moved or None),
                tiebreak=entry.pk,
            )
        )
    return events


def _coupons(member: Member, limit: int) -> list[Event]:
    rows = Coupon.objects.filter(member=member).select_related("used_store").order_by("-issued_at", "-id")[:limit]
    events = []
    for coupon in rows:
        text = _("“%(title)s” · valid until %(until)s · %(status)s") % {
            "title": coupon.title,
            "until": f"{coupon.expires_at:%Y-%m-%d}",
            "status": coupon.get_status_display(),
        }
        if coupon.used_at:
            text += " · " + _("used %(at)s") % {"at": f"{coupon.used_at:%Y-%m-%d}"}
            if coupon.used_store_id:
                text += f" ({coupon.used_store.name})"
        events.append(Event(coupon.issued_at, "coupon", _("Coupon"), text, tiebreak=coupon.pk))
    return events


def _tiers(member: Member, limit: int) -> list[Event]:
    rows = (
        TierChange.objects.filter(member=member)
        .select_related("from_tier", "to_tier")
        .order_by("-created_at", "-id")[:limit]
    )
    return [
        Event(
            change.created_at,
            "tier",
            _("Tier"),
            _("%(from)s → %(to)s (%(reason)s)")
            % {
                "from": change.from_tier.name if change.from_tier_id else _("no tier"),
                "to": change.to_tier.name if change.to_tier_id else _("no tier"),
                "reason": change.get_reason_display(),
            },
            tiebreak=change.pk,
        )
        for change in rows
    ]


def _stages(member: Member, limit: int) -> list[Event]:
    rows = StageChange.objects.filter(member=member).order_by("-changed_at", "-id")[:limit]
    return [
        Event(
            change.changed_at,
            "stage",
            _("Stage"),
            _("%(from)s → %(to)s")
            % {"from": change.get_from_stage_display() or _("no stage yet"), "to": change.get_to_stage_display()},
            tiebreak=change.pk,
        )
        for change in rows
    ]


def _journeys(member: Member, limit: int) -> list[Event]:
    rows = JourneyRun.objects.filter(member=member).select_related("journey").order_by("-created_at", "-id")[:limit]
    return [
        Event(
            run.created_at,
            "journey",
            _("Journey"),
            f"{run.journey.name}: {run.get_status_display()} · {run.reason}",
            tiebreak=run.pk,
        )
        for run in rows
    ]


def _staff(member: Member, limit: int) -> list[Event]:
    rows = StaffAction.objects.filter(member=member).order_by("-created_at", "-id")[:limit]
    return [
        Event(
            action.created_at,
            "staff",
            _("Staff"),
            f"{action.get_action_display()} · {action.actor_name or pgettext('actor', 'system')}"
            + (f" · {action.reason}" if action.reason else ""),
            tiebreak=action.pk,
        )
        for action in rows
    ]


def _notices(member: Member, limit: int) -> list[Event]:
    rows = Notification.objects.filter(member=member).order_by("-created_at", "-id")[:limit]
    events = []
    for notice in rows:
        text = notice.title or notice.get_kind_display()
        text += " · " + (_("sent") if notice.sent_at else _("not sent yet"))
        events.append(Event(notice.created_at, "notice", _("Notice"), text, tiebreak=notice.pk))
    return events


# The kinds of row, in the order the page offers them as filters: (code, label, source).
KINDS = (
    ("order", gettext_lazy("Orders"), _orders),
    ("ledger", gettext_lazy("Points and growth"), _entries),
    ("coupon", gettext_lazy("Coupons"), _coupons),
    ("tier", gettext_lazy("Tier changes"), _tiers),
    ("stage", gettext_lazy("Stage changes"), _stages),
    ("journey", gettext_lazy("Journeys"), _journeys),
    ("staff", gettext_lazy("Staff actions"), _staff),
    ("notice", gettext_lazy("Notices"), _notices),
)
SOURCES = tuple(source for _code, _label, source in KINDS)


def member_timeline(
    member: Member, *, page: int = 1, size: int = PAGE_SIZE, kinds: Iterable[str] | None = None
) -> TimelinePage:
    """Page ``page`` (1-based, at most ``MAX_PAGE``) of the member's timeline, newest first;
    one query per source read (all of them, or those of ``kinds``; an unknown kind is
    ignored)."""
    wanted = None if kinds is None else set(kinds)
    page = max(1, min(page, MAX_PAGE))
    start = (page - 1) * size
    limit = start + size + 1  # one more row tells whether there is a next page
    events: list[Event] = []
    for code, _label, source in KINDS:
        if wanted is None or code in wanted:
            events.extend(source(member, limit))
    events.sort(key=lambda e: (e.at, e.tiebreak), reverse=True)
    window = events[start : start + size + 1]
    return TimelinePage(
        events=window[:size],
        page=page,
        has_next=len(window) > size and page < MAX_PAGE,
        has_previous=page > 1,
    )


def member_coupons(member: Member, *, limit: int = 10) -> list[Coupon]:
    """The member's latest coupons, newest first."""
    return list(Coupon.objects.filter(member=member).select_related("used_store").order_by("-issued_at", "-id")[:limit])


@dataclass(frozen=True)
class LotRow:
    """An open lot as the member page shows it, in the staff user's language."""

    lot: Lot
    earned_at: dt.datetime
    expires_on: dt.date | None
    days_left: int | None  # None: never expires
    soon: bool  # expires within ``SOON_DAYS``

    @property
    def expiry(self) -> str:
        if self.expires_on is None:
            return _("never expires")
        return _("expires %(date)s") % {"date": f"{self.expires_on:%Y-%m-%d}"}


SOON_DAYS = 30


def member_open_lots(member: Member, *, limit: int = 10) -> list[LotRow]:
    """The member's open lots (something left): points before growth (what staff are asked
    about), each in the order it will be spent, soonest expiry first; ``limit + 1`` rows tell
    the page there are more. One query."""
    points_first = Case(When(currency=Currency.POINTS, then=Value(0)), default=Value(1))
    rows = (
        Lot.objects.filter(member=member, remaining__gt=0)
        .select_related("entry")
        .order_by(points_first, F("expires_at").asc(nulls_last=True), "id")[: limit + 1]
    )
    today = timezone.localdate()
    lots = []
    for lot in rows:
        # A lot expires at the end of its last day (local time): show that day.
        expires_on = timezone.localdate(lot.expires_at - dt.timedelta(microseconds=1)) if lot.expires_at else None
        days_left = None if expires_on is None else max(0, (expires_on - today).days)
        lots.append(
            LotRow(
                lot=lot,
                earned_at=lot.entry.created_at,
                expires_on=expires_on,
                days_left=days_left,
                soon=days_left is not None and days_left <= SOON_DAYS,
            )
        )
    return lots

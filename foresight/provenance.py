"""Per-point provenance: where each of a member's remaining points came from (the lot's
earn entry: an order and the rules and campaigns that earned it, an award, a transfer, a
check-in), when it expires, and which lots each spend, expiry or refund took (the
ledger's allocations). Reads only; a bounded number of queries whatever the history
(docs/foresight.md, "Provenance").
"""

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Prefetch
from django.utils import timezone

from loyalty.models import Allocation, Currency, LedgerEntry, Lot
from members.models import Member

# The rule kinds that are not the base rate: campaigns, bonuses and the tier multiplier.
BASE_KINDS = frozenset({"base"})
LOT_LIMIT = 200
ENTRY_LIMIT = 50
# The entries that take points from lots (and REVERSE, which gives them back).
CONSUMING_KINDS = (
    LedgerEntry.Kind.SPEND,
    LedgerEntry.Kind.EXPIRE,
    LedgerEntry.Kind.REFUND,
    LedgerEntry.Kind.CANCEL,
    LedgerEntry.Kind.ADJUST,
    LedgerEntry.Kind.SETTLE,
    LedgerEntry.Kind.REVERSE,
)


@dataclass(frozen=True)
class Source:
    """What put a lot's points in the account."""

    entry_id: int
    kind: str
    kind_label: str
    earned_at: dt.datetime
    order_number: str | None
    campaigns: tuple[str, ...]
    reason: str

    @property
    def label(self) -> str:
        text = self.order_number or self.reason or self.kind_label
        return f"{text} ({', '.join(self.campaigns)})" if self.campaigns else text


@dataclass(frozen=True)
class LotLine:
    lot_id: int
    amount: int
    remaining: int
    pending: bool
    available_at: dt.datetime
    expires_at: dt.datetime | None
    source: Source


@dataclass
class ExpiryGroup:
    """The remaining points expiring on one day and the sources they came from."""

    day: dt.date
    points: int = 0
    lots: list[LotLine] = field(default_factory=list)

    @property
    def sources(self) -> list[Source]:
        seen, out = set(), []
        for lot in self.lots:
            if lot.source.entry_id not in seen:
                seen.add(lot.source.entry_id)
                out.append(lot.source)
        return out


@dataclass(frozen=True)
class Taken:
    lot_id: int
    amount: int
    source: Source


@dataclass(frozen=True)
class Consumption:
    """One spend, expiry, refund or adjustment and the lots it took (or gave back)."""

    entry_id: int
    kind: str
    kind_label: str
    amount: int
    created_at: dt.datetime
    reason: str
    order_number: str | None
    gives_back: bool
    lots: list[Taken]


@dataclass
class Provenance:
    member_id: int
    currency: str
    remaining: int
    lots: list[LotLine]
    expiring: list[ExpiryGroup]
    consumptions: list[Consumption]
    lots_truncated: bool = False


def _source(entry: LedgerEntry) -> Source:
    lines = (entry.detail or {}).get("lines", [])
    campaigns = tuple(
        line.get("name", "") for line in lines if line.get("kind") not in BASE_KINDS and line.get("points", 0) > 0
    )
    return Source(
        entry_id=entry.pk,
        kind=entry.kind,
        kind_label=str(entry.get_kind_display()),
        earned_at=entry.created_at,
        order_number=entry.order.number if entry.order_id else None,
        campaigns=campaigns,
        reason=entry.reason,
    )


def _local_day(moment: dt.datetime) -> dt.date:
    return timezone.localtime(moment).date()


def member_provenance(
    member: Member, *, currency: str = Currency.POINTS, lot_limit: int = LOT_LIMIT, entry_limit: int = ENTRY_LIMIT
) -> Provenance:
    """The member's open lots (soonest expiry first, at most ``lot_limit``) with their
    sources, grouped by expiry day, and their latest ``entry_limit`` consuming entries with
    the lots each took. Three queries."""
    lots_qs = (
        Lot.objects.filter(member=member, currency=currency, remaining__gt=0)
        .select_related("entry__order")
        .order_by("pending", "expires_at", "id")
    )
    rows = list(lots_qs[: lot_limit + 1])
    truncated = len(rows) > lot_limit
    lots = [
        LotLine(
            lot_id=lot.pk,
            amount=lot.amount,
            remaining=lot.remaining,
            pending=lot.pending,
            available_at=lot.available_at,
            expires_at=lot.expires_at,
            source=_source(lot.entry),
        )
        for lot in rows[:lot_limit]
    ]
    groups: dict[dt.date, ExpiryGroup] = {}
    for lot in lots:
        if lot.expires_at is None or lot.pending:
            continue
        group = groups.setdefault(_local_day(lot.expires_at), ExpiryGroup(day=_local_day(lot.expires_at)))
        group.points += lot.remaining
        group.lots.append(lot)
    allocations = Allocation.objects.select_related("lot__entry__order").order_by("lot__expires_at", "lot_id")
    entries = (
        LedgerEntry.objects.filter(member=member, currency=currency, kind__in=CONSUMING_KINDS)
        .select_related("order")
        .prefetch_related(Prefetch("allocations", queryset=allocations))
        .order_by("-created_at", "-id")[:entry_limit]
    )
    consumptions = [
        Consumption(
            entry_id=entry.pk,
            kind=entry.kind,
            kind_label=str(entry.get_kind_display()),
            amount=entry.amount + entry.pending_amount,
            created_at=entry.created_at,
            reason=entry.reason,
            order_number=entry.order.number if entry.order_id else None,
            gives_back=entry.kind == LedgerEntry.Kind.REVERSE,
            lots=[
                Taken(lot_id=a.lot_id, amount=a.amount, source=_source(a.lot.entry)) for a in entry.allocations.all()
            ],
        )
        for entry in entries
    ]
    # Positive adjustments take no lot (they make one): only entries that took something.
    consumptions = [c for c in consumptions if c.lots]
    return Provenance(
        member_id=member.pk,
        currency=currency,
        remaining=sum(lot.remaining for lot in lots),
        lots=lots,
        expiring=sorted(groups.values(), key=lambda group: group.day),
        consumptions=consumptions,
        lots_truncated=truncated,
    )

"""The history page's rows: one per business event, not one per ledger entry.

An order writes a points entry and a growth entry (and a spend, when part was paid with
points); its points are released from pending days later by a separate release entry. A
member thinks of all of that as one thing, "my order of 3 May", so the page shows one row
per order (per refund, per other entry), with the release folded in as "available from
<date>" (the lot's date), and the entries on expand.

A page is three queries whatever the history's length: the count of events, the page of
event keys, the entries of those events (with store, order, refund and lot joined).
"""

import datetime as dt
from dataclasses import dataclass, field

from django.core.paginator import Page, Paginator
from django.db.models import Case as CaseWhen
from django.db.models import CharField, Max, QuerySet, Value, When
from django.db.models.functions import Cast, Concat
from django.utils.translation import gettext_lazy as _

from loyalty import selectors as loyalty_selectors
from loyalty.models import Currency, LedgerEntry
from members.models import Member

Kind = LedgerEntry.Kind

# The page's words for the kinds: capitalised, one form (what happened to the points).
KIND_LABELS = {
    Kind.EARN: _("Earned"),
    Kind.SPEND: _("Spent"),
    Kind.REFUND: _("Taken back for a refund"),
    Kind.CANCEL: _("Pending points cancelled"),
    Kind.RELEASE: _("Became available"),
    Kind.EXPIRE: _("Expired"),
    Kind.ADJUST: _("Adjusted by staff"),
    Kind.REVERSE: _("Spend reversed"),
    Kind.SETTLE: _("Refund shortfall settled"),
    Kind.TRANSFER: _("Given or received"),
    Kind.MERGE: _("Moved by a merge of your member records"),
}
# Which entry names an event that holds several kinds.
_PRIMARY = [
    Kind.EARN,
    Kind.SPEND,
    Kind.REFUND,
    Kind.CANCEL,
    Kind.REVERSE,
    Kind.SETTLE,
    Kind.TRANSFER,
    Kind.MERGE,
    Kind.ADJUST,
    Kind.EXPIRE,
]


def kind_choices() -> list[tuple[str, str]]:
    return [(kind.value, KIND_LABELS[kind]) for kind in Kind]


def _event_key():
    """Refund entries by refund, other order entries by order; then the entries one action
    wrote in both currencies (a staff award of points and growth shares its idempotency key,
    unique per account, so at most one entry per currency) and the expiries of one job run
    (one moment), and likewise the entries of one merge; the rest each on its own."""
    as_text = CharField()
    return CaseWhen(
        When(refund_id__isnull=False, then=Concat(Value("r"), Cast("refund_id", as_text))),
        When(order_id__isnull=False, then=Concat(Value("o"), Cast("order_id", as_text))),
        # A merge writes an entry per lot moved, all at one moment: one row.
        When(kind=Kind.MERGE, then=Concat(Value("m"), Cast("created_at", as_text))),
        When(idempotency_key__isnull=False, then=Concat(Value("k"), "idempotency_key")),
        When(kind=Kind.EXPIRE, then=Concat(Value("x"), Cast("created_at", as_text))),
        default=Concat(Value("e"), Cast("id", as_text)),
        output_field=as_text,
    )


@dataclass
class HistoryEvent:
    key: str
    entries: list[LedgerEntry] = field(default_factory=list)

    @property
    def main(self) -> LedgerEntry:
        kinds = {entry.kind: entry for entry in self.entries}
        for kind in _PRIMARY:
            if kind in kinds:
                return kinds[kind]
        return self.entries[0]

    @property
    def label(self) -> str:
        return str(KIND_LABELS.get(self.main.kind, self.main.get_kind_display()))

    @property
    def kind(self) -> str:
        return self.main.kind

    @property
    def at(self) -> dt.datetime:
        return max(entry.created_at for entry in self.entries)

    @property
    def store(self):
        return next((entry.store for entry in self.entries if entry.store_id), None)

    @property
    def order(self):
        return next((entry.order for entry in self.entries if entry.order_id), None)

    @property
    def reason(self) -> str:
        return next((entry.reason for entry in self.entries if entry.reason), "")

    def _sum(self, currency: str, attribute: str) -> int:
        return sum(getattr(entry, attribute) for entry in self.entries if entry.currency == currency)

    @property
    def points(self) -> int:
        return self._sum(Currency.POINTS, "amount")

    @property
    def points_pending(self) -> int:
        return self._sum(Currency.POINTS, "pending_amount")

    @property
    def growth(self) -> int:
        return self._sum(Currency.GROWTH, "amount")

    @property
    def growth_pending(self) -> int:
        return self._sum(Currency.GROWTH, "pending_amount")

    @property
    def has_points(self) -> bool:
        return any(entry.currency == Currency.POINTS for entry in self.entries)

    @property
    def has_growth(self) -> bool:
        return any(entry.currency == Currency.GROWTH for entry in self.entries)

    @property
    def earn_detail(self) -> dict:
        """The points earn's breakdown (rules and amounts), or the first earn's."""
        earns = [entry for entry in self.entries if entry.kind == Kind.EARN and entry.detail]
        earns.sort(key=lambda entry: entry.currency != Currency.POINTS)
        return earns[0].detail if earns else {}

    @property
    def available_at(self) -> dt.datetime | None:
        """When the pending points of this event become (or became) available: the release,
        folded into the order's row."""
        dates = [lot.available_at for entry in self.entries if (lot := _lot(entry)) and entry.pending_amount > 0]
        return max(dates) if dates else None

    @property
    def still_pending(self) -> bool:
        return any((lot := _lot(entry)) and lot.pending for entry in self.entries if entry.pending_amount > 0)


def _lot(entry: LedgerEntry):
    try:
        return entry.lot
    except LedgerEntry.lot.RelatedObjectDoesNotExist:
        return None


def history_page(
    member: Member,
    *,
    kind: str | None = None,
    currency: str | None = None,
    page: str | int | None = None,
    size: int = 20,
) -> Page:
    """A page of the member's history events, newest first; ``page.object_list`` holds
    :class:`HistoryEvent` objects. Release entries are folded into their orders' rows
    unless the member asks for releases."""
    entries: QuerySet[LedgerEntry] = loyalty_selectors.entries_for_member(member, kind=kind, currency=currency)
    if kind != Kind.RELEASE:
        entries = entries.exclude(kind=Kind.RELEASE)
    keyed = entries.annotate(event=_event_key())
    events = keyed.values("event").annotate(at=Max("created_at"), last=Max("id")).order_by("-at", "-last")
    found = Paginator(events, size).get_page(page)
    keys = [row["event"] for row in found.object_list]
    grouped = {key: HistoryEvent(key=key) for key in keys}
    if keys:
        rows = (
            keyed.filter(event__in=keys).select_related("store", "order", "refund", "lot").order_by("created_at", "id")
        )
        for entry in rows:
            grouped[entry.event].entries.append(entry)
    found.object_list = [grouped[key] for key in keys if grouped[key].entries]
    return found

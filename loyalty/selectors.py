"""Reads of the ledger shared by the admin, the audit command, pages and the API."""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import (
    BigIntegerField,
    Case,
    DateTimeField,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from members.models import Member

from .models import Account, Allocation, Currency, LedgerEntry, Lot, Refund
from .policies import ExpiryPolicy


def _sum(queryset: QuerySet, column: str) -> Coalesce:
    subquery = queryset.order_by().values("account_id").annotate(total=Sum(column)).values("total")
    return Coalesce(Subquery(subquery, output_field=BigIntegerField()), Value(0))


def _latest(column: str) -> Subquery:
    return Subquery(LedgerEntry.objects.filter(account_id=OuterRef("pk")).order_by("-id").values(column)[:1])


@dataclass
class Violation:
    account_id: int
    member_id: int
    currency: str
    problems: list[str]

    def __str__(self) -> str:
        return f"account {self.account_id} (member {self.member_id}, {self.currency}): " + "; ".join(self.problems)


def _refund_sum(column: str) -> Coalesce:
    """Sum of ``<currency>_<column>`` over the refunds of the outer account's member, in its currency."""
    per_member = Refund.objects.filter(order__member_id=OuterRef("member_id")).order_by().values("order__member_id")
    points = per_member.annotate(t=Sum(f"points_{column}")).values("t")
    growth = per_member.annotate(t=Sum(f"growth_{column}")).values("t")
    return Case(
        When(currency=Currency.POINTS, then=Coalesce(Subquery(points, output_field=BigIntegerField()), Value(0))),
        default=Coalesce(Subquery(growth, output_field=BigIntegerField()), Value(0)),
        output_field=BigIntegerField(),
    )


def ledger_violations(account_ids: list[int] | None = None) -> list[Violation]:
    """Every account whose figures disagree with its entries or lots, with what is wrong.

    One query for the account figures, one for the lots and one for the refunds' settled
    shortfalls, whatever the number of accounts: each account's sums are correlated
    subqueries on indexed columns.

    Besides consistency it checks value (docs/ledger.md, "The value invariant"): what the
    member holds, ``balance + pending``, is at most what their lots brought in, less what
    expired and what refunds claimed back (taken, cancelled, or left as a shortfall), and
    ``owed`` is exactly the refunds' open shortfalls.
    """
    accounts = Account.objects.all()
    lots = Lot.objects.all()
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
        lots = lots.filter(account_id__in=account_ids)
    own = {"account_id": OuterRef("pk")}
    checked = accounts.annotate(
        entry_balance=_sum(LedgerEntry.objects.filter(**own), "amount"),
        entry_pending=_sum(LedgerEntry.objects.filter(**own), "pending_amount"),
        lot_available=_sum(Lot.objects.filter(pending=False, **own), "remaining"),
        lot_pending=_sum(Lot.objects.filter(pending=True, **own), "remaining"),
        last_balance=Coalesce(_latest("balance_after"), Value(0)),
        last_pending=Coalesce(_latest("pending_after"), Value(0)),
        brought_in=_sum(Lot.objects.filter(**own), "amount"),
        expired=_sum(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE, **own), "amount"),
        charged=Coalesce(
            Subquery(
                LedgerEntry.objects.filter(kind__in=[LedgerEntry.Kind.REFUND, LedgerEntry.Kind.CANCEL], **own)
                .order_by()
                .values("account_id")
                .annotate(t=Sum(F("amount") + F("pending_amount")))
                .values("t"),
                output_field=BigIntegerField(),
            ),
            Value(0),
        ),
        shortfalls=_refund_sum("shortfall"),
        settled=_refund_sum("settled"),
    ).annotate(
        # expired and charged are sums of negative changes.
        entitled=F("brought_in") + F("expired") + F("charged") - F("shortfalls"),
    )
    wrong = checked.filter(
        ~Q(balance=F("entry_balance"))
        | ~Q(balance=F("lot_available"))
        | ~Q(balance=F("last_balance"))
        | ~Q(pending=F("entry_pending"))
        | ~Q(pending=F("lot_pending"))
        | ~Q(pending=F("last_pending"))
        | Q(balance__lt=0)
        | Q(pending__lt=0)
        | ~Q(owed=F("shortfalls") - F("settled"))
        | Q(balance__gt=F("entitled") - F("pending"))
    ).order_by("pk")

    found: dict[int, Violation] = {}
    for account in wrong:
        problems = []
        for label, expected in (
            ("sum of entries", account.entry_balance),
            ("sum of available lots", account.lot_available),
            ("last entry's balance_after", account.last_balance),
        ):
            if account.balance != expected:
                problems.append(f"balance {account.balance} != {label} {expected}")
        for label, expected in (
            ("sum of pending entries", account.entry_pending),
            ("sum of pending lots", account.lot_pending),
            ("last entry's pending_after", account.last_pending),
        ):
            if account.pending != expected:
                problems.append(f"pending {account.pending} != {label} {expected}")
        if account.balance < 0 or account.pending < 0:
            problems.append("negative figure")
        if account.owed != account.shortfalls - account.settled:
            problems.append(f"owed {account.owed} != open refund shortfalls {account.shortfalls - account.settled}")
        if account.balance + account.pending > account.entitled:
            problems.append(
                f"value: balance + pending {account.balance + account.pending} > entitled {account.entitled} "
                f"(brought in {account.brought_in}, expired {-account.expired}, "
                f"refunds claimed {account.shortfalls - account.charged})"
            )
        found[account.pk] = Violation(account.pk, account.member_id, account.currency, problems)

    # A reversal's allocations give back what its spend took; every other allocation consumes.
    net = Case(
        When(entry__kind=LedgerEntry.Kind.REVERSE, then=-F("amount")),
        default=F("amount"),
        output_field=BigIntegerField(),
    )
    allocated = Allocation.objects.filter(lot_id=OuterRef("pk")).order_by().values("lot_id").annotate(t=Sum(net))
    bad_lots = (
        lots.annotate(allocated=Coalesce(Subquery(allocated.values("t"), output_field=BigIntegerField()), Value(0)))
        .exclude(remaining=F("amount") - F("allocated"))
        .values_list("pk", "account_id", "member_id", "currency", "amount", "remaining", "allocated")
        .order_by("pk")
    )
    for lot_id, account_id, member_id, currency, amount, remaining, allocated_total in bad_lots:
        violation = found.setdefault(account_id, Violation(account_id, member_id, currency, []))
        violation.problems.append(
            f"lot {lot_id}: remaining {remaining} != amount {amount} - allocated {allocated_total}"
        )

    # Each refund's settled figure is what its settle entries paid, and never more than its shortfall.
    refunds = Refund.objects.all()
    if account_ids is not None:
        members = Account.objects.filter(pk__in=account_ids).values("member_id")
        refunds = refunds.filter(order__member_id__in=members)

    def paid(currency: str) -> Coalesce:
        entries = (
            LedgerEntry.objects.filter(refund_id=OuterRef("pk"), currency=currency, kind=LedgerEntry.Kind.SETTLE)
            .order_by()
            .values("refund_id")
            .annotate(t=Sum("amount"))
            .values("t")
        )
        return Coalesce(Subquery(entries, output_field=BigIntegerField()), Value(0))

    wrong_refunds = refunds.annotate(points_paid=paid(Currency.POINTS), growth_paid=paid(Currency.GROWTH)).filter(
        ~Q(points_settled=-F("points_paid"))
        | ~Q(growth_settled=-F("growth_paid"))
        | Q(points_settled__gt=F("points_shortfall"))
        | Q(growth_settled__gt=F("growth_shortfall"))
    )
    for refund in wrong_refunds.select_related("order"):
        for currency in Currency.values:
            settled, shortfall = getattr(refund, f"{currency}_settled"), getattr(refund, f"{currency}_shortfall")
            paid_total = -getattr(refund, f"{currency}_paid")
            if settled == paid_total and settled <= shortfall:
                continue
            member_id = refund.order.member_id
            account = (
                Account.objects.filter(member_id=member_id, currency=currency).values_list("pk", flat=True).first()
            )
            violation = found.setdefault(account or 0, Violation(account or 0, member_id, currency, []))
            violation.problems.append(
                f"refund {refund.pk}: settled {settled} != settle entries {paid_total} (shortfall {shortfall})"
            )
    return sorted(found.values(), key=lambda v: v.account_id)


# --- a member's own figures: home page, balance endpoint, history ------------------------

# An expiry at 00:00 belongs to the day before: points expiring at the end of 31 December
# (``expires_at`` = 1 January 00:00) are shown as expiring on 31 December.
_JUST_BEFORE = Value(dt.timedelta(microseconds=1))


@dataclass(frozen=True)
class Debt:
    """An open refund shortfall: what the refund could not take back and is still owed."""

    amount: int
    order_number: str
    refund_number: str
    refunded_at: dt.datetime


@dataclass(frozen=True)
class Balance:
    """One currency's figures as a member sees them."""

    balance: int
    pending: int
    expiring_soon: int  # available points whose expiry falls within ``soon_days``
    next_expiry_date: dt.date | None  # local date of the soonest expiry of available points
    pending_next_release_date: dt.date | None  # local date the next pending points become available
    owed: int = 0  # open refund shortfalls: the next points that come back pay these first
    owed_from: tuple[Debt, ...] = ()  # the refunds owed, oldest first


@dataclass(frozen=True)
class ExpiryBucket:
    date: dt.date
    amount: int


@dataclass(frozen=True)
class PendingRelease:
    date: dt.date
    amount: int


def _expiry_date(expires_at: dt.datetime) -> dt.date:
    return timezone.localtime(expires_at - dt.timedelta(microseconds=1)).date()


def _currency(currency: str) -> str:
    if currency not in Currency.values:
        raise LoyaltyError("invalid_filter", _("Unknown currency “%(value)s”.") % {"value": currency})
    return currency


def member_balances(member: Member, *, now: dt.datetime | None = None, soon_days: int = 30) -> dict[str, Balance]:
    """The member's balance, pending points and what expires soon, per currency ("points", "growth").

    Two queries whatever the history: the accounts, and one aggregate over the open lots;
    a third, for the refunds owed, only when the member owes something.
    Dates are local dates; a date already past (the job has not run yet) shows as today.
    A currency without an account shows zeros.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    horizon = now + dt.timedelta(days=soon_days)
    figures, owed = {}, {}
    for currency, balance, pending, debt in Account.objects.filter(member=member).values_list(
        "currency", "balance", "pending", "owed"
    ):
        figures[currency], owed[currency] = (balance, pending), debt
    debts = member_debts(member) if any(owed.values()) else {}
    lots = {
        row["currency"]: row
        for row in Lot.objects.filter(member=member, remaining__gt=0)
        .values("currency")
        .annotate(
            expiring=Sum("remaining", filter=Q(pending=False, expires_at__lte=horizon)),
            next_expiry=Min("expires_at", filter=Q(pending=False)),
            next_release=Min("available_at", filter=Q(pending=True)),
        )
        .order_by()
    }
    result = {}
    for currency in Currency.values:
        balance, pending = figures.get(currency, (0, 0))
        row = lots.get(currency, {})
        next_expiry, next_release = row.get("next_expiry"), row.get("next_release")
        result[currency] = Balance(
            balance=balance,
            pending=pending,
            expiring_soon=row.get("expiring") or 0,
            next_expiry_date=max(_expiry_date(next_expiry), today) if next_expiry else None,
            pending_next_release_date=max(timezone.localdate(next_release), today) if next_release else None,
            owed=owed.get(currency, 0),
            owed_from=tuple(debts.get(currency, ())),
        )
    return result


def member_debts(member: Member) -> dict[str, list[Debt]]:
    """The member's open refund shortfalls per currency, oldest first. One query."""
    rows = (
        Refund.objects.filter(order__member=member)
        .filter(Q(points_shortfall__gt=F("points_settled")) | Q(growth_shortfall__gt=F("growth_settled")))
        .select_related("order")
        .order_by("created_at", "id")
    )
    debts: dict[str, list[Debt]] = defaultdict(list)
    for refund in rows:
        for currency in Currency.values:
            if refund.owed(currency) > 0:
                debts[currency].append(
                    Debt(refund.owed(currency), refund.order.number, refund.number, refund.created_at)
                )
    return dict(debts)


def _by_day(rows: Iterable[tuple[dt.date, int]], today: dt.date) -> list[tuple[dt.date, int]]:
    """Merge (date, amount) rows, dates already past counting as today; soonest first."""
    totals: dict[dt.date, int] = defaultdict(int)
    for day, amount in rows:
        totals[max(day, today)] += amount
    return sorted(totals.items())


def expiry_calendar(
    member: Member, *, currency: str = Currency.POINTS, now: dt.datetime | None = None, months: int = 12
) -> list[ExpiryBucket]:
    """Which of the member's available points expire on which local date, soonest first.

    Open lots (points left, not pending) expiring within ``months`` months, summed per
    date in the database: one query whatever the history. Refuses an unknown currency
    (``invalid_filter``).
    """
    now = now or timezone.now()
    currency = _currency(currency)
    horizon = ExpiryPolicy("rolling", max(1, months)).expires_at(now)
    day = TruncDate(ExpressionWrapper(F("expires_at") - _JUST_BEFORE, output_field=DateTimeField()))
    rows = (
        Lot.objects.filter(member=member, currency=currency, pending=False, remaining__gt=0, expires_at__lte=horizon)
        .annotate(day=day)
        .values("day")
        .annotate(amount=Sum("remaining"))
        .order_by("day")
        .values_list("day", "amount")
    )
    return [ExpiryBucket(date=d, amount=a) for d, a in _by_day(rows, timezone.localdate(now))]


def pending_releases(
    member: Member, *, now: dt.datetime | None = None, currency: str = Currency.POINTS
) -> list[PendingRelease]:
    """The member's pending points by the local date they become available, soonest first.

    One query. Points whose return window has ended but that the release job has not
    reached yet show as released today. Refuses an unknown currency (``invalid_filter``).
    """
    now = now or timezone.now()
    currency = _currency(currency)
    rows = (
        Lot.objects.filter(member=member, currency=currency, pending=True, remaining__gt=0)
        .annotate(day=TruncDate("available_at"))
        .values("day")
        .annotate(amount=Sum("remaining"))
        .order_by("day")
        .values_list("day", "amount")
    )
    return [PendingRelease(date=d, amount=a) for d, a in _by_day(rows, timezone.localdate(now))]


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _moment(value, *, field_name: str, end_of_day: bool) -> dt.datetime:
    """A filter bound: an aware datetime as it is, a date as the start of that local day
    (``end_of_day``: of the next day, so the whole date is included)."""
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            raise LoyaltyError(
                "invalid_filter",
                _("%(field)s must be a date, or a date and time with its time zone.") % {"field": field_name},
            )
        return value
    if isinstance(value, dt.date):
        return _day_start(value + dt.timedelta(days=1) if end_of_day else value)
    raise LoyaltyError(
        "invalid_filter",
        _("%(field)s must be a date, or a date and time with its time zone.") % {"field": field_name},
    )


def entries_for_member(
    member: Member,
    *,
    kind: str | Sequence[str] | None = None,
    currency: str | None = None,
    since: dt.date | dt.datetime | None = None,
    until: dt.date | dt.datetime | None = None,
) -> QuerySet[LedgerEntry]:
    """The member's ledger entries, newest first, with store, order and refund joined in.

    ``kind`` is one kind or several; ``since`` and ``until`` are inclusive: a date means
    the whole local day, a datetime that moment. A page of entries is one query (two with
    a count). Refuses an unknown kind or currency, or a bound that is not a date or an
    aware datetime (``invalid_filter``).
    """
    entries = LedgerEntry.objects.filter(member=member)
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        unknown = [k for k in kinds if k not in LedgerEntry.Kind.values]
        if unknown or not kinds:
            raise LoyaltyError(
                "invalid_filter",
                _("Unknown kind of entry “%(value)s”. Use one of: %(choices)s.")
                % {"value": ", ".join(map(str, unknown)), "choices": ", ".join(LedgerEntry.Kind.values)},
            )
        entries = entries.filter(kind__in=kinds)
    if currency is not None:
        entries = entries.filter(currency=_currency(currency))
    if since is not None:
        entries = entries.filter(created_at__gte=_moment(since, field_name=_("Start"), end_of_day=False))
    if until is not None:
        bound = _moment(until, field_name=_("End"), end_of_day=True)
        # A date's bound is the next day's start (excluded); a datetime is itself (included).
        lookup = "created_at__lte" if isinstance(until, dt.datetime) else "created_at__lt"
        entries = entries.filter(**{lookup: bound})
    return entries.select_related("store", "order", "refund").order_by("-created_at", "-id")

"""Reads of the ledger shared by the admin, the audit command, pages and the API."""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    Case,
    DateTimeField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from core.db import is_postgresql, prepared_cursor
from core.errors import LoyaltyError
from members.models import Member

from .models import Account, Currency, LedgerEntry, Lot, Refund
from .policies import ExpiryPolicy

# A per-account figure the audit compares; every sum is 0 for an account without rows.
_ZERO = Value(0)


def _total(expression, **only) -> Coalesce:
    return Coalesce(Sum(expression, filter=Q(**only) if only else None), _ZERO, output_field=BigIntegerField())


@dataclass
class Violation:
    account_id: int
    member_id: int
    currency: str
    problems: list[str]

    def __str__(self) -> str:
        return f"account {self.account_id} (member {self.member_id}, {self.currency}): " + "; ".join(self.problems)


AUDIT_CHUNK = 5000  # accounts per round of the audit's grouped queries


def ledger_violations(account_ids: list[int] | None = None, *, chunk: int = AUDIT_CHUNK) -> list[Violation]:
    """Every account whose figures disagree with its entries or lots, with what is wrong.

    Set-based: the accounts are taken ``chunk`` at a time in id order, and each chunk's
    figures come from a handful of grouped queries (entries, the latest entries, lots,
    refunds per member, lots against their allocations), compared here; then each refund's
    settled figures against its settle entries, in refund-id ranges. About seven queries
    per chunk whatever the history, no subquery run once per account.

    Besides consistency it checks value (docs/ledger.md, "The value invariant"): what the
    member holds less what they owe, ``balance + pending - owed``, is at most what their
    lots brought in, less what expired and what refunds claimed back (taken, cancelled, or
    left as a shortfall); ``owed`` is exactly the refunds' open shortfalls; and while
    ``LOYALTY_SHORTFALL_SETTLE_FROM_EARNS`` is on, no account holds available points and
    an open debt at once (every point that comes in pays the debt first).
    """
    found: dict[int, Violation] = {}
    accounts = Account.objects.order_by("pk").values_list("pk", "member_id", "currency", "balance", "pending", "owed")
    if account_ids is None:
        after = 0
        while rows := list(accounts.filter(pk__gt=after)[:chunk]):
            # An id range, not a list: it selects every row of these accounts and no other.
            _account_violations(rows, {"gt": after, "lte": rows[-1][0]}, found)
            after = rows[-1][0]
    else:
        wanted = sorted(set(account_ids))
        for start in range(0, len(wanted), chunk):
            ids = wanted[start : start + chunk]
            _account_violations(list(accounts.filter(pk__in=ids)), {"in": ids}, found)
    _refund_violations(account_ids, chunk, found)
    return sorted(found.values(), key=lambda v: v.account_id)


def _account_violations(rows: list[tuple], ids: dict, found: dict[int, Violation]) -> None:
    """The figures of the accounts in ``rows`` against their entries, lots and refunds.

    ``ids`` are lookups on the account id (``{"in": [...]}`` or a range) that select
    exactly these accounts.
    """
    if not rows:
        return
    scope = {f"account_id__{lookup}": value for lookup, value in ids.items()}
    entries = LedgerEntry.objects.filter(**scope).order_by().values("account_id")
    sums = {
        row["account_id"]: row
        for row in entries.annotate(
            balance=_total("amount"),
            pending=_total("pending_amount"),
            expired=_total("amount", kind=LedgerEntry.Kind.EXPIRE),
            charged=_total(
                F("amount") + F("pending_amount"), kind__in=[LedgerEntry.Kind.REFUND, LedgerEntry.Kind.CANCEL]
            ),
            settled=_total("amount", kind=LedgerEntry.Kind.SETTLE),
        )
    }
    latest = {
        account_id: (balance, pending)
        for account_id, balance, pending in LedgerEntry.objects.filter(
            pk__in=entries.annotate(last=Max("pk")).values("last")
        ).values_list("account_id", "balance_after", "pending_after")
    }
    lots = {
        row["account_id"]: row
        for row in Lot.objects.filter(**scope)
        .order_by()
        .values("account_id")
        .annotate(
            available=_total("remaining", pending=False),
            pending_total=_total("remaining", pending=True),
            brought_in=_total("amount"),
        )
    }
    members = Account.objects.filter(**{f"pk__{lookup}": value for lookup, value in ids.items()})
    refunds = {
        row["order__member_id"]: row
        for row in Refund.objects.filter(order__member_id__in=members.values("member_id"))
        .order_by()
        .values("order__member_id")
        .annotate(**{f"{c}_{f}_total": _total(f"{c}_{f}") for c in Currency.values for f in ("shortfall", "settled")})
    }
    no_entries = {"balance": 0, "pending": 0, "expired": 0, "charged": 0, "settled": 0}
    no_lots = {"available": 0, "pending_total": 0, "brought_in": 0}
    for pk, member_id, currency, balance, pending, owed in rows:
        entry, lot = sums.get(pk, no_entries), lots.get(pk, no_lots)
        last_balance, last_pending = latest.get(pk, (0, 0))
        refund = refunds.get(member_id, {})
        shortfalls, settled = refund.get(f"{currency}_shortfall_total", 0), refund.get(f"{currency}_settled_total", 0)
        # expired, charged and settled are sums of negative changes. What refunds claimed as
        # shortfalls is what this account paid of them (its settle entries) plus what it
        # still owes: the same as the member's refunds' shortfalls while the owed check
        # below holds, and still this account's own figure after a member merge moved the
        # refunded orders to another member (docs/merge.md).
        claimed_shortfalls = -entry["settled"] + owed
        entitled = lot["brought_in"] + entry["expired"] + entry["charged"] - claimed_shortfalls
        problems = []
        for label, expected in (
            ("sum of entries", entry["balance"]),
            ("sum of available lots", lot["available"]),
            ("last entry's balance_after", last_balance),
        ):
            if balance != expected:
                problems.append(f"balance {balance} != {label} {expected}")
        for label, expected in (
            ("sum of pending entries", entry["pending"]),
            ("sum of pending lots", lot["pending_total"]),
            ("last entry's pending_after", last_pending),
        ):
            if pending != expected:
                problems.append(f"pending {pending} != {label} {expected}")
        if balance < 0 or pending < 0:
            problems.append("negative figure")
        if owed != shortfalls - settled:
            problems.append(f"owed {owed} != open refund shortfalls {shortfalls - settled}")
        if balance + pending - owed > entitled:
            problems.append(
                f"value: balance + pending - owed {balance + pending - owed} > entitled {entitled} "
                f"(brought in {lot['brought_in']}, expired {-entry['expired']}, "
                f"refunds claimed {claimed_shortfalls - entry['charged']})"
            )
        if owed > 0 and balance > 0 and settings.LOYALTY_SHORTFALL_SETTLE_FROM_EARNS:
            problems.append(f"value: {owed} owed while {balance} are available (a debt is paid first)")
        if problems:
            found[pk] = Violation(pk, member_id, currency, problems)

    # A reversal's allocations give back what its spend took; every other allocation consumes.
    net = Case(
        When(allocations__entry__kind=LedgerEntry.Kind.REVERSE, then=-F("allocations__amount")),
        default=F("allocations__amount"),
        output_field=BigIntegerField(),
    )
    bad_lots = (
        Lot.objects.filter(**scope)
        .annotate(allocated=Coalesce(Sum(net), _ZERO, output_field=BigIntegerField()))
        .exclude(remaining=F("amount") - F("allocated"))
        .values_list("pk", "account_id", "member_id", "currency", "amount", "remaining", "allocated")
        .order_by("pk")
    )
    for lot_id, account_id, member_id, currency, amount, remaining, allocated_total in bad_lots:
        violation = found.setdefault(account_id, Violation(account_id, member_id, currency, []))
        violation.problems.append(
            f"lot {lot_id}: remaining {remaining} != amount {amount} - allocated {allocated_total}"
        )


def _refund_violations(account_ids: list[int] | None, chunk: int, found: dict[int, Violation]) -> None:
    """Each refund's settled figure is what its settle entries paid, and never more than its shortfall."""
    refunds = Refund.objects.order_by()
    if account_ids is not None:
        refunds = refunds.filter(order__member_id__in=Account.objects.filter(pk__in=account_ids).values("member_id"))
    paid = {
        f"{currency}_paid": _total("entries__amount", entries__currency=currency, entries__kind=LedgerEntry.Kind.SETTLE)
        for currency in Currency.values
    }
    if account_ids is None:
        first, last = refunds.aggregate(first=Min("pk"), last=Max("pk")).values()
        ranges = [{"pk__gte": start, "pk__lt": start + chunk} for start in range(first or 0, (last or -1) + 1, chunk)]
    else:
        ranges = [{}]  # a few members' refunds: one query
    for scope in ranges:
        wrong = (
            refunds.filter(**scope)
            .annotate(**paid)
            .filter(
                ~Q(points_settled=-F("points_paid"))
                | ~Q(growth_settled=-F("growth_paid"))
                | Q(points_settled__gt=F("points_shortfall"))
                | Q(growth_settled__gt=F("growth_shortfall"))
            )
            .select_related("order")
            .order_by("pk")
        )
        for refund in wrong:
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


_BALANCES_SQL = """
SELECT a.currency, a.balance, a.pending, a.owed,
    (SELECT SUM(l.remaining)::bigint FROM loyalty_lot l
     WHERE l.account_id = a.id AND NOT l.pending AND l.remaining > 0 AND l.expires_at <= %(horizon)s),
    (SELECT MIN(l.expires_at) FROM loyalty_lot l WHERE l.account_id = a.id AND NOT l.pending AND l.remaining > 0),
    (SELECT MIN(l.available_at) FROM loyalty_lot l WHERE l.account_id = a.id AND l.pending AND l.remaining > 0)
FROM loyalty_account a WHERE a.member_id = %(member)s
"""


def member_balances(member: Member, *, now: dt.datetime | None = None, soon_days: int = 30) -> dict[str, Balance]:
    """The member's balance, pending points and what expires soon, per currency ("points", "growth").

    One statement whatever the history on PostgreSQL (the accounts with their lots'
    figures), two elsewhere (the accounts, one aggregate over the open lots); one more, for
    the refunds owed, only when the member owes something.
    Dates are local dates; a date already past (the job has not run yet) shows as today.
    A currency without an account shows zeros.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    horizon = now + dt.timedelta(days=soon_days)
    figures, owed, lots = {}, {}, {}
    if is_postgresql():
        # One prepared statement (the balance request's own read): each account with its
        # lots' figures probed per account on the partial indexes of open and pending lots.
        with prepared_cursor() as cursor:
            cursor.execute(_BALANCES_SQL, {"member": member.pk, "horizon": horizon})
            for currency, balance, pending, debt, expiring, next_expiry, next_release in cursor.fetchall():
                figures[currency], owed[currency] = (balance, pending), debt
                lots[currency] = {"expiring": expiring, "next_expiry": next_expiry, "next_release": next_release}
    else:
        for currency, balance, pending, debt in Account.objects.filter(member=member).values_list(
            "currency", "balance", "pending", "owed"
        ):
            figures[currency], owed[currency] = (balance, pending), debt
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
    debts = member_debts(member) if any(owed.values()) else {}
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

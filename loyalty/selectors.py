"""Reads of the ledger shared by the admin, the audit command, pages and the API."""

from dataclasses import dataclass

from django.db.models import BigIntegerField, F, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from .models import Account, Allocation, LedgerEntry, Lot


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


def ledger_violations(account_ids: list[int] | None = None) -> list[Violation]:
    """Every account whose figures disagree with its entries or lots, with what is wrong.

    One query for the account figures and one for the lots, whatever the number of
    accounts: each account's sums are correlated subqueries on indexed columns.
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
        found[account.pk] = Violation(account.pk, account.member_id, account.currency, problems)

    allocated = Allocation.objects.filter(lot_id=OuterRef("pk")).order_by().values("lot_id").annotate(t=Sum("amount"))
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
    return sorted(found.values(), key=lambda v: v.account_id)

"""Ledger data for the member center tests, made through the real services."""

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from loyalty.models import Currency
from loyalty.services import OrderLineInput, order_earn, points_award, points_spend


def award(member, amount: int, *, at: dt.datetime | None = None, currency=Currency.POINTS, key: str = ""):
    at = at or timezone.now()
    return points_award(
        member=member,
        currency=currency,
        amount=amount,
        reason="Welcome gift",
        idempotency_key=key or f"test:{currency}:{amount}:{at.isoformat()}",
        now=at,
    )


def earn(member, store, number: str, amount: str = "88.00", *, at: dt.datetime | None = None):
    at = at or timezone.now()
    return order_earn(
        member=member,
        store=store,
        number=number,
        amount=Decimal(amount),
        occurred_at=at,
        lines=[OrderLineInput(sku="LATTE", amount=Decimal(amount), category="drinks", name="Latte")],
        now=at,
    )


def spend(member, amount: int, key: str):
    return points_spend(member=member, amount=amount, idempotency_key=key, reason="Coffee voucher")

"""Foresight's shared reads: the leakage cases a staff user sees, their count for the
needs-attention list, and the orders by channel (docs/foresight.md)."""

import datetime as dt
from decimal import Decimal

from django.db import connection
from django.db.models import Count, F, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from loyalty.models import Order
from members.scoping import staff_stores

from .models import LeakageCase


def cases_for(user) -> QuerySet[LeakageCase]:
    """The cases ``user`` may see: every case for brand admins, else those of their stores."""
    cases = LeakageCase.objects.all()
    stores = staff_stores(user) if user is not None else None
    if stores is not None:
        cases = cases.filter(store__in=stores)
    return cases


def open_cases_count(user=None) -> int:
    """How many leakage cases are open, brand-wide or (given a staff ``user``) in their stores."""
    return cases_for(user).filter(status=LeakageCase.Status.OPEN).count()


def orders_by_channel(*, stores=None, months: int = 12, now: dt.datetime | None = None) -> list[dict]:
    """Orders that count, their net revenue (amount less refunded) and average order value
    per local month and channel, for the last ``months`` months (this one included), of
    the members of ``stores`` (None: every store). One query."""
    now = now or timezone.now()
    local = timezone.localtime(now)
    first = (local.year * 12 + local.month - 1) - (months - 1)
    start = local.replace(year=first // 12, month=first % 12 + 1, day=1, hour=0, minute=0, second=0, microsecond=0)
    orders = Order.objects.counting().filter(occurred_at__gte=start, occurred_at__lte=now)
    if stores is not None:
        orders = orders.filter(store__in=stores)
    rows = (
        orders.annotate(month=TruncMonth("occurred_at"))
        .values("month", "channel")
        .annotate(orders=Count("id"), revenue=Sum(F("amount") - F("refunded_amount")))
        .order_by("month", "channel")
    )
    labels = dict(Order.Channel.choices)
    return [
        {
            "month": timezone.localtime(row["month"]).strftime("%Y-%m"),
            "channel": row["channel"],
            "channel_label": str(labels.get(row["channel"], row["channel"])),
            "orders": row["orders"],
            "revenue": row["revenue"],
            "average": (row["revenue"] / row["orders"]).quantize(Decimal("0.01")),
        }
        for row in rows
    ]


def postgresql_available() -> bool:
    """Whether foresight's set-based SQL (written for PostgreSQL) can run here."""
    return connection.vendor == "postgresql"


def postgresql_required() -> None:
    """The leakage detectors, the simulator's replay and the forecast's fit are set-based
    SQL written for PostgreSQL; on the embedded SQLite default they refuse with a clear
    error instead of failing on the first statement."""
    if not postgresql_available():
        raise LoyaltyError(
            "unsupported",
            str(
                _(
                    "The leakage monitor, the tier-policy simulator and the forecast need PostgreSQL: "
                    "set DATABASE_URL to a PostgreSQL database (README.md)."
                )
            ),
        )

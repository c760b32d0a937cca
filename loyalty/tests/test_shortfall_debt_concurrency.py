"""A refund and the cancellation of the spend it cannot take back, racing on PostgreSQL.

Whichever commits first, the member ends with nothing of the returned order: the
cancellation first gives the points back and the refund takes them; the refund first
leaves a shortfall and the cancellation's points pay it.
"""

import datetime as dt

import pytest
from django.utils import timezone

from loyalty import services
from loyalty.models import Account, Currency, LedgerEntry, Refund
from loyalty.selectors import ledger_violations

from .factories import MemberFactory, StoreFactory
from .test_concurrency import postgresql_only, run_concurrently  # noqa: F401  (fixture and helper)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("round_", range(3))
def test_a_refund_racing_the_cancellation_of_its_spent_points_leaves_nobody_ahead(round_):
    now = timezone.now()
    member, store = MemberFactory(), StoreFactory()
    order = services.order_earn(
        member=member, store=store, number="A1", amount="650", occurred_at=now - dt.timedelta(days=30), now=now
    ).order
    spend = services.points_spend(member=member, amount=650, idempotency_key="s1", reason="reward", now=now)

    refunded, reversed_ = run_concurrently(
        lambda: services.order_refund(order=order, amount="650", number="R1"),
        lambda: services.points_spend_reverse(entry=spend, reason="cancelled"),
    )
    assert not isinstance(refunded, Exception), refunded
    assert not isinstance(reversed_, Exception), reversed_

    account = Account.objects.get(member=member, currency=Currency.POINTS)
    assert (account.balance, account.owed) == (0, 0)
    refund = Refund.objects.get(order=order)
    assert refund.points_settled == refund.points_shortfall  # 650 each, or 0 each
    settled = LedgerEntry.objects.filter(refund=refund, kind=LedgerEntry.Kind.SETTLE)
    assert -sum(settled.values_list("amount", flat=True)) == refund.points_shortfall
    assert ledger_violations() == []

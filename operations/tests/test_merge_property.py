"""Random histories, then a merge and its undo (docs/merge.md): nothing lost, nothing made.

Two members live random lives (awards, orders pending and released, spends, refunds,
months passing so lots expire). Then the second is merged into the first: the audit finds
nothing, and each currency's points of the two together are what they were. The undo
(optionally after the kept member spent) either puts every figure back as it was, or is
refused because moved points were spent; a refusal changes nothing.
"""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import transaction
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.errors import LoyaltyError
from loyalty import services
from loyalty.checkout import order_checkout
from loyalty.models import Account, Currency, Order
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member
from members.scoping import BRAND_ADMIN
from operations.merge import member_merge, member_merge_undo

START = dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC)

history = st.lists(
    st.tuples(
        st.sampled_from(["award", "earn", "earn", "checkout", "spend", "refund", "refund", "wait"]),
        st.integers(0, 1),  # which member
        st.integers(1, 400),  # amount, or days to wait
    ),
    max_size=14,
)


def figures(member) -> dict[str, tuple[int, int]]:
    found = {a.currency: (a.balance, a.pending) for a in Account.objects.filter(member=member)}
    return {currency: found.get(currency, (0, 0)) for currency in Currency.values}


def together(*members) -> dict[str, int]:
    return {currency: sum(sum(figures(m)[currency]) for m in members) for currency in Currency.values}


@pytest.fixture
def brand(django_user_model, db):
    call_command("setup_roles", stdout=open("/dev/null", "w"))  # noqa: SIM115
    user = django_user_model.objects.create_user("brand-prop", password="pw-prop-1", is_staff=True)
    user.groups.add(Group.objects.get(name=BRAND_ADMIN))
    return user


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(run=history, spend_after=st.sampled_from([0, 0, 5, 60, 400]), refund_after=st.booleans())
def test_random_histories_merge_and_undo_conserve_every_point(brand, run, spend_after, refund_after):
    with transaction.atomic():
        store = StoreFactory()
        members = [MemberFactory(home_store=store), MemberFactory(home_store=store)]
        now = START
        for serial, (action, who, amount) in enumerate(run):
            member = members[who]
            try:
                if action == "award":
                    services.points_award(
                        member=member,
                        currency="points",
                        amount=amount,
                        reason="r",
                        idempotency_key=f"a{serial}",
                        now=now,
                    )
                elif action == "earn":
                    services.order_earn(
                        member=member, store=store, number=f"O{serial}", amount=Decimal(amount), now=now
                    )
                elif action == "checkout":  # part paid with points: a later refund gives them back
                    order_checkout(
                        member=member,
                        store=store,
                        number=f"O{serial}",
                        amount=Decimal(amount * 2),
                        points=min(amount * 10, 5000),
                        now=now,
                    )
                elif action == "spend":
                    services.points_spend(
                        member=member, amount=amount, idempotency_key=f"s{serial}", reason="r", now=now
                    )
                elif action == "refund":
                    order = Order.objects.filter(member=member).exclude(status=Order.Status.REFUNDED).first()
                    if order is not None:
                        part = min(order.amount - order.refunded_amount, Decimal(amount))
                        services.order_refund(order=order, amount=part, number=f"R{serial}", now=now)
                else:
                    now += dt.timedelta(days=amount)
            except LoyaltyError as error:
                assert error.code in ("insufficient_balance", "points_over_limit"), error
        # Nothing due any more, so the merge's own settling changes no figure.
        services.lots_release_matured(now=now)
        services.lots_expire_due(now=now)
        keep, merged = (Member.objects.get(pk=m.pk) for m in members)
        before = {m.pk: figures(m) for m in (keep, merged)}
        total = together(keep, merged)
        owing = Account.objects.filter(member__in=members, owed__gt=0).exists()

        try:
            merge = member_merge(keep=keep, merged=merged, reason="same person", actor=brand, now=now)
        except LoyaltyError as error:
            assert owing and error.code == "refund_shortfall_open", error
            event("merge refused: shortfall")
            assert {m.pk: figures(m) for m in (keep, merged)} == before
            assert ledger_violations() == []
            transaction.set_rollback(True)
            return
        assert not owing
        assert ledger_violations() == []
        assert together(keep, merged) == total
        assert figures(merged) == dict.fromkeys(Currency.values, (0, 0))

        spent = 0
        if spend_after:
            try:
                services.points_spend(member=keep, amount=spend_after, idempotency_key="after", reason="r", now=now)
                spent = spend_after
            except LoyaltyError as error:
                assert error.code == "insufficient_balance"
        if refund_after:
            # A refund of a moved order takes its points back from where they are now.
            order = Order.objects.filter(member=keep, pk__in=merge.moved["ledger"]["orders"]).first()
            if order is not None and order.refunded_amount < order.amount:
                services.order_refund(order=order, amount=order.amount - order.refunded_amount, number="late", now=now)
                event("moved order refunded")
                assert ledger_violations() == []
                try:
                    member_merge_undo(merge=merge, reason="undo", actor=brand, now=now)
                except LoyaltyError as error:
                    assert error.code in ("merge_points_spent", "refund_shortfall_open"), error
                assert ledger_violations() == []
                transaction.set_rollback(True)
                return
        try:
            member_merge_undo(merge=merge, reason="undo", actor=brand, now=now)
        except LoyaltyError as error:
            assert spent and error.code == "merge_points_spent", error
            event("undo refused: spent")
            assert together(keep, merged)["points"] == total["points"] - spent
        else:
            event("undone" + (" after a spend" if spent else ""))
            after = {m.pk: figures(m) for m in (keep, merged)}
            assert after[merged.pk] == before[merged.pk]
            kept_points = before[keep.pk]["points"]
            assert after[keep.pk]["points"] == (kept_points[0] - spent, kept_points[1])
            assert after[keep.pk]["growth"] == before[keep.pk]["growth"]
        assert ledger_violations() == []
        transaction.set_rollback(True)

"""Each ledger service with its refusals. The invariants are checked after every test."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services
from loyalty.models import Account, Allocation, Currency, LedgerEntry, Lot, Order, Refund
from loyalty.selectors import ledger_violations
from loyalty.services import OrderLineInput
from members.models import Member

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)
LONG_AGO = NOW - dt.timedelta(days=30)  # outside the 7-day return window


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture
def member():
    return MemberFactory()


@pytest.fixture
def store():
    return StoreFactory()


def balance(member, currency=Currency.POINTS) -> tuple[int, int]:
    account = Account.objects.get(member=member, currency=currency)
    return account.balance, account.pending


def rows() -> tuple[int, int, int, int, int]:
    return (
        LedgerEntry.objects.count(),
        Lot.objects.count(),
        Allocation.objects.count(),
        Order.objects.count(),
        Refund.objects.count(),
    )


def earn(member, store, number="A1", amount="100", occurred_at=LONG_AGO, now=NOW, **kwargs):
    return services.order_earn(
        member=member, store=store, number=number, amount=amount, occurred_at=occurred_at, now=now, **kwargs
    )


# --- earn -----------------------------------------------------------------------------


def test_earn_outside_return_window_is_available_at_once(member, store):
    result = earn(member, store, amount="128.90")
    assert balance(member) == (128, 0)
    assert balance(member, Currency.GROWTH) == (128, 0)
    entry = result.entries[Currency.POINTS]
    assert entry.balance_after == 128
    assert entry.detail["lines"] == [{"rule": "base", "name": "base rate", "kind": "base", "points": 128}]
    lot = entry.lot
    assert (lot.amount, lot.remaining, lot.pending) == (128, 128, False)
    # Rolling 12 months from the order, not from when it was recorded.
    assert lot.expires_at == timezone.localtime(LONG_AGO).replace(year=2027)


def test_earn_inside_return_window_is_pending_until_it_ends(member, store):
    occurred = NOW - dt.timedelta(days=2)
    earn(member, store, occurred_at=occurred)
    assert balance(member) == (0, 100)
    lot = Lot.objects.get(member=member, currency=Currency.POINTS)
    assert lot.pending and lot.available_at == occurred + dt.timedelta(days=7)


def test_points_paid_part_of_an_order_earns_nothing(member, store):
    earn(member, store, amount="100", points_paid_amount="40")
    assert balance(member) == (60, 0)
    assert balance(member, Currency.GROWTH) == (60, 0)


def test_order_paid_entirely_with_points_earns_nothing_but_is_recorded(member, store):
    result = earn(member, store, amount="50", points_paid_amount="50")
    assert result.entries == {}
    assert Order.objects.filter(pk=result.order.pk).exists()
    assert LedgerEntry.objects.count() == 0


def test_earn_keeps_the_order_lines(member, store):
    lines = [
        OrderLineInput(sku="TEE-1", amount=Decimal("60"), category="apparel"),
        OrderLineInput(sku="CAP-2", amount=Decimal("40"), category="accessories", quantity=2),
    ]
    result = earn(member, store, lines=lines)
    assert sorted(result.order.lines.values_list("sku", "quantity")) == [("CAP-2", 2), ("TEE-1", 1)]


def test_earn_refuses_lines_that_do_not_add_up(member, store):
    with pytest.raises(LoyaltyError) as error:
        earn(member, store, lines=[OrderLineInput(sku="TEE-1", amount=Decimal("60"))])
    assert error.value.code == "lines_do_not_add_up"
    assert rows() == (0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("amount", "points_paid"),
    [
        ("-1", "0"),
        ("abc", "0"),
        ("10.001", "0"),
        ("NaN", "0"),
        ("10", "11"),
        ("10", "-1"),
        ("1e20", "0"),
        ("1e30", "0"),
        (None, "0"),
        ("Infinity", "0"),
    ],
)
def test_earn_refuses_bad_amounts(member, store, amount, points_paid):
    with pytest.raises(LoyaltyError) as error:
        earn(member, store, amount=amount, points_paid_amount=points_paid)
    assert error.value.code == "invalid_amount"
    assert rows() == (0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("occurred_at", dt.datetime(2026, 5, 1, 12, 0), "invalid_time"),  # no time zone
        ("occurred_at", "2026-05-01", "invalid_time"),
        ("number", None, "invalid_text"),
        ("number", "x" * 65, "invalid_text"),
        ("number", 12345, "invalid_text"),
        ("lines", [OrderLineInput(sku="A", amount=Decimal("100"), quantity=10**10)], "invalid_line"),
        ("lines", [OrderLineInput(sku="A", amount=Decimal("100"), quantity="two")], "invalid_line"),
        ("lines", [OrderLineInput(sku="", amount=Decimal("100"))], "invalid_text"),
        (
            "lines",
            [OrderLineInput(sku="A", amount=Decimal("-1")), OrderLineInput(sku="B", amount=Decimal("101"))],
            "invalid_line",
        ),
    ],
)
def test_earn_refuses_malformed_input_with_a_clear_error(member, store, field, value, code):
    with pytest.raises(LoyaltyError) as error:
        earn(member, store, **{field: value})
    assert error.value.code == code
    assert rows() == (0, 0, 0, 0, 0)


def test_replay_with_the_same_moment_in_another_time_zone_is_a_replay(member, store):
    first = earn(member, store, occurred_at=dt.datetime(2026, 5, 1, 4, 0, tzinfo=dt.UTC))
    shanghai = dt.timezone(dt.timedelta(hours=8))
    again = earn(member, store, occurred_at=dt.datetime(2026, 5, 1, 12, 0, tzinfo=shanghai))
    assert again.replayed and again.order.pk == first.order.pk


def test_order_recorded_after_its_points_expired_earns_them_and_they_expire_at_once(member, store):
    result = earn(member, store, amount="100", occurred_at=NOW - dt.timedelta(days=400))
    assert result.entries[Currency.POINTS].amount == 100
    assert balance(member) == (0, 0)
    assert LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.EXPIRE).count() == 2


def test_refund_refuses_malformed_reason_and_number(member, store):
    order = earn(member, store).order
    cases = [({"number": None}, "invalid_text"), ({"number": 7}, "invalid_text"), ({"reason": 42}, "invalid_text")]
    # The reason is cleaned by core.cleaners.clean_reason, like every other service's.
    cases.append(({"reason": "x" * 201}, "reason_too_long"))
    for kwargs, code in cases:
        with pytest.raises(LoyaltyError) as error:
            services.order_refund(**{"order": order, "amount": "10", "number": "R1", "now": NOW, **kwargs})
        assert error.value.code == code
    assert Refund.objects.count() == 0
    services.order_refund(order=order, amount="10", number="R1", reason=None, now=NOW)


def test_earn_refuses_an_order_in_the_future(member, store):
    with pytest.raises(LoyaltyError) as error:
        earn(member, store, occurred_at=NOW + dt.timedelta(hours=1))
    assert error.value.code == "order_in_future"


@pytest.mark.parametrize("status", [Member.Status.FROZEN, Member.Status.CLOSED])
def test_inactive_member_cannot_earn(member, store, status):
    Member.objects.filter(pk=member.pk).update(status=status)
    with pytest.raises(LoyaltyError) as error:
        earn(member, store)
    assert error.value.code == "member_inactive"
    assert Order.objects.count() == 0


def test_replayed_order_returns_the_first_result_and_writes_nothing(member, store):
    first = earn(member, store)
    before = rows()
    again = earn(member, store, now=NOW + dt.timedelta(minutes=5))
    assert again.replayed and again.order.pk == first.order.pk
    assert again.entries[Currency.POINTS].pk == first.entries[Currency.POINTS].pk
    assert rows() == before


def test_order_number_reused_in_the_same_store_is_refused(member, store):
    earn(member, store, amount="100")
    before = rows()
    with pytest.raises(LoyaltyError) as error:
        earn(member, store, amount="99")
    assert error.value.code == "order_number_taken"
    with pytest.raises(LoyaltyError):
        earn(MemberFactory(), store, amount="100")
    assert rows() == before


def test_same_order_number_at_another_store_is_a_different_order(member, store):
    earn(member, store)
    earn(member, StoreFactory())
    assert balance(member) == (200, 0)


# --- spend ----------------------------------------------------------------------------


def spend(member, amount, key="S1", now=NOW, **kwargs):
    return services.points_spend(member=member, amount=amount, idempotency_key=key, reason="coffee", now=now, **kwargs)


def test_spend_consumes_lots_first_in_first_out_by_expiry(member, store):
    earn(member, store, number="OLD", amount="30", occurred_at=NOW - dt.timedelta(days=200))
    earn(member, store, number="NEW", amount="50", occurred_at=NOW - dt.timedelta(days=20))
    entry = spend(member, 40)
    assert entry.amount == -40 and entry.balance_after == 40
    taken = {a.lot.entry.order.number: a.amount for a in entry.allocations.select_related("lot__entry__order")}
    assert taken == {"OLD": 30, "NEW": 10}
    assert balance(member) == (40, 0)
    assert Account.objects.get(member=member, currency=Currency.POINTS).lifetime_spent == 40


def test_spend_refuses_more_than_the_balance(member, store):
    earn(member, store, amount="10")
    before = rows()
    with pytest.raises(LoyaltyError) as error:
        spend(member, 11)
    assert error.value.code == "insufficient_balance"
    assert rows() == before and balance(member) == (10, 0)


def test_spend_refuses_pending_points(member, store):
    earn(member, store, amount="100", occurred_at=NOW - dt.timedelta(days=1))
    with pytest.raises(LoyaltyError) as error:
        spend(member, 1)
    assert error.value.code == "insufficient_balance"
    assert "pending" in error.value.message
    assert balance(member) == (0, 100)


def test_spend_can_use_points_once_the_return_window_ended_even_before_the_job_ran(member, store):
    earn(member, store, amount="100", occurred_at=NOW - dt.timedelta(days=1))
    entry = spend(member, 100, now=NOW + dt.timedelta(days=7))
    assert entry.balance_after == 0
    # Spending settles the points account only; growth waits for the job.
    assert LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.RELEASE).count() == 1


def test_spend_never_uses_expired_points(member, store):
    earn(member, store, amount="100", occurred_at=NOW - dt.timedelta(days=360))
    with pytest.raises(LoyaltyError) as error:
        spend(member, 1, now=NOW + dt.timedelta(days=10))
    assert error.value.code == "insufficient_balance"
    # A refused spend writes nothing, not even the expiry it noticed; the job does that.
    assert balance(member) == (100, 0)
    services.lots_expire_due(now=NOW + dt.timedelta(days=10))
    assert balance(member) == (0, 0)


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True])
def test_spend_refuses_amounts_that_are_not_positive_whole_numbers(member, store, amount):
    earn(member, store)
    with pytest.raises(LoyaltyError) as error:
        spend(member, amount)
    assert error.value.code == "invalid_amount"


@pytest.mark.parametrize("status", [Member.Status.FROZEN, Member.Status.CLOSED])
def test_inactive_member_cannot_spend(member, store, status):
    earn(member, store)
    Member.objects.filter(pk=member.pk).update(status=status)
    with pytest.raises(LoyaltyError) as error:
        spend(member, 10)
    assert error.value.code == "member_inactive"
    assert balance(member) == (100, 0)


def test_replayed_spend_returns_the_first_entry_and_writes_nothing(member, store):
    earn(member, store)
    first = spend(member, 30, key="redeem-1")
    before = rows()
    again = spend(member, 30, key="redeem-1", now=NOW + dt.timedelta(seconds=3))
    assert again.pk == first.pk
    assert rows() == before and balance(member) == (70, 0)


def test_spend_key_reused_with_another_amount_is_refused(member, store):
    earn(member, store)
    spend(member, 30, key="redeem-1")
    before = rows()
    with pytest.raises(LoyaltyError) as error:
        spend(member, 31, key="redeem-1")
    assert error.value.code == "idempotency_key_reused"
    assert rows() == before


def test_spend_requires_an_idempotency_key(member, store):
    earn(member, store)
    with pytest.raises(LoyaltyError) as error:
        spend(member, 1, key="")
    assert error.value.code == "idempotency_key_required"


# --- refund ---------------------------------------------------------------------------


def refund(order, amount, number="R1", now=NOW):
    return services.order_refund(order=order, amount=amount, number=number, now=now)


def test_full_refund_after_the_window_takes_the_points_back(member, store):
    result = earn(member, store, amount="100")
    outcome = refund(result.order, "100")
    assert balance(member) == (0, 0) and balance(member, Currency.GROWTH) == (0, 0)
    entry = outcome.entries[Currency.POINTS]
    assert entry.kind == LedgerEntry.Kind.REFUND and entry.amount == -100
    assert entry.reverses_id == result.entries[Currency.POINTS].pk
    order = Order.objects.get(pk=result.order.pk)
    assert order.status == Order.Status.REFUNDED and order.refunded_amount == Decimal("100")


def test_partial_refunds_are_proportional_and_add_up_to_the_earn(member, store):
    result = earn(member, store, amount="99.99")
    assert balance(member) == (99, 0)
    refund(result.order, "33.33", number="R1")
    refund(result.order, "33.33", number="R2")
    refund(result.order, "33.33", number="R3")
    assert balance(member) == (0, 0)
    assert Order.objects.get(pk=result.order.pk).status == Order.Status.REFUNDED


def test_refund_inside_the_window_cancels_pending_points_and_leaves_the_balance(member, store):
    earn(member, store, number="OLD", amount="50")
    result = earn(member, store, number="NEW", amount="80", occurred_at=NOW - dt.timedelta(days=1))
    assert balance(member) == (50, 80)
    outcome = refund(result.order, "20")
    assert balance(member) == (50, 60)
    assert outcome.entries[Currency.POINTS].kind == LedgerEntry.Kind.CANCEL
    refund(result.order, "60", number="R2")
    assert balance(member) == (50, 0)
    # Nothing left pending to release later.
    assert services.lots_release_matured(now=NOW + dt.timedelta(days=10)) == 0
    assert balance(member) == (50, 0)


def test_refund_after_a_partial_spend_takes_what_it_can_and_records_the_shortfall(member, store):
    result = earn(member, store, amount="100")
    spend(member, 70)
    outcome = refund(result.order, "100")
    assert balance(member) == (0, 0)
    assert outcome.entries[Currency.POINTS].amount == -30
    assert outcome.refund.points_shortfall == 70
    assert outcome.refund.growth_shortfall == 0


def test_refund_after_a_partial_spend_takes_from_other_points_too(member, store):
    order = earn(member, store, number="A", amount="100").order
    earn(member, store, number="B", amount="100")
    spend(member, 70)  # from lot A first: same expiry, lower id
    outcome = refund(order, "100")
    assert outcome.entries[Currency.POINTS].amount == -100
    assert outcome.refund.points_shortfall == 0
    assert balance(member) == (30, 0)


def test_refund_of_an_order_whose_points_expired_takes_nothing_more(member, store):
    old = earn(member, store, number="OLD", amount="100", occurred_at=NOW - dt.timedelta(days=400)).order
    services.lots_expire_due(now=NOW)
    earn(member, store, number="NEW", amount="40")
    assert balance(member) == (40, 0)
    outcome = refund(old, "100")
    # The order's points are already gone; the newer points stay.
    assert balance(member) == (40, 0)
    assert outcome.entries == {}
    assert outcome.refund.points_shortfall == 0


def test_refund_of_an_order_partly_spent_then_expired_takes_back_only_the_spent_part(member, store):
    long_ago = NOW - dt.timedelta(days=400)
    old = earn(member, store, number="OLD", amount="100", occurred_at=long_ago, now=long_ago).order
    spend(member, 60, now=NOW - dt.timedelta(days=300))
    services.lots_expire_due(now=NOW)  # the other 40 expire
    earn(member, store, number="NEW", amount="100")
    outcome = refund(old, "100")
    assert outcome.entries[Currency.POINTS].amount == -60
    assert balance(member) == (40, 0)


def test_refund_refuses_more_than_is_left_on_the_order(member, store):
    order = earn(member, store, amount="100").order
    refund(order, "60")
    before = rows()
    with pytest.raises(LoyaltyError) as error:
        refund(order, "40.01", number="R2")
    assert error.value.code == "refund_too_large"
    assert rows() == before


def test_replayed_refund_returns_the_first_result(member, store):
    order = earn(member, store, amount="100").order
    first = refund(order, "30")
    before = rows()
    again = refund(order, "30")
    assert again.replayed and again.refund.pk == first.refund.pk
    assert rows() == before and balance(member) == (70, 0)
    with pytest.raises(LoyaltyError) as error:
        refund(order, "31")
    assert error.value.code == "refund_number_taken"


def test_refund_works_for_a_frozen_member(member, store):
    order = earn(member, store, amount="100").order
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)
    refund(order, "100")
    assert balance(member) == (0, 0)


# --- adjust ---------------------------------------------------------------------------


def test_adjust_adds_an_available_lot_attributed_to_the_adjuster(member, adjuster):
    entry = services.points_adjust(
        member=member,
        currency=Currency.POINTS,
        amount=25,
        reason="goodwill: late delivery",
        actor=adjuster,
        now=NOW,
    )
    assert (entry.kind, entry.amount, entry.operator, entry.reason) == (
        "adjust",
        25,
        adjuster,
        "goodwill: late delivery",
    )
    assert entry.lot.remaining == 25 and not entry.lot.pending
    assert balance(member) == (25, 0)


def test_adjust_can_remove_points_but_not_below_zero(member, store, adjuster):
    earn(member, store, amount="10")
    services.points_adjust(member=member, currency="points", amount=-4, reason="correction", actor=adjuster, now=NOW)
    assert balance(member) == (6, 0)
    before = rows()
    with pytest.raises(LoyaltyError) as error:
        services.points_adjust(
            member=member, currency="points", amount=-7, reason="correction", actor=adjuster, now=NOW
        )
    assert error.value.code == "insufficient_balance"
    assert rows() == before


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_adjust_without_a_reason_is_refused(member, adjuster, reason):
    with pytest.raises(LoyaltyError) as error:
        services.points_adjust(member=member, currency="points", amount=5, reason=reason, actor=adjuster)
    assert error.value.code == "reason_required"
    assert rows() == (0, 0, 0, 0, 0)


def test_adjust_needs_a_staff_operator_with_the_permission(member, django_user_model, staff_user):
    customer = django_user_model.objects.create_user("customer")
    for operator in (None, customer, staff_user):
        with pytest.raises(LoyaltyError) as error:
            services.points_adjust(member=member, currency="points", amount=5, reason="x", actor=operator)
        assert error.value.code == "operator_required"


def test_adjust_refuses_an_unknown_currency(member, adjuster):
    with pytest.raises(LoyaltyError) as error:
        services.points_adjust(member=member, currency="gold", amount=5, reason="x", actor=adjuster)
    assert error.value.code == "invalid_currency"


def test_adjust_with_a_replayed_key_writes_once(member, adjuster):
    kwargs = {
        "member": member,
        "currency": "growth",
        "amount": 5,
        "reason": "x",
        "actor": adjuster,
        "idempotency_key": "form-123",
    }
    first = services.points_adjust(**kwargs)
    assert services.points_adjust(**kwargs).pk == first.pk
    assert balance(member, Currency.GROWTH) == (5, 0)
    with pytest.raises(LoyaltyError) as error:
        services.points_adjust(**{**kwargs, "amount": 6})
    assert error.value.code == "idempotency_key_reused"


# --- release and expiry jobs ----------------------------------------------------------


def test_release_job_makes_matured_pending_points_available_once(member, store):
    earn(member, store, amount="100", occurred_at=NOW - dt.timedelta(days=1))
    assert services.lots_release_matured(now=NOW) == 0
    assert services.lots_release_matured(now=NOW + dt.timedelta(days=6)) == 2  # points and growth
    assert balance(member) == (100, 0)
    assert services.lots_release_matured(now=NOW + dt.timedelta(days=7)) == 0
    release = LedgerEntry.objects.get(member=member, currency="points", kind=LedgerEntry.Kind.RELEASE)
    assert (release.amount, release.pending_amount, release.balance_after) == (100, -100, 100)


def test_expiry_job_expires_only_what_is_left_of_due_lots(member, store):
    earn(member, store, number="A", amount="100", occurred_at=NOW - dt.timedelta(days=300))
    earn(member, store, number="B", amount="50", occurred_at=NOW - dt.timedelta(days=10))
    spend(member, 30)
    written = services.lots_expire_due(now=NOW + dt.timedelta(days=70))
    assert written == 2  # one entry for points, one for growth
    assert balance(member) == (50, 0)
    expire = LedgerEntry.objects.get(member=member, currency="points", kind=LedgerEntry.Kind.EXPIRE)
    assert expire.amount == -70
    assert services.lots_expire_due(now=NOW + dt.timedelta(days=71)) == 0


def test_jobs_work_across_chunks(store):
    members = MemberFactory.create_batch(5)
    for index, member in enumerate(members):
        earn(member, store, number=f"O{index}", amount="10", occurred_at=NOW - dt.timedelta(days=3))
    assert services.lots_release_matured(now=NOW + dt.timedelta(days=5), chunk_size=2) == 10
    assert sum(balance(member)[0] for member in members) == 50
    assert services.lots_expire_due(now=NOW + dt.timedelta(days=400), chunk_size=2) == 10
    assert sum(balance(member)[0] for member in members) == 0


def test_calendar_expiry_policy(member, store, settings):
    settings.LOYALTY_POINTS_EXPIRY = "calendar:1"
    earn(member, store, amount="10", occurred_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    lot = Lot.objects.get(member=member, currency="points")
    assert timezone.localtime(lot.expires_at).date() == dt.date(2028, 1, 1)  # end of 31 Dec 2027


def test_never_expiry_policy(member, store, settings):
    settings.LOYALTY_POINTS_EXPIRY = "never"
    earn(member, store, amount="10")
    assert Lot.objects.get(member=member, currency="points").expires_at is None
    assert services.lots_expire_due(now=NOW + dt.timedelta(days=5000)) == 1  # growth only
    assert balance(member) == (10, 0)

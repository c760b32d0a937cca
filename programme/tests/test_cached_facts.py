"""What ``programme`` keeps with loyalty's cached configuration (issue 18): whether any plan
multiplies points and whether any badge is active. The earn reads neither from the database
while the programme's version stands, and a change to a plan or a badge (a bare UPDATE too)
bumps the version, so the next earn sees it."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyalty import configuration
from loyalty import services as ledger
from loyalty.tests.factories import StoreFactory
from programme.models import Badge, Membership, Plan
from programme.tasks import evaluate_badges

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the version is kept on PostgreSQL only"),
]


def _earn(member, store, number):
    return ledger.order_earn(member=member, store=store, number=number, amount=Decimal("100.00"))


def _tables(ctx) -> str:
    return " ".join(query["sql"] for query in ctx.captured_queries)


def test_plans_and_badges_bump_the_programme_version(plan):
    badge = Badge.objects.create(code="b", name="B", condition="orders", threshold=1)
    for change in (
        lambda: Plan.objects.filter(pk=plan.pk).update(earn_multiplier=Decimal("3")),
        lambda: Badge.objects.filter(pk=badge.pk).update(is_active=False),
        lambda: Badge.objects.filter(pk=badge.pk).delete(),
    ):
        before = configuration.programme_version()
        change()
        assert configuration.programme_version() > before


def test_no_multiplying_plan_no_membership_read_and_a_new_one_applies_at_once(member):
    store = StoreFactory()
    _earn(member, store, "W0")  # loads the configuration
    with CaptureQueriesContext(connection) as ctx:
        first = _earn(member, store, "W1")
    assert "programme_membership" not in _tables(ctx)
    assert first.entries["points"].pending_amount + first.entries["points"].amount == 100
    # A plan that doubles points, and the member's active membership of it: the next earn
    # sees the new version, reads the membership and earns double.
    plan = Plan.objects.create(
        code="plus", name="PLUS", rank=1, price=Decimal("99"), period=Plan.Period.YEAR, earn_multiplier=Decimal("2")
    )
    now = timezone.now()
    Membership.objects.create(
        member=member,
        plan=plan,
        status=Membership.Status.ACTIVE,
        started_at=now,
        ends_at=now + timezone.timedelta(days=30),
    )
    with CaptureQueriesContext(connection) as ctx:
        doubled = _earn(member, store, "W2")
    assert "programme_membership" in _tables(ctx)
    assert doubled.entries["points"].pending_amount + doubled.entries["points"].amount == 200


def test_an_earn_queues_badges_only_while_one_is_active(member, django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr(evaluate_badges, "delay", queued.append)
    store = StoreFactory()
    with django_capture_on_commit_callbacks(execute=True):
        _earn(member, store, "A0")
    assert queued == []
    badge = Badge.objects.create(code="one", name="One", condition="orders", threshold=1)
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
        _earn(member, store, "A1")
    assert queued == [member.pk]
    # The earn after a load of the same version asks the database nothing about badges.
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
        _earn(member, store, "A2")
    assert queued == [member.pk, member.pk]
    assert "programme_badge" not in _tables(ctx)
    Badge.objects.filter(pk=badge.pk).update(is_active=False)  # no signal: the trigger bumps the version
    with django_capture_on_commit_callbacks(execute=True):
        _earn(member, store, "A3")
    assert queued == [member.pk, member.pk]

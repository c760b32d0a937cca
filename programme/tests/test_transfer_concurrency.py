"""Real threads against PostgreSQL: transfers racing each other keep the limits, never
deadlock (both members locked in id order) and leave the ledger consistent."""

import pytest
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory
from loyalty.tests.test_concurrency import run_concurrently
from programme.models import Transfer
from programme.transfers import transfer_create

pytestmark = pytest.mark.django_db(transaction=True)


def _members(n):
    members = [MemberFactory() for _ in range(n)]
    for i, member in enumerate(members):
        ledger.points_award(member=member, currency="points", amount=1000, reason="seed", idempotency_key=f"c{i}")
    return members


def _attempt(**kwargs):
    def call():
        try:
            return transfer_create(now=timezone.now(), **kwargs).status
        except LoyaltyError as error:
            return error.code

    return call


def test_two_transfers_at_once_cannot_both_pass_the_daily_limit(settings):
    settings.PROGRAMME_TRANSFER_GIVE_PER_DAY = 150
    giver, first, second = _members(3)
    outcomes = run_concurrently(
        _attempt(giver=giver, to=first.phone, points=100), _attempt(giver=giver, to=second.phone, points=100)
    )
    assert sorted(outcomes) == ["completed", "transfer_limit_reached"]
    assert Transfer.objects.count() == 1 and ledger_violations() == []


def test_opposite_transfers_at_once_do_not_deadlock(settings):
    settings.PROGRAMME_TRANSFER_PING_PONG_HOURS = 0
    a, b = _members(2)
    outcomes = run_concurrently(
        *[_attempt(giver=a, to=b.phone, points=10), _attempt(giver=b, to=a.phone, points=10)] * 3
    )
    assert outcomes.count("completed") == 6
    assert ledger_violations() == []

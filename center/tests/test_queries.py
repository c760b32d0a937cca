"""Every page runs the same number of queries for a member with 1 entry as with 500."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from center.tests.data import award
from engagement.models import CheckIn, Referral
from engagement.referrals import referral_code_for
from loyalty.models import Account, LedgerEntry, Lot
from loyalty.tests.factories import MemberFactory
from loyalty.tiers import tier_assign_default
from members.models import Notification
from rewards.models import Coupon, Reward

pytestmark = pytest.mark.django_db

PAGES = [
    ("center:home", {}),
    ("center:history", {}),
    ("center:history", {"kind": "earn", "page": "2"}),
    ("center:rewards", {}),
    ("center:rewards", {"category": "vouchers", "sort": "-cost", "afford": "on"}),
    ("center:card", {}),
    ("center:card_code", {}),
    ("center:coupons", {}),
    ("center:coupons", {"tab": "expired"}),
    ("center:profile", {}),
    ("center:invite", {}),
]


def _grow_history(member, count: int) -> None:
    """``count`` more earn entries, each with its lot, plus coupons and notices (bulk, for speed)."""
    account = Account.objects.get(member=member, currency="points")
    now = timezone.now()
    entries = LedgerEntry.objects.bulk_create(
        LedgerEntry(
            account=account,
            member=member,
            currency="points",
            kind="earn",
            amount=5,
            balance_after=account.balance + 5 * (i + 1),
            idempotency_key=f"bulk:{i}",
            reason="Bulk",
            created_at=now - dt.timedelta(hours=i + 1),
            detail={"lines": [{"rule": "base", "name": "base rate", "kind": "base", "points": 5}]},
        )
        for i in range(count)
    )
    Lot.objects.bulk_create(
        Lot(
            account=account,
            member=member,
            currency="points",
            entry=entry,
            amount=5,
            remaining=5,
            pending=i % 3 == 0,
            available_at=now + dt.timedelta(days=i % 7),
            expires_at=now + dt.timedelta(days=1 + i % 40),
        )
        for i, entry in enumerate(entries)
    )
    Account.objects.filter(pk=account.pk).update(balance=account.balance + 5 * count)
    Coupon.objects.bulk_create(
        Coupon(
            member=member,
            title=f"Coupon {i}",
            kind="gift",
            source="staff",
            status="issued" if i % 2 else "expired",
            expires_at=now + dt.timedelta(days=10 if i % 2 else -10),
            valid_from=now - dt.timedelta(days=20),
        )
        for i in range(60)
    )
    Notification.objects.bulk_create(
        Notification(member=member, kind="other", title=f"News {i}", dedupe_key=f"bulk:{member.pk}:{i}")
        for i in range(40)
    )
    today = timezone.localdate()
    CheckIn.objects.bulk_create(
        CheckIn(member=member, day=today - dt.timedelta(days=i), streak=count - i, points=5) for i in range(count)
    )
    friends = MemberFactory.create_batch(50)
    Referral.objects.bulk_create(Referral(referrer=member, referee=friend, code="BULK") for friend in friends)


def _count_queries(client, name: str, params: dict) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(name), params)
    assert response.status_code == 200, name
    return len(queries)


def test_each_page_runs_the_same_queries_with_1_and_500_entries(member_client, member, tiers):
    tier_assign_default(member=member, now=timezone.now())
    award(member, 100)
    Reward.objects.create(name="Coffee voucher", points_cost=100, per_member_limit=2)
    Reward.objects.create(name="Tote bag", points_cost=900, min_tier=tiers["gold"])
    now = timezone.now()
    for status, days in (("issued", 5), ("expired", -5)):
        Coupon.objects.create(
            member=member,
            title=status,
            kind="gift",
            source="staff",
            status=status,
            valid_from=now - dt.timedelta(days=10),
            expires_at=now + dt.timedelta(days=days),
        )
    Notification.objects.create(member=member, kind="other", title="Hello", dedupe_key="first")
    referral_code_for(member)  # made on the first visit of the invite page; counted separately below
    small = {f"{name}{params}": _count_queries(member_client, name, params) for name, params in PAGES}

    _grow_history(member, 499)
    big = {f"{name}{params}": _count_queries(member_client, name, params) for name, params in PAGES}

    assert big == small
    assert max(small.values()) <= 15, small

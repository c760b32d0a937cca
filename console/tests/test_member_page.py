"""The member 360 page: one timeline of everything that happened to the member, newest
first and paginated; the actions as buttons on the page; the lots in the staff user's
language; the balance after an adjustment shown before confirming; and a bounded number of
queries with 10,000 ledger entries."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty.models import Account, Currency, LedgerEntry
from loyalty.services import order_earn, points_adjust
from loyalty.tests.factories import MemberFactory
from members.models import Member, StaffAction
from operations.member_timeline import PAGE_SIZE, member_timeline
from rewards.tests.factories import CouponFactory

pytestmark = pytest.mark.django_db

# The page's queries whatever the history: the card, the eight timeline sources, the
# coupons, the inlines (10 rows each) and the admin's own (session, user, permissions).
MAX_QUERIES = 60


def _page(client, member, **params):
    url = reverse("admin:members_member_change", args=[member.pk])
    return client.get(url, params, HTTP_ACCEPT_LANGUAGE=params.pop("lang", "en"))


def _bulk_entries(member, n: int, actor) -> None:
    """``n`` staff adjustments of one point, written in one insert (consistent balances)."""
    points_adjust(member=member, currency="points", amount=1, reason="first", actor=actor)
    account = Account.objects.get(member=member, currency=Currency.POINTS)
    start = timezone.now() - dt.timedelta(days=400)
    balance = account.balance
    rows = []
    for i in range(n):
        balance += 1
        rows.append(
            LedgerEntry(
                account=account,
                member=member,
                currency=Currency.POINTS,
                kind=LedgerEntry.Kind.ADJUST,
                amount=1,
                balance_after=balance,
                reason=f"bulk {i}",
                created_at=start + dt.timedelta(minutes=i),
            )
        )
    LedgerEntry.objects.bulk_create(rows, batch_size=2000)


def test_the_page_with_10000_ledger_entries_runs_a_bounded_number_of_queries(
    admin_client, admin_user, django_assert_max_num_queries
):
    small = MemberFactory()
    points_adjust(member=small, currency="points", amount=5, reason="one", actor=admin_user)
    with django_assert_max_num_queries(MAX_QUERIES) as few:
        assert _page(admin_client, small).status_code == 200
    big = MemberFactory()
    _bulk_entries(big, 10_000, admin_user)
    for n in range(3):
        order_earn(member=big, store=big.home_store, number=f"BIG-{n}", amount="100")
    assert LedgerEntry.objects.filter(member=big).count() > 10_000
    with django_assert_max_num_queries(MAX_QUERIES) as many:
        response = _page(admin_client, big)
    assert response.status_code == 200
    assert len(many.captured_queries) <= len(few.captured_queries) + 2  # the same shape, not per row
    timeline = response.context["timeline"]
    assert len(timeline.events) == PAGE_SIZE and timeline.has_next
    # Newest first: the three orders were recorded last.
    assert [e.kind for e in timeline.events[:3]] == ["order", "order", "order"]


def test_the_timeline_merges_every_source_newest_first_and_pages(admin_user):
    member = MemberFactory()
    now = timezone.now()
    points_adjust(member=member, currency="points", amount=50, reason="welcome", actor=admin_user)
    order_earn(member=member, store=member.home_store, number="T-1", amount="88")
    CouponFactory(member=member, title="Latte voucher", issued_at=now + dt.timedelta(seconds=5))
    StaffAction.objects.create(
        member=member, actor=admin_user, actor_name="admin", action=StaffAction.Action.FREEZE, reason="check"
    )
    events = member_timeline(member).events
    kinds = [e.kind for e in events]
    assert {"order", "ledger", "coupon", "staff"} <= set(kinds)
    assert [e.at for e in events] == sorted((e.at for e in events), reverse=True)
    order = next(e for e in events if e.kind == "order")
    assert "T-1" in order.text and order.points == 88  # the order's earn is on its row
    assert not any(e.kind == "ledger" and "T-1" in e.text and "Earned" in e.text for e in events)
    # Pages: 25 more adjustments make two pages; page 2 holds the rest, none twice.
    for n in range(25):
        points_adjust(member=member, currency="points", amount=1, reason=f"n{n}", actor=admin_user)
    first, second = member_timeline(member, page=1), member_timeline(member, page=2)
    assert first.has_next and not first.has_previous and second.has_previous
    assert len(first.events) == PAGE_SIZE
    both = [(e.kind, e.tiebreak) for e in first.events + second.events]
    assert len(both) == len(set(both))
    assert member_timeline(member, page=10_000).page == 50  # clamped


def test_the_lots_and_timeline_read_in_chinese(admin_client):
    member = MemberFactory()
    order_earn(member=member, store=member.home_store, number="ZH-1", amount="1856")
    page = _page(admin_client, member, lang="zh-hans").content.decode()
    assert "lot " not in page  # the lot's English __str__ is no row title
    assert "时间线" in page and "订单 ZH-1" in page


def test_the_actions_are_buttons_that_act_on_this_member_and_come_back(admin_client):
    member = MemberFactory()
    response = _page(admin_client, member)
    labels = [label for label, _url, _icon in response.context["member_buttons"]]
    assert "Freeze" in labels and "Adjust points" in labels and "Unfreeze or reopen" not in labels
    url = reverse("admin:members_member_act", args=[member.pk, "freeze"])
    form = admin_client.get(url)
    assert form.status_code == 200 and b'name="reason"' in form.content
    done = admin_client.post(url, {"action": "freeze", "_selected_action": member.pk, "apply": "1", "reason": "fraud"})
    assert done.status_code == 302 and done["Location"].endswith(f"/members/member/{member.pk}/change/")
    member.refresh_from_db()
    assert member.status == Member.Status.FROZEN
    assert StaffAction.objects.filter(member=member, action=StaffAction.Action.FREEZE, reason="fraud").exists()
    labels = [label for label, _url, _icon in _page(admin_client, member).context["member_buttons"]]
    assert "Freeze" not in labels and "Unfreeze or reopen" in labels


def test_an_unknown_action_is_refused(admin_client):
    member = MemberFactory()
    url = reverse("admin:members_member_act", args=[member.pk, "delete_selected"])
    assert admin_client.get(url).status_code == 403


def test_the_adjust_page_shows_the_balance_after_before_confirming(admin_client, admin_user):
    member = MemberFactory()
    points_adjust(member=member, currency="points", amount=12_000, reason="seed", actor=admin_user)
    page = admin_client.get(reverse("admin:members_member_adjust", args=[member.pk])).content.decode()
    assert 'data-points="12000"' in page and "12,000" in page
    assert 'id="balance-after"' in page and "After this adjustment" in page

"""The member 360 page (operations.admin_member_page, docs/member-admin.md): a bounded
number of queries with 10,000 ledger entries, the header card, the timeline's pages and
kinds, the lots with their expiry in the staff user's language, the profile card and the
profile form at ?edit=1, the merge button only when the merge admin exists."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty.models import Account, Currency, LedgerEntry, Lot, MemberTier, Tier
from loyalty.services import order_earn, points_adjust
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, StaffAction
from members.services import member_set_consent, member_tags_add
from operations import admin_member_page
from operations.member_timeline import PAGE_SIZE
from rewards.tests.factories import CouponFactory

pytestmark = pytest.mark.django_db

# Session, user, the member, the card (accounts, open-lot totals, tiers, tier row, growth,
# tags), eight timeline sources, lots, coupons, consent history: 21 for a superuser
# (measured), with room for the admin's own per-request reads.
MAX_QUERIES = 24


def page_url(member, **params) -> str:
    url = reverse("admin:members_member_change", args=[member.pk])
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}?{query}" if query else url


def get(client, member, lang="en", **params):
    response = client.get(page_url(member, **params), HTTP_ACCEPT_LANGUAGE=lang)
    assert response.status_code == 200
    return response


def bulk_entries(member, n: int, actor) -> None:
    """``n`` staff adjustments of one point, in one insert, with consistent balances."""
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
    Account.objects.filter(pk=account.pk).update(balance=balance)


@pytest.fixture
def tiers():
    return {
        "silver": Tier.objects.create(code="silver", name="Silver", rank=1, is_default=True, qualify_threshold=0),
        "gold": Tier.objects.create(code="gold", name="Gold", rank=2, qualify_threshold=1000),
    }


def test_the_page_runs_the_same_bounded_queries_with_10000_ledger_entries(
    admin_client, admin_user, django_assert_max_num_queries
):
    small = MemberFactory()
    points_adjust(member=small, currency="points", amount=5, reason="one", actor=admin_user)
    with django_assert_max_num_queries(MAX_QUERIES) as few:
        get(admin_client, small)

    big = MemberFactory()
    bulk_entries(big, 10_000, admin_user)
    for n in range(30):
        order_earn(member=big, store=big.home_store, number=f"BIG-{n}", amount="100")
        CouponFactory(member=big, title=f"Voucher {n}")
    member_tags_add(members=[big], tags=["VIP", "Coffee"], actor=admin_user, reason="regular")
    assert LedgerEntry.objects.filter(member=big).count() > 10_000

    with django_assert_max_num_queries(MAX_QUERIES) as many:
        response = get(admin_client, big)
    assert len(many.captured_queries) == len(few.captured_queries)  # the same shape, no query per row
    # The page shows a page of each, not the history: no inline, 20 timeline rows, 10 lots.
    assert "inline_admin_formsets" not in response.context
    assert len(response.context["timeline"].events) == PAGE_SIZE and response.context["timeline"].has_next
    assert len(response.context["lots"]) == admin_member_page.MEMBER_PAGE_ROWS and response.context["more_lots"]
    assert len(response.context["coupons"]) == admin_member_page.MEMBER_PAGE_ROWS
    # The timeline's later pages and a kind filter cost no more.
    with django_assert_max_num_queries(len(few.captured_queries)):
        deep = get(admin_client, big, timeline=40)
    assert deep.context["timeline"].page == 40 and len(deep.context["timeline"].events) == PAGE_SIZE
    with django_assert_max_num_queries(len(few.captured_queries)):
        get(admin_client, big, kind="order")


def test_the_header_card_shows_who_tier_progress_points_stage_segment_tags_consent_and_status(
    admin_client, admin_user, tiers
):
    member = MemberFactory(phone="+8613800138000", name="王芳")
    now = timezone.now()
    MemberTier.objects.create(member=member, tier=tiers["silver"], started_at=now, review_at=now + dt.timedelta(days=9))
    points_adjust(member=member, currency="points", amount=12_345, reason="seed", actor=admin_user)
    points_adjust(member=member, currency="growth", amount=400, reason="seed", actor=admin_user)
    Lot.objects.filter(member=member, currency=Currency.POINTS).update(expires_at=now + dt.timedelta(days=10))
    member_tags_add(members=[member], tags=["VIP"], actor=admin_user, reason="big spender")
    member_set_consent(member=member, channel="sms", granted=True, source="web")
    Member.objects.filter(pk=member.pk).update(stage=Member.Stage.MATURE, rfm_segment="champions")

    response = get(admin_client, member)

    page = response.content.decode()
    card = page[page.index('id="member-card"') : page.index('id="member-actions"')]
    assert "王芳" in card and 'id="member-card-phone">+86138****8000<' in card
    assert "13800138000" not in card  # masked
    assert f'id="member-card-number">{member.member_number}<' in card
    assert 'id="member-card-tier">Silver<' in card and "600 growth to Gold" in card
    assert 'aria-valuenow="40"' in card  # 400 of the 1,000 to Gold
    assert 'id="member-card-points">12,345<' in card
    assert 'id="member-card-pending">0<' in card
    assert 'id="member-card-expiring" class="m360-warn">12,345<' in card
    assert ">Mature<" in card and ">Champions<" in card
    assert ">VIP<" in card and "SMS ✓" in card and "Email ✗" in card
    assert 'id="member-card-status">Active<' in card
    # The buttons: the actions this member allows now, the profile form.
    buttons = page[page.index('id="member-actions"') : page.index('id="member-tabs"')]
    for label in ("Adjust points", "Pin a tier until a date", "Add tags", "Freeze", "Close membership"):
        assert label in buttons
    assert "Unfreeze or reopen" not in buttons
    assert "?edit=1" in buttons


def test_the_timeline_pages_newest_first_and_filters_by_kind(admin_client, admin_user):
    member = MemberFactory()
    for n in range(45):
        points_adjust(member=member, currency="points", amount=1, reason=f"gift {n}", actor=admin_user)
    order_earn(member=member, store=member.home_store, number="T-1", amount="88")
    StaffAction.objects.create(member=member, actor=admin_user, actor_name="admin", action="freeze", reason="check")

    first = get(admin_client, member).context["timeline"]
    assert first.page == 1 and first.has_next and not first.has_previous
    assert [e.at for e in first.events] == sorted((e.at for e in first.events), reverse=True)
    assert first.events[0].kind == "staff" and first.events[1].kind == "order"

    page = get(admin_client, member).content.decode()
    assert 'href="?timeline=2#member-timeline" rel="next"' in page
    second = get(admin_client, member, timeline=2)
    third = get(admin_client, member, timeline=3).context["timeline"]
    assert second.context["timeline"].has_previous and 'rel="prev"' in second.content.decode()
    assert len(third.events) == 47 - 2 * PAGE_SIZE and not third.has_next
    seen = [(e.kind, e.tiebreak) for p in (first, second.context["timeline"], third) for e in p.events]
    assert len(seen) == len(set(seen)) == 47  # every row once

    orders = get(admin_client, member, kind="order")
    assert [e.kind for e in orders.context["timeline"].events] == ["order"]
    assert orders.context["timeline_kind"] == "order"
    assert get(admin_client, member, kind="nonsense").context["timeline_kind"] == ""  # ignored
    assert get(admin_client, member, timeline="x").context["timeline"].page == 1


def test_the_lots_read_in_chinese_with_their_expiry(admin_client, admin_user):
    member = MemberFactory()
    points_adjust(member=member, currency="points", amount=1856, reason="seed", actor=admin_user)
    lot = Lot.objects.get(member=member)
    today = timezone.localdate()
    end_of_day = timezone.make_aware(dt.datetime.combine(today + dt.timedelta(days=41), dt.time()))
    Lot.objects.filter(pk=lot.pk).update(expires_at=end_of_day)  # the end of day 40 from today
    expires = today + dt.timedelta(days=40)

    page = get(admin_client, member, lang="zh-hans").content.decode()

    lots = page[page.index('id="member-lots"') : page.index('id="member-coupons"')]
    assert f"批次 {lot.pk}" in lots and "积分" in lots
    assert "1,856 / 1,856" in lots
    assert f"{expires:%Y-%m-%d} 到期" in lots and "还剩 40 天" in lots
    assert "剩余" in lots and "到期" in lots  # the column headings
    assert f"lot {lot.pk}" not in page and "points" not in lots  # no English __str__

    english = get(admin_client, member).content.decode()
    assert f"Lot {lot.pk}" in english and f"expires {expires:%Y-%m-%d}" in english and "in 40 days" in english


def test_the_profile_is_a_read_only_card_and_the_form_at_edit_saves(admin_client):
    store = StoreFactory(name="静安店")
    member = MemberFactory(name="旧名字", home_store=store)
    page = get(admin_client, member).content.decode()
    profile = page[page.index('id="member-profile"') : page.index('id="member-consent"')]
    assert "旧名字" in profile and "静安店" in profile
    assert "<input" not in page.split('id="member-card"')[1].split("<script")[0]  # no form on the page

    form = get(admin_client, member, edit=1)
    assert "adminform" in form.context and 'name="name"' in form.content.decode()
    assert 'name="status"' not in form.content.decode()  # status changes through the buttons
    assert 'id="member-page-link"' in form.content.decode()

    data = {"phone": "139 1111 2222", "name": "新名字", "gender": "female", "home_store": store.pk, "status": "closed"}
    saved = admin_client.post(page_url(member, edit=1), data)
    assert saved.status_code == 302 and saved["Location"] == page_url(member)  # back to the 360 page
    member.refresh_from_db()
    assert (member.phone, member.name, member.status) == ("+8613911112222", "新名字", Member.Status.ACTIVE)

    again = admin_client.post(page_url(member, edit=1), {**data, "name": "再改", "_continue": "1"})
    assert again.status_code == 302 and again["Location"] == page_url(member, edit=1)
    refused = admin_client.post(page_url(member, edit=1), {**data, "phone": "12"})
    assert refused.status_code == 200 and refused.context["adminform"].form.errors


def test_the_merge_button_shows_only_when_the_merge_admin_exists(admin_client, monkeypatch):
    member = MemberFactory()
    page = get(admin_client, member).content.decode()
    assert f'id="member-merge" href="{reverse("admin:members_membermerge_add")}?keep={member.pk}"' in page

    # Without the merge admin (its URL does not resolve) there is no button.
    monkeypatch.setattr(admin_member_page, "MERGE_URL_NAME", "admin:members_no_such_admin_add")
    assert get(admin_client, member).context["merge_url"] == ""
    assert 'id="member-merge"' not in get(admin_client, member).content.decode()


def test_a_store_manager_sees_their_members_page_but_not_another_stores(client, django_user_model):
    from django.contrib.auth.models import Permission

    from members.models import StaffProfile

    mine, theirs = StoreFactory(code="m1"), StoreFactory(code="t1")
    user = django_user_model.objects.create_user("mgr", password="x-not-real-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_member"))
    StaffProfile.objects.create(user=user).stores.set([mine])
    client.force_login(user)
    member, other = MemberFactory(home_store=mine), MemberFactory(home_store=theirs)

    response = get(client, member)
    assert response.context["member_buttons"] == [] and not response.context["has_change_permission"]
    assert "?edit=1" not in response.content.decode()  # view only: no profile form offered
    assert client.get(page_url(other)).status_code == 302  # not found for them: back to the list

"""The member merge admin (docs/merge.md): preview, confirm, the list with its undo link."""

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from loyalty import services
from loyalty.models import Account, Currency
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, MemberMerge, StaffProfile
from members.scoping import BRAND_ADMIN, STORE_MANAGER

pytestmark = pytest.mark.django_db

ADD = "admin:members_membermerge_add"
LIST = "admin:members_membermerge_changelist"


@pytest.fixture
def store():
    return StoreFactory(code="am1")


@pytest.fixture
def client_as(django_user_model):
    call_command("setup_roles", stdout=open("/dev/null", "w"))  # noqa: SIM115

    def make(name, role, stores=()):
        user = django_user_model.objects.create_user(name, password="pw-merge-adm-1", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        if role != BRAND_ADMIN:
            StaffProfile.objects.create(user=user).stores.set(stores)
        client = Client()
        client.force_login(user)
        return client

    return make


def test_preview_shows_balances_after_and_rows_then_confirm_merges(client_as, store, django_assert_max_num_queries):
    client = client_as("brand-adm", BRAND_ADMIN)
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    services.points_award(member=keep, currency="points", amount=70, reason="gift", idempotency_key="k")
    services.points_award(member=merged, currency="points", amount=30, reason="gift", idempotency_key="m")
    form = {"keep": keep.member_number, "merged": merged.phone, "reason": "same person"}

    with django_assert_max_num_queries(40):
        page = client.post(reverse(ADD), {**form, "preview": "1"})
    assert page.status_code == 200
    text = page.content.decode()
    assert "100 available, 0 pending" in text  # the balance after
    assert 'id="confirm-merge"' in text
    assert not MemberMerge.objects.exists()

    done = client.post(reverse(ADD), {**form, "confirm": "1"})
    assert done.status_code == 302
    merge = MemberMerge.objects.get()
    assert (merge.keep_id, merge.merged_id) == (keep.pk, merged.pk)
    assert Account.objects.get(member=keep, currency=Currency.POINTS).balance == 100
    assert ledger_violations() == []
    listing = client.get(reverse(LIST))
    assert reverse("admin:members_membermerge_undo", args=[merge.pk]) in listing.content.decode()


def test_keep_parameter_fills_in_the_record_to_keep(client_as, store):
    client = client_as("brand-adm", BRAND_ADMIN)
    keep = MemberFactory(home_store=store)
    page = client.get(reverse(ADD) + f"?keep={keep.pk}")
    assert page.status_code == 200
    assert f'value="{keep.member_number}"' in page.content.decode()


def test_a_refused_merge_shows_why_and_offers_no_confirm(client_as, store):
    client = client_as("brand-adm", BRAND_ADMIN)
    keep = MemberFactory(home_store=store)
    frozen = MemberFactory(home_store=store, status=Member.Status.FROZEN)
    page = client.post(
        reverse(ADD), {"keep": keep.member_number, "merged": frozen.member_number, "reason": "x", "preview": "1"}
    )
    text = page.content.decode()
    assert 'id="merge-refusal"' in text and 'id="confirm-merge"' not in text
    forced = client.post(
        reverse(ADD), {"keep": keep.member_number, "merged": frozen.member_number, "reason": "x", "confirm": "1"}
    )
    assert forced.status_code == 200 and not MemberMerge.objects.exists()
    unknown = client.post(reverse(ADD), {"keep": "nobody", "merged": frozen.member_number, "reason": "x"})
    assert unknown.status_code == 200 and "No member has this number or phone." in unknown.content.decode()


def test_undo_from_the_admin_puts_the_points_back(client_as, store):
    client = client_as("brand-adm", BRAND_ADMIN)
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    services.points_award(member=merged, currency="points", amount=30, reason="gift", idempotency_key="m")
    client.post(
        reverse(ADD), {"keep": keep.member_number, "merged": merged.member_number, "reason": "dup", "confirm": "1"}
    )
    merge = MemberMerge.objects.get()
    url = reverse("admin:members_membermerge_undo", args=[merge.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {"reason": "two people"}).status_code == 302
    merge.refresh_from_db()
    assert merge.undone_at is not None
    assert Account.objects.get(member=merged, currency=Currency.POINTS).balance == 30


def test_store_manager_sees_only_their_stores_merges_and_clerk_cannot_merge(client_as, store):
    other = StoreFactory(code="am2")
    brand = client_as("brand-adm", BRAND_ADMIN)
    for home in (store, other):
        a, b = MemberFactory(home_store=home), MemberFactory(home_store=home)
        brand.post(reverse(ADD), {"keep": a.member_number, "merged": b.member_number, "reason": "d", "confirm": "1"})
    assert MemberMerge.objects.count() == 2
    manager = client_as("mgr-adm", STORE_MANAGER, [store])
    listing = manager.get(reverse(LIST))
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 1
    outside = MemberMerge.objects.get(keep__home_store=other)
    assert manager.get(reverse("admin:members_membermerge_undo", args=[outside.pk])).status_code == 404
    clerk = client_as("clerk-adm", "Clerk", [store])
    assert clerk.get(reverse(ADD)).status_code == 403


def test_the_member_page_links_to_the_merge_form_with_the_member_to_keep(client_as, store):
    client = client_as("brand-adm", BRAND_ADMIN)
    member = MemberFactory(home_store=store)
    page = client.get(reverse("admin:members_member_change", args=[member.pk]))
    assert page.status_code == 200
    assert f"{reverse(ADD)}?keep={member.pk}" in page.content.decode()

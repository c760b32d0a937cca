"""The dashboard's store picker and drill-downs: a cohort cell opens the members of that
cohort who bought in that month; a picked store narrows the figures and the drill-downs."""

import datetime as dt
import json

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_figures():
    # The dashboard keeps its figures in the cache; another test's must not be shown here.
    cache.clear()
    yield
    cache.clear()


def _month(d: dt.date) -> str:
    return f"{d:%Y-%m}"


def _listed(client, href: str) -> set[int]:
    response = client.get(href)
    assert response.status_code == 200
    return {m.pk for m in response.context["cl"].result_list}


def test_a_cohort_cell_opens_the_cohort_members_who_bought_that_month(admin_client):
    store = StoreFactory()
    now = timezone.now()
    joined = now.replace(day=1, hour=12) - dt.timedelta(days=40)  # last month or the one before
    buyer, idle = MemberFactory(home_store=store), MemberFactory(home_store=store)
    other_month = MemberFactory(home_store=store)
    Member.objects.filter(pk__in=[buyer.pk, idle.pk]).update(joined_at=joined)
    Member.objects.filter(pk=other_month.pk).update(joined_at=now)
    order_earn(member=buyer, store=store, number="C-1", amount="50", occurred_at=joined + dt.timedelta(hours=1))
    cohort = timezone.localtime(joined).date().replace(day=1)

    response = admin_client.get(reverse("loyalty_dashboard"), {"period": "90d"})
    rows = {c.month: (c, size, cells) for c, size, cells in response.context["cohorts"]}
    _cohort, size, cells = rows[cohort]
    assert cells[0][3]["count"] == 1 and size["count"] == 2
    assert cells[0][3]["href"] in response.content.decode().replace("&amp;", "&")
    assert _listed(admin_client, cells[0][3]["href"]) == {buyer.pk}
    assert _listed(admin_client, size["href"]) == {buyer.pk, idle.pk}
    # Rules that are not rules are a bad filter (the admin's "?e=1"), not a server error.
    assert admin_client.get(reverse("admin:members_member_changelist"), {"rules": "{bad"}).status_code == 302


def test_the_store_picker_narrows_the_figures_and_the_drill_downs(admin_client):
    a, b = StoreFactory(name="Jing'an"), StoreFactory(name="Xuhui")
    MemberFactory(home_store=a)
    MemberFactory(home_store=b)
    MemberFactory(home_store=b)
    page = admin_client.get(reverse("loyalty_dashboard"))
    assert page.context["board"].members_total == 3 and 'id="id_store"' in page.content.decode()
    picked = admin_client.get(reverse("loyalty_dashboard"), {"store": b.pk})
    assert picked.context["board"].members_total == 2
    assert "Xuhui" in picked.context["scope_label"]
    # Every drill-down of the picked store keeps to its members.
    drill = picked.context["drill_all"]
    assert json.loads(drill["rules"]) == {"stores": [b.code]}
    assert len(_listed(admin_client, drill["href"])) == 2
    # Not a store: the whole scope, no error.
    assert admin_client.get(reverse("loyalty_dashboard"), {"store": "x"}).context["board"].members_total == 3


def test_a_store_manager_cannot_pick_another_store(client, django_user_model):
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from members.models import StaffProfile
    from members.scoping import STORE_MANAGER

    call_command("setup_roles")
    mine, other = StoreFactory(name="Mine"), StoreFactory(name="Other")
    MemberFactory(home_store=mine)
    MemberFactory(home_store=other)
    user = django_user_model.objects.create_user("m", password="pw-long-enough-1", is_staff=True)
    user.groups.add(Group.objects.get(name=STORE_MANAGER))
    StaffProfile.objects.create(user=user).stores.set([mine])
    client.force_login(user)
    response = client.get(reverse("loyalty_dashboard"), {"store": other.pk})
    assert response.context["board"].members_total == 1 and response.context["scope_label"] == "Mine"

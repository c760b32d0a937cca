"""The themed admin: each role lands where it works, the sidebar groups by task, the index
lists what needs attention, role names in the user's language, favicon.ico at the root."""

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone, translation
from unfold.admin import ModelAdmin as UnfoldModelAdmin

from console.landing import needs_attention
from console.navigation import role_name, sidebar
from loyalty.models import Account, Currency
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import ImportJob, JobRun, Member, StaffAction, StaffProfile
from members.scoping import BRAND_ADMIN, CLERK, STORE_MANAGER

PASSWORD = "a long enough password 1"


@pytest.fixture
def staff(django_user_model):
    call_command("setup_roles")
    store = StoreFactory(code="a", name="Jing'an")

    def make(username, role, limit=None):
        user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        if role != BRAND_ADMIN:
            profile = StaffProfile.objects.create(user=user, adjust_limit=limit)
            profile.stores.set([store])
        return user

    return {
        "clerk": make("clerk", CLERK),
        "manager": make("manager", STORE_MANAGER, 500),
        "brand": make("brand", BRAND_ADMIN),
    }


def sign_in(client, username):
    return client.post(
        reverse("admin:login"), {"username": username, "password": PASSWORD, "next": reverse("admin:index")}
    )


@pytest.mark.parametrize(
    "username, landing", [("clerk", "loyalty_till"), ("manager", "loyalty_dashboard"), ("brand", "admin:index")]
)
def test_each_role_lands_where_it_works(client, staff, username, landing):
    response = sign_in(client, username)
    assert response.status_code == 302 and response.url == reverse(landing)
    assert client.get(response.url).status_code == 200


def test_a_sign_in_with_its_own_next_goes_there(client, staff):
    response = client.post(
        reverse("admin:login"), {"username": "clerk", "password": PASSWORD, "next": "/admin/members/member/"}
    )
    assert response.status_code == 302 and response.url == "/admin/members/member/"


def test_the_sidebar_is_grouped_by_task_and_shows_only_what_the_user_may_open(rf, staff):
    request = rf.get("/admin/")
    request.user = staff["clerk"]
    groups = {group["title"]: [item["link"] for item in group["items"]] for group in sidebar(request)}
    assert list(groups) == ["Members", "Till", "Rewards and coupons", "Settings"]
    assert groups["Till"] == [reverse("loyalty_till")]
    assert reverse("loyalty_dashboard") not in sum(groups.values(), [])

    request.user = staff["brand"]
    titles = [group["title"] for group in sidebar(request)]
    assert titles == ["Members", "Till", "Points and tiers", "Rewards and coupons", "Operations", "Settings"]


def test_role_names_are_in_the_users_language(staff):
    with translation.override("zh-hans"):
        assert [role_name(staff[name]) for name in ("clerk", "manager", "brand")] == ["店员", "店长", "品牌管理员"]
    with translation.override("en"):
        assert role_name(staff["manager"]) == "Store manager"


def test_every_registered_admin_has_the_theme():
    plain = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if not isinstance(model_admin, UnfoldModelAdmin)
    ]
    assert plain == []


def test_needs_attention_lists_imports_jobs_shortfalls_and_staff_near_their_limit(client, staff):
    now = timezone.now()
    ImportJob.objects.create(original_name="a.csv", format="csv", status=ImportJob.Status.CHECKED)
    JobRun.objects.create(name="birthday_gifts", last_period=now.date(), last_success_at=now - dt.timedelta(days=3))
    member = MemberFactory()
    Account.objects.update_or_create(member=member, currency=Currency.POINTS, defaults={"owed": 40})
    StaffAction.objects.create(
        actor=staff["manager"], actor_name="manager", action=StaffAction.Action.ADJUST_POINTS, detail={"amount": -450}
    )
    StaffAction.objects.create(
        actor=staff["manager"], actor_name="manager", action=StaffAction.Action.ADJUST_POINTS, detail={"amount": 100}
    )

    items = needs_attention(staff["brand"], now=now)
    assert {item.code for item in items} == {"import_waiting", "job_stale", "refund_shortfall", "near_limit"}
    near = next(item for item in items if item.code == "near_limit")
    assert "450" in near.text and "500" in near.text
    assert needs_attention(staff["manager"], now=now) == []  # scoped staff: their stores' pages instead

    client.force_login(staff["brand"])
    page = client.get(reverse("admin:index")).content.decode()
    assert 'id="needs-attention"' in page and "birthday_gifts" in page and "?owed__gt=0" in page
    # The list link it gives opens (the lookup is allowed) and shows the owing account.
    assert client.get(reverse("admin:loyalty_account_changelist") + "?owed__gt=0").status_code == 200


def test_the_index_says_when_nothing_needs_attention(client, staff, django_assert_max_num_queries):
    client.force_login(staff["brand"])
    with django_assert_max_num_queries(25):
        page = client.get(reverse("admin:index")).content.decode()
    assert 'id="nothing-needs-attention"' in page and 'id="role-name">Brand admin<' in page
    assert Member.objects.count() == 0


def test_favicon_is_served_at_the_root(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")


def test_needs_attention_lists_failed_messages_today_and_failed_webhooks(client, staff, django_user_model):
    from outreach.models import Delivery
    from webhooks.models import Endpoint, Event, WebhookDelivery

    now = timezone.now()
    member = MemberFactory()
    Delivery.objects.create(member=member, kind="welcome", channel="sms", status=Delivery.Status.FAILED)
    Delivery.objects.create(member=member, kind="welcome", channel="sms", status=Delivery.Status.SENT)
    Delivery.objects.create(
        member=member, kind="old", channel="sms", status=Delivery.Status.FAILED, created_at=now - dt.timedelta(days=2)
    )
    endpoint = Endpoint.objects.create(name="shop", url="https://shop.example/hook", secret="s" * 32)
    event = Event.objects.create(type="points.changed", occurred_at=now, source="ledger", source_id=1, payload={})
    WebhookDelivery.objects.create(event=event, endpoint=endpoint, status=WebhookDelivery.Status.FAILED)

    items = {item.code: item for item in needs_attention(staff["brand"], now=now)}
    assert items["deliveries_failed"].count == 1  # today's only
    assert items["webhooks_failed"].count == 1

    client.force_login(staff["brand"])
    page = client.get(reverse("admin:index")).content.decode()
    assert 'id="deliveries-today"' in page and "1 sent, 1 failed, 0 waiting" in page
    # A link only for who may open the list (brand admins may not see the delivery log).
    for item in items.values():
        assert item.url == "" or client.get(item.url).status_code == 200
    superuser = django_user_model.objects.create_superuser("root", password=PASSWORD)
    client.force_login(superuser)
    items = {item.code: item for item in needs_attention(superuser, now=now)}
    assert "status__exact=failed" in items["deliveries_failed"].url
    assert client.get(items["deliveries_failed"].url).status_code == 200
    assert client.get(items["webhooks_failed"].url).status_code == 200

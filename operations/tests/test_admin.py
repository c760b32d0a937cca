"""The staff admin: finding members, their balances and history, adjusting points, read-only ledger."""

import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.errors import LoyaltyError
from loyalty.models import Account, Allocation, Currency, LedgerEntry, Lot, Order
from loyalty.services import order_earn, points_adjust
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import ConsentRecord, Member
from members.scoping import BRAND_ADMIN
from members.services import is_valid_member_number, member_set_consent
from operations import admin_member_actions as members_admin
from operations.admin_member_page import MEMBER_PAGE_ROWS

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:members_member_changelist"


def change_url(member):
    return reverse("admin:members_member_change", args=[member.pk])


def adjust_url(member):
    return reverse("admin:members_member_adjust", args=[member.pk])


def give(member, amount, operator, *, currency=Currency.POINTS, reason="seed"):
    return points_adjust(member=member, currency=currency, amount=amount, reason=reason, actor=operator)


def balance(member, currency=Currency.POINTS):
    account = Account.objects.filter(member=member, currency=currency).first()
    return account.balance if account else 0


def messages_of(response, level=None):
    return [str(m) for m in get_messages(response.wsgi_request) if level is None or m.level == level]


def changelist_rows(client, **params):
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def open_adjust_form(client, members):
    """Choose the action on the list, as the browser does; returns the form's token."""
    response = client.post(
        reverse(CHANGELIST),
        {"action": "adjust_points", "index": "0", "_selected_action": [m.pk for m in members]},
    )
    assert response.status_code == 200
    assert "admin/members/member/adjust_points.html" in [t.name for t in response.templates]
    return str(response.context["form"]["token"].value())


def submit_adjust_form(client, members, form_token, **fields):
    data = {
        "action": "adjust_points",
        "_selected_action": [m.pk for m in members],
        "apply": "1",
        "currency": "points",
        "amount": "25",
        "reason": "生日补发",
        "token": form_token,
        **fields,
    }
    return client.post(reverse(CHANGELIST), data)


# --- the member list ---------------------------------------------------------------------


def test_changelist_shows_points_balance_pending_and_growth(admin_client, admin_user):
    member = MemberFactory()
    idle = MemberFactory()
    give(member, 120, admin_user)
    give(member, 30, admin_user, currency=Currency.GROWTH)
    order_earn(member=member, store=member.home_store, number="A-1", amount="50.00")  # pending for 7 days

    rows = {row.pk: row for row in changelist_rows(admin_client)}

    row = rows[member.pk]
    assert (row.points_balance, row.points_pending, row.growth_balance, row.growth_pending) == (120, 50, 30, 50)
    assert (rows[idle.pk].points_balance, rows[idle.pk].points_pending, rows[idle.pk].growth_balance) == (0, 0, 0)
    content = admin_client.get(reverse(CHANGELIST)).content.decode()
    # The cell's class starts with the column's name; the theme adds its own classes after it.
    assert re.search(r'class="field-points_balance[^"]*"[^>]*>120<', content)
    assert re.search(r'class="field-points_pending[^"]*"[^>]*>50<', content)


def test_member_changelist_runs_a_bounded_number_of_queries(admin_client, admin_user):
    store = StoreFactory()
    first = MemberFactory(home_store=store)
    give(first, 10, admin_user)
    with CaptureQueriesContext(connection) as one_member:
        assert len(changelist_rows(admin_client)) == 1

    for member in MemberFactory.create_batch(29, home_store=store):
        give(member, 10, admin_user)
        give(member, 5, admin_user, currency=Currency.GROWTH)
    with CaptureQueriesContext(connection) as thirty_members:
        assert len(changelist_rows(admin_client)) == 30

    assert len(thirty_members) == len(one_member)


@pytest.mark.parametrize("term", ["13800138000", "138 0013 8000", "+86 138-0013-8000", "008613800138000"])
def test_search_finds_a_member_by_phone_in_any_spelling(admin_client, term):
    member = MemberFactory(phone="+8613800138000")
    MemberFactory.create_batch(3)

    assert [row.pk for row in changelist_rows(admin_client, q=term)] == [member.pk]


def test_search_finds_a_member_by_name_and_by_member_number(admin_client):
    member = MemberFactory(name="欧阳娜娜")
    MemberFactory.create_batch(3, name="李雷")

    assert [row.pk for row in changelist_rows(admin_client, q="欧阳")] == [member.pk]
    assert [row.pk for row in changelist_rows(admin_client, q=member.member_number)] == [member.pk]
    assert changelist_rows(admin_client, q="13999999999") == []


def test_changelist_filters_by_status_home_store_and_gender(admin_client):
    store = StoreFactory()
    wanted = MemberFactory(home_store=store, gender=Member.Gender.FEMALE, status=Member.Status.FROZEN)
    MemberFactory(home_store=store, gender=Member.Gender.MALE, status=Member.Status.FROZEN)
    MemberFactory(gender=Member.Gender.FEMALE, status=Member.Status.FROZEN)

    rows = changelist_rows(admin_client, status__exact="frozen", home_store__id__exact=store.pk, gender__exact="female")

    assert [row.pk for row in rows] == [wanted.pk]


# --- the member page -----------------------------------------------------------------------


def inline_instances(response, model):
    for inline_formset in response.context["inline_admin_formsets"]:
        if inline_formset.formset.model is model:
            return [form.instance for form in inline_formset.formset.forms]
    raise AssertionError(f"no {model.__name__} inline")


def test_change_page_shows_entries_open_lots_and_a_link_to_the_full_history(admin_client, admin_user):
    member = MemberFactory()
    other = MemberFactory()
    give(other, 7, admin_user)
    first = give(member, 100, admin_user)
    second = give(member, 50, admin_user)
    spend = give(member, -120, admin_user)  # uses up the first lot, 30 left of the second

    response = admin_client.get(change_url(member))

    assert response.status_code == 200
    timeline = response.context["timeline"].events
    assert [e.tiebreak for e in timeline if e.kind == "ledger"] == [spend.pk, second.pk, first.pk]
    assert [row.lot.entry_id for row in response.context["lots"]] == [second.pk]
    assert response.context["member_card"]["points"].balance == 30
    history = f"{reverse('admin:loyalty_ledgerentry_changelist')}?member__id__exact={member.pk}"
    assert history in response.content.decode()
    assert adjust_url(member) in response.content.decode()

    listed = admin_client.get(history).context["cl"].result_list
    assert sorted(e.pk for e in listed) == sorted([first.pk, second.pk, spend.pk])


def test_change_page_shows_only_the_latest_entries_and_open_lots(admin_client, admin_user):
    member = MemberFactory()
    entries = [give(member, 1, admin_user, reason=f"gift {n}") for n in range(15)]

    response = admin_client.get(change_url(member))

    shown = [e.tiebreak for e in response.context["timeline"].events if e.kind == "ledger"]
    assert shown == [e.pk for e in reversed(entries)]  # newest first, all 15 on the first page
    assert len(response.context["lots"]) == MEMBER_PAGE_ROWS  # the full lists are linked


def test_change_page_runs_a_bounded_number_of_queries(admin_client, admin_user):
    member = MemberFactory()
    give(member, 5, admin_user)
    with CaptureQueriesContext(connection) as short_history:
        assert admin_client.get(change_url(member)).status_code == 200

    for n in range(30):
        give(member, 5, admin_user, reason=f"gift {n}")
        order_earn(member=member, store=member.home_store, number=f"B-{n}", amount="10")
    with CaptureQueriesContext(connection) as long_history:
        assert admin_client.get(change_url(member)).status_code == 200

    assert len(long_history) == len(short_history)


def test_member_edits_still_save_with_the_read_only_inlines_and_normalise_the_phone(admin_client, admin_user):
    member = MemberFactory()
    give(member, 10, admin_user)
    member_set_consent(member=member, channel="sms", granted=True, source="web")
    data = {
        "phone": "139 1111 2222",
        "name": "新名字",
        "gender": "female",
        "birthday": "",
        "email": "",
        "home_store": member.home_store_id,
        "status": "active",
        "user": "",
    }
    response = admin_client.post(change_url(member) + "?edit=1", data)  # the profile form

    assert response.status_code == 302, response.context["adminform"].form.errors
    member.refresh_from_db()
    assert (member.phone, member.name) == ("+8613911112222", "新名字")
    assert balance(member) == 10 and LedgerEntry.objects.filter(member=member).count() == 1


def test_adding_a_member_in_the_admin_goes_through_sign_up(admin_client):
    store = StoreFactory()
    data = {"phone": "138 0013 8000", "name": "王芳", "gender": "female", "home_store": store.pk, "email": ""}

    response = admin_client.post(reverse("admin:members_member_add"), data)

    assert response.status_code == 302
    member = Member.objects.get()
    assert member.phone == "+8613800138000" and is_valid_member_number(member.member_number)
    assert member.home_store == store
    duplicate = admin_client.post(reverse("admin:members_member_add"), {**data, "phone": "+86 138 0013 8000"})
    assert duplicate.status_code == 200 and "phone" in duplicate.context["adminform"].form.errors
    bad = admin_client.post(reverse("admin:members_member_add"), {**data, "phone": "12345"})
    assert bad.status_code == 200 and "phone" in bad.context["adminform"].form.errors
    assert Member.objects.count() == 1


def test_a_phone_taken_between_the_form_and_the_save_is_a_message_not_a_500(admin_client, monkeypatch):
    """Two clerks add the same phone at once: the form of the second passes, the service refuses."""
    from operations import admin_members as member_admin

    def taken(**fields):
        MemberFactory(phone="+8613800138000")  # the other clerk's member ...
        raise LoyaltyError("phone_taken", "A member with phone number +8613800138000 already exists.")

    monkeypatch.setattr(member_admin, "member_create", taken)
    data = {"phone": "138 0013 8000", "name": "王芳", "gender": "female", "home_store": StoreFactory().pk, "email": ""}

    response = admin_client.post(reverse("admin:members_member_add"), data, follow=True)

    assert response.status_code == 200
    assert "already exists" in " ".join(str(m) for m in response.context["messages"])
    assert not Member.objects.exists()  # ... rolled back with the failed save: nothing half-written


# --- adjusting points ------------------------------------------------------------------------


def test_adjust_action_adjusts_each_selected_member_with_reason_and_operator(admin_client, admin_user):
    members = MemberFactory.create_batch(2)
    bystander = MemberFactory()
    token = open_adjust_form(admin_client, members)

    response = submit_adjust_form(admin_client, members, token, amount="25", reason="生日补发")

    assert response.status_code == 302
    entries = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUST).order_by("member_id")
    assert [(e.member_id, e.amount, e.reason, e.operator) for e in entries] == [
        (m.pk, 25, "生日补发", admin_user) for m in sorted(members, key=lambda m: m.pk)
    ]
    assert [balance(m) for m in members] == [25, 25] and balance(bystander) == 0
    logs = LogEntry.objects.filter(action_flag=CHANGE, user=admin_user)
    assert sorted(int(log.object_id) for log in logs) == sorted(m.pk for m in members)
    assert all("+25" in log.change_message and "生日补发" in log.change_message for log in logs)
    assert messages_of(response, messages.SUCCESS)


def test_adjust_action_can_take_growth_away(admin_client, admin_user):
    member = MemberFactory()
    give(member, 40, admin_user, currency=Currency.GROWTH)
    token = open_adjust_form(admin_client, [member])

    submit_adjust_form(admin_client, [member], token, currency="growth", amount="-15", reason="重复发放")

    assert balance(member, Currency.GROWTH) == 25 and balance(member) == 0


@pytest.mark.parametrize(
    ("fields", "field_in_error"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "x" * 201}, "reason"),
        ({"amount": "0"}, "amount"),
        ({"amount": "1.5"}, "amount"),
        ({"amount": ""}, "amount"),
        ({"currency": "gold"}, "currency"),
        ({"token": ""}, "token"),
    ],
)
def test_bad_adjust_input_shows_the_form_again_and_changes_nothing(admin_client, fields, field_in_error):
    member = MemberFactory()
    token = open_adjust_form(admin_client, [member])

    response = submit_adjust_form(admin_client, [member], token, **fields)

    assert response.status_code == 200
    assert field_in_error in response.context["form"].errors
    assert not LedgerEntry.objects.exists() and not LogEntry.objects.exists()
    if field_in_error != "token":
        assert str(response.context["form"]["token"].value()) == token  # same form, same token


def test_removing_more_than_the_balance_is_refused_for_that_member_only(admin_client, admin_user):
    poor, rich = MemberFactory(name="穷"), MemberFactory(name="富")
    give(poor, 10, admin_user)
    give(rich, 100, admin_user)
    token = open_adjust_form(admin_client, [poor, rich])

    response = submit_adjust_form(admin_client, [poor, rich], token, amount="-50", reason="退货扣回")

    assert response.status_code == 302
    errors = messages_of(response, messages.ERROR)
    assert len(errors) == 1 and str(poor) in errors[0]
    assert (balance(poor), balance(rich)) == (10, 50)
    assert LedgerEntry.objects.filter(member=poor).count() == 1  # only the seed
    assert LogEntry.objects.filter(object_id=str(poor.pk)).count() == 0


def test_a_refused_single_adjustment_shows_the_form_again_with_the_error(admin_client, admin_user):
    member = MemberFactory()
    give(member, 10, admin_user)
    token = str(admin_client.get(adjust_url(member)).context["form"]["token"].value())

    response = admin_client.post(
        adjust_url(member), {"currency": "points", "amount": "-50", "reason": "扣回", "token": token}
    )

    assert response.status_code == 200
    errors = messages_of(response, messages.ERROR)
    assert len(errors) == 1 and str(member) in errors[0]
    assert balance(member) == 10 and LedgerEntry.objects.filter(member=member).count() == 1


def test_submitting_the_same_form_twice_adjusts_once(admin_client):
    members = MemberFactory.create_batch(2)
    token = open_adjust_form(admin_client, members)

    submit_adjust_form(admin_client, members, token, amount="30")
    admin_client.get(reverse(CHANGELIST))  # the operator sees the first result
    again = submit_adjust_form(admin_client, members, token, amount="30")

    assert again.status_code == 302
    assert messages_of(again, messages.WARNING) and not messages_of(again, messages.SUCCESS)
    assert [balance(m) for m in members] == [30, 30]
    assert LedgerEntry.objects.count() == 2 and LogEntry.objects.count() == 2


def test_the_same_form_resubmitted_with_another_amount_is_refused(admin_client):
    member = MemberFactory()
    token = open_adjust_form(admin_client, [member])
    submit_adjust_form(admin_client, [member], token, amount="30")

    response = submit_adjust_form(admin_client, [member], token, amount="300")

    assert response.status_code == 200
    assert messages_of(response, messages.ERROR)
    assert balance(member) == 30 and LedgerEntry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_submits_of_one_form_adjust_once(admin_user):
    member = MemberFactory()
    data = {"currency": "points", "amount": "40", "reason": "双击", "token": str(uuid.uuid4())}
    both_ready = threading.Barrier(2)

    def submit(_n):
        client = Client()
        client.force_login(admin_user)
        both_ready.wait()
        try:
            return client.post(adjust_url(member), data).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = list(pool.map(submit, range(2)))

    assert statuses == [302, 302]
    assert LedgerEntry.objects.filter(member=member).count() == 1 and balance(member) == 40


def test_adjust_page_of_one_member(admin_client, admin_user):
    member = MemberFactory()
    page = admin_client.get(adjust_url(member))
    assert page.status_code == 200
    token = str(page.context["form"]["token"].value())
    data = {"currency": "points", "amount": "80", "reason": "客诉补偿", "token": token}

    response = admin_client.post(adjust_url(member), data)
    admin_client.post(adjust_url(member), data)  # a double click

    assert response.status_code == 302 and response["Location"] == change_url(member)
    entry = LedgerEntry.objects.get()
    assert (entry.member, entry.amount, entry.reason, entry.operator) == (member, 80, "客诉补偿", admin_user)
    assert balance(member) == 80


def test_adjust_action_refuses_too_many_members_at_once(admin_client, monkeypatch):
    monkeypatch.setattr(members_admin, "MAX_MEMBERS_PER_ADJUSTMENT", 2)
    members = MemberFactory.create_batch(3)

    response = admin_client.post(
        reverse(CHANGELIST), {"action": "adjust_points", "index": "0", "_selected_action": [m.pk for m in members]}
    )

    assert response.status_code == 302 and messages_of(response, messages.ERROR)


def action_names(changelist_response):
    action_form = changelist_response.context["action_form"]
    return set() if action_form is None else set(dict(action_form.fields["action"].choices))


@pytest.fixture
def staff_user(staff_user):
    """Staff not scoped to stores (members.scoping), limited only by the permissions a test grants."""
    staff_user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    return staff_user


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def test_staff_need_the_adjust_points_permission_to_adjust(client, staff_user):
    member = MemberFactory()
    client.force_login(staff_user)
    assert client.get(adjust_url(member)).status_code == 403

    grant(staff_user, "view_member")
    assert client.get(adjust_url(member)).status_code == 403
    page = client.get(change_url(member))
    assert page.status_code == 200 and adjust_url(member) not in page.content.decode()
    assert "adjust_points" not in action_names(client.get(reverse(CHANGELIST)))


def test_staff_with_permission_adjust_in_their_own_name(client, staff_user):
    member = MemberFactory()
    grant(staff_user, "view_member", "adjust_points")
    client.force_login(staff_user)
    token = str(client.get(adjust_url(member)).context["form"]["token"].value())

    client.post(adjust_url(member), {"currency": "points", "amount": "5", "reason": "到店签到", "token": token})

    assert LedgerEntry.objects.get().operator == staff_user and balance(member) == 5


# --- the ledger and orders are read-only -----------------------------------------------------


@pytest.fixture
def ledger(admin_user):
    member = MemberFactory(phone="+8613800138000")
    give(member, 100, admin_user)
    spend = give(member, -10, admin_user)
    result = order_earn(member=member, store=member.home_store, number="T-1", amount="20")
    member_set_consent(member=member, channel="sms", granted=True, source="web")
    return {
        LedgerEntry: spend,
        Lot: Lot.objects.filter(member=member).first(),
        Allocation: Allocation.objects.get(entry=spend),
        Account: Account.objects.filter(member=member).first(),
        Order: result.order,
        ConsentRecord: ConsentRecord.objects.get(member=member),
    }


READ_ONLY = [LedgerEntry, Lot, Allocation, Account, Order, ConsentRecord]


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m.__name__)
def test_ledger_records_can_be_viewed_but_not_edited_added_or_deleted(admin_client, ledger, model):
    obj = ledger[model]
    before = list(model.objects.order_by("pk").values())

    assert admin_client.get(admin_url(model, "change", obj.pk)).status_code == 200
    assert admin_client.post(admin_url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.get(admin_url(model, "delete", obj.pk)).status_code == 403
    assert admin_client.post(admin_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert admin_client.get(admin_url(model, "add")).status_code == 403
    changelist = admin_client.get(admin_url(model, "changelist"))
    assert "delete_selected" not in action_names(changelist)

    assert list(model.objects.order_by("pk").values()) == before


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m.__name__)
def test_ledger_lists_find_records_by_the_members_phone(admin_client, ledger, model):
    MemberFactory()

    response = admin_client.get(admin_url(model, "changelist"), {"q": "13800138000"})

    assert response.status_code == 200
    assert ledger[model].pk in [row.pk for row in response.context["cl"].result_list]


def test_order_page_shows_its_lines_refunds_and_entries(admin_client, ledger):
    order = ledger[Order]

    response = admin_client.get(admin_url(Order, "change", order.pk))

    assert response.status_code == 200
    assert {e.kind for e in inline_instances(response, LedgerEntry)} == {LedgerEntry.Kind.EARN}


def test_ledger_entry_list_runs_a_bounded_number_of_queries(admin_client, admin_user):
    member = MemberFactory()
    give(member, 1, admin_user)
    url = admin_url(LedgerEntry, "changelist")
    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)

    for n in range(30):
        other = MemberFactory()
        give(other, 5, admin_user, reason=str(n))
        order_earn(member=other, store=other.home_store, number=f"C-{n}", amount="10")
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)

    assert len(response.context["cl"].result_list) > 30
    assert len(many) == len(few)


def test_the_adjust_token_is_fresh_for_every_form(admin_client):
    member = MemberFactory()
    first = admin_client.get(adjust_url(member)).context["form"]["token"].value()
    second = admin_client.get(adjust_url(member)).context["form"]["token"].value()
    assert uuid.UUID(first) != uuid.UUID(second)

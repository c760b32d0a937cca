"""The till screen in the admin (/admin/till/, docs/till.md) and its services (console.till)."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from console.till import mask_phone, till_coupon_verify, till_lookup, till_order_record
from core.errors import LoyaltyError
from loyalty.models import Account, LedgerEntry, Order
from loyalty.selectors import ledger_violations
from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, StaffAction, StaffProfile
from members.scoping import BRAND_ADMIN, CLERK, STORE_MANAGER
from rewards.models import Coupon
from rewards.tests.factories import CouponFactory

pytestmark = pytest.mark.django_db

URL = "/admin/till/"


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


@pytest.fixture
def world(django_user_model):
    call_command("setup_roles")
    store_a, store_b, store_c = StoreFactory(code="a", name="Jing'an"), StoreFactory(code="b"), StoreFactory(code="c")
    # A member of store B shops at store A: membership is brand-wide.
    member = MemberFactory(phone="+8613800138000", name="王芳", home_store=store_b)
    coupon = CouponFactory(member=member, title="Latte voucher")

    def staff(username, role, stores=()):
        user = django_user_model.objects.create_user(username, is_staff=True)  # force_login: no hashing
        if role:
            user.groups.add(Group.objects.get(name=role))
        if role in (CLERK, STORE_MANAGER):
            StaffProfile.objects.create(user=user).stores.set(stores)
        return user

    return {
        "a": store_a,
        "b": store_b,
        "c": store_c,
        "member": member,
        "coupon": coupon,
        "clerk": staff("clerk", CLERK, [store_a]),
        "manager": staff("manager", STORE_MANAGER, [store_a, store_c]),
        "brand": staff("brand", BRAND_ADMIN),
        "nobody": staff("nobody", None),
        "lost": staff("lost", CLERK, []),
    }


def post(client, **data):
    return client.post(URL, data)


def texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def points(member) -> tuple[int, int]:
    account = Account.objects.filter(member=member, currency="points").first()
    return (account.balance, account.pending) if account else (0, 0)


# --- lookup ---------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["13800138000", "138 0013 8000", "+86 138-0013-8000", "008613800138000"])
def test_lookup_by_phone_in_any_spelling(world, query):
    card = till_lookup(query=query)
    assert card.member == world["member"] and card.coupon is None
    assert card.masked_phone == "138****8000"
    assert [c.code for c in card.coupons] == [world["coupon"].code]


def test_lookup_by_member_number_with_spaces(world):
    number = world["member"].member_number
    assert till_lookup(query=f" {number[:4]} {number[4:]} ").member == world["member"]


def test_lookup_by_coupon_code_finds_the_coupon_and_its_member(world):
    code = world["coupon"].code
    card = till_lookup(query=f"{code[:4]}-{code[4:8]}-{code[8:]}".lower())
    assert card.coupon == world["coupon"] and card.member == world["member"]


@pytest.mark.parametrize(
    "query", ["", "   ", "13700137000", "hello", "x" * 41, "ABCDEFGHJKMN", "7000000000", "\x00", "ABCD\x00EFGHJKMN"]
)
def test_lookup_refuses_what_matches_nothing(world, query):
    with pytest.raises(LoyaltyError) as error:
        till_lookup(query=query)
    assert error.value.code in ("till_not_found", "till_query_invalid")


def test_lookup_does_not_find_an_erased_member(world):
    Member.objects.filter(pk=world["member"].pk).update(erased_at=timezone.now())
    with pytest.raises(LoyaltyError):
        till_lookup(query="13800138000")


def test_mask_phone():
    assert mask_phone("+8613800138000") == "138****8000"
    assert mask_phone("+4915112345678") == "+49****5678"


def test_page_shows_the_member_card_and_only_what_the_till_needs(client, world):
    client.force_login(world["clerk"])
    order_earn(member=world["member"], store=world["b"], number="B-1", amount="50")
    response = client.get(URL, {"q": "13800138000"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "王芳" in html and "138****8000" in html and world["member"].member_number in html
    assert "+8613800138000" not in html  # the full phone stays in the member's record
    assert response.context["card"].points.pending == 50
    assert world["coupon"].code in html
    assert "autofocus" in html


def test_page_with_an_unknown_query_says_so(client, world):
    client.force_login(world["clerk"])
    response = client.get(URL, {"q": "13700137000"})
    assert response.status_code == 200 and response.context["card"] is None
    assert "Nothing matches" in texts(response)[-1]


# --- record an order ------------------------------------------------------------------------


def test_record_an_order_in_one_step_shows_points_and_new_balance(client, world):
    member = world["member"]
    client.force_login(world["clerk"])
    response = post(
        client, action="order", member_number=member.member_number, store=world["a"].pk, number="A-1", amount="128"
    )
    assert response.status_code == 302
    assert response["Location"] == f"{URL}?q={member.member_number}&done=order"
    order = Order.objects.get(store=world["a"], number="A-1")
    assert order.member == member and order.amount == 128
    message = texts(response)[-1]
    assert "Order A-1 recorded at Jing'an: 128 points earned, pending until" in message
    assert "New balance: 0 points available, 128 pending; growth " in message
    action = StaffAction.objects.get(action=StaffAction.Action.RECORD_ORDER)
    assert action.actor == world["clerk"] and action.member == member
    assert action.detail == {
        "order": order.pk,
        "number": "A-1",
        "store": "a",
        "amount": "128.00",
        "points_paid": 0,
        "earned": {"points": 128, "growth": 128},
    }
    page = client.get(response["Location"])
    assert page.context["card"].points.pending == 128


def test_double_submit_records_the_order_once_and_shows_the_replay(client, world):
    member = world["member"]
    client.force_login(world["clerk"])
    data = {"action": "order", "member_number": member.member_number, "store": world["a"].pk, "number": "A-1"}
    post(client, **data, amount="128.00")
    again = post(client, **data, amount="128")
    assert again.status_code == 302
    assert "was already recorded at Jing'an (sent twice); nothing changed" in texts(again)[-1]
    assert Order.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="earn", currency="points").count() == 1
    assert StaffAction.objects.filter(action=StaffAction.Action.RECORD_ORDER).count() == 1
    assert points(member) == (0, 128)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"amount": "abc"}, "must be an amount in yuan"),
        ({"amount": "-5"}, "more than 0 yuan"),
        ({"amount": "0"}, "more than 0 yuan"),
        ({"amount": "1.234"}, "at most two decimals"),
        # A comma only as a thousands separator: 12,50 is not read as 1250, nor 1,,2 as 12.
        ({"amount": "12,50"}, "must be an amount in yuan"),
        ({"amount": "1,,2"}, "must be an amount in yuan"),
        ({"amount": ""}, "must be an amount in yuan"),
        ({"number": ""}, "Order number must be text"),
        ({"number": "x" * 65}, "Order number must be text"),
        ({"member_number": "7000000000"}, "No member has the number"),
        ({"store": "999999"}, "choose one of your stores"),
        ({"store": "STORE_B"}, "choose one of your stores"),
        ({"store": ""}, "choose one of your stores"),
        ({"number": "A-\x001"}, None),
        ({"member_number": "\x00"}, "No member has the number"),
    ],
)
def test_bad_order_input_gives_a_clear_message_and_changes_nothing(client, world, data, expected):
    member = world["member"]
    client.force_login(world["clerk"])
    body = {"action": "order", "member_number": member.member_number, "store": world["a"].pk, "number": "A-1"}
    body["amount"] = "20"
    body.update({k: (world["b"].pk if v == "STORE_B" else v) for k, v in data.items()})
    response = post(client, **body)
    if expected is None:  # a NUL a scanner sent is dropped, not a server error
        assert response.status_code == 302 and Order.objects.get().number == "A-1"
        return
    assert response.status_code == 200
    assert any(expected in text for text in texts(response)), texts(response)
    assert not Order.objects.exists() and not StaffAction.objects.exists()
    assert response.context["card"] is None or response.context["card"].member == member


def test_an_order_for_a_frozen_member_is_refused(client, world):
    member = world["member"]
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)
    client.force_login(world["clerk"])
    response = post(
        client, action="order", member_number=member.member_number, store=world["a"].pk, number="A-1", amount="20"
    )
    assert response.status_code == 200
    assert "cannot earn or spend points" in texts(response)[-1]
    assert not Order.objects.exists() and not StaffAction.objects.exists()


def test_order_number_reused_with_another_amount_is_refused(client, world):
    member = world["member"]
    client.force_login(world["clerk"])
    data = {"action": "order", "member_number": member.member_number, "store": world["a"].pk, "number": "A-1"}
    post(client, **data, amount="20")
    response = post(client, **data, amount="30")
    assert "already recorded at this store with different details" in texts(response)[-1]
    assert response.context["form"] == {"number": "A-1", "amount": "30", "points": ""}  # kept for correcting
    assert Order.objects.get().amount == 20
    assert StaffAction.objects.count() == 1


def test_the_audit_row_rolls_back_with_the_order(world, monkeypatch):
    import console.till

    def boom(**kwargs):
        raise RuntimeError("audit failed")

    monkeypatch.setattr(console.till, "staff_action_record", boom)
    with pytest.raises(RuntimeError):
        till_order_record(
            actor=world["clerk"], member_number=world["member"].member_number, store=world["a"], number="A-1", amount=5
        )
    assert not Order.objects.exists() and not LedgerEntry.objects.exists()


# --- verify a coupon ------------------------------------------------------------------------


def test_verify_a_coupon_in_one_step(client, world):
    coupon = world["coupon"]
    client.force_login(world["clerk"])
    response = post(client, action="verify", code=coupon.code, store=world["a"].pk, submission="s1", q="13800138000")
    assert response.status_code == 302 and response["Location"] == f"{URL}?q=13800138000&done=verify"
    assert "Coupon “Latte voucher”" in texts(response)[-1] and "verified" in texts(response)[-1]
    assert "New balance: 0 points available" in texts(response)[-1]
    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.USED and coupon.used_store == world["a"] and coupon.used_by == world["clerk"]
    action = StaffAction.objects.get(action=StaffAction.Action.VERIFY_COUPON)
    assert action.member == world["member"] and action.actor == world["clerk"]
    assert action.detail["code"] == coupon.code and action.detail["store"] == "a"
    page = client.get(response["Location"])
    assert page.context["card"].coupons == []


def test_the_same_verify_form_sent_twice_verifies_once_and_shows_the_result(client, world):
    coupon = world["coupon"]
    client.force_login(world["clerk"])
    post(client, action="verify", code=coupon.code, store=world["a"].pk, submission="s1")
    again = post(client, action="verify", code=coupon.code, store=world["a"].pk, submission="s1")
    assert again.status_code == 302
    assert "already verified by this form (sent twice)" in texts(again)[-1]
    assert StaffAction.objects.filter(action=StaffAction.Action.VERIFY_COUPON).count() == 1


def test_scanning_a_used_coupon_again_is_refused(client, world):
    coupon = world["coupon"]
    client.force_login(world["clerk"])
    post(client, action="verify", code=coupon.code, store=world["a"].pk, submission="s1")
    again = post(client, action="verify", code=coupon.code, store=world["a"].pk, submission="s2", q=coupon.code)
    assert again.status_code == 200
    assert "This coupon was already used on" in texts(again)[-1]
    assert again.context["card"].coupon == coupon  # the coupon's panel says when and where
    assert "Used on" in again.content.decode()
    assert StaffAction.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"status": Coupon.Status.VOID, "voided_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, "was voided"),
        ({"status": Coupon.Status.EXPIRED}, "has expired"),
        (
            {
                "expires_at": dt.datetime(2020, 1, 2, tzinfo=dt.UTC),
                "valid_from": dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            },
            "has expired",
        ),
        (
            {
                "valid_from": dt.datetime(2099, 1, 1, tzinfo=dt.UTC),
                "expires_at": dt.datetime(2099, 2, 1, tzinfo=dt.UTC),
            },
            "valid from",
        ),
    ],
)
def test_an_unusable_coupon_is_refused_and_nothing_changes(client, world, change, expected):
    coupon = world["coupon"]
    Coupon.objects.filter(pk=coupon.pk).update(**change)
    client.force_login(world["clerk"])
    response = post(client, action="verify", code=coupon.code, store=world["a"].pk, submission="s1")
    assert response.status_code == 200
    assert expected in texts(response)[-1]
    assert Coupon.objects.get(pk=coupon.pk).used_at is None and not StaffAction.objects.exists()


def test_unknown_code_and_a_frozen_members_coupon_are_refused(client, world):
    client.force_login(world["clerk"])
    for code in ("ZZZZZZZZZZZZ", "\x00", ""):
        response = post(client, action="verify", code=code, store=world["a"].pk)
        assert "No coupon has this code." in texts(response)[-1]
    Member.objects.filter(pk=world["member"].pk).update(status=Member.Status.FROZEN)
    response = post(client, action="verify", code=world["coupon"].code, store=world["a"].pk)
    assert "their coupons cannot be used" in texts(response)[-1]
    page = client.get(URL, {"q": world["coupon"].code}).content.decode()
    assert "This member is frozen" in page and 'id="till-verify-found"' not in page
    assert Coupon.objects.get(pk=world["coupon"].pk).status == Coupon.Status.ISSUED
    assert not StaffAction.objects.exists()


def test_verifying_at_a_store_outside_the_users_stores_is_refused(world):
    with pytest.raises(LoyaltyError) as error:
        till_coupon_verify(actor=world["clerk"], code=world["coupon"].code, store=world["b"])
    assert error.value.code == "store_forbidden"
    assert Coupon.objects.get(pk=world["coupon"].pk).status == Coupon.Status.ISSUED


def test_unknown_action_is_a_message_not_an_error(client, world):
    client.force_login(world["clerk"])
    response = post(client, action="explode")
    assert response.status_code == 200 and "Unknown till action." in texts(response)


# --- roles and stores -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"), [("clerk", 200), ("manager", 200), ("brand", 200), ("nobody", 403), ("lost", 200)]
)
def test_who_may_open_the_till(client, world, role, status):
    client.force_login(world[role])
    assert client.get(URL).status_code == status
    index = client.get(reverse("admin:index")).content.decode()
    assert ('id="till-link"' in index) == (status == 200)


def test_anonymous_is_sent_to_sign_in(client, world):
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_user_without_the_till_permission_cannot_post(client, world):
    client.force_login(world["nobody"])
    response = post(
        client,
        action="order",
        member_number=world["member"].member_number,
        store=world["a"].pk,
        number="A-1",
        amount="20",
    )
    assert response.status_code == 403 and not Order.objects.exists()


def test_store_choice_is_limited_to_the_users_stores(client, world):
    client.force_login(world["clerk"])
    assert client.get(URL).context["stores"] == [world["a"]]
    assert 'id="till-store-name"' in client.get(URL).content.decode()

    client.force_login(world["manager"])
    page = client.get(URL)
    assert page.context["stores"] == [world["a"], world["c"]] and page.context["store"] == world["a"]
    refused = post(client, action="store", store=world["b"].pk)
    assert "Choose one of your stores." in texts(refused)
    post(client, action="store", store=world["c"].pk)
    assert client.get(URL).context["store"] == world["c"]

    client.force_login(world["brand"])
    world["b"].is_active = False
    world["b"].save()
    assert client.get(URL).context["stores"] == [world["a"], world["c"]]  # every active store


def test_a_clerk_without_stores_can_look_up_but_not_act(client, world):
    client.force_login(world["lost"])
    page = client.get(URL, {"q": "13800138000"})
    assert page.context["card"].member == world["member"] and page.context["store"] is None
    assert "You are not assigned to any store" in page.content.decode()
    response = post(
        client,
        action="order",
        member_number=world["member"].member_number,
        store=world["a"].pk,
        number="A-1",
        amount="20",
    )
    assert "choose one of your stores" in texts(response)[-1] and not Order.objects.exists()


def test_roles_give_clerks_and_managers_the_till(world):
    for role in (CLERK, STORE_MANAGER):
        names = {f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=role).permissions.all()}
        assert {"loyalty.use_till", "api.pos_lookup", "api.pos_earn", "api.pos_verify_coupon"} <= names
    assert world["clerk"].has_perm("loyalty.use_till") and not world["clerk"].has_perm("loyalty.adjust_points")


# --- bounded queries ------------------------------------------------------------------------


def test_the_page_runs_a_bounded_number_of_queries(client, world, django_assert_max_num_queries):
    member = world["member"]
    client.force_login(world["manager"])
    client.get(URL)  # the session exists
    for n in range(30):
        order_earn(member=member, store=world["a"], number=f"H-{n}", amount="10")
    CouponFactory.create_batch(15, member=member)
    # 13 measured: session, user, perms, stores, member, balances, coupons, the latest orders to
    # refund, the checkout benefits (the tier's, the paid plan's)
    with django_assert_max_num_queries(15):
        response = client.get(URL, {"q": member.member_number})
    card = response.context["card"]
    assert len(card.coupons) == 10 and card.coupons_more
    with django_assert_max_num_queries(16):  # 14 measured
        client.get(URL, {"q": world["coupon"].code})


def test_recording_an_order_runs_a_bounded_number_of_queries(client, world, django_assert_max_num_queries):
    member = world["member"]
    client.force_login(world["clerk"])
    client.get(URL)
    for n in range(20):
        order_earn(member=member, store=world["a"], number=f"H-{n}", amount="10")
    with django_assert_max_num_queries(40):  # 33 measured, most of them order_earn's rules
        response = post(
            client, action="order", member_number=member.member_number, store=world["a"].pk, number="A-1", amount="9"
        )
    assert response.status_code == 302
    with django_assert_max_num_queries(20):  # 17 measured
        response = post(client, action="verify", code=world["coupon"].code, store=world["a"].pk, submission="x")
    assert response.status_code == 302


def test_an_amount_with_thousands_separators_is_read_as_written(client, world):
    member = world["member"]
    client.force_login(world["clerk"])
    body = {"action": "order", "member_number": member.member_number, "store": world["a"].pk, "number": "A-9"}
    response = post(client, **body, amount="¥1,280.50")
    assert response.status_code == 302
    assert Order.objects.get(number="A-9").amount == Decimal("1280.50")

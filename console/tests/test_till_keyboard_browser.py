"""A clerk's whole flow at the till with the keyboard only (docs/till.md): sign in, scan the
member card's rotating code, record an order paid partly with points, refund part of it
(the confirmation in the page: Esc cancels, Enter confirms), verify a coupon (the same
dialog). In English and Chinese; screenshots at 1280 and 375 px go to ``ARTIFACTS_DIR``.
"""

import os
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from console.tests.test_till_browser import CHROMIUM, _shot
from loyalty.models import Order, Refund
from loyalty.services import order_earn, points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.member_code import member_code_issue
from members.models import StaffProfile
from members.scoping import STORE_MANAGER
from rewards.models import Coupon
from rewards.tests.factories import CouponFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "not-a-real-password-42"
GROUPED = re.compile(r"\d{1,3}(,\d{3})+")
# Words of the till's own English strings that must not show on the Chinese page.
ENGLISH = ("Record an order", "points available", "Usable coupons", "Refund an order", "New balance", "Look up")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()


@pytest.fixture
def counter(django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # a quick sign-in
    call_command("setup_roles")
    store = StoreFactory(code="sh001", name="静安店")
    member = MemberFactory(phone="+8613800138000", name="林小雨", home_store=store)
    points_award(member=member, currency="points", amount=12_500, reason="welcome", idempotency_key="w")
    order_earn(member=member, store=store, number="SH-0", amount="1234.50")
    coupon = CouponFactory(member=member, title="拿铁券", kind=Coupon.Kind.GIFT, value=0)
    # At the counter: a store manager, who may also refund (a clerk's role may not).
    clerk = django_user_model.objects.create_user("counter", password=PASSWORD, is_staff=True)
    clerk.groups.add(Group.objects.get(name=STORE_MANAGER))
    StaffProfile.objects.create(user=clerk).stores.set([store])
    return {"store": store, "member": member, "coupon": coupon}


def focused(page) -> str:
    return page.evaluate("document.activeElement ? document.activeElement.id || document.activeElement.name : ''")


@pytest.mark.parametrize("lang", ["en", "zh-hans"])
def test_a_clerks_whole_flow_with_the_keyboard_only(browser, live_server, counter, lang):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale=lang, extra_http_headers={"Accept-Language": lang}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    keys = page.keyboard

    # Sign in (the sign-in page is not the till's): the name, Tab, the password, Enter.
    page.goto(f"{live_server.url}/admin/login/?next=/admin/till/")
    page.locator("#id_username").focus()
    keys.type("counter")
    keys.press("Tab")
    keys.type(PASSWORD)
    keys.press("Enter")
    page.wait_for_url("**/admin/till/")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'till-q'")
    assert page.locator("#nav-sidebar, #nav-sidebar-wrapper, aside").count() == 0  # full screen
    small = page.evaluate(
        """() => [...document.querySelectorAll('#till button, #till input[type=text], #till-top a')]
            .filter(e => e.offsetParent !== null)
            .map(e => e.getBoundingClientRect())
            .filter(r => r.height < 44).length"""
    )
    assert small == 0, "every target is at least 44 px high"

    # Scan the member card's rotating code (a scanner types it and presses Enter).
    keys.type(member_code_issue(counter["member"]).code)
    keys.press("Enter")
    page.wait_for_url("**/admin/till/?q=*")
    assert "林小雨" in page.locator("#till-member").inner_text()
    assert page.locator("#till-points").inner_text() == "12,500"
    assert focused(page) == "till-number"  # the focus lands on the next field
    if lang == "zh-hans":
        text = page.locator("#till").inner_text()
        assert not [word for word in ENGLISH if word in text]

    # The order: number, Enter, amount, Enter, points, Enter sends it.
    keys.type("SH-100")
    keys.press("Enter")
    assert focused(page) == "till-amount"
    keys.type("1280.50")
    keys.press("Enter")
    assert focused(page) == "till-points-pay"
    keys.type("2000")
    assert "¥20.00" in page.locator("#till-points-hint").inner_text()  # what the points pay, live
    _shot(page, f"till-keys-1280-{lang}-order-typed")
    keys.press("Enter")
    page.wait_for_url("**done=order*")
    order = Order.objects.get(number="SH-100")
    assert order.channel == Order.Channel.STORE and order.points_paid_amount == Decimal("20.00")
    message = page.locator(".messagelist .success").inner_text()
    assert "SH-100" in message and "¥20.00" in message and GROUPED.search(message)
    assert page.locator("#till-points").inner_text() == "10,500"
    assert page.locator("#till-new-balance").is_visible()
    assert focused(page) == "till-q"  # ready for the next customer
    _shot(page, f"till-keys-1280-{lang}-order-with-points")

    # A partial refund: Alt+R, the amount, Enter asks in the page; Esc cancels, nothing changes.
    keys.press("Alt+KeyR")
    assert page.evaluate("document.activeElement.closest('li').dataset.order") == "SH-100"
    keys.type("500")
    keys.press("Enter")
    dialog = page.locator("#till-confirm")
    dialog.wait_for(state="visible")
    assert "¥500.00" in dialog.inner_text() and "SH-100" in dialog.inner_text()
    assert focused(page) == "till-confirm-ok"
    _shot(page, f"till-keys-1280-{lang}-refund-confirm")
    keys.press("Escape")
    dialog.wait_for(state="hidden")
    assert not Refund.objects.exists()
    assert page.evaluate("document.activeElement.name") == "refund_amount"
    keys.press("Enter")
    dialog.wait_for(state="visible")
    keys.press("Enter")
    page.wait_for_url("**done=refund*")
    refund = Refund.objects.get()
    assert refund.amount == Decimal("500.00") and refund.order.number == "SH-100"
    assert Order.objects.get(number="SH-100").status == Order.Status.PARTIALLY_REFUNDED
    message = page.locator(".messagelist .success").inner_text()
    assert "¥500.00" in message and "SH-100" in message
    _shot(page, f"till-keys-1280-{lang}-refunded")

    # Verify the coupon: Alt+C, Enter asks, Enter confirms.
    keys.press("Alt+KeyC")
    assert page.evaluate("document.activeElement.dataset.coupon") == counter["coupon"].code
    keys.press("Enter")
    dialog.wait_for(state="visible")
    assert "拿铁券" in dialog.inner_text()
    keys.press("Enter")
    page.wait_for_url("**done=verify*")
    assert Coupon.objects.get(pk=counter["coupon"].pk).status == Coupon.Status.USED
    assert counter["coupon"].code in page.locator(".messagelist .success").inner_text()
    assert page.locator("#till-coupons li").count() == 0
    _shot(page, f"till-keys-1280-{lang}-verified")

    # Esc in a half-filled form clears it and goes back to the lookup box.
    keys.press("Alt+KeyO")
    keys.type("SH-101")
    keys.press("Escape")
    assert focused(page) == "till-q" and page.locator("#till-number").input_value() == ""

    # The same screen on a phone-sized tablet: one column, nothing wider than the screen.
    page.set_viewport_size({"width": 375, "height": 812})
    page.goto(f"{live_server.url}/admin/till/?q={counter['member'].member_number}")
    page.wait_for_selector("#till-member")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width}px wide at 375px"
    _shot(page, f"till-keys-375-{lang}-member")
    keys.press("Alt+KeyR")
    keys.press("Enter")  # empty: all that is left
    dialog.wait_for(state="visible")
    assert "¥780.50" in dialog.inner_text()  # 1,280.50 - 500 left on SH-100
    _shot(page, f"till-keys-375-{lang}-refund-confirm")
    keys.press("Escape")
    context.close()

"""The till screen in a real browser: a clerk signs in to the admin, opens the till, types
a phone number, records an order, sees the new balance and verifies a coupon.

Screenshots at 1280 px and 768 px go to ``ARTIFACTS_DIR`` (default ``var/artifacts/``).
Run only these: ``pytest -m browser``.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command

from loyalty.models import Order
from loyalty.services import points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import StaffAction, StaffProfile
from members.scoping import CLERK
from rewards.models import Coupon
from rewards.tests.factories import CouponFactory

# Playwright's sync API runs an event loop in this thread; Django's ORM calls in the
# same test are then refused as "async unsafe" unless told otherwise.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "not-a-real-password-42"


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("ARTIFACTS_DIR") or Path(settings.BASE_DIR) / "var" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()


def _shot(page, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def till(django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # a quick sign-in
    call_command("setup_roles")
    store = StoreFactory(code="sh001", name="Jing'an")
    member = MemberFactory(
        phone="+8613800138000", name="林小雨", home_store=StoreFactory(code="bj001", name="Chaoyang")
    )
    points_award(member=member, currency="points", amount=300, reason="welcome", idempotency_key="welcome")
    coupon = CouponFactory(member=member, title="Latte voucher", kind=Coupon.Kind.GIFT, value=0)
    CouponFactory(member=member, title="¥20 off your next order", value=20)
    clerk = django_user_model.objects.create_user("clerk", password=PASSWORD, is_staff=True)
    clerk.groups.add(Group.objects.get(name=CLERK))
    StaffProfile.objects.create(user=clerk).stores.set([store])
    return {"store": store, "member": member, "coupon": coupon, "clerk": clerk}


def test_a_clerk_records_an_order_and_verifies_a_coupon(browser, live_server, till):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en", extra_http_headers={"Accept-Language": "en"}
    )
    context.set_default_timeout(10_000)
    page = context.new_page()

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "clerk")
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url("**/admin/till/")  # a clerk lands on the till
    assert page.evaluate("document.activeElement.id") == "till-q"  # a scanner can type at once

    page.keyboard.type("138 0013 8000")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/till/?q=*")
    assert "林小雨" in page.locator("#till-member").inner_text()
    assert "138****8000" in page.locator("#till-member").inner_text()
    assert page.locator("#till-points").inner_text() == "300"
    assert page.locator("#till-coupons li").count() == 2
    _shot(page, "till-1280-member")

    page.fill("#till-number", "SH-0001")
    page.fill("#till-amount", "128.50")
    page.get_by_role("button", name="Record order at Jing'an").click()
    page.wait_for_load_state()
    message = page.locator(".messagelist .success").inner_text()
    assert "Order SH-0001 recorded at Jing'an: 128 points earned" in message
    assert "New balance: 300 points available, 128 pending; growth " in message
    assert page.locator("#till-pending").inner_text() == "128"
    assert Order.objects.get(number="SH-0001").store == till["store"]
    _shot(page, "till-1280-order-recorded")

    latte = page.locator("#till-coupons li", has_text="Latte voucher")
    latte.get_by_role("button", name="Verify").click()
    # The confirmation is a dialog in the page (not window.confirm).
    page.locator("#till-confirm").wait_for(state="visible")
    assert "Latte voucher" in page.locator("#till-confirm").inner_text()
    page.locator("#till-confirm-ok").click()
    page.wait_for_url("**done=verify*")
    assert "Coupon “Latte voucher”" in page.locator(".messagelist .success").inner_text()
    assert page.locator("#till-coupons li").count() == 1
    assert Coupon.objects.get(pk=till["coupon"].pk).status == Coupon.Status.USED
    assert StaffAction.objects.filter(actor=till["clerk"]).count() == 2
    _shot(page, "till-1280-coupon-verified")

    # The used coupon scanned again: its panel says when and where, and nothing changes.
    page.locator("#till-q").fill(till["coupon"].code)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/admin/till/?q={till['coupon'].code}")
    assert "Used on" in page.locator("#till-coupon-status").inner_text()
    assert page.locator("#till-verify-found").count() == 0
    _shot(page, "till-1280-coupon-scanned")

    page.set_viewport_size({"width": 768, "height": 1000})
    page.goto(f"{live_server.url}/admin/till/?q=13800138000")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 768, f"the page is {width}px wide at 768px"
    _shot(page, "till-768-member")
    context.close()

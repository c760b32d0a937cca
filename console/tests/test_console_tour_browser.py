"""The staff console as people use it, in Chromium, in both languages: the till's whole
flow (find the member, an order paid partly with points, a refund, a verified coupon), a
manager's drill-down from a dashboard cohort cell to the member list, and the member 360
page with its timeline and the adjustment's balance-after preview. Screenshots at 375 and
1280 px in English and Chinese go to ``ARTIFACTS_DIR``."""

import os

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from console.tests.test_till_browser import CHROMIUM, _shot
from loyalty.models import Order
from loyalty.services import order_earn, points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import StaffProfile
from members.scoping import STORE_MANAGER
from rewards.models import Coupon
from rewards.tests.factories import CouponFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "not-a-real-password-42"
LANGS = ("en", "zh-hans")


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
def shop(django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("setup_roles")
    store = StoreFactory(code="sh001", name="静安店")
    member = MemberFactory(phone="+8613800138000", name="林小雨", home_store=store)
    points_award(member=member, currency="points", amount=12_500, reason="welcome", idempotency_key="w")
    order_earn(member=member, store=store, number="SH-0", amount="1234.50")
    CouponFactory(member=member, title="拿铁券", kind=Coupon.Kind.GIFT, value=0)
    manager = django_user_model.objects.create_user("manager", password=PASSWORD, is_staff=True)
    manager.groups.add(Group.objects.get(name=STORE_MANAGER))
    StaffProfile.objects.create(user=manager).stores.set([store])
    django_user_model.objects.create_superuser("boss", password=PASSWORD)
    return {"store": store, "member": member}


def _page(browser, live_server, username, *, lang="en", width=1280):
    context = browser.new_context(
        viewport={"width": width, "height": 900}, locale=lang, extra_http_headers={"Accept-Language": lang}
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_load_state()
    return page


def test_the_till_flow_order_with_points_refund_and_verify(browser, live_server, shop):
    page = _page(browser, live_server, "manager")
    page.goto(f"{live_server.url}/admin/till/")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'till-q'")
    assert page.locator("#nav-sidebar, #nav-sidebar-wrapper, aside").count() == 0  # full screen
    page.keyboard.type("138 0013 8000")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/till/?q=*")
    assert page.locator("#till-points").inner_text() == "12,500"  # the order's points are pending

    # Keyboard only: order number, amount, points to pay, Enter.
    page.locator("#till-number").focus()
    page.keyboard.type("SH-1")
    page.keyboard.press("Tab")
    page.keyboard.type("300")
    page.keyboard.press("Tab")
    page.keyboard.type("1000")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/till/?q=*")
    success = page.locator(".messagelist .success").inner_text()
    assert "SH-1" in success
    order = Order.objects.get(number="SH-1")
    assert order.points_paid_amount > 0
    _shot(page, "tour-till-1280-en-order-with-points")

    page.locator("#till-refunds li", has_text="SH-1").get_by_role("button").click()
    page.locator("#till-confirm-ok").click()  # the confirmation dialog in the page
    page.wait_for_url("**done=refund*")
    assert "SH-1" in page.locator(".messagelist .success").inner_text()
    assert Order.objects.get(number="SH-1").status == Order.Status.REFUNDED

    page.locator("#till-coupons li", has_text="拿铁券").get_by_role("button").click()
    page.locator("#till-confirm-ok").click()
    page.wait_for_url("**done=verify*")
    assert Coupon.objects.get(title="拿铁券").status == Coupon.Status.USED
    _shot(page, "tour-till-1280-en-after-refund-and-verify")
    page.context.close()

    for lang in LANGS:
        for width in (375, 1280):
            page = _page(browser, live_server, "manager", lang=lang, width=width)
            page.goto(f"{live_server.url}/admin/till/?q={shop['member'].member_number}")
            page.wait_for_selector("#till-member")
            _shot(page, f"tour-till-{width}-{lang}")
            page.context.close()


def test_a_manager_drills_down_from_a_cohort_cell_to_the_member_list(browser, live_server, shop):
    for lang in LANGS:
        page = _page(browser, live_server, "manager", lang=lang)
        page.wait_for_url("**/admin/dashboard/")
        cell = page.locator("table.cohorts td.share a").first
        cell.click()  # the drill-down dialog: open the member list (or save as a segment)
        page.click("#drill-open")
        page.wait_for_url("**/admin/members/member/?rules=*")
        rows = page.locator("#result_list tbody tr")
        expect_name(rows.first, "林小雨")
        _shot(page, f"tour-dashboard-drilldown-1280-{lang}")
        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(f"{live_server.url}/admin/dashboard/")
            page.wait_for_selector("#dashboard-scope")
            _shot(page, f"tour-dashboard-{width}-{lang}")
        page.context.close()


def expect_name(locator, name: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_contain_text(name)


def test_the_member_360_page_and_the_adjustment_preview(browser, live_server, shop):
    from playwright.sync_api import expect

    member = shop["member"]
    for lang in LANGS:
        for width in (375, 1280):
            page = _page(browser, live_server, "boss", lang=lang, width=width)
            page.goto(f"{live_server.url}/admin/members/member/{member.pk}/change/")
            expect(page.locator("#member-card")).to_contain_text("林小雨")
            expect(page.locator("#member-timeline")).to_contain_text("SH-0")
            expect(page.locator("#member-card-points")).to_have_text("12,500")
            _shot(page, f"tour-member-{width}-{lang}")
            page.context.close()
    page = _page(browser, live_server, "boss")
    page.goto(f"{live_server.url}/admin/members/member/{member.pk}/change/")
    page.locator("#member-actions a", has_text="Adjust points").click()
    page.wait_for_url("**/adjust/")
    page.fill("#id_amount", "-734")
    expect(page.locator("#balance-after")).to_have_text("After this adjustment: 11,766 points available.")
    _shot(page, "tour-member-adjust-preview-1280-en")
    page.context.close()

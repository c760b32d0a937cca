"""The themed console in a real browser: a store manager signs in, lands on their stores'
dashboard and drills down from a lifecycle stage to the member list filtered to it; a
manager refunds an order at the till. Screenshots go to ``ARTIFACTS_DIR``
(default ``var/artifacts/``). Run only these: ``pytest -m browser``.
"""

import os

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from console.tests.test_till_browser import CHROMIUM, _shot
from loyalty.models import Order
from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, StaffProfile
from members.scoping import STORE_MANAGER

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "not-a-real-password-42"


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
def manager(django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("setup_roles")
    store = StoreFactory(code="sh001", name="Jing'an")
    mature = MemberFactory(phone="+8613800138000", name="林小雨", home_store=store)
    Member.objects.filter(pk=mature.pk).update(stage="mature")
    MemberFactory(phone="+8613800138001", name="王芳", home_store=store)
    order_earn(member=mature, store=store, number="SH-1", amount="128")
    user = django_user_model.objects.create_user("manager", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=STORE_MANAGER))
    StaffProfile.objects.create(user=user).stores.set([store])
    return {"store": store, "member": mature}


def _sign_in(browser, live_server):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en", extra_http_headers={"Accept-Language": "en"}
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")
    return page


def test_a_manager_lands_on_the_dashboard_and_drills_down_to_members(browser, live_server, manager):
    page = _sign_in(browser, live_server)
    page.wait_for_url("**/admin/dashboard/")
    assert "Jing'an" in page.locator("#dashboard-scope").inner_text()
    page.locator('#funnel-table tr[data-stage="mature"] a').click()
    page.wait_for_url("**/admin/members/member/?stage__exact=mature")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and "林小雨" in rows.first.inner_text()
    _shot(page, "console-1280-dashboard-drilldown")


def test_a_manager_refunds_an_order_at_the_till(browser, live_server, manager):
    page = _sign_in(browser, live_server)
    page.wait_for_url("**/admin/dashboard/")
    page.goto(f"{live_server.url}/admin/till/?q={manager['member'].member_number}")
    page.locator("#till-refunds li", has_text="SH-1").get_by_role("button", name="Refund").click()
    page.locator("#till-confirm-ok").click()  # "Refund ¥128.00 of order SH-1? ...", in the page
    page.wait_for_url("**done=refund*")
    assert "Refunded ¥128.00 of order SH-1" in page.locator(".messagelist .success").inner_text()
    assert Order.objects.get(number="SH-1").status == Order.Status.REFUNDED
    _shot(page, "console-1280-till-refund")

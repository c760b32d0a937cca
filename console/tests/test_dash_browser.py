"""The dashboard in Chromium, in both languages: a store manager picks a period, opens an
RFM cell's drill-down dialog and lands on the member list filtered to exactly those
members; a brand admin saves a cohort cell as a segment. Screenshots of the dashboard, the
dialog, the member list, the FAST panel and the segment form at 375 and 1280 px go to
``ARTIFACTS_DIR``; no page is wider than the screen."""

import datetime as dt
import os

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.utils import timezone

from console.tests.test_till_browser import CHROMIUM, _shot
from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, Segment, StaffProfile, StageChange
from members.scoping import STORE_MANAGER

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
    """Two stores; at Jing'an three R5 F4 members (two buyers) and one R1 F1; at Xuhui one R5 F4."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("setup_roles")
    jingan = StoreFactory(code="sh001", name="静安店")
    xuhui = StoreFactory(code="sh002", name="徐汇店")
    now = timezone.now()
    names = ("林小雨", "王大明", "陈静", "赵一")
    members = [MemberFactory(name=name, home_store=jingan) for name in names]
    outsider = MemberFactory(name="周外店", home_store=xuhui)
    for member in (*members[:3], outsider):
        Member.objects.filter(pk=member.pk).update(rfm_recency=5, rfm_frequency=4, rfm_monetary=4, stage="growing")
    Member.objects.filter(pk=members[3].pk).update(rfm_recency=1, rfm_frequency=1, rfm_monetary=1, stage="dormant")
    for n, member in enumerate(members[:2]):
        order_earn(
            member=member, store=jingan, number=f"SH-{n}", amount="1234.50", occurred_at=now - dt.timedelta(hours=2)
        )
    StageChange.objects.create(member=members[0], from_stage="new", to_stage="growing", changed_at=now)
    manager = django_user_model.objects.create_user("manager", password=PASSWORD, is_staff=True)
    manager.groups.add(Group.objects.get(name=STORE_MANAGER))
    StaffProfile.objects.create(user=manager).stores.set([jingan])
    boss = django_user_model.objects.create_user("boss", password=PASSWORD, is_staff=True, is_superuser=True)
    boss.user_permissions.add(Permission.objects.get(codename="add_segment"))
    return {"jingan": jingan, "members": members, "outsider": outsider}


def _page(browser, live_server, username, *, lang="en", width=1280):
    context = browser.new_context(
        viewport={"width": width, "height": 900}, locale=lang, extra_http_headers={"Accept-Language": lang}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_load_state()
    return page


def _fits(page) -> None:
    """Nothing wider than the screen: wide tables scroll inside their own box."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow}px wider than the screen at {page.url}"


def test_a_manager_drills_down_from_an_rfm_cell_to_the_member_list(browser, live_server, shop):
    from playwright.sync_api import expect

    for lang in LANGS:
        page = _page(browser, live_server, "manager", lang=lang)
        page.goto(f"{live_server.url}/admin/dashboard/")
        page.select_option("#id_period", "90d")
        page.click(".dash-show")
        page.wait_for_url("**/admin/dashboard/?period=90d*")
        cell = page.locator('#rfm-grid a[title="R5 F4"]')
        expect(cell).to_have_text("3")  # the outsider is Xuhui's
        cell.click()
        dialog = page.locator("#drill-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#drill-title")).to_have_text("R5 F4")
        expect(page.locator("#drill-save")).to_have_count(0)  # a store manager may not add segments
        _shot(page, f"dash-drill-dialog-1280-{lang}")
        page.click("#drill-open")
        page.wait_for_url("**/admin/members/member/?rules=*")
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(3)
        for member in shop["members"][:3]:
            expect(page.locator("#result_list")).to_contain_text(member.name)
        expect(page.locator("#result_list")).not_to_contain_text("周外店")
        _shot(page, f"dash-drill-member-list-1280-{lang}")
        page.context.close()


def test_a_brand_admin_saves_a_figure_as_a_segment(browser, live_server, shop):
    from playwright.sync_api import expect

    page = _page(browser, live_server, "boss")
    page.goto(f"{live_server.url}/admin/dashboard/?store={shop['jingan'].pk}")
    page.locator("#buyers").click()
    expect(page.locator("#drill-save")).to_be_visible()
    page.fill("#drill-name", "Jing'an buyers, 30 days")
    page.click("#drill-save button[type=submit]")
    page.wait_for_url("**/admin/members/segment/*/change/")
    segment = Segment.objects.get(name="Jing'an buyers, 30 days")
    assert segment.rules["stores"] == ["sh001"] and "bought_from" in segment.rules
    expect(page.locator("#segment-sample")).to_contain_text(shop["members"][0].name)
    _shot(page, "dash-saved-segment-1280-en")
    page.context.close()


def test_screenshots_at_375_and_1280_in_both_languages(browser, live_server, shop):
    for lang in LANGS:
        for width in (375, 1280):
            page = _page(browser, live_server, "boss", lang=lang, width=width)
            for name, path, ready in (
                ("dashboard", "/admin/dashboard/", "#dashboard-scope"),
                ("dashboard-90d", "/admin/dashboard/?period=90d", "#rfm-grid"),
                ("fast", "/admin/fast/", "#fast-summary"),
                ("segment-form", "/admin/members/segment/add/", "#id_channels"),
            ):
                page.goto(f"{live_server.url}{path}")
                page.wait_for_selector(ready)
                page.wait_for_load_state("networkidle")
                if name != "segment-form":  # the admin's own form is the theme's, not ours to fit
                    _fits(page)
                _shot(page, f"dash-{name}-{width}-{lang}")
            page.context.close()

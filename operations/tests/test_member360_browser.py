"""The member 360 page in a real browser (Playwright driving Debian's Chromium), at 375 and
1280 px in English and Chinese: the header card, the timeline and lots tabs, no sideways
scrolling of the page on a phone, table columns that keep dates on one line, a compact
page; then the profile form at ?edit=1 and an adjustment with its balance-after preview.

Screenshots go to ``ARTIFACTS_DIR`` (default ``var/artifacts/``) as ``member360-*.png``.
Run only these: ``pytest -m browser operations/tests/test_member360_browser.py``.
"""

import datetime as dt
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from loyalty.models import Lot
from loyalty.services import order_earn, points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member
from members.services import member_set_consent, member_tags_add
from rewards.tests.factories import CouponFactory

# Playwright's sync API runs an event loop in this thread; Django's ORM calls in the same
# test are then refused as "async unsafe" unless told otherwise.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "not-a-real-password-42"
LANGS = ("en", "zh-hans")
WIDTHS = (375, 1280)


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("ARTIFACTS_DIR") or Path(settings.BASE_DIR) / "var" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shot(page, name: str) -> None:
    page.screenshot(path=str(artifacts_dir() / f"member360-{name}.png"), full_page=True)


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
def member(django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # a quick sign-in
    boss = django_user_model.objects.create_superuser("boss", password=PASSWORD)
    store = StoreFactory(code="sh001", name="静安店")
    member = MemberFactory(phone="+8613800138000", name="林小雨", home_store=store)
    points_award(member=member, currency="points", amount=12_500, reason="welcome", idempotency_key="w")
    for n in range(24):
        order_earn(member=member, store=store, number=f"SH-{n:02d}", amount=f"{88 + n * 37}.50")
    soon = timezone.now() + dt.timedelta(days=12)
    Lot.objects.filter(member=member, currency="points", pending=False).update(expires_at=soon)
    CouponFactory(member=member, title="拿铁券")
    member_tags_add(members=[member], tags=["VIP", "咖啡常客"], actor=boss, reason="regular")
    member_set_consent(member=member, channel="sms", granted=True, source="web")
    Member.objects.filter(pk=member.pk).update(stage=Member.Stage.MATURE, rfm_segment="champions")
    return member


def open_page(browser, live_server, *, lang: str, width: int):
    context = browser.new_context(
        viewport={"width": width, "height": 900}, locale=lang, extra_http_headers={"Accept-Language": lang}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_load_state()
    return page


def test_the_member_360_page_at_375_and_1280_px_in_both_languages(browser, live_server, member):
    from playwright.sync_api import expect

    url = f"{live_server.url}/admin/members/member/{member.pk}/change/"
    for lang in LANGS:
        for width in WIDTHS:
            page = open_page(browser, live_server, lang=lang, width=width)
            page.goto(url)
            expect(page.locator("#member-card")).to_contain_text("林小雨")
            expect(page.locator("#member-card-phone")).to_have_text("+86138****8000")
            expect(page.locator("#member-card-points")).to_have_text("12,500")
            expect(page.locator("#member-card-tags")).to_contain_text("咖啡常客")
            expect(page.locator("#member-timeline")).to_be_visible()
            expect(page.locator("#member-lots")).to_be_hidden()  # one tab at a time
            expect(page.locator("#member-timeline tbody tr")).to_have_count(20)
            expect(page.locator("#member-timeline")).to_contain_text("SH-23")
            # The page never scrolls sideways, and is compact (not ~10,000 px of inlines).
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
            assert page.evaluate("document.documentElement.scrollHeight") < (4200 if width < 640 else 2400)
            # Dates stay on one line: no column squeezed to a character a line.
            heights = page.eval_on_selector_all("#member-timeline time", "els => els.map(e => e.offsetHeight)")
            line = page.eval_on_selector("#member-timeline time", "e => parseFloat(getComputedStyle(e).lineHeight)")
            assert heights and max(heights) < 1.6 * line, heights
            if width >= 1280:
                what = page.eval_on_selector("#member-timeline td.m360-what", "e => e.getBoundingClientRect().width")
                assert what >= 200
            shot(page, f"{width}-{lang}")

            page.locator("#tab-lots").click()
            expect(page.locator("#member-lots")).to_be_visible()
            expect(page.locator("#member-timeline")).to_be_hidden()
            lots = page.locator("#member-lots")
            expect(lots).to_contain_text("12,500 / 12,500" if lang == "zh-hans" else "12,500 of 12,500")
            expect(lots).to_contain_text("到期" if lang == "zh-hans" else "expires")
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
            shot(page, f"lots-{width}-{lang}")
            page.context.close()

    # The timeline's second page, opened from the pager, keeps the timeline tab.
    page = open_page(browser, live_server, lang="zh-hans", width=1280)
    page.goto(url)
    page.locator("#member-timeline a[rel=next]").click()
    page.wait_for_url("**timeline=2*")
    expect(page.locator("#timeline-page")).to_have_text("第 2 页")
    expect(page.locator("#member-timeline tbody tr").first).to_be_visible()
    page.context.close()


def test_edit_the_profile_and_adjust_points_from_the_page(browser, live_server, member):
    from playwright.sync_api import expect

    page = open_page(browser, live_server, lang="en", width=1280)
    page.goto(f"{live_server.url}/admin/members/member/{member.pk}/change/")
    page.locator("#member-edit").click()
    page.wait_for_url("**?edit=1")
    page.fill("#id_name", "林小雨 (VIP)")
    shot(page, "edit-1280-en")
    page.locator("[name=_save]").click()
    page.wait_for_url(f"**/members/member/{member.pk}/change/")
    expect(page.locator("#member-card h2")).to_contain_text("林小雨 (VIP)")

    page.locator("#member-actions a", has_text="Adjust points").click()
    page.wait_for_url("**/adjust/")
    page.fill("#id_amount", "-734")
    expect(page.locator("#balance-after")).to_have_text("After this adjustment: 11,766 points available.")
    page.fill("#id_reason", "till mistake")
    shot(page, "adjust-1280-en")
    page.locator("[name=apply]").click()
    page.wait_for_url(f"**/members/member/{member.pk}/change/")
    expect(page.locator("#member-card-points")).to_have_text("11,766")
    expect(page.locator("#member-timeline tbody tr").first).to_contain_text("till mistake")
    page.context.close()

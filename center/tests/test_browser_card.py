"""The member code in a real browser: the member opens their card, a clerk types the code
at the till and sees the member; an expired code is refused there. Screenshots of home,
card code, rewards and history at 375 and 1280 px in English and Chinese go to
``ARTIFACTS_DIR`` (default ``var/artifacts/``). Run only these: ``pytest -m browser``.
"""

import datetime as dt
import os

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from center.services import member_user_for_sign_in
from center.tests.data import award, earn
from center.tests.test_browser import CHROMIUM, artifacts_dir
from loyalty.models import Currency, MemberTier
from loyalty.services import lots_release_matured
from members.member_code import member_code_issue
from members.models import StaffProfile
from members.scoping import CLERK
from rewards.models import Coupon, Reward

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "not-a-real-password-42"
VIEWPORTS = {375: (375, 812), 1280: (1280, 900)}


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
def world(member, tiers, store, django_user_model, settings, tmp_path):
    """A member with an order history and a mall with pictures; a clerk at the store."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The live server serves static files, not uploads: the rewards' pictures (ours, under
    # static/center/rewards/) are read from there.
    settings.MEDIA_URL = "/static/center/"
    call_command("setup_roles")
    now = timezone.now()
    member.name = "林小雨"
    member.save()
    MemberTier.objects.create(
        member=member,
        tier=tiers["silver"],
        started_at=now - dt.timedelta(days=200),
        review_at=now + dt.timedelta(days=165),
    )
    award(member, 1680, at=now - dt.timedelta(days=60))
    award(member, 1450, currency=Currency.GROWTH, at=now - dt.timedelta(days=60))
    earn(member, store, "SHJA-20261020-0017", "268.00", at=now - dt.timedelta(days=40))
    lots_release_matured(now=now)
    earn(member, store, "SHJA-20261130-0042", "128.00", at=now - dt.timedelta(days=2))
    mall = [
        ("Latte voucher", "coffee", "food_drink", 300, "gift", 0),
        ("¥50 voucher", "voucher-50", "vouchers", 5000, "amount_off", 50),
        ("10% off one order", "ten-off", "vouchers", 800, "discount_percent", 10),
        ("Canvas tote bag", "tote", "lifestyle", 1500, "gift", 0),
        ("Fragrance sample set", "sample-set", "beauty", 800, "gift", 0),
        ("Two cinema tickets", "cinema", "experiences", 2000, "gift", 0),
    ]
    for position, (name, picture, category, cost, kind, value) in enumerate(mall):
        Reward.objects.create(
            name=name,
            image=f"rewards/{picture}.png",
            category=category,
            points_cost=cost,
            coupon_kind=kind,
            coupon_value=value,
            sort_order=position,
        )
    Coupon.objects.create(
        member=member, title="10% off one order", kind="discount_percent", value=10, source="staff",
        expires_at=now + dt.timedelta(days=12),
    )  # fmt: skip
    clerk = django_user_model.objects.create_user("clerk", password=PASSWORD, is_staff=True)
    clerk.groups.add(Group.objects.get(name=CLERK))
    StaffProfile.objects.create(user=clerk).stores.set([store])
    return {"member": member, "clerk": clerk}


def _member_page(browser, live_server, member, *, width: int, language: str):
    signed_in = Client()
    signed_in.force_login(member_user_for_sign_in(member=member))
    context = browser.new_context(
        viewport={"width": VIEWPORTS[width][0], "height": VIEWPORTS[width][1]},
        locale=language,
        extra_http_headers={"Accept-Language": language},
    )
    context.set_default_timeout(20_000)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": signed_in.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    return context.new_page()


def _shot(page, name: str) -> None:
    """The whole page with the viewport stretched to it, so the fixed tab bar sits at the bottom."""
    viewport = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": max(height, viewport["height"])})
    page.screenshot(path=str(artifacts_dir() / f"{name}.png"))
    page.set_viewport_size(viewport)


def _typed_code(page) -> str:
    return "".join(page.locator(".member-code__digits").inner_text().split())


def test_the_member_code_is_scanned_at_the_till(browser, live_server, world):
    member = world["member"]
    page = _member_page(browser, live_server, member, width=375, language="en")
    page.goto(f"{live_server.url}/me/")
    page.get_by_role("link", name="Show member code").click()
    page.wait_for_url("**/me/card/")
    assert page.locator(".barcode svg").is_visible() and page.locator(".qr svg").is_visible()
    code = _typed_code(page)
    assert code.startswith(member.member_number) and len(code) == 20
    # The page asks for a fresh code by itself (here: when it becomes visible again).
    with page.expect_response("**/me/card/code/") as fetched:
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    assert fetched.value.ok
    page.wait_for_function("document.querySelector('[data-member-code]').hasAttribute('data-code')")
    code = page.locator("[data-member-code]").get_attribute("data-code")
    assert _typed_code(page) == code
    page.context.close()

    till = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en")
    till.set_default_timeout(20_000)
    clerk = till.new_page()
    clerk.goto(f"{live_server.url}/admin/")
    clerk.fill("#id_username", "clerk")
    clerk.fill("#id_password", PASSWORD)
    clerk.click("[type=submit]")
    clerk.wait_for_url("**/admin/till/")
    clerk.locator("#till-q").fill(code)
    clerk.locator("#till-q").press("Enter")
    clerk.wait_for_url(f"**/admin/till/?q={code}")
    assert "林小雨" in clerk.locator("#till-member").inner_text()
    artifacts = artifacts_dir()
    clerk.screenshot(path=str(artifacts / "till-1280-member-code.png"), full_page=True)

    # A screenshot of an old code: refused, saying why.
    old = member_code_issue(member, now=timezone.now() - dt.timedelta(minutes=10)).code
    clerk.locator("#till-q").fill(old)
    clerk.locator("#till-q").press("Enter")
    clerk.wait_for_url(f"**/admin/till/?q={old}")
    expect(clerk.locator("body")).to_contain_text("This member code has expired")
    assert clerk.locator("#till-member").count() == 0
    till.close()


PAGES = [("home", "/me/"), ("card", "/me/card/"), ("rewards", "/me/rewards/"), ("history", "/me/history/")]


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("width", [375, 1280])
def test_screenshots_of_the_member_pages(browser, live_server, world, width, language):
    page = _member_page(browser, live_server, world["member"], width=width, language=language)
    for name, path in PAGES:
        page.goto(live_server.url + path)
        assert page.locator("html").get_attribute("lang") == language
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{path} is {overflow}px wide at {width}px"
        if name == "history":
            page.locator(".entry__detail summary").first.click()
        _shot(page, f"center-{width}-{language}-{name}")
    page.goto(live_server.url + "/me/coupons/")
    _shot(page, f"center-{width}-{language}-coupons")
    page.context.close()


def test_after_checking_in_the_card_is_below_the_sticky_bar(browser, live_server, world):
    page = _member_page(browser, live_server, world["member"], width=375, language="zh-hans")
    page.goto(f"{live_server.url}/me/")
    page.locator("#check-in button[type=submit]").click()
    page.wait_for_url("**/me/#check-in")
    expect(page.locator("#check-in .note--ok")).to_be_visible()
    card_top = page.evaluate("document.getElementById('check-in').getBoundingClientRect().top")
    bar_bottom = page.evaluate("document.querySelector('.topbar').getBoundingClientRect().bottom")
    assert card_top >= bar_bottom, (card_top, bar_bottom)
    # The week strip fits at 375 px: seven days, none cut off.
    strip = page.evaluate(
        "document.querySelector('.checkin-week').scrollWidth <= document.querySelector('.checkin-week').clientWidth"
    )
    assert strip
    _shot(page, "center-375-zh-hans-home-checked-in")
    page.context.close()

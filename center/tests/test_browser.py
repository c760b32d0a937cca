"""The member center in a real browser: Playwright driving Debian's Chromium.

Signs in with a one-time code (read from the test sender), looks at the home page,
redeems a reward and shows the coupon; screenshots at 375 px and 1280 px go to
``ARTIFACTS_DIR`` (default ``var/artifacts/``). Run only these: ``pytest -m browser``.
"""

import datetime as dt
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from center.tests.data import award, earn
from center.tests.helpers import last_code
from loyalty.models import Currency, MemberTier
from members.models import Notification
from rewards.models import Coupon, Reward

# Playwright's sync API runs an event loop in this thread; Django's ORM calls in the
# same test are then refused as "async unsafe" unless told otherwise.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
PHONE = {375: (375, 812), 1280: (1280, 900)}


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


def _page(browser, width: int, language: str = "en"):
    context = browser.new_context(
        viewport={"width": PHONE[width][0], "height": PHONE[width][1]},
        locale=language,
        extra_http_headers={"Accept-Language": language},
        device_scale_factor=1,
    )
    context.set_default_timeout(10_000)
    return context.new_page()


def _shot(page, name: str) -> Path:
    """The whole page as a phone shows it when scrolled: the viewport is stretched to the
    page's height, so the fixed tab bar sits at the bottom, not halfway down."""
    path = artifacts_dir() / f"{name}.png"
    viewport = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": max(height, viewport["height"])})
    page.screenshot(path=str(path))
    page.set_viewport_size(viewport)
    return path


@pytest.fixture
def demo(member, tiers, store, outbox):
    """A member with points, growth, a pending order, news, rewards and a coupon."""
    now = timezone.now()
    member.name = "林小雨"
    member.save()
    MemberTier.objects.create(
        member=member,
        tier=tiers["silver"],
        started_at=now - dt.timedelta(days=200),
        review_at=now + dt.timedelta(days=165),
    )
    award(member, 1680, at=now - dt.timedelta(days=20))
    award(member, 260, at=now - dt.timedelta(days=352))  # expires within 30 days
    award(member, 1450, currency=Currency.GROWTH, at=now - dt.timedelta(days=20))
    earn(member, store, "SHJA-20261120-0042", "128.00", at=now - dt.timedelta(days=2))
    Notification.objects.create(
        member=member,
        kind="tier_up",
        title="Welcome to Silver",
        body="With 1,450 growth you are now a Silver member. Your new benefits apply from today.",
        dedupe_key="demo:1",
    )
    rewards = [
        Reward.objects.create(
            name="Latte voucher",
            description="Any size latte at any of our stores.",
            points_cost=300,
            stock=48,
            coupon_kind="gift",
            sort_order=1,
        ),
        Reward.objects.create(
            name="¥20 off your next order",
            description="On orders over ¥100.",
            points_cost=800,
            coupon_kind="amount_off",
            coupon_value=20,
            sort_order=2,
        ),
        Reward.objects.create(
            name="Canvas tote bag",
            description="Natural cotton, our logo in red.",
            points_cost=1200,
            stock=0,
            sort_order=3,
        ),
        Reward.objects.create(
            name="Gold members' tasting",
            description="An evening of new-season beans.",
            points_cost=1500,
            min_tier=tiers["gold"],
            sort_order=4,
        ),
        Reward.objects.create(
            name="Ceramic pour-over set", description="Dripper, server and filters.", points_cost=6800, sort_order=5
        ),
    ]
    Coupon.objects.create(
        member=member,
        title="Birthday cake slice",
        kind="gift",
        source="staff",
        expires_at=now + dt.timedelta(days=12),
    )
    return {"member": member, "rewards": rewards}


def _sign_in(page, live_server, phone: str, *, width: int, screenshots: bool) -> None:
    page.goto(f"{live_server.url}/me/")
    assert "/me/sign-in/" in page.url
    if screenshots:
        _shot(page, f"{width}-sign-in")
    page.get_by_label("Mobile number").fill(phone.replace("+86", ""))
    page.get_by_role("button", name="Send me a code").click()
    page.wait_for_url("**/me/sign-in/code/")
    page.get_by_label("Verification code").fill(last_code(phone))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/me/")


def test_sign_in_with_a_code_redeem_and_show_the_coupon_on_a_phone(browser, live_server, demo):
    member = demo["member"]
    page = _page(browser, 375)

    _sign_in(page, live_server, member.phone, width=375, screenshots=True)

    card = page.locator(".member-card")
    assert "林小雨" in card.inner_text() and "Silver" in card.inner_text()
    assert "1,940" in card.inner_text()  # 1,680 + 260 points
    assert page.get_by_text("more growth to reach Gold").is_visible()
    assert page.locator(".tabbar").is_visible()
    _shot(page, "375-home")

    page.locator(".tabbar").get_by_role("link", name="Rewards").click()
    page.wait_for_url("**/me/rewards/")
    assert page.locator(".reward--unavailable").count() == 3  # sold out, tier, too few points
    _shot(page, "375-rewards")

    page.get_by_role("link", name="Redeem ¥20 off your next order").click()
    page.wait_for_url("**/redeem/")
    _shot(page, "375-redeem-confirm")
    page.get_by_role("button", name="Confirm and redeem").click()
    page.wait_for_url("**/me/redemptions/*/")

    coupon = Coupon.objects.get(member=member, source="redemption")
    assert page.locator(".coupon__code").inner_text().split()[-3:] == [
        coupon.code[:4],
        coupon.code[4:8],
        coupon.code[8:],
    ]
    assert page.locator(".qr svg").is_visible()
    _shot(page, "375-coupon")

    page.locator(".tabbar").get_by_role("link", name="Coupons").click()
    page.wait_for_url("**/me/coupons/")
    page.wait_for_load_state()
    assert page.locator(".coupon").count() == 2
    _shot(page, "375-coupons")
    for name, path in (("history", "/me/history/"), ("profile", "/me/profile/")):
        page.goto(live_server.url + path)
        _shot(page, f"375-{name}")
    page.context.close()


def test_desktop_layout_and_the_language_switch(browser, live_server, demo):
    member = demo["member"]
    page = _page(browser, 1280)
    _sign_in(page, live_server, member.phone, width=1280, screenshots=True)

    assert page.locator(".tabbar").is_hidden()
    assert page.locator(".topbar .nav").is_visible()
    _shot(page, "1280-home")
    for name, path in (
        ("history", "/me/history/"),
        ("rewards", "/me/rewards/"),
        ("coupons", "/me/coupons/"),
        ("profile", "/me/profile/"),
    ):
        page.goto(live_server.url + path)
        _shot(page, f"1280-{name}")

    page.locator(".lang").get_by_role("button", name="简体中文").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert page.url.endswith("/me/profile/")
    _shot(page, "1280-profile-zh-hans")
    page.context.close()


def test_keyboard_reaches_the_skip_link_and_the_code_form(browser, live_server, demo):
    page = _page(browser, 375)
    page.goto(f"{live_server.url}/me/sign-in/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.locator(".skip-link").is_visible()
    page.get_by_label("Mobile number").focus()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.context.close()

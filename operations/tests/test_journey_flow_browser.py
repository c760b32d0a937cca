"""The journey flow editor (static/admin/journeys/flow.js) in a real browser, in both languages.

An operator adds a wait, a branch and an action to a one-step journey with the editor's
buttons, moves them into order, saves, and finds the steps saved and drawn again after a
reload; an invalid step (a wait without days) comes back with the server's message and
nothing saved. Screenshots at 1280 and 375 px go to ``ARTIFACTS_DIR`` (default
``var/artifacts/``).
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext

from engagement.models import Broadcast, Journey, JourneyStep

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "not-a-real-password-42"
LANGUAGES = ["en", "zh-hans"]


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


@pytest.fixture(params=LANGUAGES)
def page(request, browser, live_server, django_user_model):
    language = request.param
    django_user_model.objects.create_superuser("operator", password=PASSWORD)
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, extra_http_headers={"Accept-Language": language}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    page.language = language
    yield page
    context.close()
    assert not errors, errors  # no script error on any page


def one_step_journey() -> Journey:
    journey = Journey.objects.create(name="Welcome series", trigger=Journey.Trigger.JOINED, is_marketing=False)
    JourneyStep.objects.create(journey=journey, position=1, action=Journey.Action.NOTIFY, message_title="Hello")
    return journey


def shoot(page, name: str) -> None:
    """The steps part of the page at 1280 px and at 375 px (a phone), in the page's language."""
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(100)
        page.locator("#steps-group").screenshot(
            path=str(artifacts_dir() / f"journey-flow-{name}-{page.language}-{width}.png")
        )
    page.set_viewport_size({"width": 1280, "height": 900})


def saved_steps(journey: Journey) -> list[tuple]:
    return [
        (s.position, s.kind, s.action, s.points, s.wait_days, s.wait_until, s.condition, s.else_step)
        for s in journey.steps.order_by("position", "variant")
    ]


def test_operator_adds_a_wait_a_branch_and_an_action_saves_and_finds_them_after_a_reload(page, live_server):
    journey = one_step_journey()
    url = f"{live_server.url}/admin/engagement/journey/{journey.pk}/change/"
    page.goto(url)
    assert page.locator(".flow-step").count() == 1
    assert page.locator(".flow-map .flow-map-step").count() == 1

    # An action at the end: 50 points.
    page.click(".flow-add-action")
    card = page.locator(".flow-step").last
    card.locator("[name$='-action']").select_option("award_points")
    card.locator("[name$='-points']").fill("50")
    # A wait of 3 days or until an order, added after it, moved up before it.
    page.click(".flow-add-wait")
    card = page.locator(".flow-step").last
    card.locator("[name$='-wait_days']").fill("3")
    card.locator("[name$='-wait_until']").select_option("order")
    card.locator(".flow-up").click()
    # A branch "ordered since entering", moved up before the points.
    page.click(".flow-add-branch")
    card = page.locator(".flow-step").last
    card.locator("[name$='-condition']").select_option("bought")
    card.locator(".flow-up").click()
    numbers = page.locator(".flow-map .flow-map-number").all_inner_texts()
    assert numbers == ["1", "2", "3", "4"]
    kinds = page.eval_on_selector_all(".flow-step", "rows => rows.map(r => r.dataset.flowKind)")
    assert kinds == ["action", "wait", "branch", "action"]
    # Only the fields of each kind show: the wait's card has no coupon fields.
    wait_card = page.locator(".flow-step").nth(1)
    assert wait_card.locator("[name$='-wait_days']").is_visible()
    assert not wait_card.locator("[name$='-coupon_title']").is_visible()
    # The branch's "otherwise": the later step, or the end.
    branch_card = page.locator(".flow-step").nth(2)
    options = branch_card.locator("select.flow-else option").evaluate_all("o => o.map(x => x.value)")
    assert options == ["", "4"]
    shoot(page, "edited")

    page.click("[name=_continue]")
    page.wait_for_load_state()
    assert saved_steps(journey) == [
        (1, "action", "notify", None, None, "", "", None),
        (2, "wait", "", None, 3, "order", "", None),
        (3, "branch", "", None, None, "", "bought", None),
        (4, "action", "award_points", 50, None, "", "", None),
    ]

    page.goto(url)
    assert page.locator(".flow-step").count() == 4
    texts = page.locator(".flow-map .flow-map-text").all_inner_texts()
    with translation.override(page.language):
        assert gettext("award points") in texts[3] and "50" in texts[3]
        assert gettext("ordered since entering the journey") in texts[2]
    assert "3" in texts[1]
    shoot(page, "saved")

    # Moving the points before the branch and removing the wait: the numbers follow.
    page.locator(".flow-step").nth(1).locator(".flow-remove").click()
    page.locator(".flow-step").nth(3).locator(".flow-up").click()
    page.click("[name=_continue]")
    page.wait_for_load_state()
    assert [(s[0], s[1], s[2] or s[6]) for s in saved_steps(journey)] == [
        (1, "action", "notify"),
        (2, "action", "award_points"),
        (3, "branch", "bought"),
    ]


def test_an_invalid_step_shows_the_servers_error_and_saves_nothing(page, live_server):
    journey = one_step_journey()
    before = saved_steps(journey)
    page.goto(f"{live_server.url}/admin/engagement/journey/{journey.pk}/change/")

    page.click(".flow-add-wait")  # no days
    page.click(".flow-add-branch")
    page.locator(".flow-step").last.locator("[name$='-condition']").select_option("in_segment")  # no segment
    page.click("[name=_continue]")
    page.wait_for_load_state()

    with translation.override(page.language):
        no_days = gettext("A wait needs a number of days (1 or more).")
        no_segment = gettext("Choose the segment the member must be in.")
    body = page.inner_text("body")
    assert no_days in body and no_segment in body
    assert saved_steps(journey) == before
    # The page came back as posted: three cards, the bad ones marked, their fields shown.
    assert page.locator(".flow-step").count() == 3
    assert page.locator(".flow-step.flow-error").count() == 2
    assert page.locator(".flow-step").nth(2).locator("[name$='-segment']").is_visible()
    shoot(page, "error")


def test_the_broadcast_page_has_the_same_editor(page, live_server):
    broadcast = Broadcast.objects.create(name="Sale", trigger=Journey.Trigger.BROADCAST, is_active=False)
    JourneyStep.objects.create(journey=broadcast, position=1, action=Journey.Action.NOTIFY, message_title="Sale")
    page.goto(f"{live_server.url}/admin/engagement/broadcast/{broadcast.pk}/change/")
    page.click(".flow-add-action")
    card = page.locator(".flow-step").last
    card.locator("[name$='-action']").select_option("award_points")
    card.locator("[name$='-points']").fill("5")
    page.click("[name=_continue]")
    page.wait_for_load_state()
    assert [(s[0], s[2], s[3]) for s in saved_steps(broadcast)] == [(1, "notify", None), (2, "award_points", 5)]

"""The FAST panel's summary cards, trend charts and formatting: the cards are the current
month's figures and open the same members as the table's last column; a store manager's
panel is their store's."""

import datetime as dt
import json
import re

import pytest
from django.core.cache import cache
from django.utils import timezone

from console.tests.test_fast_page import world  # noqa: F401 (a fixture)
from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory
from members.models import Member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def sales(world):  # noqa: F811
    """m1 orders twice at store one (1,234.50 yuan then 10), m2 once at store two; m1 is a champion."""
    now = timezone.now()
    order_earn(
        member=world["m1"], store=world["one"], number="A", amount="1234.50", occurred_at=now - dt.timedelta(hours=3)
    )
    order_earn(member=world["m1"], store=world["one"], number="B", amount="10", occurred_at=now - dt.timedelta(hours=2))
    order_earn(member=world["m2"], store=world["two"], number="C", amount="5", occurred_at=now - dt.timedelta(hours=1))
    Member.objects.filter(pk=world["m1"].pk).update(rfm_segment="champions")
    return world


def test_the_summary_cards_are_this_months_figures_and_drill_down(client, sales):
    client.force_login(sales["brand"])
    response = client.get("/admin/fast/")
    summary = response.context["summary"]
    panel = response.context["panel"]
    assert summary["reachable"][0] == panel.reachable["any"][-1] == 2
    # The card opens the same list as the table's last "any channel" cell.
    assert summary["reachable"][1] == response.context["reachable"][-1][1][-1][1]
    listed = client.get(summary["reachable"][1])
    assert 'id="fast-members-total">2 members' in listed.content.decode()
    trend = json.loads(
        re.search(r'id="fast-data" type="application/json">(.*?)</script>', response.content.decode()).group(1)
    )
    assert len(trend["months"]) == 12 and trend["reachable"][-1] == 2
    assert trend["first_revenue"][-1] == pytest.approx(1239.50) and trend["repeat_revenue"][-1] == pytest.approx(10)
    page = response.content.decode()
    assert "¥1,239.50" in page  # first-order revenue this month: 1,234.50 + 5.00
    assert 'id="fast-trend"' in page and 'id="fast-returning-chart"' in page


def test_a_store_managers_panel_and_cards_are_their_stores(client, sales):
    MemberFactory(home_store=sales["two"], sms_consent_at=timezone.now())
    client.force_login(sales["manager"])
    response = client.get("/admin/fast/")
    assert response.context["summary"]["reachable"][0] == 1
    returning = response.context["panel"].returning[-1]
    assert (returning.first.orders, returning.repeat.orders, returning.repeat.customers) == (1, 1, 1)
    assert "¥1,234.50" in response.content.decode() and "¥1,239.50" not in response.content.decode()


def test_the_panel_reads_in_chinese(client, sales):
    client.force_login(sales["brand"])
    page = client.get("/admin/fast/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    for words in ("12 个月趋势", "营收：首单与复购订单", "复购顾客数", "当前至少可通过一个渠道触达的会员"):
        assert words in page, words
    assert "12-month trend" not in page and "repeat customers" not in page.lower()

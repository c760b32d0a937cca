"""The member pages say what a refund shortfall left owed, in both languages."""

import datetime as dt

from django.urls import reverse
from django.utils import timezone, translation

from loyalty import services


def owe(member, store):
    order = services.order_earn(
        member=member, store=store, number="A1", amount="650", occurred_at=timezone.now() - dt.timedelta(days=30)
    ).order
    services.points_spend(member=member, amount=650, idempotency_key="s1", reason="reward")
    services.order_refund(order=order, amount="650", number="R1")


def test_home_says_what_is_owed_and_from_which_order(member_client, member, store):
    owe(member, store)
    page = member_client.get(reverse("center:home")).content.decode()
    assert "Owed: 650 points, from the refund of order A1" in page


def test_home_says_it_in_chinese(member_client, member, store):
    owe(member, store)
    with translation.override("zh-hans"):
        page = member_client.get(reverse("center:home"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "待抵扣：650 积分，来自订单 A1 的退款" in page

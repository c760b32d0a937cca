import pytest
from rest_framework.test import APIClient

from core.errors import LoyaltyError
from loyalty.models import Order
from loyalty.services import order_earn, order_refund
from operations.segments import segment_members, segment_rules_clean

pytestmark = pytest.mark.django_db


def test_orders_are_store_orders_unless_the_pos_says_otherwise(world):
    member, store = world["member"](), world["store_a"]
    api = APIClient()
    api.force_authenticate(world["brand"])
    body = {"member_number": member.member_number, "store": store.code, "number": "MP-1", "amount": "20"}
    created = api.post("/api/v1/pos/orders/", body | {"channel": "mini_program"}, format="json")
    assert (created.status_code, created.json()["channel"]) == (201, "mini_program")
    replay = api.post("/api/v1/pos/orders/", body | {"channel": "mini_program"}, format="json")
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    plain = api.post("/api/v1/pos/orders/", body | {"number": "S-1"}, format="json")
    assert plain.json()["channel"] == "store"
    bad = api.post("/api/v1/pos/orders/", body | {"number": "X-1", "channel": "tiktok"}, format="json")
    assert bad.status_code == 400 and "channel" in bad.json()["error"]["fields"]
    assert dict(Order.objects.values_list("number", "channel")) == {"MP-1": "mini_program", "S-1": "store"}


def test_the_service_refuses_an_unknown_channel(world):
    with pytest.raises(LoyaltyError) as refused:
        order_earn(member=world["member"](), store=world["store_a"], number="1", amount="5", channel="fax")
    assert refused.value.code == "invalid_channel"


def test_segments_filter_by_the_channel_of_orders_that_count(world):
    store = world["store_a"]
    mall, shop, refunded = world["member"](), world["member"](), world["member"]()
    order_earn(member=mall, store=store, number="M-1", amount="30", channel="online_mall")
    order_earn(member=shop, store=store, number="S-1", amount="30")
    gone = order_earn(member=refunded, store=store, number="M-2", amount="30", channel="online_mall").order
    order_refund(order=gone, amount="30", number="R-1")
    assert list(segment_members({"channels": ["online_mall"]})) == [mall]
    assert set(segment_members({"channels": ["online_mall", "store"]})) == {mall, shop}
    with pytest.raises(LoyaltyError) as refused:
        segment_rules_clean({"channels": ["tmall"]})
    assert refused.value.code == "segment_rule_invalid"


def test_orders_by_channel_per_month_as_computed_by_hand(world, client):
    import datetime as dt

    from django.urls import reverse
    from django.utils import timezone

    from foresight.selectors import orders_by_channel

    store_a, store_b = world["store_a"], world["store_b"]
    member, other = world["member"](), world["member"](store_b)
    now = timezone.make_aware(dt.datetime(2026, 11, 20, 12, 0))
    october = timezone.make_aware(dt.datetime(2026, 10, 3, 12, 0))
    for number, amount, channel, at in [("1", "100", "store", october), ("2", "50", "store", october)]:
        order_earn(member=member, store=store_a, number=number, amount=amount, channel=channel, occurred_at=at, now=at)
    order_earn(member=member, store=store_a, number="3", amount="80", channel="marketplace", occurred_at=now, now=now)
    partly = order_earn(
        member=other, store=store_b, number="4", amount="60", channel="marketplace", occurred_at=now, now=now
    )
    order_refund(order=partly.order, amount="20", number="R-4", now=now)
    rows = orders_by_channel(now=now)
    assert [(r["month"], r["channel"], r["orders"], str(r["revenue"]), str(r["average"])) for r in rows] == [
        ("2026-10", "store", 2, "150.00", "75.00"),
        ("2026-11", "marketplace", 2, "120.00", "60.00"),
    ]
    assert [r["orders"] for r in orders_by_channel(now=now, stores=[store_b])] == [1]
    client.force_login(world["manager_a"])
    page = client.get(reverse("admin:foresight_channels")).content.decode()
    assert "Orders by channel" in page

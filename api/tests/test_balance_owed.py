"""The member's balance shows what refund shortfalls they still owe, and from which refund."""

import datetime as dt

from django.utils import timezone

from loyalty import services

NOW = timezone.now()


def test_balances_show_what_is_owed_from_which_refund(member_client, member, store):
    order = services.order_earn(
        member=member, store=store, number="A1", amount="650", occurred_at=NOW - dt.timedelta(days=30)
    ).order
    services.points_spend(member=member, amount=650, idempotency_key="s1", reason="reward")
    services.order_refund(order=order, amount="650", number="R1")

    body = member_client.get("/api/v1/me/balances/").json()
    assert body["points"]["balance"] == 0
    assert body["points"]["owed"] == 650
    (debt,) = body["points"]["owed_from"]
    assert (debt["amount"], debt["order_number"], debt["refund_number"]) == (650, "A1", "R1")
    assert body["growth"]["owed"] == 0 and body["growth"]["owed_from"] == []


def test_balances_show_nothing_owed_once_points_pay_it(member_client, member, store):
    order = services.order_earn(
        member=member, store=store, number="A1", amount="650", occurred_at=NOW - dt.timedelta(days=30)
    ).order
    services.points_spend(member=member, amount=650, idempotency_key="s1", reason="reward")
    services.order_refund(order=order, amount="650", number="R1")
    services.order_earn(member=member, store=store, number="A2", amount="700", occurred_at=NOW - dt.timedelta(days=30))

    points = member_client.get("/api/v1/me/balances/").json()["points"]
    assert (points["balance"], points["owed"], points["owed_from"]) == (50, 0, [])

"""A member flow over the API for the deployment checks: earn, spend at checkout, refund, a resend.

``flow_setup`` makes a store, a store key and members (run it where Django is set up on
the database under test); ``flow_member`` drives one member through the flow with any
``post(path, body) -> (status, body)``: Django's test client in process, or HTTP against
gunicorn. Points must be available at once: run with LOYALTY_PENDING_DAYS=0.
"""

import uuid
from collections.abc import Callable

Post = Callable[[str, dict], tuple[int, dict]]


def flow_setup(members: int, *, tag: str = "") -> tuple[str, list[str]]:
    from api.services import store_key_create
    from members.models import Store
    from operations.actions import member_create

    tag = tag or uuid.uuid4().hex[:6]
    store = Store.objects.create(code=f"flow-{tag}", name=f"Flow {tag}", city="Shanghai")
    _key, raw = store_key_create(store=store, name=f"flow {tag}", actions=["earn", "refund", "checkout"])
    numbers = [
        member_create(phone=f"+86137{int(tag, 16) % 1000:03d}{n:05d}", home_store=store, source="flow").member_number
        for n in range(members)
    ]
    return raw, numbers


def flow_member(post: Post, member_number: str, tag: str) -> dict[str, int]:
    """Earn 100 points, resend it, pay 30 points at checkout, refund half of the first order."""
    statuses: dict[str, int] = {}
    order = {"member_number": member_number, "number": f"A-{tag}", "amount": "100.00"}
    statuses["earn"], _ = post("/api/v1/pos/orders/", order)
    statuses["resend"], body = post("/api/v1/pos/orders/", order)
    statuses["resend_replayed"] = int(bool(body.get("replayed")))
    statuses["checkout"], _ = post(
        "/api/v1/pos/checkout/",
        {"member_number": member_number, "number": f"B-{tag}", "amount": "30.00", "points": 30},
    )
    statuses["refund"], _ = post(
        "/api/v1/pos/refunds/", {"order_number": f"A-{tag}", "number": f"R-{tag}", "amount": "50.00"}
    )
    return statuses

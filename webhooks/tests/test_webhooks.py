"""Webhooks against a real local receiver: events once per change, signed, retried, in
order per member, and a slow receiver holding up nobody else."""

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from django.utils import timezone

from loyalty.services import order_earn, order_refund, points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from webhooks.collect import events_collect
from webhooks.models import Endpoint, Event, WebhookDelivery
from webhooks.services import deliveries_send_again, endpoint_deliver_due, endpoints_due, verify

pytestmark = pytest.mark.django_db


class Receiver:
    """A shop system: checks each signature (written here from docs/webhooks.md), keeps the
    events it accepted; ``down`` answers 503, ``delay`` makes it slow."""

    def __init__(self, secret: str):
        self.secret, self.events, self.rejected, self.down, self.delay = secret, [], 0, False, 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.delay:
                    time.sleep(receiver.delay)
                parts = dict(p.split("=", 1) for p in self.headers["Loyalty-Signature"].split(","))
                mac = hmac.new(receiver.secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
                fresh = abs(time.time() - int(parts["t"])) < 300
                if receiver.down:
                    code = 503
                elif not (hmac.compare_digest(mac, parts["v1"]) and fresh):
                    receiver.rejected += 1
                    code = 400
                else:
                    event = json.loads(body)
                    assert event["id"] == self.headers["Loyalty-Event-Id"]
                    receiver.events.append(event)
                    code = 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(**fields):
        endpoint = Endpoint.objects.create(
            name=f"shop {len(made)}",
            url="http://placeholder",
            created_at=timezone.now() - dt.timedelta(days=1),
            **fields,
        )
        receiver = Receiver(endpoint.secret)
        Endpoint.objects.filter(pk=endpoint.pk).update(url=receiver.url)
        endpoint.refresh_from_db()
        made.append(receiver)
        return endpoint, receiver

    yield make
    for receiver in made:
        receiver.stop()


def now_plus(minutes=0):
    return timezone.now() + dt.timedelta(minutes=minutes)


def test_each_committed_change_becomes_one_event_and_a_rolled_back_one_none(receivers):
    receivers()
    store = StoreFactory()
    member = MemberFactory(home_store=store)
    order_earn(member=member, store=store, number="SO-1", amount="100.00")
    with pytest.raises(RuntimeError), transaction.atomic():
        order_earn(member=member, store=store, number="SO-2", amount="50.00")
        raise RuntimeError("the till crashed")
    assert events_collect() > 0
    assert events_collect() == 0  # once each
    types = list(Event.objects.order_by("id").values_list("type", flat=True))
    assert types[0] == "member.created" and types[1] == "order.earned"
    assert set(types[2:]) == {"points.changed"}
    assert [e.payload["order_number"] for e in Event.objects.filter(type="order.earned")] == ["SO-1"]
    points = Event.objects.get(type="points.changed", payload__currency="points").payload
    assert points["kind"] == "earn" and points["pending_after"] > 0 and points["member_number"] == member.member_number


def test_events_are_signed_and_the_receiver_verifies_them(receivers):
    endpoint, receiver = receivers()
    member = MemberFactory()
    points_award(member=member, currency="points", amount=50, reason="welcome", idempotency_key="w1")
    events_collect()
    assert endpoint_deliver_due(endpoint.pk)["delivered"] == 2
    assert receiver.rejected == 0
    assert [e["type"] for e in receiver.events] == ["member.created", "points.changed"]
    assert receiver.events[1]["data"]["balance_after"] == 50
    delivery = WebhookDelivery.objects.filter(status="delivered").first()
    assert delivery.response_status == 200 and "Loyalty-Signature" in delivery.request_headers


def test_the_verify_example_refuses_a_changed_body_and_an_old_signature():
    from webhooks.services import sign

    body = b'{"id":"1"}'
    header = sign("whsec_x", int(time.time()), body)
    assert verify("whsec_x", header, body)
    assert not verify("whsec_x", header, b'{"id":"2"}')
    assert not verify("whsec_y", header, body)
    assert not verify("whsec_x", sign("whsec_x", int(time.time()) - 600, body), body)


def test_a_receiver_down_for_a_while_gets_every_event_once_in_order_per_member(receivers):
    endpoint, receiver = receivers()
    members = MemberFactory.create_batch(3)
    for n in range(4):
        for member in members:
            points_award(
                member=member, currency="points", amount=10 + n, reason="r", idempotency_key=f"{member.pk}:{n}"
            )
    events_collect()
    receiver.down = True
    at = timezone.now()
    for minute in range(0, 30, 3):  # down for half an hour: one try per run, backing off
        endpoint_deliver_due(endpoint.pk, now=at + dt.timedelta(minutes=minute))
    assert receiver.events == []
    assert WebhookDelivery.objects.get(event__type="member.created", event__member=members[0]).attempts > 1
    receiver.down = False
    for minute in range(30, 300, 20):
        endpoint_deliver_due(endpoint.pk, now=at + dt.timedelta(minutes=minute))
    ids = [e["id"] for e in receiver.events]
    assert len(ids) == len(set(ids)) == Event.objects.count() == 15
    for member in members:
        theirs = [
            e["data"].get("amount") for e in receiver.events if e["data"]["member_number"] == member.member_number
        ]
        assert theirs == [None, 10, 11, 12, 13]  # joined first, then each award in order


def test_a_member_event_waits_for_the_members_earlier_one(receivers):
    endpoint, receiver = receivers()
    member = MemberFactory()
    points_award(member=member, currency="points", amount=10, reason="r", idempotency_key="a")
    events_collect()
    first = WebhookDelivery.objects.get(event__type="member.created")
    WebhookDelivery.objects.filter(pk=first.pk).update(next_attempt_at=now_plus(60))  # retry scheduled later
    counts = endpoint_deliver_due(endpoint.pk)
    assert counts == {"delivered": 0, "failed": 0, "waiting": 1}
    endpoint_deliver_due(endpoint.pk, now=now_plus(61))
    assert [e["type"] for e in receiver.events] == ["member.created", "points.changed"]


def test_a_slow_receiver_does_not_hold_up_the_others(settings, receivers):
    settings.WEBHOOK_TIMEOUT = 0.5
    slow_endpoint, slow = receivers()
    fast_endpoint, fast = receivers()
    slow.delay = 1.5
    for member in MemberFactory.create_batch(5):
        points_award(member=member, currency="points", amount=5, reason="r", idempotency_key=f"s{member.pk}")
    events_collect()
    assert set(endpoints_due()) == {slow_endpoint.pk, fast_endpoint.pk}  # one task each
    started = time.monotonic()
    assert endpoint_deliver_due(slow_endpoint.pk)["failed"] == 1  # one timeout, then it stops
    assert time.monotonic() - started < 1.4
    assert endpoint_deliver_due(fast_endpoint.pk)["delivered"] == 10
    assert len(fast.events) == 10


def test_an_endpoint_failing_for_a_day_is_disabled_and_send_again_works(receivers, mailoutbox, settings):
    settings.ADMINS = [("ops", "ops@example.com")]
    endpoint, receiver = receivers()
    MemberFactory()
    events_collect()
    receiver.down = True
    at = timezone.now()
    endpoint_deliver_due(endpoint.pk, now=at)
    endpoint_deliver_due(endpoint.pk, now=at + dt.timedelta(hours=25))
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.disabled_at is not None
    assert endpoint.name in mailoutbox[0].subject
    receiver.down = False
    from webhooks.services import endpoint_enable

    endpoint_enable(endpoint=endpoint)
    endpoint_deliver_due(endpoint.pk, now=at + dt.timedelta(hours=26))
    assert len(receiver.events) == 1
    deliveries_send_again(deliveries=list(WebhookDelivery.objects.all()))
    endpoint_deliver_due(endpoint.pk, now=at + dt.timedelta(hours=26))
    assert [e["id"] for e in receiver.events][0] == receiver.events[1]["id"]  # the same event id again


def test_endpoints_get_only_their_events_and_stores(receivers):
    one, two = StoreFactory(), StoreFactory()
    tiers_only, _ = receivers(events=["member.created"])
    store_two, _ = receivers()
    store_two.stores.set([two])
    MemberFactory(home_store=one)
    m2 = MemberFactory(home_store=two)
    points_award(member=m2, currency="points", amount=5, reason="r", idempotency_key="x")
    events_collect()
    assert WebhookDelivery.objects.filter(endpoint=tiers_only).count() == 2
    assert set(WebhookDelivery.objects.filter(endpoint=store_two).values_list("event__member", flat=True)) == {m2.pk}


def test_nothing_is_collected_before_the_first_endpoint():
    member = MemberFactory()
    order_earn(member=member, store=StoreFactory(), number="SO-1", amount="10.00")
    assert events_collect() == 0
    assert not Event.objects.exists()


def test_a_refund_is_an_event(receivers):
    receivers()
    store = StoreFactory()
    member = MemberFactory(home_store=store)
    result = order_earn(member=member, store=store, number="SO-9", amount="100.00")
    order_refund(order=result.order, amount="40.00", number="RF-9")
    events_collect()
    refund = Event.objects.get(type="order.refunded")
    assert refund.payload | {} == refund.payload and refund.payload["refund_number"] == "RF-9"
    assert refund.payload["amount"] == "40.00"


def test_a_receiver_catches_up_through_the_api(receivers):
    from rest_framework.test import APIClient

    endpoint, _ = receivers()
    MemberFactory.create_batch(3)
    events_collect()
    client = APIClient()
    url = f"/api/v1/webhooks/endpoints/{endpoint.pk}/events/"
    page = client.get(url, {"limit": 2}, HTTP_LOYALTY_WEBHOOK_SECRET=endpoint.secret).json()
    assert [e["type"] for e in page["events"]] == ["member.created"] * 2
    rest = client.get(url, {"after": page["next_after"]}, HTTP_LOYALTY_WEBHOOK_SECRET=endpoint.secret).json()
    assert len(rest["events"]) == 1 and rest["events"][0]["sequence"] > page["next_after"]
    assert client.get(url, HTTP_LOYALTY_WEBHOOK_SECRET="whsec_guess").status_code == 404
    bad = client.get(url, {"limit": 0}, HTTP_LOYALTY_WEBHOOK_SECRET=endpoint.secret)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"


def test_staff_add_an_endpoint_and_send_a_delivery_again_in_the_admin(admin_client, receivers):
    answer = admin_client.post(
        "/admin/webhooks/endpoint/add/",
        {
            "name": "ERP",
            "url": "https://erp.example.com/hooks",
            "events": ["order.earned", "points.changed"],
            "is_active": "on",
        },
    )
    assert answer.status_code == 302, answer.content[:2000]
    endpoint = Endpoint.objects.get(name="ERP")
    assert endpoint.events == ["order.earned", "points.changed"] and endpoint.secret.startswith("whsec_")
    _, receiver = receivers()
    MemberFactory()
    events_collect()
    delivery = WebhookDelivery.objects.filter(endpoint__url=receiver.url).get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="delivered")
    answer = admin_client.post(
        "/admin/webhooks/webhookdelivery/", {"action": "send_again", "_selected_action": [delivery.pk]}
    )
    assert answer.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert admin_client.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/").status_code == 200
    assert admin_client.get("/admin/outreach/delivery/").status_code == 200


def test_collecting_runs_a_bounded_number_of_queries(receivers, django_assert_max_num_queries):
    receivers()
    receivers()
    store = StoreFactory()
    for n in range(4):
        member = MemberFactory(home_store=store)
        order_earn(member=member, store=store, number=f"Q-{n}", amount="20.00")
    with django_assert_max_num_queries(40):  # per source a few reads, then one insert per table
        assert events_collect() == 16  # per member: joined, order earned, points and growth pending
    with django_assert_max_num_queries(40):
        assert events_collect() == 0


def test_the_command_delivers_what_is_due(receivers):
    from django.core.management import call_command

    _, receiver = receivers()
    MemberFactory()
    call_command("webhooks_deliver")
    assert [e["type"] for e in receiver.events] == ["member.created"]


def test_a_delivery_left_sending_by_a_killed_worker_goes_again(receivers):
    endpoint, receiver = receivers()
    MemberFactory()
    events_collect()
    stuck = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=stuck.pk).update(status="sending", next_attempt_at=now_plus(-11))
    assert endpoint_deliver_due(endpoint.pk)["delivered"] == 1
    assert len(receiver.events) == 1


def test_a_dead_receiver_is_retried_with_exponential_backoff_for_a_day_then_disabled_and_staff_told(
    receivers, mailoutbox, settings, django_user_model
):
    from django.contrib.auth.models import Permission

    settings.ADMINS = []
    manager = django_user_model.objects.create_user("hooks", email="hooks@example.com", is_staff=True)
    manager.user_permissions.add(Permission.objects.get(codename="change_endpoint"))
    django_user_model.objects.create_user("till", email="till@example.com", is_staff=True)  # no permission
    endpoint, receiver = receivers()
    MemberFactory()
    events_collect()
    receiver.down = True
    at = timezone.now()
    tries = []
    while Endpoint.objects.get(pk=endpoint.pk).is_active:
        delivery = WebhookDelivery.objects.get()
        at = max(at, delivery.next_attempt_at)  # the next run after the retry is due
        tries.append(at)
        endpoint_deliver_due(endpoint.pk, now=at)
        assert len(tries) < 100
    gaps = [round((b - a).total_seconds() / 60) for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps[:7] == [1, 2, 4, 8, 16, 32, 60] and set(gaps[7:]) == {60}
    assert dt.timedelta(hours=24) <= tries[-1] - tries[0] < dt.timedelta(hours=25)
    assert len(tries) == 30 and WebhookDelivery.objects.get().status == "pending"
    [notice] = mailoutbox
    assert notice.to == ["hooks@example.com"] and endpoint.name in notice.subject and endpoint.url in notice.body
    # While it is disabled nothing is queued to it, but the catch-up API lists what came.
    from rest_framework.test import APIClient

    points_award(member=MemberFactory(), currency="points", amount=5, reason="r", idempotency_key="late")
    events_collect()
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
    page = APIClient().get(
        f"/api/v1/webhooks/endpoints/{endpoint.pk}/events/", HTTP_LOYALTY_WEBHOOK_SECRET=endpoint.secret
    )
    assert [e["type"] for e in page.json()["events"]] == ["member.created", "member.created", "points.changed"]


def test_the_catch_up_lists_only_the_endpoints_events_and_stores(receivers):
    from rest_framework.test import APIClient

    one, two = StoreFactory(), StoreFactory()
    endpoint, _ = receivers(events=["points.changed"])
    endpoint.stores.set([two])
    for store in (one, two):
        member = MemberFactory(home_store=store)
        points_award(member=member, currency="points", amount=7, reason="r", idempotency_key=f"c{store.pk}")
    events_collect()
    page = APIClient().get(
        f"/api/v1/webhooks/endpoints/{endpoint.pk}/events/", HTTP_LOYALTY_WEBHOOK_SECRET=endpoint.secret
    )
    events = page.json()["events"]
    assert [e["type"] for e in events] == ["points.changed"]
    assert events[0]["data"]["member_number"] == member.member_number


def test_production_sends_only_to_public_https_urls(receivers, settings, admin_client):
    from django.utils import translation

    translation.activate("en")
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    endpoint, receiver = receivers()  # http://127.0.0.1:<port>
    MemberFactory()
    events_collect()
    assert endpoint_deliver_due(endpoint.pk)["failed"] == 1
    assert receiver.events == []
    assert WebhookDelivery.objects.get().error == "only https URLs receive webhooks"
    from webhooks.services import url_problem

    assert "non-public" in url_problem("https://127.0.0.1/hooks")
    assert "non-public" in url_problem("https://10.1.2.3/hooks")
    assert "non-public" in url_problem("https://[::1]/hooks")
    assert "non-public" in url_problem("https://169.254.169.254/latest/meta-data")
    assert url_problem("https://8.8.8.8/hooks") == ""
    answer = admin_client.post(
        "/admin/webhooks/endpoint/add/",
        {"name": "inside", "url": "https://127.0.0.1:8443/hooks", "is_active": "on"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert answer.status_code == 200 and "Events cannot be sent there" in answer.content.decode()
    assert not Endpoint.objects.filter(name="inside").exists()


def test_one_run_per_endpoint_at_a_time_and_a_slow_receivers_run_stops_after_its_time(settings, receivers):
    from django.db import connections

    from core.jobs import job_lock

    endpoint, receiver = receivers()
    for member in MemberFactory.create_batch(4):
        points_award(member=member, currency="points", amount=5, reason="r", idempotency_key=f"b{member.pk}")
    events_collect()
    holding, release = threading.Event(), threading.Event()

    def other_worker():  # another worker's run of the same endpoint, on its own connection
        with job_lock(f"webhooks.endpoint.{endpoint.pk}") as locked:
            assert locked
            holding.set()
            release.wait(10)
        connections.close_all()

    worker = threading.Thread(target=other_worker)
    worker.start()
    holding.wait(10)
    assert endpoint_deliver_due(endpoint.pk)["busy"] == 1 and receiver.events == []
    release.set()
    worker.join()
    settings.WEBHOOK_RUN_SECONDS = 0.5
    receiver.delay = 0.3
    first = endpoint_deliver_due(endpoint.pk)
    assert 1 <= first["delivered"] <= 3  # the time was up: the rest wait for the next run
    receiver.delay = 0
    endpoint_deliver_due(endpoint.pk)
    assert len(receiver.events) == Event.objects.count() == 8

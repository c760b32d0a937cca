"""The demo's receiver (``manage.py webhook_receiver``): it verifies and prints what arrives."""

import datetime as dt
import threading

import pytest
from django.utils import timezone

from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from webhooks.collect import events_collect
from webhooks.management.commands.webhook_receiver import make_server
from webhooks.models import Endpoint, WebhookDelivery
from webhooks.services import deliveries_send_again, endpoint_deliver_due


@pytest.fixture
def receiver():
    def start(secret=""):
        lines: list[str] = []
        server = make_server("127.0.0.1", 0, secret=secret, write=lines.append)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_port}/hooks", lines

    started = []
    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def endpoint_at(url, **fields):
    return Endpoint.objects.create(name="demo", url=url, created_at=timezone.now() - dt.timedelta(hours=1), **fields)


@pytest.mark.django_db
def test_the_receiver_prints_verified_events_as_orders_are_earned_and_marks_a_resend(receiver):
    url, lines = receiver()
    endpoint = endpoint_at(url)
    url_b, lines_b = receiver(secret=endpoint.secret)
    endpoint_b = endpoint_at(url_b)
    endpoint_b.secret = endpoint.secret
    endpoint_b.save()
    store = StoreFactory()
    order_earn(member=MemberFactory(home_store=store), store=store, number="SO-77", amount="88.00")
    events_collect()
    endpoint_deliver_due(endpoint_b.pk)
    assert any(line.startswith("verified  order.earned") and "order_number=SO-77" in line for line in lines_b)
    assert all(line.startswith("verified") for line in lines_b)
    deliveries_send_again(deliveries=list(WebhookDelivery.objects.filter(endpoint=endpoint_b)[:1]))
    endpoint_deliver_due(endpoint_b.pk)
    assert lines_b[-1].endswith("(again: already processed, skipped)")
    # The first receiver reads the secret from the database by its URL: this test's rows are
    # not committed, so it cannot see the endpoint and refuses, as it must for a stranger.
    endpoint_deliver_due(endpoint.pk)
    assert lines and lines[0].startswith("REJECTED")
    assert WebhookDelivery.objects.filter(endpoint=endpoint, response_status=400).exists()


@pytest.mark.django_db(transaction=True)
def test_the_receiver_finds_the_secret_of_the_endpoint_with_its_url(receiver):
    url, lines = receiver()
    endpoint = endpoint_at(url)
    MemberFactory()
    events_collect()
    assert endpoint_deliver_due(endpoint.pk)["delivered"] == 1
    assert lines[0].startswith("verified  member.created")

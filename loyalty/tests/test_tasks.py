"""The ledger jobs run as celery tasks on a real worker through the Redis broker.

The worker listens on a queue of its own: test runs share the Redis (pytest-xdist workers,
other checkouts), and a worker on the default queue would run their tasks against this
test's database, or they would take this one.
"""

import datetime as dt
import time
import uuid

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from config.celery import app
from loyalty import services
from loyalty.models import Account
from loyalty.tasks import release_matured_points

from .factories import MemberFactory, StoreFactory


@pytest.mark.django_db(transaction=True)
def test_release_task_runs_on_a_worker_through_redis():
    assert app.conf.broker_url.startswith("redis://"), "make test points the broker at REDIS_URL"
    member, store = MemberFactory(), StoreFactory()
    now = timezone.now()
    services.order_earn(
        member=member,
        store=store,
        number="A1",
        amount="42",
        occurred_at=now - dt.timedelta(days=9),
        now=now - dt.timedelta(days=8),
    )
    account = Account.objects.get(member=member, currency="points")
    assert (account.balance, account.pending) == (0, 42)

    queue = f"test-tasks-{uuid.uuid4().hex[:12]}"
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10, queues=[queue]):
        release_matured_points.apply_async(queue=queue)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            account.refresh_from_db()
            if account.balance == 42:
                break
            time.sleep(0.2)
    assert (account.balance, account.pending) == (42, 0)

"""Server time of each till action on the demo data (console.admin_till, docs/till.md).

Copies the demo database (``seed_demo``) named by DATABASE_URL to ``<name>_till_bench``
(a file-level copy; nobody may be connected to the source meanwhile), signs a store
manager of the demo's first store in, and times each action N times (default 20) through
Django's test client, in process: the view, its services, the template, the commit; no
network, no browser. Prints the median and the slowest of each:

- lookup: GET ``?q=<member number>`` of the demo member with the most orders at the store;
- order: POST an order (a new number each time);
- order with points: POST an order paid partly with 500 points (积分抵扣);
- refund: POST a partial refund of ¥10 of one of the orders just recorded;
- verify: POST the verification of a coupon (N coupons issued for the bench first).

A POST is timed up to its redirect (the card shown after it is a lookup). The copy is
dropped at the end unless ``--keep``.

    python bench/till.py               # 20 of each
    python bench/till.py --runs 50
"""

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from urllib.parse import urlparse, urlunparse

from common import copy_database, setup_django  # bench/ is on sys.path as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the copy of the demo database")
    args = parser.parse_args()

    source_url = os.environ.get("DATABASE_URL") or sys.exit("DATABASE_URL names the demo database.")
    parsed = urlparse(source_url)
    source = parsed.path.lstrip("/")
    target = f"{source}_till_bench"
    copy_database(source_url, source, target)
    os.environ["DATABASE_URL"] = urlunparse(parsed._replace(path=f"/{target}"))
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    setup_django()
    try:
        run(args.runs)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            import psycopg
            from psycopg import sql

            maintenance = urlunparse(parsed._replace(path="/postgres"))
            with psycopg.connect(maintenance, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))


def run(runs: int) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db.models import Count
    from django.test import Client
    from django.utils import timezone

    from loyalty.models import Currency, Order
    from loyalty.services import points_award
    from members.models import Member, StaffProfile, Store
    from members.scoping import STORE_MANAGER
    from rewards.models import Coupon

    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("setup_roles", verbosity=0)
    store = Store.objects.filter(is_active=True).order_by("code").first()
    if store is None:
        sys.exit("No store: run `python manage.py seed_demo` on the source database first.")
    member = (
        Member.objects.filter(status=Member.Status.ACTIVE, erased_at__isnull=True, orders__store=store)
        .annotate(n=Count("orders"))
        .order_by("-n", "id")
        .first()
    ) or Member.objects.filter(status=Member.Status.ACTIVE).order_by("id").first()
    points_award(
        member=member, currency=Currency.POINTS, amount=500 * runs, reason="till bench", idempotency_key="till-bench"
    )
    now = timezone.now()
    coupons = [
        Coupon.objects.create(
            member=member,
            title="Bench voucher",
            kind=Coupon.Kind.GIFT,
            source=Coupon.Source.STAFF,
            valid_from=now - dt.timedelta(days=1),
            expires_at=now + dt.timedelta(days=30),
        )
        for _ in range(runs)
    ]
    user = get_user_model().objects.create_user("till-bench", is_staff=True)
    user.groups.add(Group.objects.get(name=STORE_MANAGER))
    StaffProfile.objects.create(user=user).stores.set([store])
    client = Client()
    client.force_login(user)
    url = "/admin/till/"
    orders = Order.objects.filter(member=member).count()
    print(f"member {member.member_number}: {orders} orders; store {store.code}; {runs} runs of each action")

    def timed(label, request, expect):
        times = []
        for i in range(runs):
            started = time.perf_counter()
            response = request(i)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != expect:
                sys.exit(f"{label}: HTTP {response.status_code} on run {i}")
        print(f"{label:<20} median {statistics.median(times):6.1f} ms   slowest {max(times):6.1f} ms")
        return statistics.median(times)

    base = {"store": store.pk, "member_number": member.member_number, "q": member.member_number}
    timed("lookup", lambda i: client.get(url, {"q": member.member_number}), 200)
    timed("order", lambda i: client.post(url, {**base, "action": "order", "number": f"TB-{i}", "amount": "128"}), 302)
    timed(
        "order with points",
        lambda i: client.post(url, {**base, "action": "order", "number": f"TBP-{i}", "amount": "128", "points": "500"}),
        302,
    )
    timed(
        "refund (partial)",
        lambda i: client.post(
            url,
            {**base, "action": "refund", "order_number": f"TB-{i}", "refund_amount": "10", "submission": f"tb{i}"},
        ),
        302,
    )
    timed(
        "verify",
        lambda i: client.post(url, {**base, "action": "verify", "code": coupons[i].code, "submission": f"tbv{i}"}),
        302,
    )
    refused = Order.objects.filter(number__startswith="TB", member=member).count()
    if refused != 2 * runs:
        sys.exit(f"expected {2 * runs} bench orders, found {refused}")
    if Coupon.objects.filter(pk__in=[c.pk for c in coupons], status=Coupon.Status.USED).count() != runs:
        sys.exit("not every bench coupon was verified")
    from loyalty.selectors import ledger_violations

    print(f"ledger violations: {len(ledger_violations())}")


if __name__ == "__main__":
    main()

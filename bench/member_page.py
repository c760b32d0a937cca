"""Server time and query count of the member 360 page on the seeded demo.

    DATABASE_URL=... python manage.py seed_demo
    DATABASE_URL=... python bench/member_page.py [--runs 20] [--lang zh-hans] [--member NUMBER]

Signs a superuser in with Django's test client (no network, no static files), asks the
member's page ``--runs`` times after two warm-up requests and prints the median and the
spread of the server time and the query count of the last request. The default member is the
demo member with the most ledger entries. docs/member-admin.md has the figures.
"""

import argparse
import statistics
import time

from common import setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--lang", default="zh-hans")
    parser.add_argument("--member", help="member number (default: the one with the most entries)")
    parser.add_argument("--query", default="", help="query string, e.g. edit=1 or timeline=3")
    args = parser.parse_args()

    setup_django()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from members.models import Member

    settings.ALLOWED_HOSTS = ["*"]
    from loyalty.models import LedgerEntry

    if args.member:
        member = Member.objects.get(member_number=args.member)
    else:
        busiest = LedgerEntry.objects.values("member").annotate(n=Count("id")).order_by("-n").first()
        member = Member.objects.get(pk=busiest["member"])
    entries = LedgerEntry.objects.filter(member=member).count()
    user_model = get_user_model()
    user, _created = user_model.objects.get_or_create(
        username="bench-member-page", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_ACCEPT_LANGUAGE=args.lang)
    client.force_login(user)
    url = reverse("admin:members_member_change", args=[member.pk]) + (f"?{args.query}" if args.query else "")

    times = []
    for run in range(args.runs + 2):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.status_code
        if run >= 2:
            times.append(elapsed * 1000)
    print(
        f"member {member.member_number} ({entries:,} ledger entries), {url}, {args.lang}: "
        f"median {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f}) "
        f"over {args.runs} requests; {len(queries)} queries; {len(response.content):,} bytes"
    )


if __name__ == "__main__":
    main()

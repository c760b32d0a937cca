"""Issue 18's jobs: the expiry's chunks cut by due lots, and the set-based tier review held
to its ORM twin (same decisions, history rows and notices)."""

import datetime as dt

import pytest
from django.db import connection, transaction
from django.utils import timezone

from loyalty import jobs, tasks
from loyalty import tiers as tiers_module
from loyalty.models import Currency, LedgerEntry, Lot, MemberTier, Tier, TierChange
from loyalty.selectors import ledger_violations
from loyalty.tiers import tiers_sweep
from members.models import Member, Notification

from .factories import MemberFactory, StoreFactory
from .test_jobs import earn
from .test_tiers import REVIEW, T0, _mixed_base, grow, months_after, new_member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the set-based jobs are PostgreSQL's")


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture(autouse=True)
def tier_settings(settings):
    settings.LOYALTY_GROWTH_EXPIRY = "rolling:12"
    settings.LOYALTY_GROWTH_PER_YUAN = 1
    settings.LOYALTY_PENDING_DAYS = 7
    settings.LOYALTY_TIER_REVIEW_MONTHS = 12
    settings.LOYALTY_TIER_SOFT_LANDING = True


def members_with_due_lots(count: int):
    """``count`` members with 2 due lots in each currency (4 a member), between members without any."""
    store = StoreFactory()
    members = []
    for index in range(count):
        MemberFactory()  # nothing due
        member = MemberFactory()
        earn(member, store, f"A{index}", "40", days_ago=300)
        earn(member, store, f"B{index}", "12", days_ago=310)
        members.append(member)
    MemberFactory()
    return members


@pytest.fixture
def wide_ranges(monkeypatch):
    """No cut by member ids (LEDGER_CHUNK): the test's ids may straddle a multiple of 1000."""
    monkeypatch.setattr(jobs, "LEDGER_CHUNK", 10**9)


def due_count(lo: int, hi: int, now) -> int:
    return Lot.objects.filter(
        member_id__gte=lo, member_id__lt=hi, pending=False, remaining__gt=0, expires_at__lte=now
    ).count()


def test_expiry_ranges_hold_about_n_due_lots_and_every_member_with_due_lots(wide_ranges, monkeypatch):
    members_with_due_lots(5)
    later = timezone.now() + dt.timedelta(days=70)
    ids = sorted(Member.objects.values_list("id", flat=True))

    ranges = jobs.due_lot_ranges(now=later, lots=8)

    assert all(hi <= next_lo for (_lo, hi), (next_lo, _hi) in zip(ranges, ranges[1:], strict=False))
    assert [due_count(lo, hi, later) for lo, hi in ranges] == [8, 8, 4]
    assert sum(due_count(lo, hi, later) for lo, hi in ranges) == due_count(ids[0], ids[-1] + 1, later)
    # No range is wider than LEDGER_CHUNK member ids.
    monkeypatch.setattr(jobs, "LEDGER_CHUNK", 2)
    assert [due_count(lo, hi, later) for lo, hi in jobs.due_lot_ranges(now=later, lots=8)] == [4] * 5
    # A member with more due lots than a chunk holds is a chunk alone, never split.
    assert [due_count(lo, hi, later) for lo, hi in jobs.due_lot_ranges(now=later, lots=3)] == [4] * 5
    assert jobs.due_lot_ranges(now=timezone.now()) == []  # nothing due yet


def test_expiry_by_due_lots_expires_everything_once(wide_ranges):
    members = members_with_due_lots(5)
    later = timezone.now() + dt.timedelta(days=70)

    first = jobs.lots_expire_due_sql(now=later, lots=8)

    assert (first["count"], first["chunks"]) == (10, 3)
    assert jobs.lots_expire_due_sql(now=later, lots=8) == {"count": 0, "chunks": 0, "longest_chunk_s": 0.0}
    for member in members:
        expired = LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.EXPIRE)
        assert sorted(expired.values_list("currency", "amount")) == [(Currency.GROWTH, -52), (Currency.POINTS, -52)]
        assert expired.get(currency=Currency.POINTS).allocations.count() == 2


def test_the_expiry_task_sends_a_chunk_per_run_of_due_lots(wide_ranges, monkeypatch):
    members_with_due_lots(4)
    Lot.objects.update(expires_at=timezone.now() - dt.timedelta(hours=1))
    monkeypatch.setattr(jobs, "EXPIRY_CHUNK_LOTS", 8)

    result = tasks.expire_due_points.apply().get()

    assert (result["entries"], result["chunks"]) == (8, 2)


# --- the tier review: set-based and ORM write the same ------------------------------------


@pytest.fixture
def tiers(db) -> dict[str, Tier]:
    return {
        "bronze": Tier.objects.create(code="bronze", name="Bronze", rank=0, is_default=True),
        "silver": Tier.objects.create(
            code="silver", name="Silver", rank=1, qualify_threshold=1000, retain_threshold=800
        ),
        "gold": Tier.objects.create(code="gold", name="Gold", rank=2, qualify_threshold=3000, retain_threshold=2500),
    }


def outcome():
    """What a sweep wrote, without the generated ids (a change is named by its member and reason)."""
    changes = {
        change.pk: (change.member_id, change.reason)
        for change in TierChange.objects.filter(created_at=REVIEW).order_by("id")
    }
    return (
        sorted(
            MemberTier.objects.values_list("member_id", "tier_id", "started_at", "review_at", "pinned_until"),
        ),
        sorted(
            TierChange.objects.filter(created_at=REVIEW).values_list(
                "member_id", "from_tier_id", "to_tier_id", "reason", "growth", "note", "operator_id", "created_at"
            )
        ),
        sorted(
            (n.member_id, n.kind, n.title, n.body, n.created_at, changes[n.data.pop("tier_change")], n.data)
            for n in Notification.objects.filter(kind__in=[Notification.Kind.TIER_UP, Notification.Kind.TIER_DOWN])
            if n.data.get("tier_change") in changes
        ),
        [n.dedupe_key.rsplit(":", 1)[0] for n in Notification.objects.filter(created_at=REVIEW).order_by("id")],
    )


def test_the_set_based_review_writes_what_the_orm_review_writes(tiers, adjuster, monkeypatch):
    _mixed_base(adjuster)
    # Also: a pin that ended (cleared, reviewed), a gold member kept, a gold member two steps short.
    pinned, kept, short = (new_member(f"1390013900{i}") for i in range(3))
    grow(pinned, 100, adjuster, at=T0 + dt.timedelta(days=30))
    MemberTier.objects.filter(member=pinned).update(
        tier=tiers["silver"], pinned_until=REVIEW - dt.timedelta(days=1), review_at=REVIEW - dt.timedelta(days=1)
    )
    grow(kept, 2600, adjuster, at=T0 + dt.timedelta(days=30))
    MemberTier.objects.filter(member=kept).update(tier=tiers["gold"], review_at=months_after(T0, 12))
    grow(short, 10, adjuster, at=T0 + dt.timedelta(days=30))
    MemberTier.objects.filter(member=short).update(tier=tiers["gold"], review_at=months_after(T0, 12))

    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT before_sweep")
    monkeypatch.setattr(tiers_module, "is_postgresql", lambda: False)
    by_orm = tiers_sweep(now=REVIEW, chunk_size=3)
    orm_rows = outcome()
    with connection.cursor() as cursor:
        cursor.execute("ROLLBACK TO SAVEPOINT before_sweep")
    monkeypatch.undo()
    assert not TierChange.objects.filter(created_at=REVIEW).exists()
    by_sql = tiers_sweep(now=REVIEW, chunk_size=3)

    assert by_sql == by_orm == {"upgraded": 1, "downgraded": 3, "retained": 2, "pins_cleared": 1, "placed": 0}
    assert outcome() == orm_rows
    assert len(orm_rows[2]) == 4  # the upgrade's and the three downgrades' notices


SHANGHAI = timezone.get_fixed_timezone(8 * 60)


# (months, now, review dates): month ends reached from a local date whose UTC date is the
# day before (00:15 in Shanghai), a leap year's February, a review so late that the next one
# would have passed too (counted from now), and a review due right now.
KEPT_TIER_DATES = [
    (
        1,
        dt.datetime(2028, 2, 15, 23, 30, tzinfo=SHANGHAI),
        [
            dt.datetime(2028, 1, 31, 0, 15, tzinfo=SHANGHAI),  # 29 February 00:15 (UTC: 1 March)
            dt.datetime(2028, 1, 31, 23, 30, tzinfo=SHANGHAI),
            dt.datetime(2028, 1, 20, 9, 0, tzinfo=SHANGHAI),
            dt.datetime(2027, 6, 1, 12, 0, tzinfo=SHANGHAI),
        ],
    ),
    (
        12,
        dt.datetime(2028, 3, 10, 12, 0, tzinfo=SHANGHAI),
        [
            dt.datetime(2028, 2, 29, 0, 15, tzinfo=SHANGHAI),  # 28 February 2029 00:15 (UTC: 1 March)
            dt.datetime(2027, 3, 31, 0, 15, tzinfo=SHANGHAI),
            dt.datetime(2027, 8, 31, 23, 59, 59, 999999, tzinfo=SHANGHAI),
            dt.datetime(2025, 5, 3, 12, 0, tzinfo=SHANGHAI),
        ],
    ),
]


@pytest.mark.parametrize(("months", "now", "dates"), KEPT_TIER_DATES)
def test_the_set_based_review_dates_a_kept_tier_as_the_orm_review_does(
    tiers, months, now, dates, settings, monkeypatch
):
    """A kept tier's next review in SQL (local calendar months, clamped to the month's end)
    against the ORM twin and :func:`tiers._review_after`."""
    settings.LOYALTY_TIER_REVIEW_MONTHS = months
    dates = [*dates, now]
    members = [new_member(f"1360013600{i}") for i in range(len(dates))]
    for member, review_at in zip(members, dates, strict=True):
        MemberTier.objects.filter(member=member).update(tier=tiers["bronze"], review_at=review_at)

    def reviews() -> list:
        rows = MemberTier.objects.filter(member__in=members).order_by("member_id")
        return [timezone.localtime(at) for at in rows.values_list("review_at", flat=True)]

    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT before_sweep")
    monkeypatch.setattr(tiers_module, "is_postgresql", lambda: False)
    by_orm = tiers_sweep(now=now)
    orm_reviews = reviews()
    with connection.cursor() as cursor:
        cursor.execute("ROLLBACK TO SAVEPOINT before_sweep")
    monkeypatch.undo()
    by_sql = tiers_sweep(now=now)

    assert by_sql == by_orm and by_sql["retained"] == len(dates)
    assert reviews() == orm_reviews
    expected = [tiers_module._review_after(at) for at in dates]
    assert orm_reviews == [at if at > now else tiers_module._review_after(now) for at in expected]
    first = orm_reviews[0]
    assert (first.month, first.day, first.hour, first.minute) == ((2, 29, 0, 15) if months == 1 else (2, 28, 0, 15))


def test_the_set_based_review_takes_four_statements_a_chunk(tiers, adjuster, django_assert_max_num_queries):
    _mixed_base(adjuster)
    # Tiers; the one chunk: its savepoint, the lock (which is the chunk's ids), the read, the
    # write, the notices, the release; the (empty) untiered pass. The ORM twin: 11.
    with django_assert_max_num_queries(8):
        counts = tiers_sweep(now=REVIEW)
    assert counts["upgraded"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_review_on_two_connections_writes_what_one_writes(tiers, adjuster, monkeypatch):
    """``tiers_sweep(workers=2)``: member-id ranges on two threads, each with its own
    connection (so the data is committed: transaction=True), against the one-connection
    ORM twin of the same data, run first and rolled back."""
    members = _mixed_base(adjuster) + _mixed_base_more(adjuster)
    with pytest.raises(_RolledBack), transaction.atomic():
        monkeypatch.setattr(tiers_module, "is_postgresql", lambda: False)
        by_orm = tiers_sweep(now=REVIEW, chunk_size=2)
        orm_rows = outcome()
        monkeypatch.undo()
        raise _RolledBack
    assert not TierChange.objects.filter(created_at=REVIEW).exists()
    by_threads = tiers_sweep(now=REVIEW, chunk_size=2, workers=2)
    assert by_threads == by_orm
    assert by_threads["upgraded"] + by_threads["downgraded"] + by_threads["retained"] >= len(members) // 2
    rows = outcome()
    # The same rows; the notices' order (by id) is the threads' order, so compared as sets.
    assert rows[:3] == orm_rows[:3] and sorted(rows[3]) == sorted(orm_rows[3])


class _RolledBack(Exception):
    pass


def _mixed_base_more(adjuster) -> list:
    """Four more members spread over other member-id ranges: two upgrades, a downgrade, a kept tier."""
    more = [new_member(f"1370013700{i}") for i in range(4)]
    for member, growth in zip(more, (3200, 1200, 10, 900), strict=True):
        grow(member, growth, adjuster, at=T0 + dt.timedelta(days=30))
    MemberTier.objects.filter(member__in=more[2:]).update(tier=tiers_module.Tier.objects.get(code="silver"))
    return more

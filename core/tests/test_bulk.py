"""core.bulk: the PostgreSQL statements write exactly what the ORM calls beside them write."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection

from core import bulk
from loyalty.models import MemberTier, Tier
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
FIELDS = ("phone", "member_number", "name", "gender", "birthday", "email", "home_store_id", "joined_at", "spend_total")


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("compares the PostgreSQL statement with the ORM path")


def both_paths(monkeypatch, write):
    """Run ``write(path)`` through the statement, then through the ORM path (as on SQLite)."""
    write("sql")
    monkeypatch.setattr(connection, "vendor", "sqlite")
    try:
        write("orm")
    finally:
        monkeypatch.undo()


def test_insert_rows_writes_what_bulk_create_writes(monkeypatch):
    store = StoreFactory()

    def write(path):
        prefix = "+8613800" if path == "sql" else "+8613900"
        rows = [
            {"phone": f"{prefix}000001", "member_number": f"{path}1", "name": "名字 1", "birthday": None},
            {"phone": f"{prefix}000002", "member_number": f"{path}2", "name": "", "birthday": dt.date(1990, 2, 28)},
        ]
        returned = bulk.insert_rows(Member, rows, same={"joined_at": T0, "home_store_id": store.pk})
        assert len(returned) == 2 and all(isinstance(pk, int) for (pk,) in returned)

    both_paths(monkeypatch, write)
    by_path = {}
    for member in Member.objects.order_by("phone"):
        path = "sql" if member.phone.startswith("+8613800") else "orm"
        values = {name: getattr(member, name) for name in FIELDS if name not in ("phone", "member_number")}
        by_path.setdefault(path, []).append(values)
    assert by_path["sql"] == by_path["orm"]
    assert by_path["sql"][0]["spend_total"] == Decimal(0)  # the model's default for a column not given


def test_update_rows_writes_what_bulk_update_writes(monkeypatch):
    stores = [StoreFactory(), StoreFactory()]
    pairs = {path: [MemberFactory(home_store=stores[0]) for _ in range(3)] for path in ("sql", "orm")}
    silver = Tier.objects.create(code="silver", name="Silver", rank=2, qualify_threshold=100, retain_threshold=50)
    gold = Tier.objects.create(code="gold", name="Gold", rank=3, qualify_threshold=500, retain_threshold=300)
    states = {
        path: [
            MemberTier.objects.create(member=member, tier=silver, started_at=T0, review_at=T0, pinned_until=None)
            for member in members
        ]
        for path, members in pairs.items()
    }

    def write(path):
        members = pairs[path]
        for i, member in enumerate(members):
            member.name, member.email = f"新名字 {i}", f"m{i}@example.com" if i else ""
            member.birthday = dt.date(1988, 2, 29) if i == 1 else None
            member.home_store = stores[1] if i else None
        bulk.update_rows(Member, members, ["name", "email", "birthday", "home_store"])
        for i, state in enumerate(states[path]):
            state.tier = gold if i else silver
            state.review_at = T0 + dt.timedelta(days=365 + i)
            state.pinned_until = T0 + dt.timedelta(days=30) if i == 2 else None
        bulk.update_rows(MemberTier, states[path], ["tier", "started_at", "review_at", "pinned_until"])

    both_paths(monkeypatch, write)

    def read(path):
        ids = [member.pk for member in pairs[path]]
        people = list(
            Member.objects.filter(pk__in=ids).order_by("pk").values("name", "email", "birthday", "home_store")
        )
        tiers = list(
            MemberTier.objects.filter(member_id__in=ids)
            .order_by("member_id")
            .values("tier", "started_at", "review_at", "pinned_until")
        )
        return people, tiers

    assert read("sql") == read("orm")
    assert read("sql")[0][1]["home_store"] == stores[1].pk

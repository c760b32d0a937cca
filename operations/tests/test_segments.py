"""Segment rules: validation, each rule on a hand-built set of members, combinations, counts."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty.models import Account, Currency, MemberTier, Tier
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, Segment, Tag
from operations.segments import segment_count, segment_counts, segment_members, segment_rules_clean

pytestmark = pytest.mark.django_db

NOW = timezone.make_aware(dt.datetime(2026, 6, 15, 12, 0))


def days_ago(n: int) -> dt.datetime:
    return NOW - dt.timedelta(days=n)


@pytest.fixture
def people():
    """Six members built so that each rule picks a known subset (see each test)."""
    north, south = StoreFactory(code="north"), StoreFactory(code="south")
    vip, wholesale = Tag.objects.create(name="VIP"), Tag.objects.create(name="wholesale")
    gold = Tier.objects.create(code="gold", name="Gold", rank=1)
    bronze = Tier.objects.create(code="bronze", name="Bronze", rank=0)
    m = {
        "ann": MemberFactory(
            home_store=north,
            stage="mature",
            rfm_segment="champions",
            gender="female",
            order_count=5,
            spend_total=Decimal("500.00"),
            joined_at=days_ago(400),
            last_order_at=days_ago(3),
            sms_consent_at=days_ago(100),
        ),
        "bob": MemberFactory(
            home_store=north,
            stage="dormant",
            rfm_segment="at_risk",
            gender="male",
            order_count=2,
            spend_total=Decimal("80.00"),
            joined_at=days_ago(300),
            last_order_at=days_ago(120),
            email_consent_at=days_ago(100),
        ),
        "cat": MemberFactory(
            home_store=south,
            stage="new",
            rfm_segment="new_customers",
            gender="female",
            order_count=1,
            spend_total=Decimal("30.00"),
            joined_at=days_ago(10),
            last_order_at=days_ago(9),
        ),
        "dan": MemberFactory(home_store=south, stage="new", joined_at=days_ago(5)),  # never ordered
        "eve": MemberFactory(
            home_store=None,
            stage="churned",
            rfm_segment="lost",
            order_count=1,
            spend_total=Decimal("199.99"),
            joined_at=days_ago(700),
            last_order_at=days_ago(400),
            wechat_consent_at=days_ago(1),
            status=Member.Status.FROZEN,
        ),
        "fay": MemberFactory(
            home_store=north, stage="growing", order_count=3, spend_total=Decimal("200.00"), last_order_at=days_ago(40)
        ),
    }
    # An erased member who would match everything broad: never in a segment.
    MemberFactory(home_store=north, stage="mature", erased_at=days_ago(1))
    m["ann"].tags.add(vip, wholesale)
    m["bob"].tags.add(vip)
    m["cat"].tags.add(wholesale)
    for name, tier in (("ann", gold), ("bob", bronze), ("fay", gold)):
        MemberTier.objects.create(member=m[name], tier=tier, started_at=NOW, review_at=NOW)
    for name, balance in (("ann", 1000), ("bob", 50), ("cat", 0)):
        Account.objects.create(member=m[name], currency=Currency.POINTS, balance=balance)
    Account.objects.create(member=m["dan"], currency=Currency.GROWTH, balance=5000)  # growth is not points
    return m


def names(people, rules) -> set[str]:
    found = set(segment_members(rules, now=NOW).values_list("pk", flat=True))
    return {name for name, member in people.items() if member.pk in found}


EVERYONE = {"ann", "bob", "cat", "dan", "eve", "fay"}


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({}, EVERYONE),
        ({"stages": ["new"]}, {"cat", "dan"}),
        ({"stages": ["mature", "dormant"]}, {"ann", "bob"}),
        ({"rfm_segments": ["champions", "lost"]}, {"ann", "eve"}),
        ({"tiers": ["gold"]}, {"ann", "fay"}),
        ({"tags_any": ["VIP", "wholesale"]}, {"ann", "bob", "cat"}),
        ({"tags_all": ["VIP", "wholesale"]}, {"ann"}),
        ({"tags_all": ["VIP"]}, {"ann", "bob"}),
        ({"stores": ["south"]}, {"cat", "dan"}),
        ({"spend_min": "199.99"}, {"ann", "eve", "fay"}),
        ({"spend_max": 80}, {"bob", "cat", "dan"}),
        ({"orders_min": 2, "orders_max": 3}, {"bob", "fay"}),
        ({"orders_max": 0}, {"dan"}),
        ({"points_min": 50}, {"ann", "bob"}),
        ({"points_max": 50}, {"bob", "cat", "dan", "eve", "fay"}),  # no points account counts as 0
        ({"points_min": 1, "points_max": 999}, {"bob"}),
        ({"joined_within_days": 30}, {"cat", "dan", "fay"}),  # fay joined "now" (factory default)
        ({"last_order_within_days": 30}, {"ann", "cat"}),
        ({"no_order_for_days": 90}, {"bob", "dan", "eve"}),  # never ordered included
        ({"consent": "sms"}, {"ann"}),
        ({"consent": "any"}, {"ann", "bob", "eve"}),
        ({"gender": ["female"]}, {"ann", "cat"}),
        ({"gender": "male"}, {"bob"}),
        ({"status": ["frozen"]}, {"eve"}),
        ({"status": "active"}, EVERYONE - {"eve"}),
    ],
)
def test_each_rule_narrows_to_the_hand_picked_members(people, rules, expected):
    assert names(people, rules) == expected


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"stages": ["mature", "growing"], "tiers": ["gold"], "tags_any": ["VIP"]}, {"ann"}),
        ({"stores": ["north"], "no_order_for_days": 60, "orders_min": 1}, {"bob"}),  # lapsed buyers
        ({"last_order_within_days": 200, "no_order_for_days": 60}, {"bob"}),
        ({"gender": ["female"], "consent": "any", "points_min": 1}, {"ann"}),
        ({"status": ["active"], "spend_min": 100, "stores": ["north"]}, {"ann", "fay"}),
        ({"stages": ["new"], "tags_all": ["VIP"]}, set()),
    ],
)
def test_rules_combine_with_and(people, rules, expected):
    assert names(people, rules) == expected


def test_a_saved_segment_is_used_the_way_journeys_use_it_and_stays_filterable(people):
    segment = Segment.objects.create(name="North VIPs", rules={"tags_any": ["VIP"], "stores": ["north"]})
    members = segment_members(segment)
    assert members.model is Member
    assert set(members.values_list("pk", flat=True)) == {people["ann"].pk, people["bob"].pk}
    assert list(members.filter(stage="mature").values_list("pk", flat=True)) == [people["ann"].pk]
    with CaptureQueriesContext(connection) as queries:
        list(members)
    assert len(queries) == 1


def test_a_member_with_several_matching_tags_appears_once(people):
    rows = list(segment_members({"tags_any": ["VIP", "wholesale"], "tiers": ["gold"]}))
    assert rows == [people["ann"]]


@pytest.mark.parametrize(
    "rules",
    [
        {},
        {"stages": ["new", "mature"]},
        {"tags_any": ["VIP"], "points_max": 100},
        {"no_order_for_days": 90, "consent": "any"},
        {"status": "active", "spend_min": "50"},
    ],
)
def test_count_is_the_number_of_members_listed(people, rules):
    assert segment_count(rules, now=NOW) == len(segment_members(rules, now=NOW))


def test_counts_of_several_segments_come_from_one_query(people, django_assert_num_queries):
    a = Segment.objects.create(name="a", rules={"stages": ["new"]})
    b = Segment.objects.create(name="b", rules={"tags_any": ["VIP"]})
    c = Segment.objects.create(name="c", rules={})
    broken = Segment.objects.create(name="broken", rules={"colour": "red"})  # saved by hand, bad
    with django_assert_num_queries(1):
        counts = segment_counts([a, b, c, broken])
    assert counts == {a.pk: 2, b.pk: 2, c.pk: 6, broken.pk: None}
    north_only = Member.objects.filter(home_store__code="north")
    assert segment_counts([a, b], members=north_only) == {a.pk: 0, b.pk: 2}
    assert segment_count(b, members=north_only) == 2


def test_clean_drops_empty_conditions_and_keeps_amounts_exact(people):
    assert segment_rules_clean(
        {"stages": [], "tiers": ["gold", "gold"], "spend_min": 0.1, "orders_min": "2", "consent": "", "gender": "male"}
    ) == {"tiers": ["gold"], "spend_min": "0.10", "orders_min": 2, "gender": ["male"]}
    assert segment_rules_clean(None) == {}


@pytest.mark.parametrize(
    ("rules", "key", "words"),
    [
        ([], "rules", "JSON object"),
        ({"colour": "red"}, "colour", "is not a segment rule"),
        ({"stages": "new"}, "stages", "list of names"),
        ({"stages": ["sleepy"]}, "stages", "sleepy"),
        ({"rfm_segments": ["winners"]}, "rfm_segments", "winners"),
        ({"tiers": ["platinum"]}, "tiers", "platinum"),
        ({"tags_any": ["nobody"]}, "tags_any", "nobody"),
        ({"tags_all": [1, 2]}, "tags_all", "list of names"),
        ({"stores": ["west"]}, "stores", "west"),
        ({"spend_min": "lots"}, "spend_min", "must be a number"),
        ({"spend_max": -1}, "spend_max", "0 or more"),
        ({"spend_min": "1.005"}, "spend_min", "two decimals"),
        ({"orders_min": 1.5}, "orders_min", "whole number"),
        ({"orders_max": True}, "orders_max", "must be a number"),
        ({"points_min": -5}, "points_min", "0 or more"),
        ({"points_min": 10, "points_max": 5}, "points_min", "is above"),
        ({"spend_min": 10, "spend_max": 5}, "spend_min", "is above"),
        ({"joined_within_days": 0}, "joined_within_days", "from 1"),
        ({"last_order_within_days": "NaN"}, "last_order_within_days", "must be a number"),
        ({"no_order_for_days": 30, "last_order_within_days": 30}, "no_order_for_days", "no member can match"),
        ({"consent": "fax"}, "consent", "must be one of"),
        ({"gender": ["other"]}, "gender", "other"),
        ({"status": ["gone"]}, "status", "gone"),
        ({"stages": ["new"] * 101 + [str(n) for n in range(101)]}, "stages", "more than"),
    ],
)
def test_each_bad_rule_is_refused_with_a_message_naming_its_key(people, rules, key, words):
    with pytest.raises(LoyaltyError) as refused:
        segment_rules_clean(rules)
    error = refused.value
    assert error.code == "segment_rule_invalid"
    assert error.extra["key"] == key
    assert key in str(error.message) or key == "rules"
    assert words in str(error.message)


def test_segment_members_refuses_bad_rules_instead_of_ignoring_them():
    with pytest.raises(LoyaltyError, match="colour"):
        segment_members({"colour": "red"})


# --- the admin: the form writes the rules, the page counts, samples, measures and exports ---------


ADD_URL = "/admin/members/segment/add/"


def change_url(segment) -> str:
    return f"/admin/members/segment/{segment.pk}/change/"


def form_data(**fields) -> dict:
    return {"name": "Test segment", "description": "", **fields}


def test_the_form_writes_the_rules_without_anyone_typing_json(admin_client, admin_user, people):
    response = admin_client.post(
        ADD_URL,
        form_data(
            stages=["mature", "dormant"],
            tags_any=["VIP"],
            tiers=["gold"],
            stores=["north"],
            spend_min="100.5",
            orders_min="2",
            no_order_for_days="",
            consent="any",
            gender=["female"],
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    segment = Segment.objects.get(name="Test segment")
    assert segment.rules == {
        "stages": ["mature", "dormant"],
        "tiers": ["gold"],
        "tags_any": ["VIP"],
        "stores": ["north"],
        "gender": ["female"],
        "consent": "any",
        "spend_min": "100.50",
        "orders_min": 2,
    }
    assert segment.created_by == admin_user
    # Opening it again shows the same choices ticked.
    form = admin_client.get(change_url(segment)).context["adminform"].form
    assert form.initial["stages"] == ["mature", "dormant"] and form.initial["spend_min"] == "100.50"
    assert form.initial["tags_any"] == ["VIP"]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"orders_min": "5", "orders_max": "2"}, "orders_min", "is above"),
        ({"last_order_within_days": "30", "no_order_for_days": "30"}, "no_order_for_days", "no member can match"),
        ({"joined_within_days": "0"}, "joined_within_days", "greater than or equal to 1"),
        ({"stages": ["sleepy"]}, "stages", "Select a valid choice"),
        ({"spend_max": "-1"}, "spend_max", "greater than or equal to 0"),
    ],
)
def test_bad_form_input_is_shown_on_its_field_and_saves_nothing(admin_client, people, fields, field, words):
    response = admin_client.post(ADD_URL, form_data(**fields))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and words in " ".join(errors[field])
    assert not Segment.objects.exists()


def test_the_change_page_shows_the_live_count_a_sample_and_the_value(admin_client, people):
    segment = Segment.objects.create(name="North", rules={"stores": ["north"]})
    page = admin_client.get(change_url(segment)).content.decode()
    assert 'id="segment-sample"' in page and people["ann"].member_number in page
    assert people["cat"].member_number not in page  # south
    assert 'id="segment-metrics"' in page and "Predicted CLV" in page
    assert f"/admin/members/segment/{segment.pk}/export/csv/" in page
    figure = admin_client.get(change_url(segment)).context["adminform"]
    assert figure.model_admin.live_count(figure.form.instance) == 3  # ann, bob, fay (not the erased one)


def test_the_change_page_runs_a_bounded_number_of_queries(admin_client, people, django_assert_max_num_queries):
    segment = Segment.objects.create(name="Everybody", rules={})
    admin_client.get(change_url(segment))
    for _n in range(30):
        MemberFactory(home_store=people["ann"].home_store)
    with django_assert_max_num_queries(14):  # measured: 11
        response = admin_client.get(change_url(segment))
    assert response.status_code == 200


# The list's cell of the live count (the admin theme adds its classes after ours).
LIVE_COUNT = 'data-label="members now">{}</td>'


def test_the_list_counts_every_segment_on_the_page_in_one_query(admin_client, people, django_assert_max_num_queries):
    for n in range(4):
        Segment.objects.create(name=f"s{n}", rules={"orders_min": n})
    admin_client.get("/admin/members/segment/")
    for n in range(4, 20):
        Segment.objects.create(name=f"s{n}", rules={"orders_min": n})
    with django_assert_max_num_queries(12):
        page = admin_client.get("/admin/members/segment/").content.decode()
    assert LIVE_COUNT.format(6) in page  # s0: everybody but the erased member


def _csv_rows(response) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_export_uses_the_member_export_columns_and_only_the_segments_members(admin_client, people):
    from operations.resources import MemberExportResource

    segment = Segment.objects.create(name="VIPs", rules={"tags_any": ["VIP"]})
    response = admin_client.get(f"/admin/members/segment/{segment.pk}/export/csv/")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    rows = _csv_rows(response)
    assert list(rows[0]) == list(MemberExportResource().get_export_headers())
    assert {row["member_number"] for row in rows} == {people["ann"].member_number, people["bob"].member_number}
    assert {row["member_number"]: row["points_balance"] for row in rows}[people["ann"].member_number] == "1000"
    xlsx = admin_client.get(f"/admin/members/segment/{segment.pk}/export/xlsx/")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"  # a zip: an Excel workbook
    assert admin_client.get(f"/admin/members/segment/{segment.pk}/export/pdf/").status_code == 302


def test_the_export_action_exports_the_members_of_the_selected_segments(admin_client, people):
    a = Segment.objects.create(name="a", rules={"stages": ["new"]})
    b = Segment.objects.create(name="b", rules={"tags_all": ["VIP", "wholesale"]})
    response = admin_client.post("/admin/members/segment/", {"action": "export_csv", "_selected_action": [a.pk, b.pk]})
    assert response.status_code == 200
    numbers = {row["member_number"] for row in _csv_rows(response)}
    assert numbers == {people[name].member_number for name in ("ann", "cat", "dan")}


@pytest.fixture
def north_clerk(django_user_model, people):
    from django.contrib.auth.models import Permission

    from members.models import StaffProfile

    user = django_user_model.objects.create_user("north-clerk", password="not-a-real-password-42", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_segment", "view_member"], content_type__app_label="members")
    )
    StaffProfile.objects.create(user=user).stores.add(people["ann"].home_store)
    return user


def test_a_scoped_staff_user_counts_sees_and_exports_only_their_stores_members(client, north_clerk, people):
    segment = Segment.objects.create(name="New and growing", rules={"stages": ["new", "growing"]})
    client.force_login(north_clerk)
    page = client.get(change_url(segment)).content.decode()
    assert people["fay"].member_number in page  # north, growing
    assert people["cat"].member_number not in page and people["dan"].member_number not in page  # south
    listing = client.get("/admin/members/segment/").content.decode()
    assert LIVE_COUNT.format(1) in listing
    rows = _csv_rows(client.get(f"/admin/members/segment/{segment.pk}/export/csv/"))
    assert [row["member_number"] for row in rows] == [people["fay"].member_number]


def test_export_needs_the_member_view_permission(client, north_clerk, people):
    from django.contrib.auth.models import Permission

    north_clerk.user_permissions.remove(Permission.objects.get(codename="view_member"))
    segment = Segment.objects.create(name="All", rules={})
    client.force_login(north_clerk)
    assert client.get(f"/admin/members/segment/{segment.pk}/export/csv/").status_code == 403
    page = client.get(change_url(segment)).content.decode()
    assert "You may not export members." in page and 'id="segment-sample"' not in page

"""The earning-rule engine through ``order_earn``: base rates, tier, campaigns, caps, windows."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty import rules, services
from loyalty.models import Account, Benefit, Currency, EarnRule, LedgerEntry, Lot, MemberTier, Order, Tier
from loyalty.selectors import ledger_violations
from loyalty.services import OrderLineInput
from operations.actions import member_create

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)  # Monday 20:00 in Shanghai
LONG_AGO = NOW - dt.timedelta(days=30)  # Saturday 16 May, 20:00 in Shanghai; outside the return window
SINCE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
POINTS, GROWTH = Currency.POINTS, Currency.GROWTH


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture
def member():
    return MemberFactory()


@pytest.fixture
def store():
    return StoreFactory()


_numbers = iter(range(1, 10**6))


def earn(member, store, amount="100", occurred_at=LONG_AGO, now=NOW, lines=(), **kwargs):
    return services.order_earn(
        member=member,
        store=store,
        number=f"R{next(_numbers)}",
        amount=amount,
        occurred_at=occurred_at,
        now=now,
        lines=[OrderLineInput(sku=sku, category=category, amount=Decimal(value)) for sku, category, value in lines],
        **kwargs,
    )


def rule(kind=EarnRule.Kind.BASE, value="1", **fields):
    fields.setdefault("name", f"{kind} {value}")
    fields.setdefault("valid_from", SINCE)
    return EarnRule.objects.create(kind=kind, value=Decimal(value), **fields)


def breakdown(result, currency=POINTS) -> list[tuple]:
    entry = result.entries.get(currency)
    if entry is None:
        return []
    return [(line["rule"], line["kind"], line["points"]) for line in entry.detail["lines"]]


def balance(member, currency=POINTS) -> int:
    account = Account.objects.get(member=member, currency=currency)
    return account.balance + account.pending


# --- base ------------------------------------------------------------------------------


def test_without_rules_the_settings_rate_applies(member, store, settings):
    settings.LOYALTY_POINTS_PER_YUAN, settings.LOYALTY_GROWTH_PER_YUAN = 2, 1
    result = earn(member, store, amount="50.70")
    assert breakdown(result) == [("base", "base", 101)]
    assert breakdown(result, GROWTH) == [("base", "base", 50)]


def test_base_rule_replaces_the_settings_rate_for_its_currency(member, store):
    base = rule(value="2", applies_to=EarnRule.Applies.POINTS)
    result = earn(member, store, amount="100")
    assert breakdown(result) == [(base.pk, "base", 200)]
    assert breakdown(result, GROWTH) == [("base", "base", 100)]


def test_base_rules_per_currency(member, store):
    points = rule(value="3", applies_to=EarnRule.Applies.POINTS)
    growth = rule(value="0.5", applies_to=EarnRule.Applies.GROWTH)
    result = earn(member, store, amount="99")
    assert breakdown(result) == [(points.pk, "base", 297)]
    assert breakdown(result, GROWTH) == [(growth.pk, "base", 49)]


def test_first_matching_base_rule_per_line_and_zero_rate_earns_nothing(member, store):
    tobacco = rule(value="0", priority=10, include_categories=["tobacco"], applies_to=EarnRule.Applies.BOTH)
    general = rule(value="2", priority=20, applies_to=EarnRule.Applies.BOTH)
    result = earn(member, store, amount="100", lines=[("T1", "tobacco", "40"), ("F1", "food", "60")])
    assert breakdown(result) == [(general.pk, "base", 120)]
    assert tobacco.pk not in [line[0] for line in breakdown(result)]


# --- tier multiplier -------------------------------------------------------------------


def test_tier_multiplier_adds_a_line_on_the_points_base(member, store):
    gold = Tier.objects.create(code="gold", name="Gold", rank=2, qualify_threshold=0)
    Benefit.objects.create(tier=gold, kind=Benefit.Kind.EARN_MULTIPLIER, value=Decimal("1.5"), title="Gold 1.5x")
    Benefit.objects.create(
        tier=gold, kind=Benefit.Kind.EARN_MULTIPLIER, value=Decimal("3"), title="retired", is_active=False
    )
    MemberTier.objects.create(member=member, tier=gold, started_at=SINCE, review_at=NOW + dt.timedelta(days=200))
    result = earn(member, store, amount="101")
    assert breakdown(result) == [("base", "base", 101), ("tier", "tier_multiplier", 50)]
    assert result.entries[POINTS].detail["lines"][1]["name"] == "Gold 1.5x"
    # Growth qualifies tiers: the tier does not multiply it (LOYALTY_TIER_MULTIPLIER_CURRENCIES).
    assert breakdown(result, GROWTH) == [("base", "base", 101)]


# --- campaigns -------------------------------------------------------------------------


def test_campaigns_stack_by_priority_on_the_base(member, store):
    base = rule(value="1", applies_to=EarnRule.Applies.BOTH)
    later = rule(EarnRule.Kind.BONUS, "50", priority=200)
    double = rule(EarnRule.Kind.MULTIPLIER, "2", priority=10)
    half_more = rule(EarnRule.Kind.MULTIPLIER, "1.5", priority=20, applies_to=EarnRule.Applies.BOTH)
    result = earn(member, store, amount="100")
    assert breakdown(result) == [
        (base.pk, "base", 100),
        (double.pk, "multiplier", 100),
        (half_more.pk, "multiplier", 50),
        (later.pk, "bonus", 50),
    ]
    assert breakdown(result, GROWTH) == [(base.pk, "base", 100), (half_more.pk, "multiplier", 50)]
    assert balance(member) == 300
    assert balance(member, GROWTH) == 150


def test_cap_per_order_limits_the_rules_own_line(member, store):
    triple = rule(EarnRule.Kind.MULTIPLIER, "3", cap_per_order=120)
    result = earn(member, store, amount="100")
    assert breakdown(result) == [("base", "base", 100), (triple.pk, "multiplier", 120)]


def test_capped_base_rule_is_what_multipliers_build_on(member, store):
    base = rule(value="2", cap_per_order=100)
    double = rule(EarnRule.Kind.MULTIPLIER, "2")
    result = earn(member, store, amount="100")
    assert breakdown(result) == [(base.pk, "base", 100), (double.pk, "multiplier", 100)]


def test_cap_per_day_counts_the_members_earlier_earns_that_local_day(member, store):
    bonus = rule(EarnRule.Kind.BONUS, "30", cap_per_day=50)
    morning = LONG_AGO.replace(hour=1)  # 09:00 in Shanghai, the same local day as LONG_AGO
    assert breakdown(earn(member, store, occurred_at=morning)) == [("base", "base", 100), (bonus.pk, "bonus", 30)]
    assert breakdown(earn(member, store)) == [("base", "base", 100), (bonus.pk, "bonus", 20)]
    assert breakdown(earn(member, store)) == [("base", "base", 100)]
    # 17:00 UTC is 01:00 the next day in Shanghai: a new day.
    next_day = LONG_AGO.replace(hour=17)
    assert breakdown(earn(member, store, occurred_at=next_day)) == [("base", "base", 100), (bonus.pk, "bonus", 30)]
    # Another member has their own cap.
    assert breakdown(earn(MemberFactory(), store)) == [("base", "base", 100), (bonus.pk, "bonus", 30)]


# --- what earns: categories, gift cards, SKUs, points paid --------------------------------


def test_gift_cards_never_earn(member, store):
    double = rule(EarnRule.Kind.MULTIPLIER, "2")
    result = earn(
        member, store, amount="100", lines=[("A", "drinks", "60"), ("G", "gift_card", "30"), ("H", "礼品卡", "10")]
    )
    assert breakdown(result) == [("base", "base", 60), (double.pk, "multiplier", 60)]
    assert result.entries[POINTS].detail["eligible_amount"] == "60.00"


def test_a_gift_card_only_order_earns_nothing(member, store):
    rule(EarnRule.Kind.BONUS, "20")
    result = earn(member, store, amount="200", lines=[("G", "Gift_Card", "200")])
    assert result.entries == {}
    assert Order.objects.filter(member=member).count() == 1


def test_non_earning_categories_are_a_setting(member, store, settings):
    settings.LOYALTY_NON_EARNING_CATEGORIES = "tobacco"
    result = earn(member, store, amount="100", lines=[("T", "tobacco", "70"), ("G", "gift_card", "30")])
    assert breakdown(result) == [("base", "base", 30)]


def test_campaign_excluded_categories_count_no_base(member, store):
    double = rule(EarnRule.Kind.MULTIPLIER, "2", exclude_categories=["Drinks"], exclude_skus=["F9"])
    result = earn(
        member, store, amount="100", lines=[("A", "drinks", "50"), ("F1", "food", "30"), ("F9", "food", "20")]
    )
    assert breakdown(result) == [("base", "base", 100), (double.pk, "multiplier", 30)]


def test_campaign_sku_and_category_includes_count_only_matching_lines(member, store):
    by_sku = rule(EarnRule.Kind.MULTIPLIER, "3", include_skus=["A1"])
    by_either = rule(EarnRule.Kind.MULTIPLIER, "2", include_skus=["A1"], include_categories=["food"])
    nothing = rule(EarnRule.Kind.BONUS, "99", include_skus=["Z"])
    result = earn(member, store, amount="100", lines=[("A1", "drinks", "25"), ("B", "food", "35"), ("C", "toys", "40")])
    assert breakdown(result) == [("base", "base", 100), (by_sku.pk, "multiplier", 50), (by_either.pk, "multiplier", 60)]
    assert nothing.pk not in [line[0] for line in breakdown(result)]


def test_the_part_paid_with_points_earns_nothing_spread_over_the_lines(member, store):
    double = rule(EarnRule.Kind.MULTIPLIER, "2", include_categories=["drinks"])
    # 50 of 100 paid with points: each line earns on half its amount; the gift card still nothing.
    result = earn(
        member,
        store,
        amount="100",
        points_paid_amount="50",
        lines=[("A", "drinks", "40"), ("B", "food", "40"), ("G", "gift_card", "20")],
    )
    assert breakdown(result) == [("base", "base", 40), (double.pk, "multiplier", 20)]
    assert earn(member, store, amount="80", points_paid_amount="80").entries == {}


# --- order-level filters ---------------------------------------------------------------


def test_weekday_filter_in_local_time(member, store):
    saturday = rule(EarnRule.Kind.BONUS, "10", weekdays="6")
    sunday = rule(EarnRule.Kind.BONUS, "20", weekdays="7")
    assert breakdown(earn(member, store)) == [("base", "base", 100), (saturday.pk, "bonus", 10)]
    late = LONG_AGO.replace(hour=20)  # 20:00 UTC on Saturday is 04:00 Sunday in Shanghai
    assert breakdown(earn(member, store, occurred_at=late)) == [("base", "base", 100), (sunday.pk, "bonus", 20)]


def test_store_filter(member, store):
    other = StoreFactory()
    here = rule(EarnRule.Kind.BONUS, "10")
    here.stores.add(store)
    assert breakdown(earn(member, store)) == [("base", "base", 100), (here.pk, "bonus", 10)]
    assert breakdown(earn(member, other)) == [("base", "base", 100)]


def test_birthday_month_only(store):
    birthday = rule(EarnRule.Kind.MULTIPLIER, "2", birthday_month_only=True)
    may_born = MemberFactory(birthday=dt.date(1990, 5, 30))
    june_born = MemberFactory(birthday=dt.date(1990, 6, 1))
    no_birthday = MemberFactory(birthday=None)
    assert breakdown(earn(may_born, store)) == [("base", "base", 100), (birthday.pk, "multiplier", 100)]
    assert breakdown(earn(june_born, store)) == [("base", "base", 100)]
    assert breakdown(earn(no_birthday, store)) == [("base", "base", 100)]


def test_first_purchase_only_once(member, store):
    welcome = rule(EarnRule.Kind.BONUS, "88", first_purchase_only=True)
    assert breakdown(earn(member, store)) == [("base", "base", 100), (welcome.pk, "bonus", 88)]
    assert breakdown(earn(member, store)) == [("base", "base", 100)]
    # Not even for an order that happened earlier but was recorded later.
    assert breakdown(earn(member, store, occurred_at=LONG_AGO - dt.timedelta(days=3))) == [("base", "base", 100)]


def test_inactive_rules_and_signup_rules_do_not_apply_to_orders(member, store):
    rule(EarnRule.Kind.BONUS, "10", is_active=False)
    rule(EarnRule.Kind.SIGNUP, "500")
    assert breakdown(earn(member, store)) == [("base", "base", 100)]


# --- rule windows: never retroactive ---------------------------------------------------


def test_an_order_earns_by_the_rules_in_force_when_it_happened(member, store):
    change = LONG_AGO + dt.timedelta(days=5)
    old = rule(value="2", valid_until=change)
    new = rule(value="3", valid_from=change)
    before = earn(member, store, occurred_at=change - dt.timedelta(seconds=1))
    after = earn(member, store, occurred_at=change)
    assert breakdown(before) == [(old.pk, "base", 200)]
    assert breakdown(after) == [(new.pk, "base", 300)]
    assert breakdown(earn(member, store, occurred_at=SINCE - dt.timedelta(days=1))) == [("base", "base", 100)]


def test_rule_revise_edits_an_unused_rule_in_place(member, store):
    campaign = rule(EarnRule.Kind.BONUS, "10")
    campaign.value = Decimal("20")
    saved = rules.rule_revise(rule=campaign, now=NOW)
    assert saved.pk == campaign.pk
    assert EarnRule.objects.count() == 1
    assert EarnRule.objects.get().value == 20


def test_rule_revise_closes_a_used_rule_and_starts_a_new_one(member, store):
    campaign = rule(EarnRule.Kind.BONUS, "10")
    campaign.stores.add(store)
    earn(member, store)  # uses it
    old_pk = campaign.pk
    campaign.value = Decimal("25")
    revised = rules.rule_revise(rule=campaign, now=NOW)

    old = EarnRule.objects.get(pk=old_pk)
    assert (old.value, old.valid_until) == (10, NOW)
    assert revised.pk != old_pk
    assert (revised.value, revised.valid_from, revised.valid_until) == (25, NOW, None)
    assert list(revised.stores.all()) == [store]
    # A late-recorded order that happened before the change earns by the old rule ...
    before = earn(member, store, occurred_at=NOW - dt.timedelta(hours=1), now=NOW + dt.timedelta(hours=1))
    assert breakdown(before)[-1] == (old_pk, "bonus", 10)
    # ... and one after it by the new.
    after = earn(member, store, occurred_at=NOW + dt.timedelta(minutes=1), now=NOW + dt.timedelta(hours=1))
    assert breakdown(after)[-1] == (revised.pk, "bonus", 25)


def test_rule_revise_schedules_a_future_change_and_only_closes_an_ended_one(member, store):
    base = rule(value="2")
    earn(member, store)
    base.value, base.valid_from = Decimal("4"), NOW + dt.timedelta(days=7)
    revised = rules.rule_revise(rule=base, now=NOW)
    old = EarnRule.objects.exclude(pk=revised.pk).get()
    assert old.valid_until == revised.valid_from == NOW + dt.timedelta(days=7)

    # Ending a used rule in the past only closes it, at the time of the change.
    bonus = rule(EarnRule.Kind.BONUS, "5")
    earn(member, store)
    bonus.valid_until = LONG_AGO
    closed = rules.rule_revise(rule=bonus, now=NOW)
    assert (closed.pk, closed.valid_until, closed.value) == (bonus.pk, NOW, 5)
    assert EarnRule.objects.filter(kind=EarnRule.Kind.BONUS).count() == 1


# --- the breakdown on the entry ----------------------------------------------------------


def test_breakdown_is_stored_on_the_entry(member, store):
    base = rule(value="1", name="Everyday 1 per yuan", applies_to=EarnRule.Applies.BOTH)
    bonus = rule(EarnRule.Kind.BONUS, "5", name="Summer bonus")
    result = earn(member, store, amount="12.34")
    entry = LedgerEntry.objects.get(pk=result.entries[POINTS].pk)
    assert entry.detail["lines"] == [
        {"rule": base.pk, "name": "Everyday 1 per yuan", "kind": "base", "points": 12},
        {"rule": bonus.pk, "name": "Summer bonus", "kind": "bonus", "points": 5},
    ]
    assert entry.pending_amount + entry.amount == 17
    assert entry.detail["eligible_amount"] == "12.34"


def test_growth_earned_asks_for_a_tier_upgrade(member, store, monkeypatch):
    calls = []
    monkeypatch.setattr(services.orders, "tier_upgrade_if_qualified", lambda **kwargs: calls.append(kwargs))
    earn(member, store, amount="100")
    earn(member, store, amount="50", occurred_at=NOW)  # pending growth counts too
    assert [call["growth"] for call in calls] == [100, 150]
    assert calls[0]["member_id"] == member.pk


# --- signup bonus ----------------------------------------------------------------------


def test_signup_bonus_is_awarded_once(store):
    welcome = rule(EarnRule.Kind.SIGNUP, "100", name="Welcome", applies_to=EarnRule.Applies.BOTH)
    rule(EarnRule.Kind.SIGNUP, "50", valid_from=NOW + dt.timedelta(days=1))  # not yet
    elsewhere = rule(EarnRule.Kind.SIGNUP, "70")
    elsewhere.stores.add(StoreFactory())
    member = member_create(phone="13800138000", home_store=store, joined_at=NOW)
    assert (balance(member), balance(member, GROWTH)) == (100, 100)
    entry = LedgerEntry.objects.get(member=member, currency=POINTS)
    assert (entry.kind, entry.reason, entry.idempotency_key) == ("earn", "Welcome", f"signup:{welcome.pk}")
    assert entry.detail["lines"] == [{"rule": welcome.pk, "name": "Welcome", "kind": "signup", "points": 100}]
    assert Lot.objects.get(entry=entry).pending is False

    again = rules.signup_bonus(member=member, now=NOW + dt.timedelta(minutes=1))
    assert [e.replayed for e in again] == [True, True]
    assert LedgerEntry.objects.filter(member=member).count() == 2
    assert rules.rule_is_used(welcome)


def test_points_award_refuses_a_reused_key_with_another_amount(member):
    services.points_award(
        member=member, currency=POINTS, amount=10, reason="Birthday", idempotency_key="birthday:1:2026", now=NOW
    )
    from core.errors import LoyaltyError

    with pytest.raises(LoyaltyError) as error:
        services.points_award(
            member=member, currency=POINTS, amount=20, reason="Birthday", idempotency_key="birthday:1:2026", now=NOW
        )
    assert error.value.code == "idempotency_key_reused"
    with pytest.raises(LoyaltyError):
        services.points_award(member=member, currency=POINTS, amount=5, reason="", idempotency_key="x", now=NOW)
    assert balance(member) == 10


# --- admin -----------------------------------------------------------------------------


PREVIEW = "admin:loyalty_earnrule_preview"


def test_preview_page_shows_the_breakdown_and_writes_nothing(admin_client, member, store):
    double = rule(EarnRule.Kind.MULTIPLIER, "2", name="Double drinks", include_categories=["drinks"])
    member.birthday = dt.date(1990, 1, 1)
    member.save()
    counts = (Order.objects.count(), LedgerEntry.objects.count(), Account.objects.count(), EarnRule.objects.count())
    response = admin_client.get(
        reverse(PREVIEW),
        {
            "store": store.pk,
            "lines": "A1, drinks, 30.00\nG1, gift_card, 20",
            "occurred_at": "2026-06-15 10:00",
            "member": member.member_number,
        },
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "Double drinks" in content
    assert response.context["results"][0]["total"] == 60
    assert [line.rule for line in response.context["results"][0]["lines"]] == ["base", double.pk]
    assert counts == (
        Order.objects.count(),
        LedgerEntry.objects.count(),
        Account.objects.count(),
        EarnRule.objects.count(),
    )

    empty = admin_client.get(reverse(PREVIEW))
    assert empty.status_code == 200
    bad = admin_client.get(reverse(PREVIEW), {"store": store.pk, "lines": "nonsense"})
    assert bad.status_code == 200
    assert "SKU, category, amount" in bad.content.decode()


def _change_form(rule_obj, **overrides):
    local_from = timezone.localtime(rule_obj.valid_from)
    data = {
        # The name per language (loyalty/translation.py), the weekdays as tick boxes.
        "name_zh_hans": rule_obj.name_zh_hans or rule_obj.name,
        "name_en": rule_obj.name_en or "",
        "kind": rule_obj.kind,
        "applies_to": rule_obj.applies_to,
        "value": str(rule_obj.value),
        "priority": rule_obj.priority,
        "is_active": "on",
        "valid_from_0": local_from.strftime("%Y-%m-%d"),
        "valid_from_1": local_from.strftime("%H:%M:%S"),
        "valid_until_0": "",
        "valid_until_1": "",
        "weekdays": [],
        "include_categories": "",
        "exclude_categories": "",
        "include_skus": "",
        "exclude_skus": "",
        "cap_per_order": "",
        "cap_per_day": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def test_admin_changing_a_used_rule_makes_a_new_version(admin_client, member, store):
    campaign = rule(EarnRule.Kind.BONUS, "10", name="Bonus")
    earn(member, store)
    url = reverse("admin:loyalty_earnrule_change", args=[campaign.pk])
    response = admin_client.post(url, _change_form(campaign, value="15", include_categories="drinks, food"))
    assert response.status_code == 302
    old, new = EarnRule.objects.order_by("id")
    assert old.pk == campaign.pk and old.value == 10 and old.valid_until is not None
    assert (new.value, new.include_categories, new.valid_from) == (15, ["drinks", "food"], old.valid_until)
    # Saving the new version unchanged makes no further version.
    assert (
        admin_client.post(reverse("admin:loyalty_earnrule_change", args=[new.pk]), _change_form(new)).status_code == 302
    )
    assert EarnRule.objects.count() == 2
    # A used rule cannot be deleted.
    assert admin_client.get(reverse("admin:loyalty_earnrule_delete", args=[campaign.pk])).status_code == 403


def test_admin_edits_an_unused_rule_in_place_and_lists_rules(admin_client):
    campaign = rule(EarnRule.Kind.BONUS, "10", name="Bonus")
    url = reverse("admin:loyalty_earnrule_change", args=[campaign.pk])
    response = admin_client.post(url, _change_form(campaign, value="12", weekdays=["7", "6"]))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (EarnRule.objects.count(), campaign.value, campaign.weekdays) == (1, 12, "67")
    assert admin_client.post(url, _change_form(campaign, weekdays="8")).status_code == 200
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(reverse("admin:loyalty_earnrule_add")).status_code == 200
    listing = admin_client.get(reverse("admin:loyalty_earnrule_changelist"), {"kind": "bonus", "is_active__exact": "1"})
    assert listing.status_code == 200
    assert reverse(PREVIEW) in listing.content.decode()


def test_rule_revise_ignores_a_lost_fraction_of_a_second(member, store):
    bonus = rule(EarnRule.Kind.BONUS, "5", valid_from=SINCE + dt.timedelta(microseconds=123456))
    earn(member, store)
    bonus.valid_from = bonus.valid_from.replace(microsecond=0)  # as the admin form sends it back
    saved = rules.rule_revise(rule=bonus, now=NOW)
    assert (saved.pk, saved.valid_until) == (bonus.pk, None)
    assert EarnRule.objects.count() == 1

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from core.errors import LoyaltyError
from foresight import simulator
from foresight.models import SimulationRun
from loyalty.models import Benefit, Currency, Tier
from loyalty.services import points_adjust

from .conftest import NOW

pytestmark = pytest.mark.django_db


def _at(year, month, day=15):
    return timezone.make_aware(dt.datetime(year, month, day, 12, 0))


@pytest.fixture
def programme(world, settings):
    settings.LOYALTY_TIER_REVIEW_MONTHS = 12
    settings.LOYALTY_GROWTH_EXPIRY = "rolling:12"
    settings.LOYALTY_TIER_SOFT_LANDING = True
    settings.LOYALTY_POINT_VALUE = "0.01"
    Tier.objects.create(code="bronze", name="Bronze", rank=0, is_default=True)
    silver = Tier.objects.create(code="silver", name="Silver", rank=1, qualify_threshold=1000, retain_threshold=800)
    gold = Tier.objects.create(code="gold", name="Gold", rank=2, qualify_threshold=3000, retain_threshold=2500)
    Benefit.objects.create(tier=silver, kind=Benefit.Kind.BIRTHDAY_POINTS, value=500, title="Birthday")
    Benefit.objects.create(tier=gold, kind=Benefit.Kind.MONTHLY_COUPON, value=10, title="Monthly ¥10")
    Benefit.objects.create(tier=gold, kind=Benefit.Kind.EARN_MULTIPLIER, value="1.5", title="1.5x")
    Benefit.objects.create(tier=gold, kind=Benefit.Kind.FREE_SHIPPING, value=0, title="Free shipping")

    def growth(member, amount, at):
        points_adjust(
            member=member, currency=Currency.GROWTH, amount=amount, reason="history", actor=world["brand"], now=at
        )

    # Review periods aligned to November 2026: the current one is Dec 2025 - Nov 2026, the
    # one before Dec 2024 - Nov 2025; the review itself at the end of November 2025.
    rising, lapsing, steady, quiet = (world["member"]() for _ in range(4))
    growth(rising, 2500, _at(2026, 6))  # silver now; gold if gold needs 2000
    growth(lapsing, 3200, _at(2024, 11))  # gold going into the review, no growth since
    growth(steady, 1200, _at(2026, 10))  # silver either way
    return {"rising": rising, "lapsing": lapsing, "steady": steady, "quiet": quiet}


def _proposal(**overrides):
    values = {
        "changes": {"gold": (2000, 1500)},
        "review_months": 12,
        "window_months": 12,
        "soft_landing": False,
    } | overrides
    return simulator.policy_build(**values)


def test_replay_moves_members_as_computed_by_hand(programme):
    result = simulator.simulate(_proposal(), now=NOW)
    # Positions: 0 bronze, 1 silver, 2 gold. In force: rising, lapsing (gold, soft landing
    # to silver at the review) and steady are silver, quiet bronze. Proposed: rising reaches
    # gold at 2000; lapsing falls to bronze without soft landing; steady stays.
    assert result["matrix"] == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    assert (result["moved_up"], result["moved_down"]) == (1, 1)
    assert result["samples"] == {"up": [programme["rising"].pk], "down": [programme["lapsing"].pk]}
    assert [(t["code"], t["baseline"], t["proposed"]) for t in result["tiers"]] == [
        ("bronze", 1, 2),
        ("silver", 3, 1),
        ("gold", 0, 1),
    ]
    # In force: three silver birthdays at 500 points x 0.01 = 15.00. Proposed: one silver
    # (5.00) and one gold: 12 x 10 coupons + 2500 growth x 0.5 extra points x 0.01 = 132.50.
    assert result["cost"] == {"baseline": "15.00", "proposed": "137.50", "change": "122.50"}


def test_the_policy_in_force_replays_to_itself(programme):
    same = simulator.policy_build(changes={}, review_months=12, window_months=12, soft_landing=True)
    result = simulator.simulate(same, now=NOW)
    assert (result["moved_up"], result["moved_down"]) == (0, 0)
    assert result["cost"]["change"] == "0.00"


def test_a_shorter_window_and_review_change_the_replay(programme):
    # Window 3 months, review 6: the review is at the end of May 2026. steady's October
    # growth still counts; rising reached 2500 in June: silver (gold still needs 3000).
    result = simulator.simulate(_proposal(changes={}, review_months=6, window_months=3), now=NOW)
    assert [(t["code"], t["proposed"]) for t in result["tiers"]] == [("bronze", 2), ("silver", 2), ("gold", 0)]


def test_scoped_to_a_store(programme, world):
    result = simulator.simulate(_proposal(), now=NOW, store_ids=[world["store_b"].pk])
    assert result["matrix"] == [[0, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_the_simulation_writes_nothing_but_its_run(programme, world, django_assert_max_num_queries):
    before = list(Tier.objects.values_list("code", "qualify_threshold", "retain_threshold"))
    with django_assert_max_num_queries(12):
        run = simulator.simulation_record(name="Easier gold", policy=_proposal(), actor=world["brand"], now=NOW)
    assert list(Tier.objects.values_list("code", "qualify_threshold", "retain_threshold")) == before
    assert SimulationRun.objects.get().result["moved_up"] == 1 == run.result["moved_up"]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"platinum": (1, 1)}, "unknown_tier"),
        ({"gold": (2000, 2500)}, "invalid_threshold"),
        ({"gold": (900, 800)}, "thresholds_not_rising"),
    ],
)
def test_bad_proposals_are_refused(programme, changes, code):
    with pytest.raises(LoyaltyError) as refused:
        _proposal(changes=changes)
    assert refused.value.code == code


def test_bad_periods_are_refused(programme):
    with pytest.raises(LoyaltyError) as refused:
        _proposal(review_months=0)
    assert refused.value.code == "invalid_period"


def test_staff_propose_in_the_admin_and_see_the_figures(client, programme, world):
    client.force_login(world["brand"])
    add = reverse("admin:foresight_simulationrun_add")
    assert "gold 3000 2500" in client.get(add).content.decode()
    bad = client.post(add, {"name": "x", "review_months": 12, "window_months": 12, "thresholds": "gold two"})
    assert bad.status_code == 200 and "write &#x27;code qualify retain&#x27;" in bad.content.decode()
    done = client.post(
        add, {"name": "Easier gold", "review_months": 12, "window_months": 12, "thresholds": "gold 2000 1500"}
    )
    assert done.status_code == 302
    run = SimulationRun.objects.get()
    page = client.get(reverse("admin:foresight_simulationrun_change", args=[run.pk])).content.decode()
    assert "would move up" in page
    assert Tier.objects.get(code="gold").qualify_threshold == 3000


def test_a_store_manager_replays_their_stores_only_and_sees_their_runs(client, programme, world):
    client.force_login(world["brand"])
    add = reverse("admin:foresight_simulationrun_add")
    form = {"name": "Brand-wide", "review_months": 12, "window_months": 12, "thresholds": "gold 2000 1500"}
    client.post(add, form, follow=True)  # follow: the "added" message is shown and gone
    brand_run = SimulationRun.objects.get()
    client.force_login(world["manager_b"])
    assert client.post(add, form | {"name": "Store B"}, follow=True).status_code == 200
    mine = SimulationRun.objects.get(name="Store B")
    assert mine.result["scoped"] is True and sum(map(sum, mine.result["matrix"])) == 0
    listing = client.get(reverse("admin:foresight_simulationrun_changelist")).content.decode()
    assert "Store B" in listing and "Brand-wide" not in listing
    other = client.get(reverse("admin:foresight_simulationrun_change", args=[brand_run.pk]))
    assert other.status_code in (302, 404)

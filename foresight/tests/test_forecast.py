import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from core.errors import LoyaltyError
from foresight import forecast
from foresight.models import ForecastRun
from loyalty.services import lots_release_matured, order_earn, points_spend

from .conftest import NOW

pytestmark = pytest.mark.django_db


def test_fit_is_the_share_redeemed_of_what_each_age_held():
    # Cohort 100 earned 1000: 100 redeemed at age 0, 90 at age 1 (and 10 refunded), 80 at
    # age 2. Cohort 101 earned 500: 100 at age 0, 40 at age 1. Now is month 103.
    consumed = [
        (100, 0, "spend", 100),
        (100, 1, "spend", 90),
        (100, 1, "refund", 10),
        (100, 2, "spend", 80),
        (101, 0, "spend", 100),
        (101, 1, "spend", 50),
        (101, 1, "reverse", 10),
    ]
    fitted = forecast.fit({100: 1000, 101: 500}, consumed, 103)
    assert fitted.exposure == {0: 1500, 1: 900 + 400, 2: 800}
    assert fitted.redeemed == {0: 200, 1: 130, 2: 80}
    assert fitted.shares == {0: 200 / 1500, 1: 0.1, 2: 0.1}
    assert fitted.share(7) == 0.1  # past the oldest age: the oldest age's share


def test_projection_redeems_by_the_curve_and_expires_what_is_left():
    fitted = forecast.Fit(shares={0: 0.5, 2: 0.1}, exposure={}, redeemed={})
    rows = forecast.project([(100, 105, 720), (101, None, 360)], fitted, 103, horizon=3)
    # 103: 72 + 36 redeemed; 104: 64.8 + 32.4; 105: 58.32 + 29.16 redeemed, then cohort
    # 100's 524.88 left expires.
    assert rows == [
        {"month": "8-08", "redeemed": 108, "expired": 0, "outstanding": 972},
        {"month": "8-09", "redeemed": 97, "expired": 0, "outstanding": 875},
        {"month": "8-10", "redeemed": 87, "expired": 525, "outstanding": 262},
    ]


def test_expiry_month_under_each_policy():
    cohort = 2026 * 12 + 7  # August 2026
    assert forecast.expiry_month(forecast.parse_policy("rolling:12"), cohort) == 2027 * 12 + 7
    assert forecast.expiry_month(forecast.parse_policy("calendar:0"), cohort) == 2027 * 12
    assert forecast.expiry_month(forecast.parse_policy("never"), cohort) is None
    with pytest.raises(LoyaltyError) as refused:
        forecast.parse_policy("monthly")
    assert refused.value.code == "invalid_policy"


@pytest.fixture
def earned(world, settings):
    """1000 points earned 5 August 2026 (rolling 12 months: they expire 5 August 2027);
    100 spent in August, 90 in September."""
    settings.LOYALTY_POINTS_EXPIRY = "rolling:12"
    settings.LOYALTY_POINT_VALUE = "0.01"
    member = world["member"]()
    bought = timezone.make_aware(dt.datetime(2026, 8, 5, 12, 0))
    order_earn(member=member, store=world["store_a"], number="F-1", amount="1000", occurred_at=bought, now=bought)
    lots_release_matured(now=bought + dt.timedelta(days=8))
    points_spend(member=member, amount=100, idempotency_key="f1", reason="x", now=bought + dt.timedelta(days=15))
    points_spend(member=member, amount=90, idempotency_key="f2", reason="x", now=bought + dt.timedelta(days=36))
    return member


def test_forecast_from_the_ledger_as_computed_by_hand(earned, world):
    result = forecast.forecast(alternative="calendar:0", now=NOW)
    # Ages 0, 1, 2 observed: 100 of 1000, 90 of 900, 0 of 810.
    assert [(c["age"], c["exposure"], c["redeemed"]) for c in result["curve"]] == [
        (0, 1000, 100),
        (1, 900, 90),
        (2, 810, 0),
    ]
    assert result["cohorts"] == [{"month": "2026-08", "earned": 1000, "redeemed": 190, "expired": 0, "other": 0}]
    assert (result["outstanding"], result["liability"]) == (810, "8.10")
    months = result["months"]
    assert months[0] == {"month": "2026-11", "redeemed": 0, "expired": 0, "outstanding": 810, "liability": "8.10"}
    assert months[9] == {"month": "2027-08", "redeemed": 0, "expired": 810, "outstanding": 0, "liability": "0.00"}
    assert sum(m["expired"] for m in months) == 810
    # Calendar-year expiry: the 810 points expire on 1 January 2027.
    alternative = result["alternative"]["months"]
    assert alternative[2] == {"month": "2027-01", "redeemed": 0, "expired": 810, "outstanding": 0, "liability": "0.00"}
    assert forecast.forecast(now=NOW, store_ids=[world["store_b"].pk])["outstanding"] == 0


def test_staff_run_a_forecast_in_the_admin(client, earned, world):
    client.force_login(world["brand"])
    add = reverse("admin:foresight_forecastrun_add")
    bad = client.post(add, {"name": "x", "alternative_policy": "weekly"})
    assert bad.status_code == 200 and not ForecastRun.objects.exists()
    assert client.post(add, {"name": "Calendar year?", "alternative_policy": "calendar:0"}).status_code == 302
    run = ForecastRun.objects.get()
    page = client.get(reverse("admin:foresight_forecastrun_change", args=[run.pk])).content.decode()
    assert "The history it was fitted on" in page and "Liability (yuan)" in page

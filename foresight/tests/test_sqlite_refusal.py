"""On the embedded SQLite default foresight refuses clearly instead of failing in SQL."""

from types import SimpleNamespace

import pytest

from core.errors import LoyaltyError
from foresight import demo, forecast, leakage, selectors, simulator

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_sqlite(monkeypatch):
    monkeypatch.setattr(selectors, "connection", SimpleNamespace(vendor="sqlite"))


def test_each_part_refuses_or_skips_on_sqlite(on_sqlite):
    with pytest.raises(LoyaltyError) as refused:
        simulator.simulate(simulator.current_policy())
    assert refused.value.code == "unsupported" and "PostgreSQL" in refused.value.message
    with pytest.raises(LoyaltyError):
        forecast.forecast()
    with pytest.raises(LoyaltyError):
        leakage.leakage_detect()
    assert leakage.leakage_scan() == {"skipped": "needs PostgreSQL"}
    assert demo.foresight_demo_seed() == {"skipped": "needs PostgreSQL"}


def test_the_admin_forms_say_so_and_save_nothing(on_sqlite, admin_client):
    from django.urls import reverse

    from foresight.models import ForecastRun

    answer = admin_client.post(reverse("admin:foresight_forecastrun_add"), {"name": "next year"})
    assert answer.status_code == 200 and "PostgreSQL" in answer.content.decode()
    assert not ForecastRun.objects.exists()

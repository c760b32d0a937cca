from io import StringIO

import pytest
from django.core.management import call_command

from foresight.models import ForecastRun, SimulationRun

pytestmark = pytest.mark.django_db


def test_the_demo_has_a_simulation_and_a_forecast_and_runs_twice():
    call_command("seed_demo", members=25, stdout=StringIO())
    call_command("seed_programme_demo", stdout=StringIO())
    call_command("seed_foresight_demo", stdout=StringIO())
    simulation = SimulationRun.objects.get()
    assert simulation.result["tiers"] and sum(t["baseline"] for t in simulation.result["tiers"]) >= 25
    forecast = ForecastRun.objects.get()
    assert forecast.result["outstanding"] > 0 and len(forecast.result["months"]) == 12
    assert forecast.result["curve"] and forecast.result["alternative"]["months"]
    call_command("seed_foresight_demo", stdout=StringIO())
    assert (SimulationRun.objects.count(), ForecastRun.objects.count()) == (1, 1)

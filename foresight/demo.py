"""Foresight's part of the demo: the leakage scan's cases, a tier-policy simulation (the
top tier 20 percent easier to reach, no soft landing) and a liability forecast with a
calendar-year alternative, so each page has something to show.

Run after ``seed_demo`` (and ``seed_programme_demo``, whose transfer the scan looks at)
by ``manage.py seed_foresight_demo``; safe to run twice (it finds its runs by name).
"""

from . import forecast, leakage, simulator
from .models import ForecastRun, SimulationRun
from .selectors import postgresql_available

SIMULATION = "Demo: top tier 20% easier, no soft landing"
FORECAST = "Demo: next 12 months, and calendar-year expiry"


def foresight_demo_seed() -> dict:
    """Seed the demo; returns what it did (nothing on SQLite: foresight needs PostgreSQL)."""
    if not postgresql_available():
        return {"skipped": "needs PostgreSQL"}
    done = {"leakage": leakage.leakage_detect()}
    current = simulator.current_policy()
    if current.tiers and not SimulationRun.objects.filter(name=SIMULATION).exists():
        top = current.tiers[-1]
        lower = current.tiers[-2].qualify if len(current.tiers) > 1 else 0
        qualify = max(lower, top.qualify * 4 // 5)
        policy = simulator.policy_build(
            changes={top.code: (qualify, min(top.retain, qualify))},
            review_months=current.review_months,
            window_months=min(current.window_months, 36),
            soft_landing=False,
        )
        run = simulator.simulation_record(name=SIMULATION, policy=policy, actor=None)
        done["simulation"] = {"moved_up": run.result["moved_up"], "moved_down": run.result["moved_down"]}
    if not ForecastRun.objects.filter(name=FORECAST).exists():
        run = forecast.forecast_record(name=FORECAST, alternative="calendar:1", actor=None)
        done["forecast"] = {"outstanding": run.result["outstanding"], "liability": run.result["liability"]}
    return done

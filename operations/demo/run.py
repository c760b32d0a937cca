"""The state of one demo run and the random draws of times that every topic shares.

One random generator, seeded once, is drawn from in a fixed order by the planning functions
of every topic module; that order is what makes the demo the same on every run of the same
day. Keep new draws at the end of the plan, or the whole demo changes.
"""

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import OutputWrapper
from django.core.management.color import Style
from django.utils import timezone

from members.models import Store

if TYPE_CHECKING:
    from .members import MemberPlan

SEED = 20240601
HISTORY_DAYS = 548  # 18 months
CENT = Decimal("0.01")


@dataclass
class DemoRun:
    """What a run draws from and counts: the generator, the history's span, the rows made so far."""

    rng: random.Random
    # The history ends at midnight: the plan, drawn relative to it, is the same all day.
    end: dt.datetime
    out: OutputWrapper
    style: Style
    counts: dict[str, int] = field(default_factory=lambda: {"members": 0, "orders": 0, "spends": 0, "adjustments": 0})
    order_numbers: dict[str, int] = field(default_factory=dict)
    stores: dict[str, Store] = field(default_factory=dict)
    staff: AbstractBaseUser | None = None  # the demo staff user the adjustments are by
    dormant_plan: "MemberPlan | None" = None

    @classmethod
    def starting_today(cls, *, seed: int, out: OutputWrapper, style: Style) -> "DemoRun":
        end = timezone.localtime(timezone.now()).replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(rng=random.Random(seed), end=end, out=out, style=style)

    @property
    def start(self) -> dt.datetime:
        return self.end - dt.timedelta(days=HISTORY_DAYS)

    def between(self, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
        return (lo + (hi - lo) * self.rng.random()).replace(microsecond=0)

    def shop_time(self, lo: dt.datetime, hi: dt.datetime | None = None) -> dt.datetime:
        """A time between ``lo`` and ``hi`` (default: a day later) when the stores are open, 10:00-22:00."""
        hi = hi or lo + dt.timedelta(days=1)
        for _attempt in range(20):
            day = timezone.localtime(self.between(lo, hi))
            hour, minute, second = self.rng.randint(10, 21), self.rng.randrange(60), self.rng.randrange(60)
            at = day.replace(hour=hour, minute=minute, second=second)
            if lo <= at <= hi:
                return at
        return self.between(lo, hi)

"""Settings-driven rules: when points expire, how long they stay pending, the fallback earn rate."""

import calendar
import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext

from .models import Currency


@dataclass(frozen=True)
class ExpiryPolicy:
    """``rolling`` N months after earning, ``calendar`` end of the Nth year after, or ``never``.

    ``calendar:0`` ends with the year of earning: a calendar-year tier window for growth.
    """

    kind: str
    months_or_years: int = 0

    @classmethod
    def parse(cls, text: str) -> "ExpiryPolicy":
        kind, _sep, number = text.strip().partition(":")
        if kind == "never" and not number:
            return cls("never")
        if kind == "rolling" and number.isdigit() and int(number) > 0:
            return cls(kind, int(number))
        if kind == "calendar" and number.isdigit():
            return cls(kind, int(number))
        raise ValueError(f"expiry policy must be 'rolling:N' (N >= 1), 'calendar:N' (N >= 0) or 'never', not {text!r}")

    def expires_at(self, earned_at: dt.datetime) -> dt.datetime | None:
        if self.kind == "never":
            return None
        local = timezone.localtime(earned_at)
        if self.kind == "calendar":
            # 31 December of year N after the year of earning, end of that day.
            end = dt.datetime(local.year + self.months_or_years + 1, 1, 1)
            return timezone.make_aware(end, timezone.get_current_timezone())
        month_index = local.month - 1 + self.months_or_years
        year, month = local.year + month_index // 12, month_index % 12 + 1
        day = min(local.day, calendar.monthrange(year, month)[1])
        return local.replace(year=year, month=month, day=day)

    def describe(self) -> str:
        """The policy in words, for staff."""
        if self.kind == "never":
            return gettext("never expire")
        if self.kind == "rolling":
            return gettext("expire %(n)s months after they were earned") % {"n": self.months_or_years}
        if self.months_or_years == 0:
            return gettext("expire at the end of the calendar year they were earned in")
        return gettext("expire at the end of the %(n)s. calendar year after the year they were earned in") % {
            "n": self.months_or_years
        }


def expiry_policy(currency: str) -> ExpiryPolicy:
    text = settings.LOYALTY_POINTS_EXPIRY if currency == Currency.POINTS else settings.LOYALTY_GROWTH_EXPIRY
    return ExpiryPolicy.parse(text)


def pending_until(occurred_at: dt.datetime) -> dt.datetime:
    """The end of an order's return window: its points are pending until then."""
    return occurred_at + dt.timedelta(days=settings.LOYALTY_PENDING_DAYS)


def earn_rate(currency: str) -> int:
    return settings.LOYALTY_POINTS_PER_YUAN if currency == Currency.POINTS else settings.LOYALTY_GROWTH_PER_YUAN

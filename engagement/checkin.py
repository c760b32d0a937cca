"""Daily check-in: one per member per local day, points by the day of the streak.

The database allows one ``CheckIn`` per member and day (``check_in_once_per_day``); two
check-ins at once both try to insert, the second waits for the first and fails on the
unique index, and its transaction (check-in row and award) rolls back whole. The award
goes through ``loyalty.services.points_award`` with the key ``checkin:<member>:<day>``,
so the ledger's invariants hold and a replayed award writes nothing.
"""

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from loyalty.models import Currency
from loyalty.services import points_award
from members.models import Member

from .models import CheckIn

# How many days the status shows (today and the days before it).
WEEK_DAYS = 7


def local_day(now: dt.datetime) -> dt.date:
    """The calendar day of ``now`` in the programme's time zone (settings.TIME_ZONE)."""
    return timezone.localtime(now, timezone.get_default_timezone()).date()


def checkin_points_table() -> list[int]:
    """LOYALTY_CHECKIN_POINTS as whole numbers: points for day 1, 2, ... of a streak."""
    raw = settings.LOYALTY_CHECKIN_POINTS
    values = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    try:
        table = [int(str(value).strip()) for value in values if str(value).strip()]
    except ValueError:
        table = []
    if not table or any(points < 0 for points in table):
        raise LoyaltyError(
            "misconfigured",
            _("Check-in points are not configured correctly (LOYALTY_CHECKIN_POINTS). Please try again later."),
        )
    return table


def checkin_points_for(streak: int) -> int:
    """Points for day ``streak`` (1, 2, ...) of a streak; past the table, its last value."""
    table = checkin_points_table()
    return table[min(streak, len(table)) - 1]


def member_check_in(*, member: Member, now: dt.datetime | None = None) -> CheckIn:
    """Check ``member`` in for today (local day) and award the points of this streak day.

    The streak is yesterday's streak plus one, or 1 when the member did not check in
    yesterday. The check-in row and its ledger award commit together or not at all.
    Refuses: a second check-in on the same day (``already_checked_in``, nothing
    changes: the unique constraint decides, so two at once give one), a frozen or closed
    member (``member_inactive``), a broken points setting (``misconfigured``).
    """
    now = now or timezone.now()
    day = local_day(now)
    try:
        with transaction.atomic():
            status = Member.objects.values_list("status", flat=True).get(pk=member.pk)
            if status != Member.Status.ACTIVE:
                raise LoyaltyError(
                    "member_inactive",
                    _("This membership is %(status)s, so it cannot check in. Please contact our staff.")
                    % {"status": Member.Status(status).label},
                )
            yesterday = (
                CheckIn.objects.filter(member_id=member.pk, day=day - dt.timedelta(days=1))
                .values_list("streak", flat=True)
                .first()
            )
            streak = (yesterday or 0) + 1
            points = checkin_points_for(streak)
            # Insert first: a concurrent check-in of the same member and day waits here on
            # the unique index and then fails, before it touches the ledger.
            check_in = CheckIn.objects.create(
                member_id=member.pk, day=day, streak=streak, points=points, created_at=now
            )
            if points > 0:
                check_in.entry = points_award(
                    member=member,
                    currency=Currency.POINTS,
                    amount=points,
                    reason=_("Daily check-in, day %(streak)s of the streak") % {"streak": streak},
                    idempotency_key=f"checkin:{member.pk}:{day.isoformat()}",
                    detail={"check_in_day": day.isoformat(), "streak": streak},
                    now=now,
                )
                check_in.save(update_fields=["entry"])
    except IntegrityError:
        raise LoyaltyError(
            "already_checked_in",
            _("You have already checked in today. Come back tomorrow to keep your streak going."),
        ) from None
    return check_in


@dataclass
class DayMark:
    day: dt.date
    checked_in: bool
    points: int = 0


@dataclass
class CheckInStatus:
    today: dt.date
    checked_in_today: bool
    # The streak as it stands: today's if checked in, else yesterday's (still alive), else 0.
    streak: int
    # Points earned by today's check-in (0 when not checked in yet).
    points_today: int
    # The next check-in: its day (today or tomorrow), day of the streak and points.
    next_day: dt.date
    next_streak: int
    next_points: int
    week: list[DayMark] = field(default_factory=list)


def _points_or_zero(streak: int) -> int:
    # A page must not fail on a broken setting; checking in reports it (``misconfigured``).
    try:
        return checkin_points_for(streak)
    except LoyaltyError:
        return 0


def check_in_status(member: Member, now: dt.datetime | None = None) -> CheckInStatus:
    """Where the member stands: checked in today, the streak, the next reward, the last 7 days.

    One query, whatever the member's history.
    """
    now = now or timezone.now()
    today = local_day(now)
    first = today - dt.timedelta(days=WEEK_DAYS - 1)
    rows = {
        row["day"]: row
        for row in CheckIn.objects.filter(member_id=member.pk, day__gte=first, day__lte=today).values(
            "day", "streak", "points"
        )
    }
    todays = rows.get(today)
    yesterdays = rows.get(today - dt.timedelta(days=1))
    if todays is not None:
        streak, next_day = todays["streak"], today + dt.timedelta(days=1)
    else:
        streak, next_day = (yesterdays["streak"] if yesterdays else 0), today
    week = []
    for offset in range(WEEK_DAYS):
        day = first + dt.timedelta(days=offset)
        row = rows.get(day)
        week.append(DayMark(day=day, checked_in=row is not None, points=row["points"] if row else 0))
    return CheckInStatus(
        today=today,
        checked_in_today=todays is not None,
        streak=streak,
        points_today=todays["points"] if todays else 0,
        next_day=next_day,
        next_streak=streak + 1,
        next_points=_points_or_zero(streak + 1),
        week=week,
    )

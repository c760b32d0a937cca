"""Automated journeys: when a trigger fires for a member, do one action, once (docs/journeys.md).

:func:`journeys_run` (the hourly ``engagement.run_journeys`` task) runs every active
journey; :func:`journey_run` runs one. A journey's run walks the members in id chunks
(``members.jobs.run_in_member_chunks``, one transaction per chunk) and, per chunk:

1. asks its trigger, set-based, which members it fired for inside the look-back window
   (:data:`LOOKBACK`), each with an *event key* ("joined", "order:123", "stage:45",
   "expiry:2026-12-07" ...), leaving out events this journey already has a run for;
2. keeps the members in the journey's audience (``operations.segments.segment_members``);
3. decides, set-based, who is skipped and why: a frozen, closed or erased member; a
   marketing journey and a member without marketing consent on any channel (PIPL article
   24); the frequency cap (``cap_count`` done runs within ``cap_days``);
4. inserts one :class:`~engagement.models.JourneyRun` per event with
   ``ON CONFLICT DO NOTHING`` and acts only for the rows it inserted, in the same
   transaction: the unique (journey, member, event) key is the last guard against acting
   twice, even without the job lock;
5. acts through the owning services (``loyalty.services.points_award``,
   ``rewards.services.coupon_issue``; notices through ``members.notifications.notices_enqueue``
   with a dedupe key per journey, member and event) and writes into
   the run, in plain words, what fired and what was done.

In a journey's quiet hours nothing happens and nothing is recorded; the look-back window
(longer than any quiet period) lets a later run pick the events up.
"""

import calendar
import contextlib
import datetime as dt
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, Sum
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from engagement.models import Journey, JourneyRun
from loyalty.jobs import birthday_filter
from loyalty.models import Currency, LedgerEntry, Lot, Order, TierChange
from loyalty.services import points_award
from members.jobs import MEMBER_CHUNK, run_in_member_chunks
from members.models import Member, Notification, StageChange
from members.notifications import Notice, has_marketing_consent, notices_enqueue
from members.services import member_tag_automatically
from operations.segments import segment_members
from rewards.models import Coupon
from rewards.services import coupon_issue

logger = logging.getLogger(__name__)

# How far back a run looks for events. Hourly runs need an hour; the rest covers quiet
# hours (at most a day), a journey paused for a day or two, or a worker outage. An event
# older than this is never acted on, so a new journey does not reach back years.
LOOKBACK = dt.timedelta(days=3)
INSERT_BATCH = 1000  # run rows per INSERT


@dataclass
class Event:
    """One firing of a trigger for one member, with the facts its reason is written from."""

    member_id: int
    key: str
    facts: dict = field(default_factory=dict)
    status: str = ""
    reason: str = ""


# --- quiet hours ----------------------------------------------------------------------


def in_quiet_hours(journey: Journey, now: dt.datetime) -> bool:
    """Whether ``now`` (local time) falls in the journey's quiet hours; they may span midnight."""
    start, end = journey.quiet_start, journey.quiet_end
    if start is None or end is None or start == end:
        return False
    local = timezone.localtime(now).time()
    if start < end:
        return start <= local < end
    return local >= start or local < end


# --- triggers: who the journey fired for in members [lo, hi) --------------------------


def _day(value: dt.datetime) -> str:
    return timezone.localdate(value).isoformat()


def _joined(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    rows = Member.objects.filter(id__gte=lo, id__lt=hi, joined_at__gt=since, joined_at__lte=now).values_list(
        "id", "joined_at"
    )
    return [Event(member_id, "joined", {"date": _day(at)}) for member_id, at in rows]


def _first_order(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    """The member's first order, ``trigger_days`` after it (0: at once) if no order followed."""
    delay = dt.timedelta(days=journey.trigger_days or 0)
    earlier = (
        Order.objects.counting()
        .filter(member_id=OuterRef("member_id"))
        .filter(
            Q(occurred_at__lt=OuterRef("occurred_at")) | Q(occurred_at=OuterRef("occurred_at"), id__lt=OuterRef("id"))
        )
    )
    orders = (
        Order.objects.counting()
        .filter(member_id__gte=lo, member_id__lt=hi, occurred_at__gt=since - delay, occurred_at__lte=now - delay)
        .filter(~Exists(earlier))
    )
    if delay:
        later = (
            Order.objects.counting()
            .filter(member_id=OuterRef("member_id"))
            .filter(
                Q(occurred_at__gt=OuterRef("occurred_at"))
                | Q(occurred_at=OuterRef("occurred_at"), id__gt=OuterRef("id"))
            )
        )
        orders = orders.filter(~Exists(later))
    rows = orders.values_list("member_id", "id", "number", "occurred_at")
    return [
        Event(member_id, f"order:{order_id}", {"order": order_id, "number": number, "date": _day(at)})
        for member_id, order_id, number, at in rows
    ]


def _tier_changed(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    # The first tier a member gets on joining is not a change; "joined" covers it.
    rows = TierChange.objects.filter(
        member_id__gte=lo, member_id__lt=hi, created_at__gt=since, created_at__lte=now, from_tier__isnull=False
    ).values_list("member_id", "id", "from_tier__name", "to_tier__name", "reason", "created_at")
    return [
        Event(
            member_id,
            f"tier:{change_id}",
            {"change": change_id, "from": from_name, "to": to_name, "why": why, "date": _day(at)},
        )
        for member_id, change_id, from_name, to_name, why, at in rows
    ]


def _birthday(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    """Birthdays on the local days of the window (29 February falls on 28 February in other years)."""
    today = timezone.localdate(now)
    days = []
    day = timezone.localdate(since)
    while day <= today:
        days.append(day)
        day += dt.timedelta(days=1)
    query = Q()
    for day in days:
        query |= birthday_filter(day)
    rows = Member.objects.filter(query, id__gte=lo, id__lt=hi, birthday__isnull=False).values_list("id", "birthday")
    events = []
    for member_id, birthday in rows:
        # The latest day of the window that is this member's birthday.
        for day in reversed(days):
            if _is_birthday(birthday, day):
                events.append(Event(member_id, f"birthday:{day.year}", {"date": day.isoformat()}))
                break
    return events


def _is_birthday(birthday: dt.date, day: dt.date) -> bool:
    if (birthday.month, birthday.day) == (day.month, day.day):
        return True
    leap_day = (birthday.month, birthday.day) == (2, 29)
    return leap_day and (day.month, day.day) == (2, 28) and not calendar.isleap(day.year)


def _dormant(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    rows = StageChange.objects.filter(
        member_id__gte=lo,
        member_id__lt=hi,
        to_stage=Member.Stage.DORMANT,
        # A member's first stage ("" -> dormant) is not an entry: the very first refresh
        # would otherwise send the win-back to every member who was dormant already.
        from_stage__gt="",
        changed_at__gt=since,
        changed_at__lte=now,
    ).values_list("member_id", "id", "changed_at", "member__last_order_at")
    events = []
    for member_id, change_id, at, last_order_at in rows:
        facts = {"change": change_id, "date": _day(at)}
        if last_order_at is not None:
            facts["last_order"] = _day(last_order_at)
            facts["days"] = (timezone.localdate(at) - timezone.localdate(last_order_at)).days
        events.append(Event(member_id, f"stage:{change_id}", facts))
    return events


def _points_expiring(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    """Members with available points expiring within ``trigger_days``; the event is the first date.

    When those points are gone, the next date to come is a new event.
    """
    days = journey.trigger_days or settings.LOYALTY_EXPIRY_NOTICE_DAYS
    rows = (
        Lot.objects.filter(
            member_id__gte=lo,
            member_id__lt=hi,
            currency=Currency.POINTS,
            pending=False,
            remaining__gt=0,
            expires_at__gt=now,
            expires_at__lte=now + dt.timedelta(days=days),
        )
        .order_by()
        .values("member_id")
        .annotate(first=Min("expires_at"), points=Sum("remaining"))
        .values_list("member_id", "first", "points")
    )
    return [
        Event(member_id, f"expiry:{_day(first)}", {"date": _day(first), "points": points, "days": days})
        for member_id, first, points in rows
    ]


def _no_order(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    """Members whose last order is ``trigger_days`` old: the event is the day of that order."""
    days = journey.trigger_days or settings.LOYALTY_STAGE_DORMANT_DAYS
    delay = dt.timedelta(days=days)
    rows = (
        Order.objects.counting()
        .filter(member_id__gte=lo, member_id__lt=hi)
        .order_by()
        .values("member_id")
        .annotate(last=Max("occurred_at"))
        .filter(last__gt=since - delay, last__lte=now - delay)
        .values_list("member_id", "last")
    )
    return [Event(member_id, f"no_order:{_day(last)}", {"date": _day(last), "days": days}) for member_id, last in rows]


TRIGGERS = {
    Journey.Trigger.JOINED: _joined,
    Journey.Trigger.FIRST_ORDER: _first_order,
    Journey.Trigger.TIER_CHANGED: _tier_changed,
    Journey.Trigger.BIRTHDAY: _birthday,
    Journey.Trigger.DORMANT: _dormant,
    Journey.Trigger.POINTS_EXPIRING: _points_expiring,
    Journey.Trigger.NO_ORDER: _no_order,
}


def _what_fired(journey: Journey, event: Event) -> str:
    """The trigger, in plain words, from the event's facts."""
    facts = event.facts
    trigger = journey.trigger
    if trigger == Journey.Trigger.JOINED:
        return _("Joined on %(date)s") % facts
    if trigger == Journey.Trigger.FIRST_ORDER:
        if journey.trigger_days:
            return _("First order %(number)s on %(date)s, no order in the %(days)s days since") % {
                **facts,
                "days": journey.trigger_days,
            }
        return _("First order %(number)s on %(date)s") % facts
    if trigger == Journey.Trigger.TIER_CHANGED:
        return _("Tier changed from %(from)s to %(to)s on %(date)s") % facts
    if trigger == Journey.Trigger.BIRTHDAY:
        return _("Birthday on %(date)s") % facts
    if trigger == Journey.Trigger.DORMANT:
        if "days" in facts:
            return _("Entered the dormant stage on %(date)s (no order for %(days)s days)") % facts
        return _("Entered the dormant stage on %(date)s") % facts
    if trigger == Journey.Trigger.POINTS_EXPIRING:
        return _("%(points)s points expire within %(days)s days, the first on %(date)s") % facts
    return _("No order for %(days)s days (last order on %(date)s)") % facts


# --- deciding who is skipped ----------------------------------------------------------


def _decide(journey: Journey, events: list[Event], members: dict[int, dict], done: dict[int, int]) -> None:
    """Set each event's status and, for a skip, its reason. ``done`` counts runs inside the cap."""
    for event in events:
        member = members[event.member_id]
        if member["erased_at"] is not None:
            event.status, event.reason = JourneyRun.Status.SKIPPED, _("the member's data was erased")
        elif member["status"] != Member.Status.ACTIVE:
            event.status = JourneyRun.Status.SKIPPED
            event.reason = _("the member is %(status)s") % {"status": Member.Status(member["status"]).label}
        elif journey.is_marketing and not has_marketing_consent(member):
            event.status = JourneyRun.Status.SKIPPED
            event.reason = _("no marketing consent on any channel, so no marketing (PIPL article 24)")
        elif done[event.member_id] >= journey.cap_count:
            event.status = JourneyRun.Status.SKIPPED
            event.reason = _("frequency cap: already %(count)s times within %(days)s days") % {
                "count": done[event.member_id],
                "days": journey.cap_days,
            }
        else:
            event.status = JourneyRun.Status.DONE
            done[event.member_id] += 1


# --- recording --------------------------------------------------------------------------


def _insert_runs(journey: Journey, events: list[Event], now: dt.datetime) -> dict[tuple[int, str], int]:
    """Insert a run per event, skipping those that exist; returns {(member, key): run id} of ours."""
    detail_field = JourneyRun._meta.get_field("detail")
    ours = {}
    # Batches keep the statement under the databases' parameter limits (7 per row).
    for first in range(0, len(events), INSERT_BATCH):
        batch = events[first : first + INSERT_BATCH]
        params = []
        for event in batch:
            params += [
                journey.pk,
                event.member_id,
                event.key[:100],
                event.status,
                event.reason[:300],
                detail_field.get_db_prep_save(event.facts, connection),
                now,
            ]
        sql = (
            "INSERT INTO engagement_journeyrun (journey_id, member_id, event_key, status, reason, detail, created_at) "
            f"VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s)'] * len(batch))} "
            "ON CONFLICT (journey_id, member_id, event_key) DO NOTHING RETURNING id, member_id, event_key"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            ours.update({(member_id, key): run_id for run_id, member_id, key in cursor.fetchall()})
    return ours


# --- actions ----------------------------------------------------------------------------


class _Placeholders(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _message(text: str, values: dict) -> str:
    """The journey's message with {name}, {points}, {coupon}, {code}, {date} filled in."""
    try:
        return text.format_map(_Placeholders(values))
    except (ValueError, IndexError):
        return text  # a stray brace: send the text as written


def _act(
    journey: Journey, member: Member, event: Event, run_id: int, now: dt.datetime
) -> tuple[str, dict, Notice | None]:
    """Do the journey's action for one member; returns what was done (words), its ids and the
    notice to put in the outbox (the caller writes the chunk's notices in one insert)."""
    values = {"name": member.name, "date": event.facts.get("date", ""), "points": event.facts.get("points", "")}
    detail: dict = {"run": run_id}
    action = journey.action
    if action == Journey.Action.AWARD_POINTS:
        entry = points_award(
            member=member,
            currency=Currency.POINTS,
            amount=journey.points,
            reason=journey.name[:200],
            idempotency_key=f"journey:{journey.pk}:{event.key}"[:128],
            kind=LedgerEntry.Kind.EARN,
            detail={"journey": journey.pk, "run": run_id, "event": event.key},
            now=now,
        )
        detail["entry"] = entry.pk
        values["points"] = journey.points
        done = _("%(points)s points awarded") % {"points": journey.points}
    elif action == Journey.Action.ISSUE_COUPON:
        expires_on = timezone.localdate(now) + dt.timedelta(days=journey.coupon_valid_days)
        coupon = coupon_issue(
            member=member,
            title=journey.coupon_title,
            kind=journey.coupon_kind,
            value=journey.coupon_value or 0,
            # Valid through the last day: it ends at the start of the day after.
            expires_at=timezone.make_aware(dt.datetime.combine(expires_on + dt.timedelta(days=1), dt.time.min)),
            source=Coupon.Source.JOURNEY,
            description=journey.description,
            now=now,
        )
        detail["coupon"] = coupon.pk
        values.update(coupon=coupon.title, code=coupon.code, date=expires_on.isoformat())
        done = _("coupon %(code)s issued") % {"code": coupon.code}
    elif action == Journey.Action.ADD_TAG:
        created = member_tag_automatically(member_id=member.pk, tag=journey.tag)
        detail["tag"] = journey.tag_id
        done = (_("tag “%(tag)s” added") if created else _("already tagged “%(tag)s”")) % {"tag": journey.tag.name}
    else:
        done = _("notification sent")

    notice = None
    if journey.message_title:
        kind = (
            Notification.Kind.EXPIRY_WARNING
            if journey.trigger == Journey.Trigger.POINTS_EXPIRING
            else Notification.Kind.OTHER
        )
        notice = Notice(
            member_id=member.pk,
            kind=kind,
            title=_message(journey.message_title, values),
            body=_message(journey.message_body, values),
            data={"journey": journey.pk, "run": run_id, **{k: v for k, v in detail.items() if k != "run"}},
            dedupe_key=f"journey:{journey.pk}:{member.pk}:{event.key}",
        )
        detail["notified"] = True
        if action != Journey.Action.NOTIFY:
            done = _("%(done)s, member notified") % {"done": done}
    return done, detail, notice


# --- one chunk, one journey, all journeys ----------------------------------------------


def _audience(journey: Journey, member_ids: Iterable[int]) -> set[int] | None:
    """The ids among ``member_ids`` in the journey's audience; None when it has none."""
    if journey.audience_id is None:
        return None
    return set(segment_members(journey.audience).filter(id__in=list(member_ids)).values_list("id", flat=True))


def _chunk(journey: Journey, lo: int, hi: int, *, now: dt.datetime, stats: dict) -> int:
    events = TRIGGERS[journey.trigger](journey, lo, hi, now, now - LOOKBACK)
    if not events:
        return 0
    # Leave out events this journey already has a run for (the unique key's index).
    ran = set(
        JourneyRun.objects.filter(
            journey=journey, member_id__in={e.member_id for e in events}, event_key__in={e.key for e in events}
        ).values_list("member_id", "event_key")
    )
    events = [e for e in events if (e.member_id, e.key) not in ran]
    audience = _audience(journey, {e.member_id for e in events}) if events else None
    if audience is not None:
        events = [e for e in events if e.member_id in audience]
    if not events:
        return 0
    events.sort(key=lambda e: (e.member_id, e.facts.get("date", ""), e.key))
    ids = {e.member_id for e in events}
    members = {
        row["id"]: row
        for row in Member.objects.filter(id__in=ids).values(
            "id", "status", "erased_at", "sms_consent_at", "email_consent_at", "wechat_consent_at"
        )
    }
    done: dict[int, int] = defaultdict(int)
    done.update(
        JourneyRun.objects.filter(
            journey=journey,
            member_id__in=ids,
            status=JourneyRun.Status.DONE,
            created_at__gt=now - dt.timedelta(days=journey.cap_days),
        )
        .order_by()
        .values("member_id")
        .annotate(n=Count("id"))
        .values_list("member_id", "n")
    )
    _decide(journey, events, members, done)
    for event in events:
        fired = _what_fired(journey, event)
        event.reason = f"{fired}; {_('skipped')}: {event.reason}" if event.reason else fired
    ours = _insert_runs(journey, events, now)

    acting = [e for e in events if e.status == JourneyRun.Status.DONE and (e.member_id, e.key) in ours]
    by_id = Member.objects.select_related(None).in_bulk({e.member_id for e in acting}) if acting else {}
    finished, notices = [], []
    # Points and coupons go through services that may refuse (a member frozen meanwhile):
    # a savepoint per member undoes that member's action only.
    may_refuse = journey.action in (Journey.Action.AWARD_POINTS, Journey.Action.ISSUE_COUPON)
    for event in acting:
        run = JourneyRun(pk=ours[(event.member_id, event.key)], status=JourneyRun.Status.DONE)
        fired = _what_fired(journey, event)
        try:
            with transaction.atomic() if may_refuse else contextlib.nullcontext():
                what, detail, notice = _act(journey, by_id[event.member_id], event, run.pk, now)
        except LoyaltyError as error:
            run.status = JourneyRun.Status.SKIPPED
            run.reason = f"{fired}; {_('not done')}: {error.message}"[:300]
            run.detail = {**event.facts, "error": error.code}
        else:
            run.reason = f"{fired}; {what}"[:300]
            run.detail = {**event.facts, **detail}
            if notice is not None:
                notices.append(notice)
        finished.append(run)
    # The dedupe keys are per journey, member and event: a conflict is a notice already sent.
    notices_enqueue(notices, now=now, marketing=journey.is_marketing)
    if finished:
        JourneyRun.objects.bulk_update(finished, ["status", "reason", "detail"])
    refused = sum(1 for run in finished if run.status == JourneyRun.Status.SKIPPED)
    stats["done"] += len(finished) - refused
    stats["skipped"] += len(ours) - len(finished) + refused
    return len(ours)


def journey_run(journey: Journey, *, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Run one journey over every member; returns counts ("done", "skipped", "chunks", "duration_s" ...).

    Safe to run twice or side by side: an event already run is never run again. In the
    journey's quiet hours it does nothing and records nothing (``quiet: True``). An
    inactive journey is not run (``inactive: True``).
    """
    now = now or timezone.now()
    stats = {"done": 0, "skipped": 0, "quiet": False, "inactive": False, "chunks": 0}
    if not journey.is_active:
        stats["inactive"] = True
        return stats
    if in_quiet_hours(journey, now):
        stats["quiet"] = True
        return stats
    started = time.monotonic()
    with translation.override(settings.LANGUAGE_CODE):
        counted = run_in_member_chunks(functools.partial(_chunk, journey, now=now, stats=stats), size=size)
    stats["chunks"] = counted["chunks"]
    stats["longest_chunk_s"] = counted["longest_chunk_s"]
    stats["duration_s"] = round(time.monotonic() - started, 3)
    return stats


def journeys_run(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Run every active journey (the hourly job); returns counts per journey name.

    A journey that fails (say, its audience cannot be evaluated) is logged and reported
    as ``{"error": ...}``; the others still run.
    """
    now = now or timezone.now()
    results = {}
    for journey in Journey.objects.filter(is_active=True).select_related("audience", "tag").order_by("id"):
        try:
            results[journey.name] = journey_run(journey, now=now, size=size)
        except Exception as error:  # one broken journey must not stop the others
            logger.exception("journey %s failed", journey.pk)
            results[journey.name] = {"error": str(error)}
    return results

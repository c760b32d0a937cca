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
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from engagement.models import Journey, JourneyPosition, JourneyRun, JourneyStep, JourneyStepRun
from loyalty.jobs import birthday_filter
from loyalty.models import (
    ORDERS_COUNTING_SQL,
    CouponKind,
    Currency,
    LedgerEntry,
    Lot,
    Order,
    TierChange,
    texts_in_languages,
)
from loyalty.services import points_award
from members.jobs import MEMBER_CHUNK, member_id_ranges
from members.models import Member, Notification, StageChange
from members.notifications import CONSENT_CHANNELS, Notice, has_marketing_consent, notices_enqueue
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
ADVANCE_BATCH = 500  # due entries moved on per transaction
MAX_STEPS = 50  # steps one entry may take in one run (steps only move forward, so a journey has fewer)


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


def _day(value: dt.datetime, zone=None) -> str:
    """The local date of ``value``, as text. A trigger of 20 000 events passes ``zone`` looked
    up once: the lookup (an asgiref local) cost more than the conversion itself."""
    return value.astimezone(zone or timezone.get_current_timezone()).date().isoformat()


def _not_run(journey: Journey, rows, key_sql: str) -> list[tuple]:
    """The rows of ``rows`` (a ``values_list`` whose first column is the member) whose event
    this journey has no run for yet, asked in the database: an hour with nothing new then
    ships no rows at all, instead of every event of the look-back window.

    ``key_sql`` builds the event key from the columns, named ``e.c1``, ``e.c2`` ...; one probe
    of the unique (journey, member, event key) index per row (``OFFSET 0`` keeps it a probe,
    not a hash of every run the journey ever had). SQLite: the rows as they are (the run's
    own filter and the insert's unique key still leave out what ran).
    """
    if connection.vendor != "postgresql" or journey.pk is None:
        return list(rows)
    sql, params = rows.query.sql_with_params()
    names = ", ".join(f"c{n}" for n in range(1, len(rows._fields) + 1))
    zone = timezone.get_current_timezone()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.* FROM ({sql}) AS e({names}) WHERE NOT EXISTS (SELECT 1 FROM engagement_journeyrun r "
            f"WHERE r.journey_id = %s AND r.member_id = e.c1 AND r.event_key = {key_sql} OFFSET 0)",
            [*params, journey.pk, *([str(zone)] if "%s" in key_sql else [])],
        )
        return cursor.fetchall()


def _local_day_sql(column: str) -> str:
    """SQL: the local date of ``column`` as YYYY-MM-DD (the time zone is the one parameter)."""
    return f"to_char({column} AT TIME ZONE %s, 'YYYY-MM-DD')"


def _joined(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    rows = Member.objects.filter(id__gte=lo, id__lt=hi, joined_at__gt=since, joined_at__lte=now).values_list(
        "id", "joined_at"
    )
    rows = _not_run(journey, rows, "'joined'")
    zone = timezone.get_current_timezone()
    return [Event(member_id, "joined", {"date": _day(at, zone)}) for member_id, at in rows]


def _no_other_order(direction: str) -> str:
    """SQL: no counting order of the same member before (``<``) or after (``>``) this one.

    ``OFFSET 0`` on purpose: it keeps PostgreSQL from turning the subquery into an
    anti-join that hashes every order there is; it probes ``order_member_recent`` once per
    candidate order instead.
    """
    # One range of order_member_recent per probe (member, from this order's time on), not a
    # BitmapOr of two: "later" is a later time, or the same time and a larger id.
    bound = ">=" if direction == ">" else "<="
    return (
        f"NOT EXISTS (SELECT 1 FROM loyalty_order o WHERE o.member_id = loyalty_order.member_id "
        f"AND o.occurred_at {bound} loyalty_order.occurred_at AND {ORDERS_COUNTING_SQL} "
        f"AND (o.occurred_at {direction} loyalty_order.occurred_at OR o.id {direction} loyalty_order.id)"
        # SQLite has no OFFSET without LIMIT (and needs no hint).
        f"{' OFFSET 0' if connection.vendor == 'postgresql' else ''})"
    )


def _first_order(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    """The member's first order, ``trigger_days`` after it (0: at once) if no order followed."""
    delay = dt.timedelta(days=journey.trigger_days or 0)
    where = [_no_other_order("<")] + ([_no_other_order(">")] if delay else [])
    orders = (
        Order.objects.counting()
        .filter(member_id__gte=lo, member_id__lt=hi, occurred_at__gt=since - delay, occurred_at__lte=now - delay)
        .extra(where=where)
    )
    rows = _not_run(journey, orders.values_list("member_id", "id", "number", "occurred_at"), "'order:' || e.c2")
    zone = timezone.get_current_timezone()
    return [
        Event(member_id, f"order:{order_id}", {"order": order_id, "number": number, "date": _day(at, zone)})
        for member_id, order_id, number, at in rows
    ]


def _tier_changed(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    # The first tier a member gets on joining is not a change; "joined" covers it.
    rows = TierChange.objects.filter(
        member_id__gte=lo, member_id__lt=hi, created_at__gt=since, created_at__lte=now, from_tier__isnull=False
    ).values_list("member_id", "id", "from_tier__name", "to_tier__name", "reason", "created_at")
    rows = _not_run(journey, rows, "'tier:' || e.c2")
    zone = timezone.get_current_timezone()
    return [
        Event(
            member_id,
            f"tier:{change_id}",
            {"change": change_id, "from": from_name, "to": to_name, "why": why, "date": _day(at, zone)},
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
    ).values_list("member_id", "id", "changed_at")
    # The last order (for the reason's words) is read by _dormant_facts, for the new events only.
    rows = _not_run(journey, rows, "'stage:' || e.c2")
    zone = timezone.get_current_timezone()
    return [
        Event(member_id, f"stage:{change_id}", {"change": change_id, "date": _day(at, zone)})
        for member_id, change_id, at in rows
    ]


def _dormant_facts(events: list[Event]) -> None:
    """Add each dormant event's last order and the days since it, in one query."""
    # Read apart: joined in, the planner hashes every member to find these few.
    last_orders = dict(Member.objects.filter(id__in={e.member_id for e in events}).values_list("id", "last_order_at"))
    for event in events:
        last_order_at = last_orders.get(event.member_id)
        if last_order_at is not None:
            at = dt.date.fromisoformat(event.facts["date"])
            event.facts["last_order"] = _day(last_order_at)
            event.facts["days"] = (at - timezone.localdate(last_order_at)).days


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
    rows = _not_run(journey, rows, "'expiry:' || " + _local_day_sql("e.c2"))
    zone = timezone.get_current_timezone()
    return [
        Event(
            member_id, f"expiry:{_day(first, zone)}", {"date": _day(first, zone), "points": int(points), "days": days}
        )
        for member_id, first, points in rows
    ]


def _no_order(journey: Journey, lo: int, hi: int, now: dt.datetime, since: dt.datetime) -> list[Event]:
    """Members whose last order is ``trigger_days`` old: the event is the day of that order.

    Asked as "an order of the window with no order after it", so the orders read are the
    window's (then one index probe each), not every member's history.
    """
    days = journey.trigger_days or settings.LOYALTY_STAGE_DORMANT_DAYS
    delay = dt.timedelta(days=days)
    rows = (
        Order.objects.counting()
        .filter(member_id__gte=lo, member_id__lt=hi, occurred_at__gt=since - delay, occurred_at__lte=now - delay)
        .extra(where=[_no_other_order(">")])
        .order_by("member_id")
        .values_list("member_id", "occurred_at")
    )
    last = dict(
        _not_run(journey, rows, "'no_order:' || " + _local_day_sql("e.c2"))
    )  # orders at the very same moment: one event
    zone = timezone.get_current_timezone()
    return [
        Event(member_id, f"no_order:{_day(at, zone)}", {"date": _day(at, zone), "days": days})
        for member_id, at in last.items()
    ]


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
    if trigger == Journey.Trigger.BROADCAST:
        return _("Broadcast on %(date)s") % facts
    return _("No order for %(days)s days (last order on %(date)s)") % facts


# --- deciding who is skipped and who is held out -----------------------------------------


def _decide(
    journey: Journey,
    events: list[Event],
    members: dict[int, dict],
    done: dict[int, int],
    contacts: dict[int, int] | None = None,
    cap: tuple[int, int] | None = None,
) -> None:
    """Set each event's status and, for a skip, its reason. ``done`` counts entries inside the
    journey's own cap, ``contacts`` the member's marketing contacts inside the contact cap
    ``cap`` (every journey and broadcast; None: no cap, or not a marketing journey).

    The control group is drawn among the members the journey may reach (after the skips),
    so treated and held-out members are alike but for the journey. A held-out member is not
    contacted, so does not count against the contact cap.
    """
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
        elif cap is not None and contacts is not None and contacts[event.member_id] >= cap[0]:
            event.status = JourneyRun.Status.SKIPPED
            event.reason = _(
                "marketing contact cap: already %(count)s marketing contacts within %(days)s days "
                "(journeys and broadcasts)"
            ) % {"count": contacts[event.member_id], "days": cap[1]}
            event.facts = {**event.facts, "skip": "contact_cap"}
        elif held_out(journey, event.member_id):
            event.status = JourneyRun.Status.HELD_OUT
            event.reason = _("held out: in the control group (%(percent)s%%), nothing done") % {
                "percent": journey.holdout_percent
            }
            done[event.member_id] += 1
        else:
            event.status = JourneyRun.Status.DONE
            done[event.member_id] += 1
            if contacts is not None:
                contacts[event.member_id] += 1


def _bucket(*parts) -> int:
    """A number 0-9999 fixed by ``parts``: the same member and journey always land in the same place."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10000


def held_out(journey: Journey, member_id: int) -> bool:
    """Whether the member is in the journey's control group (``holdout_percent`` of members)."""
    return journey.holdout_percent > 0 and _bucket("holdout", journey.pk, member_id) < journey.holdout_percent * 100


def variant_for(journey_id: int, member_id: int, position: int, variants: list[str]) -> str:
    """Which of a step's variants a member gets: an even split, fixed per member, journey and step."""
    ordered = sorted(variants)
    return ordered[_bucket("variant", journey_id, member_id, position) * len(ordered) // 10000]


# --- the marketing contact cap, across journeys and broadcasts ------------------------------

CAP_LOCK_CLASS = 0x4A52  # the first key of pg_advisory_xact_lock(int, int): the contact cap's space
CAP_BUCKETS = 256  # members map to this many locks: hashtext(member id) & 255


def contact_cap() -> tuple[int, int] | None:
    """``settings.MARKETING_CONTACT_CAP`` ("N/D": at most N marketing contacts in D days) as
    (N, D); None when it is "off" or empty. A malformed value raises ImproperlyConfigured, so a
    marketing journey fails loudly rather than sending without its cap."""
    raw = str(getattr(settings, "MARKETING_CONTACT_CAP", "4/7") or "").strip().lower()
    if raw in ("", "off", "none"):
        return None
    count, _slash, days = raw.partition("/")
    try:
        count, days = int(count), int(days)
    except ValueError:
        count = days = 0
    if count < 1 or days < 1:
        raise ImproperlyConfigured(f"MARKETING_CONTACT_CAP must be N/D with N and D at least 1 (or off), not {raw!r}")
    return count, days


def _lock_contact_buckets(member_ids: Iterable[int]) -> None:
    """Hold, until the transaction ends, the cap's advisory locks of these members' buckets.

    Taken in ascending order, so two runs that share buckets queue rather than deadlock; a
    run counts a member's contacts only after it holds the member's bucket, and the run that
    held it before has committed its contacts by then (READ COMMITTED: the count statement
    sees them). SQLite runs one write transaction at a time and needs none.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, k)) FROM (SELECT DISTINCT hashtext(m::text) & %s AS k "
            "FROM unnest(%s::bigint[]) m ORDER BY k OFFSET 0) buckets",
            [CAP_LOCK_CLASS, CAP_BUCKETS - 1, sorted(member_ids)],
        )


def _contacts_recent(member_ids: Iterable[int], now: dt.datetime, days: int) -> dict[int, int]:
    """Marketing contacts per member within ``days`` before ``now``, every journey and broadcast."""
    return dict(
        JourneyRun.objects.filter(
            member_id__in=list(member_ids), contacted_at__gt=now - dt.timedelta(days=days), contacted_at__lte=now
        )
        .order_by()
        .values("member_id")
        .annotate(n=Count("id"))
        .values_list("member_id", "n")
    )


# --- recording --------------------------------------------------------------------------


def _insert_runs(journey: Journey, events: list[Event], now: dt.datetime) -> dict[tuple[int, str], int]:
    """Insert a run per event, skipping those that exist; returns {(member, key): run id} of ours.

    An entry (status done) of a marketing journey is a marketing contact: ``contacted_at``."""
    detail_field = JourneyRun._meta.get_field("detail")
    ours = {}
    # Batches keep the statement under the databases' parameter limits (8 per row).
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
                now if journey.is_marketing and event.status == JourneyRun.Status.DONE else None,
            ]
        sql = (
            "INSERT INTO engagement_journeyrun "
            "(journey_id, member_id, event_key, status, reason, detail, created_at, contacted_at) "
            f"VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s, %s)'] * len(batch))} "
            "ON CONFLICT (journey_id, member_id, event_key) DO NOTHING RETURNING id, member_id, event_key"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            ours.update({(member_id, key): run_id for run_id, member_id, key in cursor.fetchall()})
    return ours


def _claim_step(entry: "_Entry", step: JourneyStep, now: dt.datetime) -> int | None:
    """Insert the step's run for this entry; None when it exists (the step acted already)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO engagement_journeysteprun (run_id, step_id, journey_id, member_id, position, variant, status, "
            "reason, detail, points, coupon_value, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, '', '{}', 0, 0, %s) "
            "ON CONFLICT (run_id, step_id) DO NOTHING RETURNING id",
            [
                entry.position.run_id,
                step.pk,
                step.journey_id,
                entry.position.member_id,
                step.position,
                step.variant,
                JourneyStepRun.Status.DONE,
                now,
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None


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


def _keys(journey: Journey, step: JourneyStep, member_id: int, event_key: str) -> tuple[str, str]:
    """The ledger idempotency key and the notice dedupe key of one step for one entry.

    Step 1 keeps the keys journeys had before they had steps, so an entry acted on before
    the upgrade is not acted on again.
    """
    suffix = "" if step.position == 1 and not step.variant else f":{step.position}{step.variant}"
    return f"journey:{journey.pk}:{event_key}{suffix}"[:128], f"journey:{journey.pk}:{member_id}:{event_key}{suffix}"


def _act(
    journey: Journey, step: JourneyStep, member: Member, event: Event, run_id: int, now: dt.datetime
) -> tuple[str, dict, Notice | None]:
    """Do an action step for one member; returns what was done (words), its ids and costs, and
    the notice to put in the outbox (the caller writes the chunk's notices in one insert)."""
    values = {"name": member.name, "date": event.facts.get("date", ""), "points": event.facts.get("points", "")}
    detail: dict = {"run": run_id}
    ledger_key, dedupe_key = _keys(journey, step, member.pk, event.key)
    action = step.action
    issued = None
    if action == Journey.Action.AWARD_POINTS:
        entry = points_award(
            member=member,
            currency=Currency.POINTS,
            amount=step.points,
            reason=journey.name[:200],
            idempotency_key=ledger_key,
            kind=LedgerEntry.Kind.EARN,
            detail={"journey": journey.pk, "run": run_id, "event": event.key, "step": step.pk},
            now=now,
        )
        detail["entry"] = entry.pk
        detail["points_given"] = step.points
        values["points"] = step.points
        done = _("%(points)s points awarded") % {"points": step.points}
    elif action == Journey.Action.ISSUE_COUPON:
        expires_on = timezone.localdate(now) + dt.timedelta(days=step.coupon_valid_days)
        coupon = coupon_issue(
            member=member,
            title=texts_in_languages(step, "coupon_title"),
            kind=step.coupon_kind,
            value=step.coupon_value or 0,
            # Valid through the last day: it ends at the start of the day after.
            expires_at=timezone.make_aware(dt.datetime.combine(expires_on + dt.timedelta(days=1), dt.time.min)),
            source=Coupon.Source.JOURNEY,
            description=journey.description,
            now=now,
        )
        detail["coupon"] = coupon.pk
        issued = coupon
        if step.coupon_kind == CouponKind.AMOUNT_OFF:
            detail["coupon_value_given"] = str(step.coupon_value or 0)
        values.update(coupon=coupon.title, code=coupon.code, date=expires_on.isoformat())
        done = _("coupon %(code)s issued") % {"code": coupon.code}
    elif action == Journey.Action.ADD_TAG:
        created = member_tag_automatically(member_id=member.pk, tag=step.tag)
        detail["tag"] = step.tag_id
        done = (_("tag “%(tag)s” added") if created else _("already tagged “%(tag)s”")) % {"tag": step.tag.name}
    else:
        done = _("notification sent")

    notice = None
    if step.message_title:
        kind = (
            Notification.Kind.EXPIRY_WARNING
            if journey.trigger == Journey.Trigger.POINTS_EXPIRING
            else Notification.Kind.OTHER
        )
        # The operator's text in the member's language (engagement/translation.py).
        with translation.override(member.language or settings.LANGUAGE_CODE):
            if issued is not None:
                values["coupon"] = issued.title  # the coupon's title in that language too
            title, body = _message(step.message_title, values), _message(step.message_body, values)
        notice = Notice(
            member_id=member.pk,
            kind=kind,
            title=title,
            body=body,
            data={
                "journey": journey.pk,
                "run": run_id,
                **{k: v for k, v in detail.items() if k in ("entry", "coupon", "tag")},
            },
            dedupe_key=dedupe_key,
        )
        detail["notified"] = True
        if action != Journey.Action.NOTIFY:
            done = _("%(done)s, member notified") % {"done": done}
    return done, detail, notice


# --- moving entries through the steps ------------------------------------------------------


@dataclass
class _Entry:
    """One position being moved on in this chunk, with what its steps did on the way."""

    position: JourneyPosition
    event: Event
    done: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)
    refused: LoyaltyError | None = None
    paused: bool = False  # waiting, or finished: nothing more this run


def _steps(journey: Journey) -> dict[int, list[JourneyStep]]:
    steps: dict[int, list[JourneyStep]] = defaultdict(list)
    for step in journey.steps.select_related("tag", "segment").order_by("position", "variant"):
        steps[step.position].append(step)
    return steps


def _finish(entry: _Entry, now: dt.datetime) -> None:
    entry.position.state = JourneyPosition.State.FINISHED
    entry.position.due_at = None
    entry.position.waiting = False
    entry.paused = True


def _go_to(entry: _Entry, position: int | None, now: dt.datetime) -> None:
    if position is None:
        _finish(entry, now)
        return
    entry.position.step, entry.position.since, entry.position.waiting = position, now, False


def _record(step_run_id: int, status: str, reason: str, detail: dict) -> JourneyStepRun:
    return JourneyStepRun(
        pk=step_run_id,
        status=status,
        reason=reason[:300],
        detail=detail,
        points=detail.get("points_given", 0),
        coupon_value=Decimal(detail.get("coupon_value_given", "0")),
    )


def _condition_holds(step: JourneyStep, entries: list[_Entry], now: dt.datetime) -> set[int]:
    """The position ids among ``entries`` whose member meets the branch's condition: one query."""
    member_ids = {entry.position.member_id for entry in entries}
    if step.condition == JourneyStep.Condition.BOUGHT:
        last = dict(
            Order.objects.counting()
            .filter(member_id__in=member_ids, occurred_at__lte=now)
            .order_by()
            .values("member_id")
            .annotate(last=Max("occurred_at"))
            .values_list("member_id", "last")
        )
        return {
            e.position.pk
            for e in entries
            if last.get(e.position.member_id) and last[e.position.member_id] > e.position.entered_at
        }
    if step.condition == JourneyStep.Condition.IN_SEGMENT:
        inside = set(segment_members(step.segment, now=now).filter(id__in=member_ids).values_list("id", flat=True))
        return {e.position.pk for e in entries if e.position.member_id in inside}
    if step.condition == JourneyStep.Condition.CONSENT:
        channels = CONSENT_CHANNELS if step.channel in ("", "any") else (step.channel,)
        consent = Q()
        for channel in channels:
            consent |= Q(**{f"{channel}_consent_at__isnull": False})
        inside = set(Member.objects.filter(consent, id__in=member_ids).values_list("id", flat=True))
        return {e.position.pk for e in entries if e.position.member_id in inside}
    # Used a coupon this entry's steps gave.
    given = list(
        JourneyStepRun.objects.filter(
            run_id__in={e.position.run_id for e in entries}, detail__has_key="coupon"
        ).values_list("run_id", "detail")
    )
    used = set(
        Coupon.objects.filter(
            id__in={detail["coupon"] for _run, detail in given}, status=Coupon.Status.USED
        ).values_list("id", flat=True)
    )
    runs = {run_id for run_id, detail in given if detail["coupon"] in used}
    return {e.position.pk for e in entries if e.position.run_id in runs}


def _advance(
    journey: Journey, steps: dict[int, list[JourneyStep]], entries: list[_Entry], now: dt.datetime, stats: dict
) -> None:
    """Move ``entries`` on through their steps until each waits or finishes (one transaction).

    Steps of one kind at one position are done for all entries standing there together:
    a branch's condition is one query for them all, a wait one update. Each step's run is
    claimed with ``ON CONFLICT (run, step) DO NOTHING`` first, so a step acts at most once
    per entry even when two workers move the same entry.
    """
    by_id = Member.objects.in_bulk({e.position.member_id for e in entries}) if entries else {}
    step_runs: list[JourneyStepRun] = []
    notices: list[Notice] = []
    for _round in range(MAX_STEPS):
        moving = [e for e in entries if not e.paused]
        if not moving:
            break
        groups: dict[int, list[_Entry]] = defaultdict(list)
        for entry in moving:
            groups[entry.position.step].append(entry)
        for position, group in sorted(groups.items()):
            here = steps.get(position)
            if not here:
                for entry in group:
                    _finish(entry, now)
                continue
            kind = here[0].kind
            if kind == JourneyStep.Kind.ACTION:
                _do(journey, here, group, by_id, now, step_runs, notices, stats)
            elif kind == JourneyStep.Kind.WAIT:
                _wait(here[0], group, now, step_runs)
            else:
                holds = _condition_holds(here[0], group, now)
                for entry in group:
                    step_run_id = _claim_step(entry, here[0], now)
                    yes = entry.position.pk in holds
                    if step_run_id:
                        words = (
                            _("condition met: going on")
                            if yes
                            else _("condition not met: going on at step %(step)s") % {"step": here[0].else_step}
                            if here[0].else_step
                            else _("condition not met: the journey ends")
                        )
                        step_runs.append(
                            _record(
                                step_run_id,
                                JourneyStepRun.Status.DONE,
                                f"{here[0].get_condition_display()}: {words}",
                                {"met": yes},
                            )
                        )
                    _go_to(entry, position + 1 if yes else here[0].else_step, now)
    notices_enqueue(notices, now=now, marketing=journey.is_marketing)
    if step_runs:
        JourneyStepRun.objects.bulk_update(step_runs, ["status", "reason", "detail", "points", "coupon_value"])
    for entry in entries:
        entry.position.updated_at = now
    JourneyPosition.objects.bulk_update(
        [e.position for e in entries], ["step", "waiting", "since", "due_at", "state", "variants", "updated_at"]
    )
    stats["steps"] += len(step_runs)


def _do(journey, here, group, by_id, now, step_runs, notices, stats) -> None:
    variants = [step.variant for step in here]
    for entry in group:
        member_id, position = entry.position.member_id, here[0].position
        if len(here) > 1:
            label = entry.position.variants.get(str(position)) or variant_for(journey.pk, member_id, position, variants)
            entry.position.variants[str(position)] = label
            step = next((s for s in here if s.variant == label), here[0])
        else:
            step = here[0]
        step_run_id = _claim_step(entry, step, now)
        if step_run_id is not None:
            # Points and coupons go through services that may refuse (a member frozen
            # meanwhile): a savepoint per member undoes that member's action only.
            may_refuse = step.action in (Journey.Action.AWARD_POINTS, Journey.Action.ISSUE_COUPON)
            try:
                with transaction.atomic() if may_refuse else contextlib.nullcontext():
                    what, detail, notice = _act(
                        journey, step, by_id[member_id], entry.event, entry.position.run_id, now
                    )
            except LoyaltyError as error:
                step_runs.append(
                    _record(
                        step_run_id,
                        JourneyStepRun.Status.SKIPPED,
                        f"{_('not done')}: {error.message}",
                        {"error": error.code},
                    )
                )
                entry.refused = entry.refused or error
            else:
                step_runs.append(_record(step_run_id, JourneyStepRun.Status.DONE, what, detail))
                entry.done.append(what)
                entry.detail.update(
                    {k: v for k, v in detail.items() if k not in ("points_given", "coupon_value_given")}
                )
                if notice is not None:
                    notices.append(notice)
        _go_to(entry, step.position + 1, now)


def _wait(step: JourneyStep, group: list[_Entry], now: dt.datetime, step_runs: list) -> None:
    for entry in group:
        position = entry.position
        if not position.waiting:
            position.waiting, position.since = True, now
            position.due_at = now + dt.timedelta(days=step.wait_days or 0)
            entry.paused = True
            continue
        step_run_id = _claim_step(entry, step, now)
        if step_run_id:
            early = now < position.since + dt.timedelta(days=step.wait_days or 0)
            words = (
                _("ended by an order, after %(days)s of %(max)s days")
                % {"days": (now - position.since).days, "max": step.wait_days}
                if early
                else _("waited %(days)s days") % {"days": step.wait_days}
            )
            step_runs.append(_record(step_run_id, JourneyStepRun.Status.DONE, words, {"early": early}))
        position.due_at = now
        _go_to(entry, step.position + 1, now)


# --- entering, one chunk of members -------------------------------------------------------


def _enter(journey: Journey, steps, events: list[Event], *, now: dt.datetime, stats: dict) -> int:
    """Record the runs of ``events`` (members of one id range) and move the new entries on."""
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
            status__in=(JourneyRun.Status.DONE, JourneyRun.Status.HELD_OUT),
            created_at__gt=now - dt.timedelta(days=journey.cap_days),
        )
        .order_by()
        .values("member_id")
        .annotate(n=Count("id"))
        .values_list("member_id", "n")
    )
    cap = contact_cap() if journey.is_marketing else None
    contacts = None
    if cap is not None:
        # The cap counts every journey's contacts: hold these members' buckets first, so a
        # journey running beside this one cannot count the same contacts and both send.
        _lock_contact_buckets(ids)
        contacts = defaultdict(int)
        contacts.update(_contacts_recent(ids, now, cap[1]))
    _decide(journey, events, members, done, contacts, cap)
    for event in events:
        fired = _what_fired(journey, event)
        if event.status == JourneyRun.Status.SKIPPED:
            event.reason = f"{fired}; {_('skipped')}: {event.reason}"
        elif event.status == JourneyRun.Status.HELD_OUT:
            event.reason = f"{fired}; {event.reason}"
        else:
            event.reason = fired
    ours = _insert_runs(journey, events, now)
    stats["held_out"] += sum(
        1 for e in events if e.status == JourneyRun.Status.HELD_OUT and (e.member_id, e.key) in ours
    )

    entering = [e for e in events if e.status == JourneyRun.Status.DONE and (e.member_id, e.key) in ours]
    positions = JourneyPosition.objects.bulk_create(
        [
            JourneyPosition(
                run_id=ours[(e.member_id, e.key)], journey=journey, member_id=e.member_id, step=1, since=now,
                due_at=now, entered_at=now, updated_at=now,
            )
            for e in entering
        ],
        batch_size=INSERT_BATCH,
    )  # fmt: skip
    entries = [_Entry(position, event) for position, event in zip(positions, entering, strict=True)]
    _advance(journey, steps, entries, now, stats)

    # The entry's run says what fired and what its first steps did, in plain words.
    finished = []
    for entry in entries:
        run = JourneyRun(
            pk=entry.position.run_id, status=JourneyRun.Status.DONE, contacted_at=now if journey.is_marketing else None
        )
        fired = _what_fired(journey, entry.event)
        if entry.refused is not None and not entry.done:
            run.status = JourneyRun.Status.SKIPPED
            run.reason = f"{fired}; {_('not done')}: {entry.refused.message}"[:300]
            run.detail = {**entry.event.facts, "error": entry.refused.code}
            run.contacted_at = None  # nothing reached the member
            JourneyPosition.objects.filter(pk=entry.position.pk).update(
                state=JourneyPosition.State.FINISHED, due_at=None
            )
        else:
            words = ", ".join(entry.done) if entry.done else (_("waiting") if entry.position.waiting else "")
            run.reason = f"{fired}; {words}"[:300] if words else fired[:300]
            run.detail = {**entry.event.facts, **entry.detail}
        finished.append(run)
    if finished:
        JourneyRun.objects.bulk_update(finished, ["status", "reason", "detail", "contacted_at"])
    refused = sum(1 for run in finished if run.status == JourneyRun.Status.SKIPPED)
    stats["done"] += len(finished) - refused
    stats["skipped"] += sum(1 for e in events if e.status == JourneyRun.Status.SKIPPED and (e.member_id, e.key) in ours)
    stats["skipped"] += refused
    return len(ours)


def _audience(journey: Journey, member_ids: Iterable[int]) -> set[int] | None:
    """The ids among ``member_ids`` in the journey's audience; None when it has none."""
    if journey.audience_id is None:
        return None
    return set(segment_members(journey.audience).filter(id__in=list(member_ids)).values_list("id", flat=True))


def _timed(work, stats: dict) -> None:
    started = time.monotonic()
    with transaction.atomic():
        work()
    stats["chunks"] += 1
    stats["longest_chunk_s"] = max(stats["longest_chunk_s"], round(time.monotonic() - started, 3))


def _enter_all(journey: Journey, steps, *, now: dt.datetime, size: int, stats: dict) -> None:
    if journey.trigger == Journey.Trigger.BROADCAST:
        if journey.send_at and journey.send_at > now:
            return
        for lo, hi in member_id_ranges(size=size):
            _timed(
                lambda lo=lo, hi=hi: _enter(journey, steps, _broadcast(journey, lo, hi, now), now=now, stats=stats),
                stats,
            )
        # Sent: a broadcast goes once; it switches itself off (its report stays).
        Journey.objects.filter(pk=journey.pk).update(is_active=False)
        return
    # One candidate query over every member, by the trigger's own time condition, and one
    # for the runs that can match these events: an hour with nothing new costs two queries
    # per journey, not two per member-id range.
    since = now - LOOKBACK
    with _without_jit():
        events = TRIGGERS[journey.trigger](journey, 0, 2**62, now, since)
        if not events:
            return
        ran = _recent_runs(journey, since, {e.member_id for e in events})
    events = [e for e in events if (e.member_id, e.key[:100]) not in ran]
    if not events:
        return
    if journey.trigger == Journey.Trigger.DORMANT:
        _dormant_facts(events)
    by_chunk: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        by_chunk[event.member_id // size].append(event)
    for _chunk_no, chunk in sorted(by_chunk.items()):
        _timed(lambda chunk=chunk: _enter(journey, steps, chunk, now=now, stats=stats), stats)


@contextlib.contextmanager
def _without_jit():
    """PostgreSQL's JIT off for the candidate queries: their per-row probes make the planner's
    cost look large, and compiling them took longer (0.1-0.2 s each) than running them."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
        yield


def _recent_runs(journey: Journey, since: dt.datetime, member_ids: set[int]) -> set[tuple[int, str]]:
    """(member, event key) of the runs of ``member_ids`` that may belong to an event of the look-back window.

    An event in the window fired after ``since`` (a birthday: on its local day, so a day
    earlier at most), and its run was written when it fired; an expiry event stays the same
    while its points are within ``trigger_days`` of expiring, so its run may be that much
    older. Leaving a run out here costs nothing but time: the insert's unique key still
    refuses it.
    """
    cutoff = since - dt.timedelta(days=1)
    if journey.trigger == Journey.Trigger.POINTS_EXPIRING:
        cutoff -= dt.timedelta(days=journey.trigger_days or settings.LOYALTY_EXPIRY_NOTICE_DAYS)
    if connection.vendor != "postgresql":
        return set(
            JourneyRun.objects.filter(
                journey=journey, member_id__in=sorted(member_ids), created_at__gt=cutoff
            ).values_list("member_id", "event_key")
        )
    with connection.cursor() as cursor:
        # One array parameter, not thousands: the (journey, member, event key) index answers it.
        cursor.execute(
            "SELECT member_id, event_key FROM engagement_journeyrun "
            "WHERE journey_id = %s AND member_id = ANY(%s) AND created_at > %s",
            [journey.pk, sorted(member_ids), cutoff],
        )
        return set(cursor.fetchall())


def _broadcast(journey: Journey, lo: int, hi: int, now: dt.datetime) -> list[Event]:
    """Every member of ``[lo, hi)`` (the audience filter comes after): one event, "broadcast"."""
    day = _day(journey.send_at or now)
    return [
        Event(member_id, "broadcast", {"date": day})
        for member_id in Member.objects.filter(id__gte=lo, id__lt=hi).values_list("id", flat=True)
    ]


def _wake_order_waits(journey: Journey, steps, now: dt.datetime) -> int:
    """Make due, at once, the entries waiting for an order that came: one update per such step."""
    woken = 0
    for position, here in steps.items():
        if here[0].kind != JourneyStep.Kind.WAIT or here[0].wait_until != JourneyStep.Until.ORDER:
            continue
        # From the orders of the look-back window to the members waiting, not the other way
        # round: a run reads the last days' orders (order_occurred), however many members wait.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE engagement_journeyposition AS p SET due_at = %(now)s "
                "FROM (SELECT o.member_id, max(o.occurred_at) AS last FROM loyalty_order o "
                f"WHERE o.occurred_at > %(since)s AND o.occurred_at <= %(now)s AND {ORDERS_COUNTING_SQL} "
                "GROUP BY o.member_id) r "
                "WHERE p.member_id = r.member_id AND r.last > p.since AND p.journey_id = %(journey)s "
                "AND p.state = 'active' AND p.step = %(step)s AND p.waiting AND p.due_at > %(now)s",
                {"now": now, "since": now - LOOKBACK, "journey": journey.pk, "step": position},
            )
            woken += cursor.rowcount
    return woken


def _advance_due(journey: Journey, steps, *, now: dt.datetime, stats: dict) -> None:
    """Move on every entry whose wait is over, in batches, each its own transaction."""
    _wake_order_waits(journey, steps, now)
    while True:
        with transaction.atomic():
            started = time.monotonic()
            # The partial index journey_position_due makes "nothing due" one index probe.
            due = list(
                JourneyPosition.objects.select_for_update(skip_locked=True)
                .filter(journey=journey, state=JourneyPosition.State.ACTIVE, due_at__lte=now)
                .select_related("run")
                .order_by("due_at", "id")[:ADVANCE_BATCH]
            )
            if not due:
                return
            entries = [_Entry(p, Event(p.member_id, p.run.event_key, dict(p.run.detail))) for p in due]
            _advance(journey, steps, entries, now, stats)
            stats["chunks"] += 1
            stats["longest_chunk_s"] = max(stats["longest_chunk_s"], round(time.monotonic() - started, 3))
        if len(due) < ADVANCE_BATCH:
            return


def journey_run(journey: Journey, *, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Run one journey: let in the members its trigger fired for, move on everyone due.

    Returns counts ("done": entries, "held_out", "skipped", "steps": steps done, "chunks",
    "longest_chunk_s", "duration_s"). Safe to run twice or side by side: an event already
    run is never run again, a step never acts twice for one entry. In the journey's quiet
    hours it does nothing and records nothing (``quiet: True``). An inactive journey is not
    run (``inactive: True``); its members waiting at a step stay where they are.
    """
    now = now or timezone.now()
    stats = {
        "done": 0,
        "skipped": 0,
        "held_out": 0,
        "steps": 0,
        "quiet": False,
        "inactive": False,
        "chunks": 0,
        "longest_chunk_s": 0.0,
    }
    if not journey.is_active:
        stats["inactive"] = True
        return stats
    if in_quiet_hours(journey, now):
        stats["quiet"] = True
        return stats
    started = time.monotonic()
    steps = _steps(journey)
    with translation.override(settings.LANGUAGE_CODE):
        _enter_all(journey, steps, now=now, size=size, stats=stats)
        _advance_due(journey, steps, now=now, stats=stats)
    stats["duration_s"] = round(time.monotonic() - started, 3)
    return stats


def journeys_run(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Run every active journey and broadcast (the hourly job); returns counts per journey name.

    A journey that fails (say, its audience cannot be evaluated) is logged and reported
    as ``{"error": ...}``; the others still run.
    """
    now = now or timezone.now()
    results = {}
    for journey in Journey.objects.filter(is_active=True).select_related("audience").order_by("id"):
        try:
            results[journey.name] = journey_run(journey, now=now, size=size)
        except Exception as error:  # one broken journey must not stop the others
            logger.exception("journey %s failed", journey.pk)
            results[journey.name] = {"error": str(error)}
    return results

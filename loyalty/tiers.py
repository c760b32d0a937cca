"""Tier services: default tier on joining, upgrade on earn, the review sweep, staff pins.

A member's tier follows their **growth**: what is left of their growth lots that have not
expired (available or pending), i.e. ``balance + pending`` of the growth account once it
is settled. The rolling tier window is the growth expiry policy.

- Upgrades happen at once: the earn (or adjustment) that crosses a higher tier's
  ``qualify_threshold`` moves the member up inside its own transaction
  (``tier_upgrade_if_qualified``), and the nightly ``tiers_sweep`` catches anyone else.
- Downgrades happen only in the sweep, on or after the member's ``review_at``: to the best
  tier whose ``retain_threshold`` is met, at most one step down when
  ``LOYALTY_TIER_SOFT_LANDING`` is on. A member who keeps their tier gets a RETAINED row
  and a review date ``LOYALTY_TIER_REVIEW_MONTHS`` later.
- A staff pin (``pinned_until`` in the future) freezes the tier: no upgrade, no downgrade.
  The pin's end is the member's review date.
- A refund that takes back growth reviews the tier at once (``tier_review_after_refund``)
  while ``LOYALTY_TIER_REEVALUATE_ON_REFUND`` is on, so a tier bought with an order that
  went back does not last until the review.

Locking: the member's ``MemberTier`` row is locked (``SELECT ... FOR UPDATE``) before any
decision. Earning locks the accounts first and the tier row second; the sweep locks only
tier rows, so the two cannot deadlock. Every change appends a ``TierChange`` row and a
notice in the outbox (``members.models.Notification``) in the same transaction.
"""

import datetime as dt
import threading
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import BigIntegerField, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.bulk import insert_rows, update_rows
from core.db import is_postgresql
from core.errors import LoyaltyError
from members.jobs import run_in_member_chunks
from members.models import Member, Notification
from members.notifications import Notice, in_languages, notices_enqueue

from .models import Currency, Lot, MemberTier, Tier, TierChange
from .policies import ExpiryPolicy

# --- helpers --------------------------------------------------------------------------


def _review_after(moment: dt.datetime) -> dt.datetime:
    """``LOYALTY_TIER_REVIEW_MONTHS`` calendar months after ``moment`` (same local day, clamped)."""
    return ExpiryPolicy("rolling", settings.LOYALTY_TIER_REVIEW_MONTHS).expires_at(moment)


def _tiers() -> list[Tier]:
    """Every tier, lowest rank first (a handful of rows)."""
    return list(Tier.objects.order_by("rank"))


def _best_qualifying(tiers: list[Tier], growth: int) -> Tier | None:
    """The highest-ranked tier whose qualify threshold ``growth`` reaches."""
    qualifying = [tier for tier in tiers if tier.qualify_threshold <= growth]
    return qualifying[-1] if qualifying else None


def _review_target(tiers: list[Tier], current: Tier, growth: int) -> Tier:
    """Where a member in ``current`` with ``growth`` lands at their review date.

    The best tier at or below ``current`` whose retain threshold is met (the lowest tier
    if none is); with soft landing at most one step below ``current``.
    """
    index = next(i for i, tier in enumerate(tiers) if tier.pk == current.pk)
    target = 0
    for i in range(index, -1, -1):
        if tiers[i].retain_threshold <= growth:
            target = i
            break
    if settings.LOYALTY_TIER_SOFT_LANDING:
        target = max(target, index - 1)
    return tiers[target]


# What the nightly sweep did to a member, by the key it is counted under in its report.
_SWEEP_COUNTS = {
    TierChange.Reason.UPGRADE: "upgraded",
    TierChange.Reason.RETAINED: "retained",
    TierChange.Reason.DOWNGRADE: "downgraded",
}


def _sweep_decision(
    tiers: list[Tier], current: Tier, growth: int, review_at: dt.datetime, now: dt.datetime
) -> tuple[Tier, str | None, dt.datetime | None]:
    """The sweep's rule for one member in ``current`` with ``growth``: the tier they end in,
    why (None: nothing to record, e.g. only an ended pin) and, when they keep their tier at
    a review, their next review date. An upgrade or a downgrade starts a new period."""
    best = _best_qualifying(tiers, growth)
    if best is not None and best.rank > current.rank:
        return best, TierChange.Reason.UPGRADE, None
    if review_at > now:
        return current, None, None
    target = _review_target(tiers, current, growth)
    if target.pk != current.pk:
        return target, TierChange.Reason.DOWNGRADE, None
    review = _review_after(review_at)
    return current, TierChange.Reason.RETAINED, review if review > now else _review_after(now)


def growth_expression(now: dt.datetime, member_ref: str = "member_id") -> Coalesce:
    """A member's growth at ``now`` as a correlated subquery over their growth lots.

    Counts what remains of lots not expired at ``now``, available or pending, so the
    answer does not depend on whether the expiry job has run yet.
    """
    lots = (
        Lot.objects.filter(member_id=OuterRef(member_ref), currency=Currency.GROWTH, remaining__gt=0)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by()
        .values("member_id")
        .annotate(total=Sum("remaining"))
        .values("total")
    )
    return Coalesce(Subquery(lots, output_field=BigIntegerField()), Value(0))


def _member_growth(member_id: int, now: dt.datetime) -> int:
    return (
        Member.objects.filter(pk=member_id)
        .annotate(growth=growth_expression(now, "pk"))
        .values_list("growth", flat=True)
        .first()
        or 0
    )


# The tier notices' texts, one lazy text each: the outbox reads a text shared by a batch once.
_UP_TITLE = gettext_lazy("Welcome to %(tier)s")
_UP_BODY = gettext_lazy("With %(growth)s growth you are now a %(tier)s member. Your new benefits apply from today.")
_TIER_NOW_TITLE = gettext_lazy("Your tier is now %(tier)s")
_DOWN_BODY = gettext_lazy(
    "At your tier review you had %(growth)s growth, not enough to keep %(old)s. Your tier is now %(tier)s."
)


def _notice(change: TierChange, *, from_tier: Tier | None, to_tier: Tier) -> Notice:
    """The notice telling the member about ``change``, for ``notices_enqueue``. One per change."""
    up = from_tier is None or to_tier.rank > from_tier.rank
    # Tier names in every language: the member reads them in theirs (members.notifications).
    values = {
        "tier": in_languages(to_tier, "name"),
        "growth": change.growth,
        "old": in_languages(from_tier, "name") if from_tier else "",
    }
    kind = Notification.Kind.TIER_UP if up else Notification.Kind.TIER_DOWN
    if change.reason == TierChange.Reason.PINNED:
        title = _TIER_NOW_TITLE
        body = gettext_lazy("Our staff set your tier to %(tier)s.")
    elif change.reason == TierChange.Reason.REFUND:
        title = _TIER_NOW_TITLE
        body = gettext_lazy(
            "After a refund you have %(growth)s growth, not enough for %(old)s. Your tier is now %(tier)s."
        )
    elif up:
        title, body = _UP_TITLE, _UP_BODY
    else:
        title, body = _TIER_NOW_TITLE, _DOWN_BODY
    return Notice(
        member_id=change.member_id,
        kind=kind,
        title=title,
        body=body,
        params=values,
        data={
            "tier_change": change.pk,
            "from_tier": from_tier.code if from_tier else None,
            "to_tier": to_tier.code,
            "growth": change.growth,
        },
        dedupe_key=f"tier:{change.member_id}:{change.pk}",
    )


def _change(state: MemberTier, to_tier: Tier, *, reason: str, growth: int, now: dt.datetime, **fields) -> TierChange:
    """Move the (locked, in-memory) ``state`` to ``to_tier``; return the unsaved history row."""
    change = TierChange(
        member_id=state.member_id,
        from_tier_id=state.tier_id,
        to_tier=to_tier,
        reason=reason,
        growth=growth,
        created_at=now,
        **fields,
    )
    state.tier = to_tier
    state.started_at = now
    state.review_at = _review_after(now)
    state.pinned_until = None
    return change


def _lock_state(member_id: int) -> MemberTier | None:
    # of=("self",): lock the member's row only, never the shared tier rows.
    return MemberTier.objects.select_for_update(of=("self",)).filter(member_id=member_id).first()


def _first_tiers(tiers: list[Tier], growth: int, *, join_only: bool) -> tuple[Tier | None, Tier | None]:
    """The one placement rule: where a member without a tier starts, and where they go next.

    ``(joined, upgraded)``: the default tier (a JOINED change), then straight on to the best
    tier ``growth`` qualifies for when that ranks higher (an UPGRADE, with a notice); with
    no default tier, only the UPGRADE to the best qualifying tier. ``join_only`` (joining,
    the import) places in the default tier alone. ``(None, None)`` leaves the member untiered.
    """
    default = next((tier for tier in tiers if tier.is_default), None)
    if join_only:
        return default, None
    best = _best_qualifying(tiers, growth)
    if best is not None and (default is None or best.rank > default.rank):
        return default, best
    return default, None


def _place_members(
    member_growth: list[tuple[int, int]], tiers: list[Tier], now: dt.datetime, *, join_only: bool = False
) -> dict[int, tuple[MemberTier, TierChange | None]]:
    """Give members without a tier their first tier by :func:`_first_tiers`, in bulk.

    ``member_growth`` is ``(member id, growth)`` of members the caller has locked (or just
    created) and found without a tier. Writes the ``MemberTier`` rows and the JOINED and
    UPGRADE changes in one statement each (``core.bulk.insert_rows``) and enqueues a notice
    per upgrade. Returns ``{member id: (tier row, its UPGRADE change or None)}``, the same
    outcome as joining and then earning.
    """
    review_at = _review_after(now)
    placed: list[tuple[int, int, Tier, Tier | None, Tier | None]] = []  # member, growth, tier, joined, upgraded
    for member_id, growth in member_growth:
        joined, upgraded = _first_tiers(tiers, growth, join_only=join_only)
        if joined is not None or upgraded is not None:
            placed.append((member_id, growth, upgraded or joined, joined, upgraded))
    if not placed:
        return {}
    state_ids = insert_rows(
        MemberTier,
        [{"member_id": member_id, "tier_id": tier.pk} for member_id, _growth, tier, _joined, _up in placed],
        same={"started_at": now, "review_at": review_at},
    )
    rows, steps = [], []  # change rows, and (member, from, to) of each for the notices
    for member_id, growth, _tier, joined, upgraded in placed:
        if joined is not None:
            rows.append(
                {
                    "member_id": member_id,
                    "from_tier_id": None,
                    "to_tier_id": joined.pk,
                    "reason": TierChange.Reason.JOINED,
                    "growth": growth,
                }
            )
            steps.append(None)
        if upgraded is not None:
            rows.append(
                {
                    "member_id": member_id,
                    "from_tier_id": joined.pk if joined else None,
                    "to_tier_id": upgraded.pk,
                    "reason": TierChange.Reason.UPGRADE,
                    "growth": growth,
                }
            )
            steps.append((joined, upgraded))
    change_ids = insert_rows(TierChange, rows, same={"created_at": now})
    upgrades: dict[int, TierChange] = {}
    notices = []
    for row, (change_id,), step in zip(rows, change_ids, steps, strict=True):
        if step is None:
            continue
        from_tier, to_tier = step
        change = TierChange(id=change_id, created_at=now, **row)
        upgrades[row["member_id"]] = change
        notices.append(_notice(change, from_tier=from_tier, to_tier=to_tier))
    notices_enqueue(notices, now=now)
    result = {}
    for (state_id,), (member_id, _growth, tier, _joined, _up) in zip(state_ids, placed, strict=True):
        state = MemberTier(id=state_id, member_id=member_id, tier=tier, started_at=now, review_at=review_at)
        state._state.adding, state._state.db = False, "default"
        result[member_id] = (state, upgrades.get(member_id))
    return result


# --- services -------------------------------------------------------------------------


@transaction.atomic
def tier_assign_default(*, member: Member, now: dt.datetime) -> MemberTier | None:
    """Put a new member in the default tier, reviewed ``LOYALTY_TIER_REVIEW_MONTHS`` later.

    Does nothing when no tier is the default or the member already has a tier.
    Runs inside the joining transaction (``operations.actions.member_joined``).
    """
    tiers = _tiers()
    if not any(tier.is_default for tier in tiers):
        return None
    Member.objects.select_for_update(no_key=True).filter(pk=member.pk).first()
    existing = _lock_state(member.pk)
    if existing is not None:
        return existing
    return _place_members([(member.pk, 0)], tiers, now, join_only=True)[member.pk][0]


def tiers_assign_default_bulk(*, member_ids: list[int], now: dt.datetime) -> None:
    """:func:`tier_assign_default` for members just created in the caller's transaction
    (the background member import): two statements for all of them."""
    if member_ids:
        _place_members([(pk, 0) for pk in member_ids], _tiers(), now, join_only=True)


UNSEEN = object()  # tier_upgrade_if_qualified(seen=...): the caller read no tier row


# No savepoint: this runs inside every earn, and a failure here fails the earn anyway.
@transaction.atomic(savepoint=False)
def tier_upgrade_if_qualified(
    *, member_id: int, growth: int, now: dt.datetime, tiers: list[Tier] | None = None, seen=UNSEEN
) -> TierChange | None:
    """Move the member up as soon as ``growth`` reaches a higher tier's threshold.

    ``growth`` is the member's growth balance plus pending growth, read by the caller
    under its account lock (called inside the earn or adjustment transaction). Moves to
    the best tier that ``growth`` qualifies for, never down; a member without a tier
    gets one first. Does nothing while a staff pin holds. Returns the UPGRADE change,
    or None when nothing changed. ``tiers`` (lowest rank first) saves the earn a query:
    the programme configuration it read (``loyalty.configuration``).

    ``seen`` is the member's tier row (or None: no row) as the caller read it without a
    lock, in the statement that locked the accounts (the earn). When that row already
    holds a tier at least as high as ``growth`` qualifies for, or a pin, nothing is
    locked and nothing changes: the earn's common path. Whatever may be stale in it
    can only hold back an upgrade, never make a wrong one (every upgrade is decided again
    on the locked row): a downgrade committed while the earn waited for the accounts
    (a refund's, the sweep's) may be unseen, and the next earn or the nightly sweep,
    which upgrades too, makes the upgrade then.
    """
    tiers = _tiers() if tiers is None else tiers
    if not tiers:
        return None
    if seen is not UNSEEN and seen is not None:
        best = _best_qualifying(tiers, growth)
        current = next((tier for tier in tiers if tier.pk == seen.tier_id), None)
        pinned = seen.pinned_until is not None and seen.pinned_until > now
        if pinned or best is None or (current is not None and best.rank <= current.rank):
            return None
    state = _lock_state(member_id)
    if state is None:
        # Lock the member so two first earns cannot both create the tier row.
        Member.objects.select_for_update(no_key=True).filter(pk=member_id).first()
        state = _lock_state(member_id)
        if state is None:
            placed = _place_members([(member_id, growth)], tiers, now)
            return placed[member_id][1] if placed else None
    if state.pinned_until is not None and state.pinned_until > now:
        return None
    by_id = {tier.pk: tier for tier in tiers}
    current = by_id[state.tier_id]
    best = _best_qualifying(tiers, growth)
    if best is None or best.rank <= current.rank:
        return None
    change = _change(state, best, reason=TierChange.Reason.UPGRADE, growth=growth, now=now)
    state.save(update_fields=["tier", "started_at", "review_at", "pinned_until"])
    change.save()
    notices_enqueue([_notice(change, from_tier=current, to_tier=best)], now=now)
    return change


# No savepoint: this runs inside the refund's transaction, like the upgrade hook.
@transaction.atomic(savepoint=False)
def tier_review_after_refund(*, member_id: int, growth: int, order, now: dt.datetime) -> TierChange | None:
    """Move the member down at once when a refund took back the growth that held their tier.

    ``growth`` is the member's growth balance plus pending after the refund, read by the
    caller under its account lock; ``order`` is the refunded order. A tier the member
    reached after the order happened was (perhaps) bought with it: it stays only while
    ``growth`` still meets its *qualify* threshold. A tier held since before the order
    stays while ``growth`` meets its *retain* threshold, as at a review. Otherwise the
    member goes to the best tier ``growth`` qualifies for (the lowest when none), with a
    REFUND change, a notice and a new review date. Never moves anyone up; does nothing
    while a staff pin holds or when the member has no tier. Called by
    ``loyalty.services.order_refund`` when ``LOYALTY_TIER_REEVALUATE_ON_REFUND`` is on.
    """
    tiers = _tiers()
    state = _lock_state(member_id)
    if not tiers or state is None or (state.pinned_until is not None and state.pinned_until > now):
        return None
    by_id = {tier.pk: tier for tier in tiers}
    current = by_id[state.tier_id]
    held_before = state.started_at <= order.occurred_at
    keep = current.retain_threshold if held_before else current.qualify_threshold
    if growth >= keep:
        return None
    target = _best_qualifying(tiers, growth) or tiers[0]
    if target.rank >= current.rank:
        return None
    change = _change(state, target, reason=TierChange.Reason.REFUND, growth=growth, now=now, note=str(order)[:200])
    state.save(update_fields=["tier", "started_at", "review_at", "pinned_until"])
    change.save()
    notices_enqueue([_notice(change, from_tier=current, to_tier=target)], now=now)
    return change


@transaction.atomic
def tier_pin(
    *,
    member: Member,
    tier: Tier,
    until: dt.datetime,
    actor: AbstractBaseUser,
    note: str,
    now: dt.datetime | None = None,
) -> TierChange:
    """Staff put a member in ``tier`` and keep them there until ``until``.

    While pinned the tier neither rises nor falls; ``until`` becomes the review date (or
    stays the later review date when the tier does not change), so the member is reviewed
    when the pin ends. Writes a PINNED change with the actor (its operator) and note, and a notice
    when the tier changes. Refuses: no note, ``until`` not in the future, a tier that
    does not exist, an actor who is not an active staff user allowed to change
    member tiers.
    """
    now = now or timezone.now()
    note = note.strip() if isinstance(note, str) else ""
    if not note or len(note) > 200:
        raise LoyaltyError("reason_required", _("Say why you are pinning the tier: a note of 1 to 200 characters."))
    if not isinstance(until, dt.datetime) or timezone.is_naive(until):
        raise LoyaltyError("invalid_time", _("The pin end must be a date and time with its time zone."))
    if until <= now:
        raise LoyaltyError("pin_in_past", _("The pin must end in the future."))
    if (
        actor is None
        or not getattr(actor, "is_staff", False)
        or not actor.is_active
        or not actor.has_perm("loyalty.change_membertier")
    ):
        raise LoyaltyError(
            "operator_required", _("Only an active staff user allowed to change member tiers can pin a tier.")
        )
    if not isinstance(tier, Tier) or tier.pk is None or not Tier.objects.filter(pk=tier.pk).exists():
        raise LoyaltyError("invalid_tier", _("Choose an existing tier."))

    Member.objects.select_for_update(no_key=True).filter(pk=member.pk).first()
    state = _lock_state(member.pk)
    growth = _member_growth(member.pk, now)
    from_tier = Tier.objects.get(pk=state.tier_id) if state is not None else None
    if state is None:
        state = MemberTier(member=member, tier=tier, started_at=now, review_at=until)
    elif state.tier_id != tier.pk:
        state.tier, state.started_at, state.review_at = tier, now, until
    else:
        state.review_at = max(state.review_at, until)
    state.pinned_until = until
    state.save()
    change = TierChange.objects.create(
        member=member,
        from_tier=from_tier,
        to_tier=tier,
        reason=TierChange.Reason.PINNED,
        growth=growth,
        note=note,
        operator=actor,
        created_at=now,
    )
    if from_tier is None or from_tier.pk != tier.pk:
        notices_enqueue([_notice(change, from_tier=from_tier, to_tier=tier)], now=now)
    return change


# --- the nightly sweep ----------------------------------------------------------------


# The set-based chunk, under the tier rows' locks: every member's growth (what
# growth_expression counts, one probe of the lots' member index each), the decision looked
# up in the chunk's table of them (:func:`_sweep_table`), the tier rows and their history
# written, and back the changes that get a notice with the chunk's counts (one row at least).
_SWEEP_SQL = """
WITH due AS MATERIALIZED (
    SELECT k.id, k.member_id, k.tier_id, k.review_at, k.unpinned, k.growth,
           (%(targets)s::bigint[])[k.slot] AS target_id, (%(reasons)s::text[])[k.slot] AS reason,
           (%(new_periods)s::boolean[])[k.slot] AS new_period
    FROM (
        SELECT s.id, s.member_id, s.tier_id, s.review_at, s.pinned_until IS NOT NULL AS unpinned, g.growth,
               -- The decision's slot in the table: by tier, growth band (width_bucket), due or not.
               (array_position(%(tiers)s::bigint[], s.tier_id) - 1) * %(stride)s
                   + width_bucket(g.growth, %(bounds)s::bigint[]) * 2 + (s.review_at <= %(now)s)::int + 1 AS slot
        FROM loyalty_membertier s
        CROSS JOIN LATERAL (
            SELECT COALESCE(SUM(l.remaining), 0)::bigint AS growth FROM loyalty_lot l
            WHERE l.member_id = s.member_id AND l.currency = %(growth)s AND l.remaining > 0
              AND (l.expires_at IS NULL OR l.expires_at > %(now)s)
        ) g
        WHERE s.member_id = ANY(%(ids)s::bigint[]) AND (s.pinned_until IS NULL OR s.pinned_until <= %(now)s)
    ) k
    -- A tier made since the sweep read them has no slot: its members wait for the next run.
    WHERE k.slot IS NOT NULL AND ((%(reasons)s::text[])[k.slot] IS NOT NULL OR k.unpinned)
), states AS (
    -- Every row written loses its pin (an ended pin is cleared; a change starts unpinned).
    -- A retained member's next review: review_months after the last one in local time
    -- (_review_after), or after now when that has passed too.
    UPDATE loyalty_membertier s
    SET tier_id = due.target_id,
        started_at = CASE WHEN due.new_period THEN %(now)s ELSE s.started_at END,
        review_at = CASE
            WHEN due.new_period THEN %(review_now)s
            WHEN due.reason = %(retained)s THEN (
                SELECT CASE WHEN r.at > %(now)s THEN r.at ELSE %(review_now)s END
                FROM (SELECT ((due.review_at AT TIME ZONE %(zone)s) + make_interval(months => %(months)s))
                             AT TIME ZONE %(zone)s AS at) r
            )
            ELSE s.review_at END,
        pinned_until = NULL
    FROM due
    -- "= ANY": probe the member index (the planner's guess for the CTE would hash the table).
    WHERE s.id = due.id AND s.member_id = ANY(%(ids)s::bigint[])
), changes AS (
    INSERT INTO loyalty_tierchange (member_id, from_tier_id, to_tier_id, reason, growth, note, operator_id,
                                    created_at)
    SELECT member_id, tier_id, target_id, reason, growth, '', NULL, %(now)s FROM due WHERE reason IS NOT NULL
    RETURNING id, member_id, from_tier_id, to_tier_id, reason, growth
)
SELECT k.retained, k.unpinned, c.member_id, c.id, c.from_tier_id, c.to_tier_id, c.reason, c.growth
FROM (SELECT count(*) FILTER (WHERE reason = %(retained)s) AS retained, count(*) FILTER (WHERE unpinned) AS unpinned
      FROM due) k
LEFT JOIN changes c ON c.reason <> %(retained)s
ORDER BY c.member_id
"""


# The set-based chunk's lock: the next tier rows in member order, which are the chunk.
_SWEEP_LOCK_SQL = """
SELECT member_id FROM loyalty_membertier WHERE member_id > %(after)s ORDER BY member_id LIMIT %(size)s FOR UPDATE
"""


def _sweep_chunk(after: int, size: int, tiers: list[Tier], now: dt.datetime, counts: dict[str, int]) -> list[int]:
    """One chunk of the sweep in its own transaction: the next ``size`` members with a tier
    row after member ``after``, their tier rows locked first; returns the chunk's member
    ids (fewer than ``size``: the last chunk). PostgreSQL: set-based (lock and ids in one
    statement, :func:`_sweep_chunk_sql`); elsewhere the ORM twin :func:`_sweep_chunk_orm`."""
    with transaction.atomic():
        if is_postgresql():
            with connection.cursor() as cursor:
                cursor.execute(_SWEEP_LOCK_SQL, {"after": after, "size": size})
                member_ids = [member_id for (member_id,) in cursor.fetchall()]
            if member_ids:
                _sweep_chunk_sql(member_ids, tiers, now, counts)
        else:
            rows = MemberTier.objects.filter(member_id__gt=after).order_by("member_id")
            member_ids = list(rows.values_list("member_id", flat=True)[:size])
            if member_ids:
                _sweep_chunk_orm(member_ids, tiers, now, counts)
    return member_ids


def _sweep_table(tiers: list[Tier], now: dt.datetime) -> dict[str, list | int]:
    """:func:`_sweep_decision` for every tier, growth band and due-or-not: the decision table
    that :data:`_SWEEP_SQL` looks each member up in, as its parameters.

    The rule compares growth with the tiers' thresholds only, so it decides alike for every
    growth between two neighbouring thresholds: band ``b`` holds the growths at or above
    the ``b``-th threshold and below the next (``width_bucket`` in SQL), and one growth of
    each band stands for all of them. The rule stays in Python, in one place."""
    bounds = sorted({tier.qualify_threshold for tier in tiers} | {tier.retain_threshold for tier in tiers})
    targets, reasons, new_periods = [], [], []
    # Slot order: tier (rank order), band, then not due before due, as the SQL counts them.
    for tier in tiers:
        for growth in [bounds[0] - 1, *bounds]:
            for review_at in (now + dt.timedelta(days=1), now):
                target, reason, _review = _sweep_decision(tiers, tier, growth, review_at, now)
                targets.append(target.pk)
                reasons.append(reason.value if reason else None)
                new_periods.append(reason in (TierChange.Reason.UPGRADE, TierChange.Reason.DOWNGRADE))
    return {
        "tiers": [tier.pk for tier in tiers],
        "bounds": bounds,
        "stride": 2 * (len(bounds) + 1),
        "targets": targets,
        "reasons": reasons,
        "new_periods": new_periods,
    }


def _sweep_chunk_sql(member_ids: list[int], tiers: list[Tier], now: dt.datetime, counts: dict[str, int]) -> None:
    """:func:`_sweep_chunk_orm` in two statements (:data:`_SWEEP_SQL`, the notices): the
    same decisions, rows and notices (a test holds the two to that)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _SWEEP_SQL,
            {
                **_sweep_table(tiers, now),
                "ids": member_ids,
                "now": now,
                "growth": Currency.GROWTH.value,
                "review_now": _review_after(now),
                "retained": TierChange.Reason.RETAINED.value,
                "zone": timezone.get_current_timezone_name(),
                "months": settings.LOYALTY_TIER_REVIEW_MONTHS,
            },
        )
        rows = cursor.fetchall()
    counts["retained"] += rows[0][0]
    counts["pins_cleared"] += rows[0][1]
    by_id = {tier.pk: tier for tier in tiers}
    names: dict[int, dict] = {}

    def name(tier: Tier) -> dict:
        if tier.pk not in names:
            names[tier.pk] = in_languages(tier, "name")
        return names[tier.pk]

    notices = []
    for _retained, _unpinned, member_id, change_id, from_id, to_id, reason, growth in rows:
        if member_id is None:  # no change with a notice: the counts' row alone
            continue
        up = reason == TierChange.Reason.UPGRADE
        counts[_SWEEP_COUNTS[TierChange.Reason(reason)]] += 1
        from_tier, to_tier = by_id[from_id], by_id[to_id]
        notices.append(
            Notice(
                member_id=member_id,
                kind=Notification.Kind.TIER_UP if up else Notification.Kind.TIER_DOWN,
                title=_UP_TITLE if up else _TIER_NOW_TITLE,
                body=_UP_BODY if up else _DOWN_BODY,
                params={"tier": name(to_tier), "growth": growth, "old": name(from_tier)},
                data={"tier_change": change_id, "from_tier": from_tier.code, "to_tier": to_tier.code, "growth": growth},
                dedupe_key=f"tier:{member_id}:{change_id}",
            )
        )
    notices_enqueue(notices, now=now)


def _sweep_chunk_orm(member_ids: list[int], tiers: list[Tier], now: dt.datetime, counts: dict[str, int]) -> None:
    """Upgrade, review and unpin the members of one chunk. Runs in the chunk's transaction."""
    # Lock first, read second: the read below then sees every earn committed before it.
    list(
        MemberTier.objects.select_for_update()
        .filter(member_id__in=member_ids)
        .order_by("id")
        .values_list("id", flat=True)
    )
    next_qualify = Tier.objects.filter(rank__gt=OuterRef("tier__rank")).order_by("qualify_threshold")
    rows = list(
        MemberTier.objects.filter(member_id__in=member_ids)
        .annotate(
            growth=growth_expression(now),
            next_qualify=Subquery(next_qualify.values("qualify_threshold")[:1]),
        )
        .exclude(pinned_until__gt=now)
        .filter(Q(review_at__lte=now) | Q(pinned_until__isnull=False) | Q(growth__gte=F("next_qualify")))
        .order_by("id")
    )
    if not rows:
        return
    by_id = {tier.pk: tier for tier in tiers}
    changed: list[MemberTier] = []
    changes: list[tuple[TierChange, Tier, Tier | None]] = []  # change, from, notify-to (None: no notice)
    for state in rows:
        current, growth = by_id[state.tier_id], state.growth
        if state.pinned_until is not None:
            state.pinned_until = None
            counts["pins_cleared"] += 1
        target, reason, review = _sweep_decision(tiers, current, growth, state.review_at, now)
        if reason == TierChange.Reason.RETAINED:
            change = TierChange(
                member_id=state.member_id,
                from_tier=current,
                to_tier=current,
                reason=reason,
                growth=growth,
                created_at=now,
            )
            state.review_at = review
            changes.append((change, current, None))
        elif reason is not None:
            changes.append((_change(state, target, reason=reason, growth=growth, now=now), current, target))
        if reason is not None:
            counts[_SWEEP_COUNTS[reason]] += 1
        changed.append(state)
    TierChange.objects.bulk_create([change for change, _from, _to in changes])
    notices_enqueue(
        (_notice(change, from_tier=from_tier, to_tier=to_tier) for change, from_tier, to_tier in changes if to_tier),
        now=now,
    )
    _save_states(changed)


def _save_states(states: list[MemberTier]) -> None:
    """Write the tier, dates and pin of ``states`` back in one statement (``core.bulk.update_rows``)."""
    update_rows(MemberTier, states, ["tier", "started_at", "review_at", "pinned_until"])


def _place_chunk(member_ids: list[int], tiers: list[Tier], now: dt.datetime, counts: dict[str, int]) -> None:
    """Give the members of one chunk who have no tier yet their first tier (:func:`_place_members`)."""
    locked = list(
        Member.objects.select_for_update(of=("self",), no_key=True)
        .filter(pk__in=member_ids, tier_state__isnull=True)
        .order_by("id")
        .annotate(growth=growth_expression(now, "pk"))
        .values_list("id", "growth")
    )
    placed = _place_members(locked, tiers, now)
    counts["upgraded"] += sum(1 for _state, upgrade in placed.values() if upgrade is not None)
    counts["placed"] += len(placed)


_SWEEP_RANGE_LOCK_SQL = """
SELECT member_id FROM loyalty_membertier WHERE member_id >= %(lo)s AND member_id < %(hi)s ORDER BY member_id FOR UPDATE
"""


def _sweep_ranges(tiers: list[Tier], now: dt.datetime, counts: dict[str, int], *, size: int, workers: int) -> None:
    """The sweep's tier rows over member-id ranges of ``size`` on ``workers`` connections side
    by side (PostgreSQL): each range one transaction that locks its tier rows and runs
    :func:`_sweep_chunk_sql`; ranges hold disjoint members, so they never wait on each other."""
    guard = threading.Lock()

    def step(lo: int, hi: int) -> int:
        with connection.cursor() as cursor:
            cursor.execute(_SWEEP_RANGE_LOCK_SQL, {"lo": lo, "hi": hi})
            member_ids = [member_id for (member_id,) in cursor.fetchall()]
        if not member_ids:
            return 0
        mine = dict.fromkeys(counts, 0)
        _sweep_chunk_sql(member_ids, tiers, now, mine)
        with guard:
            for key, value in mine.items():
                counts[key] += value
        return len(member_ids)

    run_in_member_chunks(step, size=size, workers=workers)


def tiers_sweep(*, now: dt.datetime | None = None, chunk_size: int = 1000, workers: int = 1) -> dict[str, int]:
    """The nightly tier job: upgrades, reviews, expired pins, members without a tier.

    Over member-id ranges of ``chunk_size``, one transaction per chunk that locks the
    chunk's tier rows (id order) and reads every member's growth in one query:

    - anyone whose growth qualifies for a higher tier moves up (UPGRADE, notice);
    - at the review date (``review_at <= now``) and not pinned: down to the best tier whose
      retain threshold is met, one step at most with soft landing (DOWNGRADE, notice), or
      RETAINED with the review date ``LOYALTY_TIER_REVIEW_MONTHS`` on;
    - an ended pin is cleared (and the member reviewed, the pin's end being the review date);
    - members without a tier get the default one (or the tier they qualify for).

    Safe to run twice (the second run finds nothing due) and to stop halfway (every
    finished chunk is committed; a rerun does the rest). Returns counts per outcome.

    ``workers`` > 1 (PostgreSQL; the nightly task passes ``LOYALTY_JOB_WORKERS``): the tier
    rows' chunks run on that many connections side by side (:func:`_sweep_ranges`), by
    member-id range instead of one after the other; the same decisions and rows.
    """
    now = now or timezone.now()
    counts = {"upgraded": 0, "downgraded": 0, "retained": 0, "pins_cleared": 0, "placed": 0}
    tiers = _tiers()
    if not tiers:
        return counts
    if workers > 1 and is_postgresql():
        _sweep_ranges(tiers, now, counts, size=chunk_size, workers=workers)
    else:
        after = 0
        while len(member_ids := _sweep_chunk(after, chunk_size, tiers, now, counts)) == chunk_size:
            after = member_ids[-1]
    after = 0
    while True:
        member_ids = list(
            Member.objects.filter(pk__gt=after, tier_state__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)[:chunk_size]
        )
        if not member_ids:
            break
        with transaction.atomic():
            _place_chunk(member_ids, tiers, now, counts)
        after = member_ids[-1]
    return counts


# --- reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class TierProgress:
    """Where a member stands: for the member pages, the API and the admin."""

    tier: Tier | None
    next_tier: Tier | None
    growth: int
    growth_to_next: int | None  # None at the top tier
    review_at: dt.datetime | None
    growth_to_keep: int  # 0 when the member already has enough to keep the tier at review
    pinned_until: dt.datetime | None


def tier_progress(member: Member, *, now: dt.datetime | None = None) -> TierProgress:
    """The member's tier, the next one up and the growth still needed for each.

    Three queries whatever the member's history: tiers, tier row, growth.
    """
    now = now or timezone.now()
    tiers = _tiers()
    state = MemberTier.objects.filter(member=member).first()
    growth = _member_growth(member.pk, now)
    by_id = {tier.pk: tier for tier in tiers}
    current = by_id.get(state.tier_id) if state else None
    higher = [tier for tier in tiers if current is None or tier.rank > current.rank]
    next_tier = higher[0] if higher else None
    return TierProgress(
        tier=current,
        next_tier=next_tier,
        growth=growth,
        growth_to_next=max(0, next_tier.qualify_threshold - growth) if next_tier else None,
        review_at=state.review_at if state else None,
        growth_to_keep=max(0, current.retain_threshold - growth) if current else 0,
        pinned_until=state.pinned_until if state and state.pinned_until and state.pinned_until > now else None,
    )

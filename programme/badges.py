"""Badges and achievements: which members meet a badge's condition, awarding (once per
member: a unique constraint), progress toward the next ones, staff award and revoke.

Each condition is one query over what the system records (``_qualifying``): counted
orders (``Order.objects.counting()``), spend in a window, check-in streaks, rewarded
referrals, the tier reached, a first purchase in a store. The same query serves one
member (after an event: ``badges_evaluate``) and a range of members (the nightly sweep,
``programme.jobs.badges_sweep``), so the two cannot disagree. A badge's points go through
``loyalty.services.points_award`` (key ``badge:<id>``), its coupon through
``rewards.services.coupon_issue``. Revoking takes back what is left of the points and
voids the coupon if unused.
"""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.cleaners import clean_reason
from core.errors import LoyaltyError
from engagement.models import CheckIn, Referral
from loyalty import services as ledger
from loyalty.models import Currency, MemberTier, Order, texts_in_languages
from members.models import Member, Notification
from members.notifications import Notice, notices_enqueue
from members.scoping import require_staff
from rewards import services as coupons
from rewards.models import Coupon

from .models import Badge, MemberBadge

AWARD_PERMISSION = "programme.award_badge"
C = Badge.Condition


def _since(badge: Badge, now: dt.datetime) -> dt.datetime | None:
    return now - dt.timedelta(days=badge.window_days) if badge.window_days else None


def _scope(field: str, members: tuple[int, int]) -> Q:
    lo, hi = members
    return Q(**{f"{field}__gte": lo, f"{field}__lt": hi})


def _qualifying(badge: Badge, now: dt.datetime, members: tuple[int, int]):
    """The ids of the members with ids in ``[lo, hi)`` meeting ``badge``."""
    since = _since(badge, now)
    threshold = badge.threshold
    if badge.condition in (C.ORDERS, C.SPEND, C.FIRST_STORE):
        orders = Order.objects.counting().filter(_scope("member_id", members), occurred_at__lte=now)
        if since is not None:
            orders = orders.filter(occurred_at__gte=since)
        if badge.condition == C.FIRST_STORE:
            return orders.filter(store_id=badge.store_id).values("member_id").distinct()
        grouped = orders.order_by().values("member_id")
        if badge.condition == C.ORDERS:
            return grouped.annotate(n=Count("id")).filter(n__gte=threshold).values("member_id")
        return grouped.annotate(n=Sum(F("amount") - F("refunded_amount"))).filter(n__gte=threshold).values("member_id")
    if badge.condition == C.CHECKIN_STREAK:
        rows = CheckIn.objects.filter(_scope("member_id", members), streak__gte=threshold)
        if since is not None:
            rows = rows.filter(created_at__gte=since)
        return rows.values("member_id").distinct()
    if badge.condition == C.REFERRALS:
        rows = Referral.objects.filter(_scope("referrer_id", members), status=Referral.Status.REWARDED)
        if since is not None:
            rows = rows.filter(decided_at__gte=since)
        return (
            rows.order_by().values("referrer_id").annotate(n=Count("id")).filter(n__gte=threshold).values("referrer_id")
        )
    if badge.condition == C.TIER:
        return MemberTier.objects.filter(_scope("member_id", members), tier__rank__gte=badge.tier.rank).values(
            "member_id"
        )
    raise LoyaltyError("badge_condition_unknown", _("Unknown badge condition “%(c)s”.") % {"c": badge.condition})


def _active_badges() -> list[Badge]:
    return list(Badge.objects.filter(is_active=True).select_related("tier").order_by("rank", "id"))


def _give(
    member: Member, badge: Badge, *, source: str, now: dt.datetime, actor=None, reason: str = ""
) -> MemberBadge | None:
    """Award ``badge`` to ``member`` with its gift, once; None when the member holds it already."""
    try:
        with transaction.atomic():
            held = MemberBadge.objects.create(
                member=member, badge=badge, source=source, awarded_at=now, actor=actor, reason=reason
            )
    except IntegrityError:
        return None
    if badge.points:
        held.entry = ledger.points_award(
            member=member,
            currency=Currency.POINTS,
            amount=badge.points,
            reason=_("Badge: %(name)s") % {"name": badge.name},
            idempotency_key=f"badge:{badge.pk}",
            detail={"badge": badge.code},
            now=now,
        )
    if badge.coupon_kind and badge.coupon_value > 0:
        names = texts_in_languages(badge, "name")
        held.coupon = coupons.coupon_issue(
            member=member,
            title=coupons.texts_by_language(lambda code: _("Badge gift: %(name)s") % {"name": names[code]}),
            kind=badge.coupon_kind,
            value=badge.coupon_value,
            expires_at=now + dt.timedelta(days=badge.coupon_valid_days),
            source=Coupon.Source.PROGRAMME,
            now=now,
        )
    held.save(update_fields=["entry", "coupon"])
    notices_enqueue(
        [
            Notice(
                member_id=member.pk,
                kind=Notification.Kind.OTHER,
                title=gettext_lazy("New badge: %(name)s"),
                body=gettext_lazy("You earned the badge %(name)s."),
                params={"name": badge.name},
                dedupe_key=f"programme:badge:{member.pk}:{badge.pk}",
                data={"programme": "badge", "badge": badge.code},
            )
        ],
        now=now,
    )
    return held


def badges_evaluate(
    *, member: Member, now: dt.datetime | None = None, source: str = MemberBadge.Source.EVENT
) -> list[MemberBadge]:
    """Award every active badge ``member`` now meets and does not hold; returns the new ones.
    One query per badge not held. A frozen or closed member gets nothing (the points would
    be refused)."""
    now = now or timezone.now()
    if member.status != Member.Status.ACTIVE:
        return []
    held = set(MemberBadge.objects.filter(member=member).values_list("badge_id", flat=True))
    new = []
    for badge in _active_badges():
        if badge.pk in held:
            continue
        if _qualifying(badge, now, (member.pk, member.pk + 1)).exists():
            with transaction.atomic():
                awarded = _give(member, badge, source=source, now=now)
            if awarded is not None:
                new.append(awarded)
    return new


def badges_award_range(lo: int, hi: int, *, now: dt.datetime) -> int:
    """The sweep's chunk: award every active badge to the active members in ``[lo, hi)``
    meeting it and not holding it. One query per badge for the chunk, then the awards."""
    awarded = 0
    for badge in _active_badges():
        ids = _qualifying(badge, now, (lo, hi))
        for member in Member.objects.filter(pk__in=ids, status=Member.Status.ACTIVE).exclude(badges__badge=badge):
            if _give(member, badge, source=MemberBadge.Source.SWEEP, now=now) is not None:
                awarded += 1
    return awarded


@transaction.atomic
def badge_award(*, member: Member, badge: Badge, actor: AbstractBaseUser, reason: str, now=None) -> MemberBadge:
    """Staff award a badge with a reason (whatever its condition); a revoked one is given
    again. Refuses: no reason, an actor without "Can award and revoke badges" or outside the
    member's stores, a badge the member holds (``badge_held``)."""
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Say why you award this badge: a reason is required."))
    require_staff(actor, AWARD_PERMISSION, members=[member])
    existing = MemberBadge.objects.select_for_update().filter(member=member, badge=badge).first()
    if existing is not None and existing.revoked_at is None:
        raise LoyaltyError("badge_held", _("This member holds the badge already."))
    if existing is not None:
        # Given again without its gift: the first award's points and coupon were dealt with
        # when it was revoked.
        existing.revoked_at, existing.revoked_by, existing.revoke_reason = None, None, ""
        existing.entry, existing.coupon = None, None
        existing.source, existing.actor, existing.reason, existing.awarded_at = (
            MemberBadge.Source.STAFF,
            actor,
            reason,
            now,
        )
        existing.save()
        return existing
    return _give(member, badge, source=MemberBadge.Source.STAFF, now=now, actor=actor, reason=reason)


@transaction.atomic
def badge_revoke(*, held: MemberBadge, actor: AbstractBaseUser, reason: str, now=None) -> MemberBadge:
    """Staff revoke a badge with a reason: what is left of its points is taken back, its
    coupon voided if unused; the member does not earn it again by the sweep (staff may
    award it again). Refuses: no reason, the permission or scope, revoked already
    (``badge_revoked``)."""
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Say why you revoke this badge: a reason is required."))
    require_staff(actor, AWARD_PERMISSION, members=[held.member_id])
    held = (
        MemberBadge.objects.select_for_update(of=("self",)).select_related("entry", "coupon", "member").get(pk=held.pk)
    )
    if held.revoked_at is not None:
        raise LoyaltyError("badge_revoked", _("This badge was revoked already."))
    if held.entry is not None:
        ledger.points_take_back(
            member=held.member,
            amount=held.entry.amount,
            reason=reason,
            idempotency_key=f"badge-revoke:{held.pk}",
            reverses=held.entry,
            now=now,
        )
    if held.coupon is not None and held.coupon.status == Coupon.Status.ISSUED:
        coupons.coupon_void(coupon=held.coupon, actor=actor, reason=reason, now=now)
    held.revoked_at, held.revoked_by, held.revoke_reason = now, actor, reason
    held.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
    return held


@dataclass(frozen=True)
class Progress:
    badge: Badge
    held: MemberBadge | None
    value: Decimal
    target: Decimal

    @property
    def shown(self) -> Decimal:
        """The figure next to the bar: at most the target (28 orders toward "1 order" reads 1 of 1)."""
        return min(self.value, self.target)

    @property
    def percent(self) -> int:
        if self.held is not None and self.held.revoked_at is None:
            return 100
        return int(min(100, self.value * 100 / self.target)) if self.target else 0


def badges_progress(member: Member, *, now: dt.datetime | None = None) -> list[Progress]:
    """Every active badge with what the member holds and how far they are (a handful of
    queries whatever the history: one per kind of figure)."""
    now = now or timezone.now()
    held = {b.badge_id: b for b in MemberBadge.objects.filter(member=member)}
    orders = Order.objects.counting().filter(member=member, occurred_at__lte=now)
    out = []
    for badge in _active_badges():
        since = _since(badge, now)
        scoped = orders.filter(occurred_at__gte=since) if since else orders
        if badge.condition == C.ORDERS:
            value, target = Decimal(scoped.count()), badge.threshold
        elif badge.condition == C.SPEND:
            value = scoped.aggregate(v=Sum(F("amount") - F("refunded_amount")))["v"] or Decimal(0)
            target = badge.threshold
        elif badge.condition == C.FIRST_STORE:
            value, target = Decimal(int(scoped.filter(store_id=badge.store_id).exists())), Decimal(1)
        elif badge.condition == C.CHECKIN_STREAK:
            rows = CheckIn.objects.filter(member=member)
            if since:
                rows = rows.filter(created_at__gte=since)
            value, target = Decimal(rows.aggregate(v=Max("streak"))["v"] or 0), badge.threshold
        elif badge.condition == C.REFERRALS:
            rows = Referral.objects.filter(referrer=member, status=Referral.Status.REWARDED)
            if since:
                rows = rows.filter(decided_at__gte=since)
            value, target = Decimal(rows.count()), badge.threshold
        else:
            rank = MemberTier.objects.filter(member=member).values_list("tier__rank", flat=True).first()
            value, target = Decimal(int(rank is not None and rank >= badge.tier.rank)), Decimal(1)
        out.append(Progress(badge, held.get(badge.pk), value, target))
    return out

"""Dual membership: owners (members with a counted order) and fans (members who have not
bought), and the contribution value (贡献值) both earn by actions that are not purchases:
check-ins, rewarded referrals, a completed profile, events attended (recorded by staff),
community actions (posted through the API). Purchases keep driving points, growth and
tiers; the track is derived from the orders, so a fan who buys becomes an owner and keeps
the contribution history. Track names: ``PROGRAMME_TRACK_OWNER`` and ``_FAN``.

Each action counts once per member (``key``, a unique constraint); a second call returns
the first record. Contribution is its own tally, not a ledger currency: it is never spent.
"""

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import CharField, Exists, OuterRef, Sum, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from core.cleaners import clean_key, clean_points, clean_reason
from core.errors import LoyaltyError
from engagement.models import Referral
from loyalty.models import Order
from members.models import Member
from members.scoping import require_staff

from .models import Contribution, FanLevel

RECORD_PERMISSION = "programme.record_contribution"
STAFF_KINDS = (Contribution.Kind.EVENT, Contribution.Kind.COMMUNITY)


def contribution_add(
    *, member: Member, kind: str, amount: int, key: str, reason: str = "", actor=None, now: dt.datetime | None = None
) -> Contribution:
    """Record one action's contribution, once per ``key``. Refuses: an unknown kind
    (``invalid_kind``), an amount that is not a positive whole number or over
    ``PROGRAMME_CONTRIBUTION_MAX_PER_ACTION`` (``invalid_amount``), a bad key, a member who
    is not active (``member_inactive``), the key used for a different action
    (``idempotency_key_reused``)."""
    now = now or timezone.now()
    if kind not in Contribution.Kind.values:
        raise LoyaltyError("invalid_kind", _("Unknown kind of contribution “%(kind)s”.") % {"kind": kind})
    amount = clean_points(amount)
    if amount > settings.PROGRAMME_CONTRIBUTION_MAX_PER_ACTION:
        raise LoyaltyError(
            "invalid_amount",
            _("One action earns at most %(max)s contribution.")
            % {"max": settings.PROGRAMME_CONTRIBUTION_MAX_PER_ACTION},
        )
    key = clean_key(key, required=True)[:100]
    reason = clean_reason(reason, required=False)
    if member.status != Member.Status.ACTIVE:
        raise LoyaltyError("member_inactive", _("This member is not active."))
    existing = Contribution.objects.filter(member=member, key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                return Contribution.objects.create(
                    member=member, kind=kind, amount=amount, key=key, reason=reason, actor=actor, created_at=now
                )
        except IntegrityError:
            existing = Contribution.objects.get(member=member, key=key)
    if (existing.kind, existing.amount) != (kind, amount):
        raise LoyaltyError("idempotency_key_reused", _("This key was already used for a different action."))
    existing.replayed = True
    return existing


def contribution_record(
    *, member: Member, kind: str, amount: int, key: str, reason: str, actor: AbstractBaseUser, now=None
) -> Contribution:
    """Staff (or a community system's staff token) record an event attended or a community
    action. Refuses another kind (``invalid_kind``), no reason, an actor without "Can record
    event attendance and community actions" or outside the member's stores."""
    if kind not in STAFF_KINDS:
        raise LoyaltyError("invalid_kind", _("Staff record events and community actions only."))
    reason = clean_reason(reason, missing=_("Say what the member did: a reason is required."))
    require_staff(actor, RECORD_PERMISSION, members=[member])
    return contribution_add(member=member, kind=kind, amount=amount, key=key, reason=reason, actor=actor, now=now)


def _profile_complete(member: Member) -> bool:
    return bool(member.name and member.birthday and member.email)


def on_check_in(check_in) -> None:
    if settings.PROGRAMME_CONTRIBUTION_CHECK_IN > 0:
        contribution_add(
            member=check_in.member,
            kind=Contribution.Kind.CHECK_IN,
            amount=settings.PROGRAMME_CONTRIBUTION_CHECK_IN,
            key=f"check_in:{check_in.pk}",
            now=check_in.created_at,
        )


def on_profile_saved(member: Member) -> None:
    if settings.PROGRAMME_CONTRIBUTION_PROFILE > 0 and _profile_complete(member) and member.status == "active":
        contribution_add(
            member=member, kind=Contribution.Kind.PROFILE, amount=settings.PROGRAMME_CONTRIBUTION_PROFILE, key="profile"
        )


def referrals_contribute(*, now: dt.datetime | None = None) -> int:
    """Give the referrers of rewarded referrals their contribution, once each (daily job)."""
    amount = settings.PROGRAMME_CONTRIBUTION_REFERRAL
    if amount <= 0:
        return 0
    done = Contribution.objects.filter(member_id=OuterRef("referrer_id"), key=OuterRef("contribution_key"))
    rows = (
        Referral.objects.filter(status=Referral.Status.REWARDED, referrer__status=Member.Status.ACTIVE)
        .annotate(contribution_key=Concat(Value("referral:"), Cast("pk", CharField())))
        .exclude(Exists(done))
        .select_related("referrer")
    )
    count = 0
    for referral in rows:
        contribution_add(
            member=referral.referrer,
            kind=Contribution.Kind.REFERRAL,
            amount=amount,
            key=f"referral:{referral.pk}",
            now=now,
        )
        count += 1
    return count


@dataclass(frozen=True)
class Standing:
    track: str
    is_owner: bool
    value: int
    level: FanLevel | None
    next_level: FanLevel | None

    @property
    def to_next(self) -> int | None:
        return None if self.next_level is None else max(0, self.next_level.threshold - self.value)


def track_name(*, is_owner: bool) -> str:
    """The configured name of the member's track in the active language: the settings hold
    "Chinese|English", or one name for both."""
    names = (settings.PROGRAMME_TRACK_OWNER if is_owner else settings.PROGRAMME_TRACK_FAN).split("|")
    chinese, english = names[0].strip(), names[-1].strip()
    return chinese if (get_language() or "").startswith("zh") else english


def standing(member: Member) -> Standing:
    """The member's track (owner or fan, by the configured names), contribution value,
    level and the next one. Three queries."""
    is_owner = Order.objects.counting().filter(member=member).exists()
    value = Contribution.objects.filter(member=member).aggregate(v=Sum("amount"))["v"] or 0
    levels = list(FanLevel.objects.order_by("threshold"))
    reached = [level for level in levels if level.threshold <= value]
    ahead = [level for level in levels if level.threshold > value]
    return Standing(
        track=track_name(is_owner=is_owner),
        is_owner=is_owner,
        value=value,
        level=reached[-1] if reached else None,
        next_level=ahead[0] if ahead else None,
    )

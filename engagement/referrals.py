"""Referral (member-get-member): a new member joins with another member's code; once the
new member's first order is past its return window and not refunded, both get
LOYALTY_REFERRAL_POINTS, once each.

- ``referral_code_for``: the member's code, generated on first use.
- ``referral_record``: called when a new member joins with a code; refuses unknown and
  own codes, a member who already has a referral, a member who is not new (also: one
  who joined again after erasing their account), and a member who joined before the
  code's owner (so A -> B -> A cannot happen).
- ``referral_on_join``: the sign-in flows' wrapper: a refusal never blocks the sign-in,
  it comes back as an outcome the API and pages show.
- ``referrals_reward``: the hourly job (``engagement.reward_referrals``).

docs/engagement.md has the rules in words.
"""

import datetime as dt
import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from loyalty.models import Account, Currency, Order
from loyalty.services import points_award
from members.models import Member

from .models import Referral

logger = logging.getLogger(__name__)

# No 0/O, 1/I/L: a code read aloud or copied by hand survives.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
CODE_ATTEMPTS = 10
# A member counts as new for this long after joining, and only while without an order.
NEW_MEMBER_WINDOW = dt.timedelta(hours=24)


def normalize_referral_code(raw: str | None) -> str:
    """A code as people type it (spaces, dashes, lower case) in its stored form."""
    return "".join(ch for ch in (raw or "") if ch not in " -\t").upper()


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def referral_code_for(member: Member) -> str:
    """The member's referral code, generated the first time and kept for good.

    Eight characters from an alphabet without look-alikes; a collision with another
    member's code (unique index) is retried with a new code. Two first calls at once
    agree: only the update that finds the code still empty writes.
    """
    if member.referral_code:
        return member.referral_code
    for _attempt in range(CODE_ATTEMPTS):
        code = _new_code()
        try:
            with transaction.atomic():
                written = Member.objects.filter(pk=member.pk, referral_code__isnull=True).update(referral_code=code)
        except IntegrityError:
            continue  # another member has this code already
        if not written:  # a concurrent call gave the member a code first
            code = Member.objects.values_list("referral_code", flat=True).get(pk=member.pk)
        member.referral_code = code
        return code
    raise LoyaltyError("referral_code_exhausted", _("Could not create a referral code; please try again."))


def _refuse(code: str, message) -> LoyaltyError:
    return LoyaltyError(code, message)


@transaction.atomic
def referral_record(*, referee: Member, code: str, now: dt.datetime | None = None) -> Referral:
    """Record that the new member ``referee`` joined with referral code ``code``.

    Refuses (nothing is written): an unknown code or one of a closed member
    (``referral_code_unknown``); the member's own code (``referral_self``); a member who
    already has a referral (``referral_exists``); a member who is not new: joined more
    than 24 hours ago, has an order, or joined again with a phone number erased within
    ``LOYALTY_REJOIN_BONUS_BLOCK_DAYS`` (``referral_not_new``); a code of a member who
    joined after the referee (``referral_cycle``), which also rules out A -> B -> A.
    """
    now = now or timezone.now()
    normalized = normalize_referral_code(code)
    unknown = _refuse(
        "referral_code_unknown", _("No member has the referral code “%(code)s”.") % {"code": (code or "").strip()[:20]}
    )
    if not normalized or len(normalized) > 12:
        raise unknown
    # The referee's row is the lock: two sign-ins of one new member record one referral.
    referee = Member.objects.select_for_update().get(pk=referee.pk)
    referrer = Member.objects.filter(referral_code=normalized).first()
    if referrer is None or referrer.status == Member.Status.CLOSED or referrer.erased_at is not None:
        raise unknown
    if referrer.pk == referee.pk:
        raise _refuse("referral_self", _("You cannot use your own referral code."))
    if Referral.objects.filter(referee=referee).exists():
        raise _refuse("referral_exists", _("You have already joined with a referral code."))
    if (
        referee.joined_at < now - NEW_MEMBER_WINDOW
        or referee.rejoined_after_erasure  # their phone's first membership was erased lately
        or Order.objects.filter(member=referee).exists()
    ):
        raise _refuse("referral_not_new", _("Referral codes are for new members, when they join."))
    if (referrer.joined_at, referrer.pk) > (referee.joined_at, referee.pk):
        raise _refuse("referral_cycle", _("This referral code belongs to a member who joined after you."))
    try:
        with transaction.atomic():
            return Referral.objects.create(referrer=referrer, referee=referee, code=normalized, created_at=now)
    except IntegrityError:
        raise _refuse("referral_exists", _("You have already joined with a referral code.")) from None


@dataclass
class ReferralOutcome:
    """What became of the referral code sent with a sign-in: ``recorded`` or ``not_recorded``."""

    status: str
    reason: str
    message: str


def referral_on_join(*, member: Member, code: str | None, created: bool, now: dt.datetime) -> ReferralOutcome | None:
    """Apply the referral code a member signed in with; never refuses the sign-in.

    ``created``: the sign-in registered the member just now. An existing member's code
    is not recorded (``referral_not_new``). None when no code was sent.
    """
    if not (code or "").strip():
        return None
    if not created:
        return ReferralOutcome(
            "not_recorded", "referral_not_new", str(_("Referral codes are for new members, when they join."))
        )
    try:
        referral_record(referee=member, code=code, now=now)
    except LoyaltyError as error:
        return ReferralOutcome("not_recorded", error.code, str(error.message))
    return ReferralOutcome(
        "recorded",
        "",
        str(
            _(
                "Referral code accepted: you and your friend each get %(points)s points "
                "when your first order is past its return window."
            )
            % {"points": settings.LOYALTY_REFERRAL_POINTS}
        ),
    )


@dataclass
class ReferralSummary:
    code: str
    joined: int
    rewarded: int
    pending: int
    points: int


def referral_summary(member: Member) -> ReferralSummary:
    """The member's code (generated if needed) and how many friends joined with it; one query."""
    code = referral_code_for(member)
    counts = Referral.objects.filter(referrer_id=member.pk).aggregate(
        joined=Count("id"),
        rewarded=Count("id", filter=Q(status=Referral.Status.REWARDED)),
        pending=Count("id", filter=Q(status=Referral.Status.PENDING)),
    )
    return ReferralSummary(code=code, points=settings.LOYALTY_REFERRAL_POINTS, **counts)


def referral_share_text(code: str, link: str) -> str:
    """The message a member shares with friends, in the current language."""
    return _(
        "Join our membership with my referral code %(code)s: after your first order we both get %(points)s points. "
        "%(link)s"
    ) % {"code": code, "points": settings.LOYALTY_REFERRAL_POINTS, "link": link}


# --- the reward job -----------------------------------------------------------------------


def _first_orders():
    """The referee's first counted order: earliest, with some of it paid in money."""
    return Order.objects.filter(member_id=OuterRef("referee_id"), amount__gt=F("points_paid_amount")).order_by(
        "occurred_at", "id"
    )


def _decide(referral_id: int, *, status: str, order_id: int, reason: str, now: dt.datetime) -> bool:
    """Claim a pending referral for a decision; False when another run decided it first."""
    return (
        Referral.objects.filter(pk=referral_id, status=Referral.Status.PENDING).update(
            status=status, order_id=order_id, reason=reason[:200], decided_at=now
        )
        == 1
    )


def _reward_one(row: dict, *, points: int, now: dt.datetime) -> str:
    """Decide one selected referral; returns ``rewarded``, ``rejected`` or ``waiting``."""
    referral_id, order_id = row["id"], row["first_order_id"]
    statuses = {row["referrer_id"]: row["referrer__status"], row["referee_id"]: row["referee__status"]}
    if row["first_order_status"] == Order.Status.REFUNDED:
        decided = _decide(
            referral_id, status=Referral.Status.REJECTED, order_id=order_id, reason=_("first order refunded"), now=now
        )
        return "rejected" if decided else "taken"
    if row["referee__status"] == Member.Status.CLOSED:
        decided = _decide(
            referral_id,
            status=Referral.Status.REJECTED,
            order_id=order_id,
            reason=_("the new member's membership is closed"),
            now=now,
        )
        return "rejected" if decided else "taken"
    if Member.Status.FROZEN in statuses.values():
        return "waiting"  # rewarded once the member is active again
    receivers = [("referee", row["referee_id"])]
    reason = ""
    if row["referrer__status"] == Member.Status.CLOSED:
        reason = _("the referrer's membership is closed: only the new member was rewarded")
    else:
        receivers.append(("referrer", row["referrer_id"]))
    try:
        with transaction.atomic():
            if not _decide(referral_id, status=Referral.Status.REWARDED, order_id=order_id, reason=reason, now=now):
                return "taken"
            # Both points accounts locked in id order up front, as every two-account change does.
            list(
                Account.objects.select_for_update()
                .filter(member_id__in=[m for _role, m in receivers], currency=Currency.POINTS)
                .order_by("id")
                .values_list("id", flat=True)
            )
            for role, member_id in receivers:
                points_award(
                    member=Member(pk=member_id),
                    currency=Currency.POINTS,
                    amount=points,
                    reason=(
                        _("Referral bonus: your friend's first order")
                        if role == "referrer"
                        else _("Referral bonus: welcome to the programme")
                    ),
                    idempotency_key=f"referral:{referral_id}:{role}",
                    detail={"referral": referral_id, "role": role, "order": order_id},
                    now=now,
                )
    except LoyaltyError as error:
        # A member frozen between the selection and the award: the whole decision rolls
        # back and the referral waits for the next run.
        logger.info("referral %s left pending: %s", referral_id, error)
        return "waiting"
    return "rewarded"


def referrals_reward(*, now: dt.datetime | None = None, chunk_size: int = 500) -> dict:
    """Decide every pending referral whose new member's first order is settled.

    Selected in the database, a chunk at a time: pending referrals whose referee's first
    counted order (the earliest with some of it paid in money) is fully refunded, or past
    its return window (when its pending points are released). Refunded: REJECTED,
    "first order refunded". Past the window and not fully refunded (a partial refund
    still counts): both members get LOYALTY_REFERRAL_POINTS through ``points_award``
    with the keys ``referral:<id>:referrer`` and ``referral:<id>:referee``, and the
    referral is REWARDED. Anything else waits. Each referral is claimed with a
    conditional update, so a rerun or a concurrent run rewards nobody twice.
    Returns counts: rewarded, rejected, waiting (members frozen).
    """
    now = now or timezone.now()
    points = settings.LOYALTY_REFERRAL_POINTS
    released_before = now - dt.timedelta(days=settings.LOYALTY_PENDING_DAYS)
    counts = {"rewarded": 0, "rejected": 0, "waiting": 0}
    after = 0
    with translation.override(settings.LANGUAGE_CODE):
        while True:
            rows = list(
                Referral.objects.filter(status=Referral.Status.PENDING, pk__gt=after)
                .annotate(
                    first_order_id=Subquery(_first_orders().values("id")[:1]),
                    first_order_status=Subquery(_first_orders().values("status")[:1]),
                    first_order_at=Subquery(_first_orders().values("occurred_at")[:1]),
                )
                .filter(
                    Q(first_order_status=Order.Status.REFUNDED) | Q(first_order_at__lte=released_before),
                    first_order_id__isnull=False,
                )
                .order_by("pk")
                .values(
                    "id",
                    "referrer_id",
                    "referee_id",
                    "referrer__status",
                    "referee__status",
                    "first_order_id",
                    "first_order_status",
                )[:chunk_size]
            )
            if not rows:
                return counts
            for row in rows:
                outcome = _reward_one(row, points=points, now=now)
                if outcome in counts:
                    counts[outcome] += 1
            after = rows[-1]["id"]

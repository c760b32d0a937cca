"""Actions that combine apps: joining (identity and what loyalty gives a new member), and
the staff actions on a member that write to the ledger or the tiers, each with its audit row.

Like Zulip's ``actions``: ``members.services`` keeps identity (the member row, consent,
status, tags, the audit record); this module adds what needs ``loyalty`` on top, in one
transaction with it.
"""

import datetime as dt

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.cleaners import clean_points, clean_reason
from core.errors import LoyaltyError
from loyalty.models import LedgerEntry, Tier, TierChange
from loyalty.rules import signup_bonus
from loyalty.services import points_adjust
from loyalty.services.credits import ADJUST_PERMISSION, ADJUST_REFUSAL
from loyalty.tiers import tier_assign_default, tier_pin
from members import services as member_services
from members.models import Member, StaffAction, Store
from members.phone import normalize_phone
from members.scoping import require_staff
from members.services import staff_action_record

# --- joining -------------------------------------------------------------------------------


def member_joined(*, member: Member, now: dt.datetime) -> None:
    """What loyalty does when a member joins, inside the joining transaction:
    the default tier and any signup bonus."""
    tier_assign_default(member=member, now=now)
    signup_bonus(member=member, now=now)


@transaction.atomic
def member_create(
    *,
    phone: str,
    name: str = "",
    gender: str = Member.Gender.UNKNOWN,
    birthday: dt.date | None = None,
    email: str = "",
    home_store: Store | None = None,
    joined_at: dt.datetime | None = None,
    consents: tuple[str, ...] = (),
    source: str = "admin",
) -> Member:
    """Register a member (``members.services.member_create``) and give them what a new
    member gets (:func:`member_joined`), in one transaction.

    Refuses what ``members.services.member_create`` refuses: an invalid phone number and
    one that already belongs to a member.
    """
    joined_at = joined_at or timezone.now()
    member = member_services.member_create(
        phone=phone,
        name=name,
        gender=gender,
        birthday=birthday,
        email=email,
        home_store=home_store,
        joined_at=joined_at,
        consents=consents,
        source=source,
    )
    member_joined(member=member, now=joined_at)
    return member


def member_sign_in_or_join(*, phone: str, now: dt.datetime | None = None) -> tuple[Member, bool]:
    """The member who signs in with ``phone`` (already verified by a one-time code or the
    mini-program), registering a new member when the number is new; and whether this call
    registered them (what a referral code at sign-up needs to know).

    Refuses an invalid phone number (``invalid_phone``) and a closed or erased member
    (``member_closed``). A frozen member may sign in and look, but not earn or spend.
    """
    now = now or timezone.now()
    normalized = normalize_phone(phone)
    member = Member.objects.filter(phone=normalized).first()
    created = False
    if member is None:
        try:
            member = member_create(phone=normalized, joined_at=now, source="sign_in")
            created = True
        except LoyaltyError as error:
            if error.code != "phone_taken":
                raise
            # Two first sign-ins raced; the other one registered the member.
            member = Member.objects.get(phone=normalized)
    if member.status == Member.Status.CLOSED:
        raise LoyaltyError("member_closed", _("This membership is closed. Contact the store to reopen it."))
    return member, created


def member_for_phone_sign_in(*, phone: str, now: dt.datetime | None = None) -> Member:
    """:func:`member_sign_in_or_join` for callers that need only the member."""
    return member_sign_in_or_join(phone=phone, now=now)[0]


# --- staff actions that write to the ledger or the tiers ----------------------------------


def member_points_adjust(
    *,
    member: Member,
    currency: str,
    amount: int,
    reason: str,
    actor,
    idempotency_key: str | None = None,
) -> LedgerEntry:
    """A staff adjustment of points or growth (``loyalty.services.points_adjust``) and its
    ADJUST_POINTS audit row, in one transaction. The one way staff adjust, from the admin,
    the till or the POS API.

    Refuses an actor without the "adjust points" permission (``operator_required``), a
    member outside the actor's stores (``out_of_scope``; a store key's acting user reaches
    every member, ``members.scoping.store_key_actor``), more than the actor's adjustment
    limit (``permission_denied``), all by ``members.scoping.require_staff``; and what
    ``points_adjust`` refuses (no reason, too large a removal). A replay of the same
    idempotency key returns the first entry and writes nothing, no second audit row either.
    """
    amount = clean_points(amount, allow_negative=True)
    with transaction.atomic():
        require_staff(actor, ADJUST_PERMISSION, members=[member], amount=amount, refusal=ADJUST_REFUSAL)
        entry = points_adjust(
            member=member,
            currency=currency,
            amount=amount,
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
        )
        if not entry.replayed:
            staff_action_record(
                actor=actor,
                action=StaffAction.Action.ADJUST_POINTS,
                member=member,
                reason=entry.reason,
                detail={"currency": currency, "amount": entry.amount, "entry": entry.pk},
            )
    return entry


@transaction.atomic
def member_tier_pin(*, member: Member, tier: Tier, until: dt.datetime, actor, reason: str) -> TierChange:
    """Pin ``member`` in ``tier`` until ``until`` (``loyalty.tiers.tier_pin``, the reason
    as its note) and write the PIN_TIER audit row, in one transaction.

    Refuses: no reason, an actor without ``members.change_member`` (``tier_pin`` also wants
    ``loyalty.change_membertier``), a member outside their stores, and whatever
    ``tier_pin`` refuses (an end not in the future, an unknown tier).
    """
    reason = clean_reason(reason)
    require_staff(actor, "members.change_member", members=[member])
    change = tier_pin(member=member, tier=tier, until=until, actor=actor, note=reason)
    staff_action_record(
        actor=actor,
        action=StaffAction.Action.PIN_TIER,
        member=member,
        reason=reason,
        detail={
            "tier": tier.code,
            "from_tier": change.from_tier.code if change.from_tier else None,
            "until": until.isoformat(),
            "tier_change": change.pk,
        },
    )
    return change

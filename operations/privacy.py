"""A member's rights over their data: download it, erase it (PIPL art. 45, 47).

Erasure removes what identifies the person and keeps the ledger: entries, lots, orders
and coupons stay for accounting, attached to a member row that no longer says who it was.
"""

import datetime as dt
import json

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from core.errors import LoyaltyError
from loyalty.models import Account, LedgerEntry, Lot, Order, OrderLine, Refund, TierChange
from members.erasure import erased_phone_record, rejoin_block_days
from members.models import ConsentRecord, Member, Notification, OneTimeCode, StaffAction, StageChange
from programme.selectors import member_programme_export
from rewards.services import coupons_void_for_member

PROFILE_EXPORT_FIELDS = (
    "member_number",
    "phone",
    "name",
    "gender",
    "birthday",
    "email",
    "joined_at",
    "status",
    "sms_consent_at",
    "email_consent_at",
    "wechat_consent_at",
    "wechat_openid",
    "wechat_unionid",
)


PROFILING_EXPORT_FIELDS = (
    "stage",
    "stage_since",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
    "rfm_segment",
    "order_count",
    "spend_total",
    "referral_code",
    "rejoined_after_erasure",
)


def _export_notes() -> list[str]:
    days = rejoin_block_days()
    if not days:
        return []
    return [
        ngettext(
            "If you erase your account, we keep a keyed hash of your phone number (not the number, "
            "and nothing else about you) for %(days)d day, so that joining again with the same number "
            "does not earn the signup, first-purchase and referral bonuses a second time.",
            "If you erase your account, we keep a keyed hash of your phone number (not the number, "
            "and nothing else about you) for %(days)d days, so that joining again with the same number "
            "does not earn the signup, first-purchase and referral bonuses a second time.",
            days,
        )
        % {"days": days}
    ]


def _rows(queryset, *fields: str) -> list[dict]:
    return list(queryset.values(*fields))


def member_export(*, member: Member) -> dict:
    """Everything kept about the member, as a JSON-serialisable dict (dates and amounts as text).

    Sections: notes (what is kept after an erasure), profile (with tags, lifecycle stage
    and RFM scores: the profiling kept about them), consents, balances, entries, lots, orders (with lines and refunds),
    coupons, redemptions (when the rewards mall has them), notifications, tier changes,
    stage changes, staff actions about them, check-ins, referrals, journey runs, and the
    programme's (paid membership and its orders, transfers, badges, contribution, partner
    orders and vouchers).
    """
    member = Member.objects.select_related("home_store").get(pk=member.pk)
    profile = {name: getattr(member, name) for name in PROFILE_EXPORT_FIELDS}
    profile["home_store"] = member.home_store.code if member.home_store else None
    profile["tags"] = sorted(member.tags.values_list("name", flat=True))
    for name in PROFILING_EXPORT_FIELDS:
        profile[name] = getattr(member, name)
    orders = _rows(
        Order.objects.filter(member=member).order_by("occurred_at", "id"),
        "id",
        "store__code",
        "number",
        "amount",
        "points_paid_amount",
        "refunded_amount",
        "member_discount",
        "benefits",
        "status",
        "occurred_at",
    )
    lines: dict[int, list] = {}
    for line in (
        OrderLine.objects.filter(order__member=member)
        .order_by("id")
        .values("order_id", "sku", "name", "category", "quantity", "amount")
    ):
        lines.setdefault(line.pop("order_id"), []).append(line)
    refunds: dict[int, list] = {}
    for refund in (
        Refund.objects.filter(order__member=member)
        .order_by("id")
        .values("order_id", "number", "amount", "reason", "created_at")
    ):
        refunds.setdefault(refund.pop("order_id"), []).append(refund)
    for order in orders:
        order["lines"] = lines.get(order["id"], [])
        order["refunds"] = refunds.get(order["id"], [])

    data = {
        "exported_at": timezone.now(),
        "notes": _export_notes(),
        "profile": profile,
        "consents": _rows(
            ConsentRecord.objects.filter(member=member).order_by("recorded_at", "id"),
            "channel",
            "granted",
            "source",
            "recorded_at",
        ),
        "balances": _rows(
            Account.objects.filter(member=member).order_by("currency"),
            "currency",
            "balance",
            "pending",
            "lifetime_earned",
            "lifetime_spent",
        ),
        "entries": _rows(
            LedgerEntry.objects.filter(member=member).order_by("created_at", "id"),
            "id",
            "currency",
            "kind",
            "amount",
            "pending_amount",
            "balance_after",
            "order__number",
            "store__code",
            "reason",
            "detail",
            "created_at",
        ),
        "lots": _rows(
            Lot.objects.filter(member=member).order_by("id"),
            "currency",
            "amount",
            "remaining",
            "pending",
            "available_at",
            "expires_at",
        ),
        "orders": orders,
        "tier_changes": _rows(
            TierChange.objects.filter(member=member).order_by("created_at", "id"),
            "from_tier__code",
            "to_tier__code",
            "reason",
            "created_at",
        ),
        "coupons": [],
        "redemptions": [],
        "notifications": _rows(
            Notification.objects.filter(member=member).order_by("created_at", "id"),
            "kind",
            "title",
            "body",
            "created_at",
            "read_at",
        ),
        "stage_changes": _rows(
            StageChange.objects.filter(member=member).order_by("changed_at", "id"),
            "from_stage",
            "to_stage",
            "changed_at",
        ),
        "staff_actions": _rows(
            StaffAction.objects.filter(member=member).order_by("created_at", "id"), "action", "reason", "created_at"
        ),
        "check_ins": [],
        "referrals": [],
        "journey_runs": [],
    }
    if apps.is_installed("engagement"):
        CheckIn, Referral, JourneyRun = (
            apps.get_model("engagement", name) for name in ("CheckIn", "Referral", "JourneyRun")
        )
        data["check_ins"] = _rows(CheckIn.objects.filter(member=member).order_by("day"), "day", "streak", "points")
        data["referrals"] = _rows(
            Referral.objects.filter(Q(referrer=member) | Q(referee=member)).order_by("created_at", "id"),
            "referrer_id",
            "referee_id",
            "status",
            "created_at",
            "decided_at",
        )
        data["journey_runs"] = _rows(
            JourneyRun.objects.filter(member=member).order_by("created_at", "id"),
            "journey__name",
            "status",
            "reason",
            "created_at",
        )
    if apps.is_installed("rewards"):
        Coupon = apps.get_model("rewards", "Coupon")
        data["coupons"] = _rows(
            Coupon.objects.filter(member=member).order_by("issued_at", "id"),
            "code",
            "title",
            "kind",
            "value",
            "source",
            "status",
            "issued_at",
            "expires_at",
            "used_at",
        )
        try:
            Redemption = apps.get_model("rewards", "Redemption")
        except LookupError:
            Redemption = None
        if Redemption is not None:
            data["redemptions"] = list(Redemption.objects.filter(member=member).order_by("id").values())
    # Paid membership, transfers, badges, contribution, partners: the programme app's own read.
    data["programme"] = member_programme_export(member)
    # One pass through the JSON encoder: dates, decimals and UUIDs become text.
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _placeholder_phone(member: Member) -> str:
    # Starts with "+" (the model's check), unique per member, and no real number can look like it.
    return f"+erased-{member.pk}"


@transaction.atomic
def member_erase(*, member: Member, now: dt.datetime | None = None) -> None:
    """Erase the member's personal data at their request and close the membership.

    Clears name, phone (a unique placeholder takes its place), email, birthday, gender,
    mini-program ids, tags and marketing consent (a withdrawal is recorded); deletes their
    notifications and sign-in codes; revokes every API token; voids the unused coupons (no
    one can use them at a till afterwards); deactivates a sign-in user that is not staff.
    Keeps the ledger, orders and coupons for accounting, and the keyed hash of the phone
    number (``ErasedPhone``, no personal data) for ``LOYALTY_REJOIN_BONUS_BLOCK_DAYS``.
    Refuses a member already erased (``member_erased``).
    """
    now = now or timezone.now()
    member = Member.objects.select_for_update().get(pk=member.pk)
    if member.erased_at is not None:
        raise LoyaltyError("member_erased", _("This account was already erased."))
    old_phone = member.phone
    for channel, field in (
        (ConsentRecord.Channel.SMS, "sms_consent_at"),
        (ConsentRecord.Channel.EMAIL, "email_consent_at"),
        (ConsentRecord.Channel.WECHAT, "wechat_consent_at"),
    ):
        if getattr(member, field) is not None:
            ConsentRecord.objects.create(
                member=member, channel=channel, granted=False, source="erasure", recorded_at=now
            )
        setattr(member, field, None)
    member.phone = _placeholder_phone(member)
    member.name = ""
    member.email = ""
    member.birthday = None
    member.gender = Member.Gender.UNKNOWN
    member.wechat_openid = None
    member.wechat_unionid = None
    member.status = Member.Status.CLOSED
    member.erased_at = now
    member.tags.clear()  # staff's labels are personal data too
    user = member.user
    member.user = None
    member.save()
    erased_phone_record(old_phone, now)
    Notification.objects.filter(member=member).delete()
    OneTimeCode.objects.filter(phone=old_phone).delete()
    if apps.is_installed("rewards"):
        coupons_void_for_member(member=member, reason=_("Account erased at the member's request"), now=now)
    if user is not None and not user.is_staff:
        user.is_active = False
        # The username may be the phone number the member signed up with.
        user.username = f"erased-{user.pk}"
        user.email = ""
        user.first_name = ""
        user.last_name = ""
        user.set_unusable_password()
        user.save()
    if apps.is_installed("api"):
        apps.get_model("api", "ApiToken").objects.filter(member=member, revoked_at__isnull=True).update(revoked_at=now)

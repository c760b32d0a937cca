"""Partners and ecosystem benefits (docs/programme.md): earn and burn at a partner, its
API keys, its monthly settlement, and the benefits it gives members of tiers and plans.

- Earn (``partner_earn``): the partner's system sends an order; the member gets
  ``amount × points_per_yuan`` points (rounded down, ``loyalty.services.points_award``) and
  the partner owes ``points × issue_price``; both rates are recorded with the order. Once
  per partner order number: the same order again is answered with the first record.
- Burn (``partner_voucher_redeem``): a member spends points on a partner's offer
  (``loyalty.services.points_spend``) and gets a voucher whose code is the next unused
  one of the partner's uploaded batch, or a generated one; the brand owes the partner
  ``points × redeem_price``. The partner marks it used (``partner_voucher_use``); staff may
  void an unused one with a reason (the points go back, nothing is owed).
- Settlement (``partner_settlement``): per partner and calendar month (local time): the
  points issued and what the partner owes, the points redeemed and what it is owed, and
  the balance.
"""

import csv
import datetime as dt
import hashlib
import io
import secrets
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from core.cleaners import clean_key, clean_money, clean_reason
from core.errors import LoyaltyError
from loyalty.models import Currency, MemberTier
from loyalty.services import points_award, points_spend, points_spend_reverse
from members.models import Member
from members.scoping import require_staff
from rewards.models import new_code

from .benefits import membership_active
from .models import Partner, PartnerBenefit, PartnerCode, PartnerEarn, PartnerKey, PartnerOffer, PartnerVoucher

CENT = Decimal("0.01")
KEY_PREFIX = "pk_"
MAX_CODES_PER_UPLOAD = 10_000
# A partner's order older than this earns nothing: the month it belongs to is settled.
MAX_ORDER_AGE_DAYS = 60
# A partner's order that would earn more is refused: a typo (or a leaked key) cannot mint millions.
MAX_POINTS_PER_ORDER = 1_000_000


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def partner_key_create(*, partner: Partner, name: str) -> tuple[PartnerKey, str]:
    """A new API key for ``partner``; returns the row and the key, which is not kept (show it once)."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = PartnerKey.objects.create(partner=partner, name=name.strip()[:100], prefix=raw[:10], key_hash=key_hash(raw))
    return key, raw


def partner_for_key(raw: str, *, now: dt.datetime | None = None) -> PartnerKey | None:
    """The active key ``raw`` names, with its partner (active too), or None."""
    if not raw.startswith(KEY_PREFIX):
        return None
    key = PartnerKey.objects.select_related("partner").filter(key_hash=key_hash(raw)).first()
    if key is None or not key.is_active or not key.partner.is_active:
        return None
    now = now or timezone.now()
    if key.last_used_at is None or now - key.last_used_at > dt.timedelta(minutes=1):
        PartnerKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def _require_active(partner: Partner) -> None:
    if not partner.is_active:
        raise LoyaltyError("partner_inactive", _("This partner is not active."))


def _points_for(amount: Decimal, rate: Decimal) -> int:
    return int((amount * rate).to_integral_value(ROUND_DOWN))


def _fingerprint(values: dict) -> str:
    return hashlib.sha256(repr(sorted(values.items())).encode()).hexdigest()


@transaction.atomic
def partner_earn(
    *,
    partner: Partner,
    member: Member,
    order_number: str,
    amount: Decimal | int | str,
    occurred_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> PartnerEarn:
    """Points for ``member``'s order ``order_number`` of ``amount`` yuan at ``partner``,
    placed at ``occurred_at`` (default now; the settlement month follows it). The points
    are credited now.

    Refuses: an inactive partner (``partner_inactive``), no order number
    (``order_number_required``), an amount that is not above zero (``invalid_amount``), an
    amount that earns no point (``points_too_few``), the same order number with another
    member or amount (``order_number_taken``), an order time in the future or more than
    ``MAX_ORDER_AGE_DAYS`` ago (``invalid_time``), and what ``points_award`` refuses (a frozen
    or closed member: ``member_inactive``). The same order again returns the first record
    (``replayed``) and writes nothing.
    """
    now = now or timezone.now()
    _require_active(partner)
    number = (order_number or "").strip()
    if not number or len(number) > 64:
        raise LoyaltyError("order_number_required", _("Give the partner's order number (at most 64 characters)."))
    total = clean_money(amount, field_name=_("Order amount"))
    if total <= 0:
        raise LoyaltyError("invalid_amount", _("The order amount must be above zero."))
    occurred_at = occurred_at or now
    if occurred_at > now + dt.timedelta(minutes=5) or occurred_at < now - dt.timedelta(days=MAX_ORDER_AGE_DAYS):
        raise LoyaltyError(
            "invalid_time",
            _("The order time must not be in the future or more than %(days)s days ago.")
            % {"days": MAX_ORDER_AGE_DAYS},
        )
    request_hash = _fingerprint({"member": member.pk, "amount": str(total)})
    existing = PartnerEarn.objects.filter(partner=partner, order_number=number).first()
    if existing is not None:
        if existing.request_hash != request_hash:
            raise LoyaltyError(
                "order_number_taken",
                _("Order %(number)s was already recorded with different details.") % {"number": number},
            )
        existing.replayed = True
        return existing
    points = _points_for(total, Decimal(partner.points_per_yuan))
    if points <= 0:
        raise LoyaltyError("points_too_few", _("This order earns no points."))
    if points > MAX_POINTS_PER_ORDER:
        raise LoyaltyError(
            "invalid_amount",
            _("One partner order earns at most %(max)s points; this one would earn %(points)s.")
            % {"max": MAX_POINTS_PER_ORDER, "points": points},
        )
    entry = points_award(
        member=member,
        currency=Currency.POINTS,
        amount=points,
        reason=_("Order %(number)s at %(partner)s") % {"number": number, "partner": partner.name},
        idempotency_key=f"partner:{partner.pk}:{number}",
        detail={"partner": partner.code, "partner_order": number, "amount": str(total)},
        now=now,
    )
    try:
        with transaction.atomic():
            earn = PartnerEarn.objects.create(
                partner=partner,
                member=member,
                order_number=number,
                amount=total,
                points=points,
                points_per_yuan=partner.points_per_yuan,
                issue_price=partner.issue_price,
                owed=(points * Decimal(partner.issue_price)).quantize(CENT),
                entry=entry,
                request_hash=request_hash,
                occurred_at=occurred_at,
                created_at=now,
            )
    except IntegrityError:
        # The same order raced in: the award above was the other request's, replayed.
        earn = PartnerEarn.objects.get(partner=partner, order_number=number)
        if earn.request_hash != request_hash:
            raise LoyaltyError(
                "order_number_taken",
                _("Order %(number)s was already recorded with different details.") % {"number": number},
            ) from None
        earn.replayed = True
        return earn
    earn.replayed = False
    return earn


def _rank(member: Member) -> int | None:
    return MemberTier.objects.filter(member=member).values_list("tier__rank", flat=True).first()


def offers_available() -> list[PartnerOffer]:
    """The partner offers in the mall (active offers of active partners), with their partner."""
    return list(
        PartnerOffer.objects.select_related("partner", "min_tier").filter(is_active=True, partner__is_active=True)
    )


@dataclass(frozen=True)
class PartnerMallOffer:
    """A partner offer as this member sees it in the main mall, beside the brand's rewards
    (``rewards.selectors.RewardOffer`` has the same ``eligible``/``reason``/``code``/
    ``points_missing``/``points_cost``/``is_partner`` so one list can be sorted and filtered)."""

    offer: PartnerOffer
    eligible: bool
    reason: str  # translated; empty when eligible
    code: str = ""  # the refusal code partner_voucher_redeem would raise; empty when eligible
    points_missing: int = 0
    codes_left: int | None = None  # None: generated codes, no limit
    is_partner = True

    @property
    def points_cost(self) -> int:
        return self.offer.points_cost


def partner_mall_offers(member: Member) -> list[PartnerMallOffer]:
    """The partner offers in the mall with whether this member may get each now and why not,
    for the same reasons ``partner_voucher_redeem`` refuses. At most four queries whatever
    the catalogue: the offers, the balance, the tier, and the free codes of batch offers."""
    offers = offers_available()
    if not offers:
        return []
    balance = member.accounts.filter(currency=Currency.POINTS).values_list("balance", flat=True).first() or 0
    rank = _rank(member)
    batch = [offer.pk for offer in offers if offer.code_source == PartnerOffer.CodeSource.BATCH]
    free: dict[int, int] = {}
    if batch:
        free = dict(
            PartnerCode.objects.filter(offer_id__in=batch, voucher__isnull=True)
            .values("offer_id")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("offer_id", "n")
        )
    shown = []
    for offer in offers:
        left = free.get(offer.pk, 0) if offer.code_source == PartnerOffer.CodeSource.BATCH else None
        code, reason, missing = "", "", 0
        if member.status != Member.Status.ACTIVE:
            code, reason = "member_inactive", _("Your membership is not active, so rewards cannot be redeemed.")
        elif offer.min_tier is not None and (rank is None or rank < offer.min_tier.rank):
            code = "tier_too_low"
            reason = _("This offer is for members from %(tier)s up.") % {"tier": offer.min_tier.name}
        elif left == 0:
            code, reason = "out_of_codes", _("This offer has no codes left; try again later.")
        elif balance < offer.points_cost:
            missing = offer.points_cost - balance
            code, reason = "insufficient_balance", _("You need %(missing)s more points.") % {"missing": f"{missing:,}"}
        shown.append(
            PartnerMallOffer(
                offer=offer, eligible=not code, reason=reason, code=code, points_missing=missing, codes_left=left
            )
        )
    return shown


@transaction.atomic
def partner_voucher_redeem(
    *, member: Member, offer: PartnerOffer, idempotency_key: str, now: dt.datetime | None = None
) -> PartnerVoucher:
    """Spend ``offer.points_cost`` points of ``member`` on a voucher of the offer's partner.

    Refuses: an offer out of the mall or of an inactive partner (``offer_unavailable``), a
    member below the offer's lowest tier (``tier_too_low``), a batch with no code left
    (``out_of_codes``), no key (``idempotency_key_required``), the key used for another
    offer (``idempotency_key_reused``), and what ``points_spend`` refuses
    (``insufficient_balance``, ``member_inactive``). The same key again returns the first
    voucher (``replayed``), also when two requests with it race (the account lock of the
    spend orders them).
    """
    now = now or timezone.now()
    key = clean_key(idempotency_key, required=True)
    existing = PartnerVoucher.objects.filter(member=member, idempotency_key=key).select_related("offer").first()
    if existing is not None:
        if existing.offer_id != offer.pk:
            raise LoyaltyError(
                "idempotency_key_reused", _("This idempotency key was already used for a different request.")
            )
        existing.replayed = True
        return existing
    offer = PartnerOffer.objects.select_related("partner", "min_tier").get(pk=offer.pk)
    if not offer.is_active or not offer.partner.is_active:
        raise LoyaltyError("offer_unavailable", _("This partner offer is not available."))
    if offer.min_tier is not None:
        rank = _rank(member)
        if rank is None or rank < offer.min_tier.rank:
            raise LoyaltyError(
                "tier_too_low", _("This offer is for members from %(tier)s up.") % {"tier": offer.min_tier.name}
            )
    batch_code = None
    if offer.code_source == PartnerOffer.CodeSource.BATCH:
        # The next free code, locked; SKIP LOCKED lets two redemptions take two codes at once.
        batch_code = (
            PartnerCode.objects.select_for_update(skip_locked=True)
            .filter(offer=offer, voucher__isnull=True)
            .order_by("id")
            .first()
        )
        if batch_code is None:
            raise LoyaltyError("out_of_codes", _("This offer has no codes left; try again later."))
    partner = offer.partner
    spend = points_spend(
        member=member,
        amount=offer.points_cost,
        idempotency_key=f"partner-voucher:{key}",
        reason=_("%(offer)s at %(partner)s") % {"offer": offer.name, "partner": partner.name},
        detail={"partner": partner.code, "offer": offer.pk},
        now=now,
    )
    if spend.replayed:
        # The same key raced in and its voucher is written (the spend lock serialised us).
        existing = PartnerVoucher.objects.filter(member=member, idempotency_key=key).first()
        if existing is not None:
            existing.replayed = True
            return existing
    voucher = PartnerVoucher.objects.create(
        partner=partner,
        offer=offer,
        member=member,
        code=batch_code.code if batch_code else new_code(),
        points=offer.points_cost,
        redeem_price=partner.redeem_price,
        owed=(offer.points_cost * Decimal(partner.redeem_price)).quantize(CENT),
        spend_entry=spend,
        idempotency_key=key,
        issued_at=now,
        expires_at=now + dt.timedelta(days=offer.valid_days),
    )
    if batch_code is not None:
        PartnerCode.objects.filter(pk=batch_code.pk).update(voucher=voucher)
    voucher.replayed = False
    return voucher


@transaction.atomic
def partner_voucher_use(*, partner: Partner, code: str, now: dt.datetime | None = None) -> PartnerVoucher:
    """The partner marks its voucher ``code`` used (at its till).

    Refuses: no such code for this partner (``voucher_not_found``: another partner's
    codes are not found either), used already (``voucher_used``), void (``voucher_void``),
    past its date (``voucher_expired``).
    """
    now = now or timezone.now()
    _require_active(partner)
    text = (code or "").strip()
    voucher = PartnerVoucher.objects.select_for_update().filter(partner=partner, code__in=[text, text.upper()]).first()
    if voucher is None:
        raise LoyaltyError("voucher_not_found", _("No voucher of yours has the code “%(code)s”.") % {"code": text})
    if voucher.status == PartnerVoucher.Status.USED:
        raise LoyaltyError("voucher_used", _("This voucher was used already."))
    if voucher.status == PartnerVoucher.Status.VOID:
        raise LoyaltyError("voucher_void", _("This voucher was voided."))
    if voucher.expires_at <= now:
        raise LoyaltyError("voucher_expired", _("This voucher has expired."))
    voucher.status, voucher.used_at = PartnerVoucher.Status.USED, now
    voucher.save(update_fields=["status", "used_at"])
    return voucher


@transaction.atomic
def partner_voucher_void(*, voucher: PartnerVoucher, actor, reason: str, now: dt.datetime | None = None):
    """Staff void an unused partner voucher with a reason: the member gets the points back
    (the spend reversed, the same lots) and nothing is owed to the partner for it.

    Refuses: no reason (``reason_required``), a staff member without
    ``programme.void_partnervoucher`` or the member outside their stores
    (``permission_denied``, ``out_of_scope``), a voucher used or void already
    (``voucher_used``, ``voucher_void``).
    """
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Say why the voucher is voided: a reason is required."))
    require_staff(actor, "programme.void_partnervoucher", members=[voucher.member_id])
    voucher = PartnerVoucher.objects.select_for_update().get(pk=voucher.pk)
    if voucher.status == PartnerVoucher.Status.USED:
        raise LoyaltyError("voucher_used", _("This voucher was used already."))
    if voucher.status == PartnerVoucher.Status.VOID:
        raise LoyaltyError("voucher_void", _("This voucher was voided."))
    points_spend_reverse(entry=voucher.spend_entry, reason=reason, now=now)
    voucher.status, voucher.voided_at, voucher.voided_by, voucher.void_reason = (
        PartnerVoucher.Status.VOID,
        now,
        actor,
        reason,
    )
    # The voucher row is the audit: who voided it, when and why.
    voucher.save(update_fields=["status", "voided_at", "voided_by", "void_reason"])
    return voucher


def _clean_codes(codes) -> list[str]:
    if isinstance(codes, str):
        codes = codes.replace(",", "\n").splitlines()
    cleaned = list(dict.fromkeys(str(c).strip() for c in codes if str(c).strip()))
    if not cleaned:
        raise LoyaltyError("codes_required", _("Give at least one code."))
    if len(cleaned) > MAX_CODES_PER_UPLOAD:
        raise LoyaltyError("too_many_codes", _("At most %(n)s codes at a time.") % {"n": MAX_CODES_PER_UPLOAD})
    bad = [c for c in cleaned if len(c) > 64 or not c.isprintable()]
    if bad:
        raise LoyaltyError("code_invalid", _("Not a valid code: “%(code)s”.") % {"code": bad[0][:70]})
    return cleaned


@transaction.atomic
def partner_codes_upload(*, offer: PartnerOffer, codes, now: dt.datetime | None = None) -> tuple[int, int]:
    """Add the partner's batch ``codes`` (a list, or text one a line or comma-separated) to
    ``offer``; returns (added, already there). Refuses an offer whose codes are generated
    (``offer_codes_generated``), no code, more than 10,000, a code over 64 characters."""
    now = now or timezone.now()
    if offer.code_source != PartnerOffer.CodeSource.BATCH:
        raise LoyaltyError("offer_codes_generated", _("This offer's codes are generated here; it takes no batch."))
    cleaned = _clean_codes(codes)
    offer = PartnerOffer.objects.select_for_update().get(pk=offer.pk)  # one upload at a time per offer
    there = set(PartnerCode.objects.filter(offer=offer, code__in=cleaned).values_list("code", flat=True))
    PartnerCode.objects.bulk_create(
        [PartnerCode(offer=offer, code=code, uploaded_at=now) for code in cleaned if code not in there]
    )
    return len(cleaned) - len(there), len(there)


def codes_left(offer: PartnerOffer) -> int | None:
    """Unused codes of a batch offer; None for generated codes (no limit)."""
    if offer.code_source != PartnerOffer.CodeSource.BATCH:
        return None
    return PartnerCode.objects.filter(offer=offer, voucher__isnull=True).count()


def partner_benefits_for(member: Member, *, now: dt.datetime | None = None) -> list[PartnerBenefit]:
    """The active partner benefits ``member`` has now: through their tier or their active
    paid plan (active partners only). A frozen or closed member has none. Three queries."""
    if member.status != Member.Status.ACTIVE:
        return []
    now = now or timezone.now()
    tier_id = MemberTier.objects.filter(member=member).values_list("tier_id", flat=True).first()
    membership = membership_active(member.pk, now)
    which = Q(tiers=tier_id) if tier_id else Q(pk__in=[])
    if membership is not None:
        which |= Q(plans=membership.plan_id)
    return list(
        PartnerBenefit.objects.filter(which, is_active=True, partner__is_active=True)
        .select_related("partner")
        .distinct()
        .order_by("partner__name", "id")
    )


# --- settlement ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settlement:
    partner: Partner
    month: dt.date  # its first day
    orders: int
    points_issued: int
    owed_by_partner: Decimal  # for the points its orders earned
    vouchers: int
    points_redeemed: int
    owed_to_partner: Decimal  # for the points spent on its vouchers

    @property
    def balance(self) -> Decimal:
        """What the partner pays the brand (negative: the brand pays the partner)."""
        return self.owed_by_partner - self.owed_to_partner


def parse_month(text: str | None, *, now: dt.datetime | None = None) -> dt.date:
    """``2026-11`` as its first day; empty: the current month. Refuses anything else (``invalid_month``)."""
    if not text:
        return timezone.localdate(now or timezone.now()).replace(day=1)
    try:
        year, month = (int(part) for part in str(text).split("-"))
        return dt.date(year, month, 1)
    except (ValueError, TypeError, InvalidOperation):
        raise LoyaltyError("invalid_month", _("Give the month as YYYY-MM, e.g. 2026-11.")) from None


def _month_bounds(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = timezone.get_current_timezone()
    start = dt.datetime(month.year, month.month, 1, tzinfo=tz)
    end = dt.datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=tz)
    return start, end


def partner_settlement(*, partner: Partner, month: dt.date) -> Settlement:
    """The settlement of ``partner`` for the calendar ``month`` (local time): its orders
    placed that month and its vouchers issued that month, except voided ones (their
    points went back). Two queries."""
    start, end = _month_bounds(month)
    earns = PartnerEarn.objects.filter(partner=partner, occurred_at__gte=start, occurred_at__lt=end).aggregate(
        n=Count("id"), points=Coalesce(Sum("points"), 0), owed=Coalesce(Sum("owed"), Decimal(0))
    )
    vouchers = (
        PartnerVoucher.objects.filter(partner=partner, issued_at__gte=start, issued_at__lt=end)
        .exclude(status=PartnerVoucher.Status.VOID)
        .aggregate(n=Count("id"), points=Coalesce(Sum("points"), 0), owed=Coalesce(Sum("owed"), Decimal(0)))
    )
    return Settlement(
        partner=partner,
        month=month,
        orders=earns["n"],
        points_issued=earns["points"],
        owed_by_partner=earns["owed"],
        vouchers=vouchers["n"],
        points_redeemed=vouchers["points"],
        owed_to_partner=vouchers["owed"],
    )


def settlement_csv(settlement: Settlement) -> str:
    """The settlement as CSV: the totals, then one line per order and per voucher."""
    start, end = _month_bounds(settlement.month)
    out = io.StringIO()
    writer = csv.writer(out)
    partner = settlement.partner
    writer.writerow(
        [
            "partner",
            "month",
            "orders",
            "points_issued",
            "owed_by_partner",
            "vouchers",
            "points_redeemed",
            "owed_to_partner",
            "balance",
        ]
    )
    writer.writerow(
        [
            partner.code,
            settlement.month.strftime("%Y-%m"),
            settlement.orders,
            settlement.points_issued,
            settlement.owed_by_partner,
            settlement.vouchers,
            settlement.points_redeemed,
            settlement.owed_to_partner,
            settlement.balance,
        ]
    )
    writer.writerow([])
    writer.writerow(["line", "reference", "member_number", "at", "amount", "points", "price_per_point", "owed"])
    for earn in (
        PartnerEarn.objects.filter(partner=partner, occurred_at__gte=start, occurred_at__lt=end)
        .select_related("member")
        .order_by("occurred_at", "id")
    ):
        writer.writerow(
            [
                "order",
                earn.order_number,
                earn.member.member_number,
                timezone.localtime(earn.occurred_at).isoformat(),
                earn.amount,
                earn.points,
                earn.issue_price,
                earn.owed,
            ]
        )
    for voucher in (
        PartnerVoucher.objects.filter(partner=partner, issued_at__gte=start, issued_at__lt=end)
        .exclude(status=PartnerVoucher.Status.VOID)
        .select_related("member")
        .order_by("issued_at", "id")
    ):
        writer.writerow(
            [
                "voucher",
                voucher.code,
                voucher.member.member_number,
                timezone.localtime(voucher.issued_at).isoformat(),
                "",
                voucher.points,
                voucher.redeem_price,
                voucher.owed,
            ]
        )
    return out.getvalue()


def member_vouchers(member: Member) -> list[PartnerVoucher]:
    return list(PartnerVoucher.objects.filter(member=member).select_related("partner", "offer")[:100])

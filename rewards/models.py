"""The rewards mall (rewards, redemptions) and coupons.

A reward costs points (and optionally cash paid at the till); redeeming it spends the
points, takes one from stock and issues a coupon, which the member shows at a till.
A coupon is issued, then used once at a till (verified: store, staff, time), or it
expires, or staff void it. The code is random and unguessable; a benefit's coupon is
unique per member, benefit and period, so a job run twice cannot issue it twice.
"""

import secrets

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.models import Benefit, CouponKind, LedgerEntry, Tier
from members.models import Member, Store

# No 0/O, 1/I/L: a code read aloud or typed at a till is not mistaken.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12  # 31**12, about 2**59 codes


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str) -> str:
    """The code as stored: upper case, without the spaces and dashes people type."""
    return "".join(code.split()).replace("-", "").upper()


class Coupon(models.Model):
    Kind = CouponKind

    class Source(models.TextChoices):
        BENEFIT = "benefit", _("tier benefit")
        REDEMPTION = "redemption", _("redemption")
        STAFF = "staff", _("staff")
        JOURNEY = "journey", _("journey")
        PROGRAMME = "programme", _("paid membership or badge")

    class Status(models.TextChoices):
        ISSUED = "issued", _("issued")
        USED = "used", _("used")
        EXPIRED = "expired", _("expired")
        VOID = "void", _("void")

    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="coupons")
    code = models.CharField(_("code"), max_length=20, unique=True, default=new_code, editable=False)
    title = models.CharField(_("title"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    value = models.DecimalField(
        _("value"),
        max_digits=10,
        decimal_places=2,
        default=0,
        help_text=_("Percent off (10 = 10 percent), yuan off, or 0 for a gift or free shipping."),
    )
    source = models.CharField(_("source"), max_length=12, choices=Source.choices)
    benefit = models.ForeignKey(
        Benefit, verbose_name=_("benefit"), null=True, blank=True, on_delete=models.PROTECT, related_name="coupons"
    )
    period = models.CharField(_("period"), max_length=10, blank=True, help_text=_("For a benefit: 2026 or 2026-11."))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.ISSUED)
    issued_at = models.DateTimeField(_("issued at"), default=timezone.now)
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    used_store = models.ForeignKey(
        Store, verbose_name=_("used at store"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("verified by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    voided_at = models.DateTimeField(_("voided at"), null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("voided by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    void_reason = models.CharField(_("reason for voiding"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        ordering = ["-issued_at", "-id"]
        permissions = [("void_coupon", _("Can void coupons"))]
        constraints = [
            models.UniqueConstraint(
                fields=["member", "benefit", "period"],
                condition=Q(benefit__isnull=False),
                name="coupon_once_per_benefit_period",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["issued", "used", "expired", "void"]), name="coupon_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["discount_percent", "amount_off", "gift", "free_shipping"]),
                name="coupon_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(source__in=["benefit", "redemption", "staff", "journey", "programme"]),
                name="coupon_source_valid",
            ),
            models.CheckConstraint(condition=Q(value__gte=0), name="coupon_value_not_negative"),
            models.CheckConstraint(
                condition=~Q(kind="discount_percent") | Q(value__lte=100), name="coupon_percent_at_most_100"
            ),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("valid_from")), name="coupon_window_ordered"),
            models.CheckConstraint(
                condition=~Q(source="benefit") | Q(benefit__isnull=False), name="coupon_benefit_source_has_benefit"
            ),
            # A used coupon says when it was used; nothing else does.
            models.CheckConstraint(
                condition=Q(status="used", used_at__isnull=False) | (~Q(status="used") & Q(used_at__isnull=True)),
                name="coupon_used_has_time",
            ),
            models.CheckConstraint(
                condition=Q(status="void", voided_at__isnull=False) | (~Q(status="void") & Q(voided_at__isnull=True)),
                name="coupon_void_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "status"], name="coupon_member_status"),
            # The expiry job finds issued coupons past their date.
            models.Index(fields=["expires_at"], name="coupon_issued_expiry", condition=Q(status="issued")),
        ]

    def __str__(self) -> str:
        return f"{self.code}: {self.title}"


class RewardCategory(models.TextChoices):
    VOUCHERS = "vouchers", _("Vouchers")
    FOOD_DRINK = "food_drink", _("Food and drink")
    BEAUTY = "beauty", _("Beauty")
    LIFESTYLE = "lifestyle", _("Lifestyle")
    EXPERIENCES = "experiences", _("Experiences")


class Reward(models.Model):
    """Something in the points mall. Redeeming it issues a coupon of ``coupon_kind``."""

    name = models.CharField(_("name"), max_length=100, help_text=_("What members see in the mall and on the coupon."))
    description = models.TextField(_("description"), blank=True, help_text=_("Details and how to use it."))
    image = models.ImageField(
        _("image"), upload_to="rewards/", blank=True, help_text=_("Optional picture for the mall (square works best).")
    )
    points_cost = models.PositiveIntegerField(
        _("points cost"), validators=[MinValueValidator(1)], help_text=_("Points a member spends to redeem it.")
    )
    cash_cost = models.DecimalField(
        _("cash to pay"),
        max_digits=10,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
        help_text=_("Yuan the member still pays at the till when using the coupon (points + cash); 0 for none."),
    )
    stock = models.PositiveIntegerField(
        _("stock"), null=True, blank=True, help_text=_("How many are left to redeem; empty means unlimited.")
    )
    per_member_limit = models.PositiveIntegerField(
        _("limit per member"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("How many times one member may redeem it (cancelled redemptions do not count); empty: no limit."),
    )
    available_from = models.DateTimeField(
        _("available from"), null=True, blank=True, help_text=_("Empty: available now.")
    )
    available_until = models.DateTimeField(
        _("available until"), null=True, blank=True, help_text=_("Empty: no end date.")
    )
    min_tier = models.ForeignKey(
        Tier,
        verbose_name=_("lowest tier"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Only members in this tier or a higher one may redeem it; empty: every member."),
    )
    is_active = models.BooleanField(
        _("in the mall"), default=True, help_text=_("Untick to take it out of the mall without deleting it.")
    )
    sort_order = models.PositiveSmallIntegerField(
        _("sort order"), default=100, help_text=_("Lower numbers come first in the mall.")
    )
    coupon_kind = models.CharField(
        _("coupon kind"),
        max_length=20,
        choices=CouponKind.choices,
        default=CouponKind.GIFT,
        help_text=_("What the coupon issued on redemption gives."),
    )
    coupon_value = models.DecimalField(
        _("coupon value"),
        max_digits=10,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
        help_text=_("Percent off (10 = 10 percent), yuan off, or 0 for a gift or free shipping."),
    )
    coupon_valid_days = models.PositiveSmallIntegerField(
        _("coupon valid for (days)"),
        default=30,
        validators=[MinValueValidator(1)],
        help_text=_("Days from redemption until the coupon expires."),
    )
    # The mall's shelves (member center filter); empty: shown under "All" only.
    category = models.CharField(
        _("category"),
        max_length=20,
        choices=RewardCategory.choices,
        blank=True,
        default="",
        help_text=_("The shelf of the mall it is shown on."),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("reward")
        verbose_name_plural = _("rewards")
        ordering = ["sort_order", "points_cost", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(points_cost__gte=1), name="reward_points_cost_positive"),
            models.CheckConstraint(condition=Q(cash_cost__gte=0), name="reward_cash_cost_not_negative"),
            models.CheckConstraint(condition=Q(stock__isnull=True) | Q(stock__gte=0), name="reward_stock_not_negative"),
            models.CheckConstraint(
                condition=Q(per_member_limit__isnull=True) | Q(per_member_limit__gte=1),
                name="reward_per_member_limit_positive",
            ),
            models.CheckConstraint(
                condition=Q(available_from__isnull=True)
                | Q(available_until__isnull=True)
                | Q(available_until__gt=models.F("available_from")),
                name="reward_window_ordered",
                violation_error_message=_("The end of availability must come after its start."),
            ),
            models.CheckConstraint(
                condition=Q(coupon_kind__in=["discount_percent", "amount_off", "gift", "free_shipping"]),
                name="reward_coupon_kind_valid",
            ),
            models.CheckConstraint(condition=Q(coupon_value__gte=0), name="reward_coupon_value_not_negative"),
            models.CheckConstraint(
                condition=~Q(coupon_kind="discount_percent") | Q(coupon_value__lte=100),
                name="reward_coupon_percent_at_most_100",
                violation_error_message=_("A percent-off coupon cannot take more than 100 percent off."),
            ),
            models.CheckConstraint(condition=Q(coupon_valid_days__gte=1), name="reward_coupon_valid_days_positive"),
        ]
        indexes = [
            models.Index(fields=["sort_order", "points_cost"], name="reward_mall_order", condition=Q(is_active=True))
        ]

    def __str__(self) -> str:
        return self.name


class Redemption(models.Model):
    """One redemption of a reward by a member: the spend, the coupon, and any cancellation."""

    class Status(models.TextChoices):
        COMPLETED = "completed", _("completed")
        CANCELLED = "cancelled", _("cancelled")

    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="redemptions")
    reward = models.ForeignKey(Reward, verbose_name=_("reward"), on_delete=models.PROTECT, related_name="redemptions")
    # The costs at the time of redemption; the reward's may change later.
    points_cost = models.PositiveIntegerField(_("points spent"))
    cash_cost = models.DecimalField(_("cash to pay"), max_digits=10, decimal_places=2, default=0)
    spend_entry = models.OneToOneField(
        LedgerEntry, verbose_name=_("spend entry"), on_delete=models.PROTECT, related_name="redemption"
    )
    reversal_entry = models.OneToOneField(
        LedgerEntry,
        verbose_name=_("reversal entry"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="cancelled_redemption",
    )
    coupon = models.OneToOneField(Coupon, verbose_name=_("coupon"), on_delete=models.PROTECT, related_name="redemption")
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.COMPLETED)
    idempotency_key = models.CharField(_("idempotency key"), max_length=128)
    # Fingerprint of the request (the reward), to tell a replay from a conflict.
    request_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("redeemed at"), default=timezone.now)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("cancelled by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Empty when the member cancelled it."),
    )
    cancel_reason = models.CharField(_("reason for cancelling"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("redemption")
        verbose_name_plural = _("redemptions")
        ordering = ["-created_at", "-id"]
        permissions = [("cancel_redemption", _("Can cancel redemptions"))]
        constraints = [
            models.UniqueConstraint(fields=["member", "idempotency_key"], name="redemption_key_unique_per_member"),
            models.CheckConstraint(condition=Q(points_cost__gte=1), name="redemption_points_cost_positive"),
            models.CheckConstraint(condition=Q(cash_cost__gte=0), name="redemption_cash_cost_not_negative"),
            models.CheckConstraint(condition=Q(status__in=["completed", "cancelled"]), name="redemption_status_valid"),
            # A cancelled redemption says when and carries its reversal; a completed one has neither.
            models.CheckConstraint(
                condition=Q(status="cancelled", cancelled_at__isnull=False, reversal_entry__isnull=False)
                | Q(status="completed", cancelled_at__isnull=True, reversal_entry__isnull=True),
                name="redemption_cancelled_has_reversal",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-created_at", "-id"], name="redemption_member_recent"),
            # The per-member limit counts a member's completed redemptions of one reward.
            models.Index(fields=["reward", "member"], name="redemption_limit", condition=Q(status="completed")),
        ]

    # Set to True on a redemption a service returns for a replayed request (nothing written).
    replayed = False

    def __str__(self) -> str:
        return f"{self.member_id}: {self.reward_id} ({self.status})"

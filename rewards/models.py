"""Coupons: what a tier benefit, a redemption (the rewards mall, a later issue) or staff give a member.

A coupon is issued, then used once at a till (verified: store, staff, time), or it
expires, or staff void it. The code is random and unguessable; a benefit's coupon is
unique per member, benefit and period, so a job run twice cannot issue it twice.
"""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.models import Benefit, CouponKind
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
                condition=Q(source__in=["benefit", "redemption", "staff"]), name="coupon_source_valid"
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

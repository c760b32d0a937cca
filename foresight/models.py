"""Foresight: the leakage monitor's cases, and the saved runs of the tier-policy simulator
and the liability forecast (docs/foresight.md).

A case is one suspicion found by the nightly scan (``foresight.leakage``), deduplicated by
its ``key``; staff resolve it with a reason. A simulation or forecast run keeps the inputs
staff gave and the figures computed from them; computing one writes nothing else.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.models import Member, Store


class LeakageCase(models.Model):
    """One pattern where points may leak, found by the scan, open until staff resolve it."""

    class Kind(models.TextChoices):
        REFUND_SHORTFALL = "refund_shortfall", _("refund shortfall still open")
        LATE_REFUND = "late_refund", _("refund after the return window")
        CHECKIN_FARM = "checkin_farm", _("check-in points collected from many accounts")
        REFERRAL_BURST = "referral_burst", _("many referrals rewarded in a short time")
        REFERRAL_RING = "referral_ring", _("referral ring: points sent back to the referrer")
        SHARED_EMAIL = "shared_email", _("many accounts on one email address")
        REJOIN = "rejoin", _("rejoined after erasure and earning bonuses")
        TRANSFER_PINGPONG = "transfer_pingpong", _("transfers back and forth")
        ADJUST_NEAR_LIMIT = "adjust_near_limit", _("staff adjustments near the limit")

    class Status(models.TextChoices):
        OPEN = "open", _("open")
        RESOLVED = "resolved", _("resolved")

    class Outcome(models.TextChoices):
        CONFIRMED = "confirmed", _("confirmed: action taken")
        DISMISSED = "dismissed", _("dismissed: nothing wrong")
        CLEARED = "cleared", _("cleared by itself")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    key = models.CharField(_("key"), max_length=120, unique=True, help_text=_("One case per pattern and subject."))
    member = models.ForeignKey(
        Member, verbose_name=_("member"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    store = models.ForeignKey(
        Store, verbose_name=_("store"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    points = models.BigIntegerField(_("points at stake"), default=0)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.OPEN)
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen"), default=timezone.now)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("resolved by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices, blank=True)
    resolution = models.CharField(_("reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("leakage case")
        verbose_name_plural = _("leakage cases")
        ordering = ["-last_seen_at", "-id"]
        permissions = [("resolve_leakagecase", _("Can resolve leakage cases"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="open", resolved_at__isnull=True) | Q(status="resolved", resolved_at__isnull=False),
                name="leakage_case_resolved_has_time",
            ),
        ]
        indexes = [models.Index(fields=["kind"], name="leakage_case_open", condition=Q(status="open"))]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.key})"


class SimulationRun(models.Model):
    """A proposed tier policy and what replaying every member's growth under it gave."""

    name = models.CharField(_("name"), max_length=100)
    proposal = models.JSONField(_("proposal"), default=dict)
    result = models.JSONField(_("result"), default=dict, blank=True)
    seconds = models.FloatField(_("seconds"), default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("tier-policy simulation")
        verbose_name_plural = _("tier-policy simulations")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class ForecastRun(models.Model):
    """A liability and breakage forecast: the curves fitted, the 12 months projected."""

    name = models.CharField(_("name"), max_length=100)
    alternative_policy = models.CharField(
        _("alternative expiry policy"),
        max_length=20,
        blank=True,
        help_text=_("rolling:N, calendar:N or never; empty: only the policy in force."),
    )
    result = models.JSONField(_("result"), default=dict, blank=True)
    seconds = models.FloatField(_("seconds"), default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("liability forecast")
        verbose_name_plural = _("liability forecasts")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

"""Consumer operations: daily check-in, referral (member-get-member) and automated journeys.

docs/engagement.md describes the rules; the services that change these rows are in
engagement.checkin, engagement.referrals and operations.journeys.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.models import CouponKind, LedgerEntry, Order
from members.models import Member, Segment, Tag


class CheckIn(models.Model):
    """One member's check-in on one local day; the database allows one per member per day."""

    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="check_ins")
    day = models.DateField(_("day"))
    streak = models.PositiveIntegerField(_("day of the streak"))
    points = models.PositiveIntegerField(_("points"))
    entry = models.ForeignKey(
        LedgerEntry, verbose_name=_("ledger entry"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("checked in at"), default=timezone.now)

    class Meta:
        verbose_name = _("check-in")
        verbose_name_plural = _("check-ins")
        ordering = ["-day", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["member", "day"], name="check_in_once_per_day"),
            models.CheckConstraint(condition=Q(streak__gte=1), name="check_in_streak_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.day}"


class Referral(models.Model):
    """A member who joined with another member's referral code; both earn a bonus once."""

    class Status(models.TextChoices):
        PENDING = "pending", _("waiting for the first order")
        REWARDED = "rewarded", _("rewarded")
        REJECTED = "rejected", _("rejected")

    referrer = models.ForeignKey(
        Member, verbose_name=_("referrer"), on_delete=models.PROTECT, related_name="referrals_made"
    )
    referee = models.OneToOneField(
        Member, verbose_name=_("new member"), on_delete=models.PROTECT, related_name="referral"
    )
    code = models.CharField(_("code used"), max_length=12)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    order = models.ForeignKey(
        Order, verbose_name=_("first order"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("joined at"), default=timezone.now)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    class Meta:
        verbose_name = _("referral")
        verbose_name_plural = _("referrals")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(referrer=models.F("referee")), name="referral_not_self"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "rewarded", "rejected"]), name="referral_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status"], name="referral_status", condition=Q(status="pending"))]

    def __str__(self) -> str:
        return f"{self.referrer_id} -> {self.referee_id}"


class Journey(models.Model):
    """An automated journey: when a trigger fires for a member, do one action (docs/journeys.md)."""

    class Trigger(models.TextChoices):
        JOINED = "joined", _("joined")
        FIRST_ORDER = "first_order", _("first order")
        TIER_CHANGED = "tier_changed", _("tier changed")
        BIRTHDAY = "birthday", _("birthday")
        DORMANT = "dormant", _("entered the dormant stage")
        POINTS_EXPIRING = "points_expiring", _("points about to expire")
        NO_ORDER = "no_order", _("no order for N days")

    class Action(models.TextChoices):
        AWARD_POINTS = "award_points", _("award points")
        ISSUE_COUPON = "issue_coupon", _("issue a coupon")
        NOTIFY = "notify", _("send a notification")
        ADD_TAG = "add_tag", _("add a tag")

    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    trigger = models.CharField(_("trigger"), max_length=20, choices=Trigger.choices)
    trigger_days = models.PositiveIntegerField(
        _("days"),
        null=True,
        blank=True,
        help_text=_("For 'no order for N days': N. For 'points about to expire': how many days ahead."),
    )
    audience = models.ForeignKey(
        Segment,
        verbose_name=_("audience"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="journeys",
        help_text=_("Only members in this segment; empty: every member."),
    )
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    points = models.PositiveIntegerField(_("points"), null=True, blank=True)
    coupon_title = models.CharField(_("coupon title"), max_length=100, blank=True)
    coupon_kind = models.CharField(_("coupon kind"), max_length=20, choices=CouponKind.choices, blank=True)
    coupon_value = models.DecimalField(_("coupon value"), max_digits=10, decimal_places=2, null=True, blank=True)
    coupon_valid_days = models.PositiveIntegerField(_("coupon valid for (days)"), null=True, blank=True)
    tag = models.ForeignKey(
        Tag, verbose_name=_("tag"), null=True, blank=True, on_delete=models.PROTECT, related_name="journeys"
    )
    message_title = models.CharField(_("message title"), max_length=200, blank=True)
    message_body = models.TextField(_("message"), blank=True)
    is_marketing = models.BooleanField(
        _("marketing"),
        default=True,
        help_text=_("Marketing reaches only members who consented (PIPL article 24)."),
    )
    cap_count = models.PositiveIntegerField(
        _("at most (times)"), default=1, help_text=_("How many times one member may get this journey ...")
    )
    cap_days = models.PositiveIntegerField(_("within (days)"), default=365, help_text=_("... within this many days."))
    quiet_start = models.TimeField(_("quiet hours from"), null=True, blank=True)
    quiet_end = models.TimeField(_("quiet hours until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("journey")
        verbose_name_plural = _("journeys")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(cap_count__gte=1, cap_days__gte=1), name="journey_cap_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class JourneyRun(models.Model):
    """One trigger of one journey for one member, done or skipped, and why."""

    class Status(models.TextChoices):
        DONE = "done", _("done")
        SKIPPED = "skipped", _("skipped")

    journey = models.ForeignKey(Journey, verbose_name=_("journey"), on_delete=models.CASCADE, related_name="runs")
    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="journey_runs")
    event_key = models.CharField(
        _("event"), max_length=100, help_text=_("What fired it (order:123, 2026-11-30 ...): one run per event.")
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    reason = models.CharField(_("why"), max_length=300)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    created_at = models.DateTimeField(_("ran at"), default=timezone.now)

    class Meta:
        verbose_name = _("journey run")
        verbose_name_plural = _("journey runs")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["journey", "member", "event_key"], name="journey_run_once_per_event"),
        ]
        indexes = [
            models.Index(fields=["member", "journey", "-created_at"], name="journey_run_member"),
            models.Index(fields=["-created_at"], name="journey_run_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.journey_id}/{self.member_id}/{self.event_key}"

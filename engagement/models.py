"""Consumer operations: daily check-in, referral (member-get-member) and automated journeys.

docs/engagement.md describes the rules; the services that change these rows are in
engagement.checkin, engagement.referrals and operations.journeys.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

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
        BROADCAST = "broadcast", _("broadcast: the audience, once")

    class Action(models.TextChoices):
        AWARD_POINTS = "award_points", _("award points")
        ISSUE_COUPON = "issue_coupon", _("issue a coupon")
        NOTIFY = "notify", _("send a notification")
        ADD_TAG = "add_tag", _("add a tag")

    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)
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
    holdout_percent = models.PositiveSmallIntegerField(
        _("hold out (percent)"),
        default=0,
        help_text=_("This share of the entering members gets nothing: the control group the report compares with."),
    )
    send_at = models.DateTimeField(
        _("send at"), null=True, blank=True, help_text=_("Broadcast: when to send; empty: at the next hourly run.")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("journey")
        verbose_name_plural = _("journeys")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(cap_count__gte=1, cap_days__gte=1), name="journey_cap_positive"),
            models.CheckConstraint(condition=Q(holdout_percent__lte=90), name="journey_holdout_percent_valid"),
        ]

    def __str__(self) -> str:
        return self.name


class JourneyRun(models.Model):
    """One trigger of one journey for one member, done or skipped, and why."""

    class Status(models.TextChoices):
        DONE = "done", _("done")
        SKIPPED = "skipped", _("skipped")
        HELD_OUT = "held_out", _("held out")

    journey = models.ForeignKey(Journey, verbose_name=_("journey"), on_delete=models.CASCADE, related_name="runs")
    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="journey_runs")
    event_key = models.CharField(
        _("event"), max_length=100, help_text=_("What fired it (order:123, 2026-11-30 ...): one run per event.")
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    reason = models.CharField(_("why"), max_length=300)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    created_at = models.DateTimeField(_("ran at"), default=timezone.now)
    contacted_at = models.DateTimeField(
        _("marketing contact at"),
        null=True,
        blank=True,
        help_text=_("Set when this run was a marketing contact: what MARKETING_CONTACT_CAP counts."),
    )

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
            # The contact cap's count: a member's marketing contacts of the last days.
            models.Index(
                fields=["member", "contacted_at"],
                name="journey_run_contacted",
                condition=Q(contacted_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.journey_id}/{self.member_id}/{self.event_key}"


class Broadcast(Journey):
    """A journey with the broadcast trigger: a one-off send to a segment, on its own admin page."""

    class Meta:
        proxy = True
        verbose_name = _("broadcast")
        verbose_name_plural = _("broadcasts")


class JourneyStep(models.Model):
    """One step of a journey: do something, wait, or branch (docs/journeys.md, "Steps").

    Steps run in the order of ``position``. Two or more action steps with the same position
    and different ``variant`` letters are an A/B test: each member gets one of them, chosen
    by a hash of member, journey and position.
    """

    class Kind(models.TextChoices):
        ACTION = "action", _("do")
        WAIT = "wait", _("wait")
        BRANCH = "branch", _("branch")

    class Until(models.TextChoices):
        DAYS = "", _("the days have passed")
        ORDER = "order", _("an order, at most the days")

    class Condition(models.TextChoices):
        BOUGHT = "bought", _("ordered since entering the journey")
        IN_SEGMENT = "in_segment", _("is in the segment")
        CONSENT = "consent", _("has marketing consent")
        COUPON_USED = "coupon_used", _("used a coupon this journey gave")

    class Channel(models.TextChoices):
        ANY = "any", _("any channel")
        SMS = "sms", _("SMS")
        EMAIL = "email", _("email")
        WECHAT = "wechat", _("WeChat")

    journey = models.ForeignKey(Journey, verbose_name=_("journey"), on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(_("step"))
    variant = models.CharField(
        _("variant"),
        max_length=10,
        blank=True,
        help_text=_("A/B test: give two steps the same number and the letters A and B; members split between them."),
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.ACTION)
    action = models.CharField(_("action"), max_length=20, choices=Journey.Action.choices, blank=True)
    points = models.PositiveIntegerField(_("points"), null=True, blank=True)
    coupon_title = models.CharField(_("coupon title"), max_length=100, blank=True)
    coupon_kind = models.CharField(_("coupon kind"), max_length=20, choices=CouponKind.choices, blank=True)
    coupon_value = models.DecimalField(_("coupon value"), max_digits=10, decimal_places=2, null=True, blank=True)
    coupon_valid_days = models.PositiveIntegerField(_("coupon valid for (days)"), null=True, blank=True)
    tag = models.ForeignKey(
        Tag, verbose_name=_("tag"), null=True, blank=True, on_delete=models.PROTECT, related_name="journey_steps"
    )
    message_title = models.CharField(_("message title"), max_length=200, blank=True)
    message_body = models.TextField(_("message"), blank=True)
    wait_days = models.PositiveIntegerField(_("wait (days)"), null=True, blank=True)
    wait_until = models.CharField(_("wait until"), max_length=10, choices=Until.choices, blank=True)
    condition = models.CharField(_("condition"), max_length=20, choices=Condition.choices, blank=True)
    segment = models.ForeignKey(
        Segment, verbose_name=_("segment"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    channel = models.CharField(_("consent channel"), max_length=10, choices=Channel.choices, blank=True)
    else_step = models.PositiveSmallIntegerField(
        _("otherwise go to step"),
        null=True,
        blank=True,
        help_text=_("Branch: when the condition is false, go on at this step; empty: the journey ends there."),
    )

    class Meta:
        verbose_name = _("journey step")
        verbose_name_plural = _("journey steps")
        ordering = ["journey", "position", "variant"]
        constraints = [
            models.UniqueConstraint(fields=["journey", "position", "variant"], name="journey_step_unique"),
            models.CheckConstraint(condition=Q(position__gte=1), name="journey_step_position_positive"),
            models.CheckConstraint(condition=Q(kind__in=["action", "wait", "branch"]), name="journey_step_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.journey_id}#{self.position}{self.variant}"


class JourneyPosition(models.Model):
    """Where one entry (a run that was done) stands in its journey: the step and when it is due.

    The hourly run takes the due positions by ``journey_position_due`` and moves each on;
    a crash rolls the chunk back and the next run takes them again.
    """

    class State(models.TextChoices):
        ACTIVE = "active", _("in the journey")
        FINISHED = "finished", _("finished")

    run = models.OneToOneField(JourneyRun, verbose_name=_("entry"), on_delete=models.CASCADE, related_name="position")
    journey = models.ForeignKey(Journey, verbose_name=_("journey"), on_delete=models.CASCADE, related_name="positions")
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="journey_positions"
    )
    step = models.PositiveSmallIntegerField(_("at step"), default=1)
    waiting = models.BooleanField(_("waiting"), default=False)
    since = models.DateTimeField(_("at this step since"), default=timezone.now)
    due_at = models.DateTimeField(_("due at"), null=True, blank=True)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.ACTIVE)
    variants = models.JSONField(_("variants"), default=dict, blank=True)
    entered_at = models.DateTimeField(_("entered at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("journey position")
        verbose_name_plural = _("journey positions")
        ordering = ["journey", "id"]
        indexes = [
            models.Index(fields=["journey", "due_at"], name="journey_position_due", condition=Q(state="active")),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}@{self.step}"


class JourneyStepRun(models.Model):
    """One step done (or skipped) for one entry: the database allows one per entry and step."""

    class Status(models.TextChoices):
        DONE = "done", _("done")
        SKIPPED = "skipped", _("skipped")

    run = models.ForeignKey(JourneyRun, verbose_name=_("entry"), on_delete=models.CASCADE, related_name="step_runs")
    step = models.ForeignKey(JourneyStep, verbose_name=_("step"), on_delete=models.PROTECT, related_name="runs")
    journey = models.ForeignKey(Journey, verbose_name=_("journey"), on_delete=models.CASCADE, related_name="+")
    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(_("step"))
    variant = models.CharField(_("variant"), max_length=10, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    reason = models.CharField(_("what happened"), max_length=300)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    points = models.PositiveIntegerField(_("points given"), default=0)
    coupon_value = models.DecimalField(_("coupon value given"), max_digits=12, decimal_places=2, default=0)
    created_at = models.DateTimeField(_("ran at"), default=timezone.now)

    class Meta:
        verbose_name = _("journey step run")
        verbose_name_plural = _("journey step runs")
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="journey_step_run_once")]
        indexes = [models.Index(fields=["journey", "position", "variant"], name="journey_step_run_variant")]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.step_id}"


class AutoTag(models.Model):
    """A tag whose members are a segment's: refreshed nightly (operations.segments.auto_tags_refresh)."""

    tag = models.OneToOneField(Tag, verbose_name=_("tag"), on_delete=models.CASCADE, related_name="auto_rule")
    segment = models.ForeignKey(Segment, verbose_name=_("segment"), on_delete=models.PROTECT, related_name="+")
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)
    refreshed_at = models.DateTimeField(_("refreshed at"), null=True, blank=True)
    member_count = models.PositiveIntegerField(_("members"), null=True, blank=True)

    class Meta:
        verbose_name = _("rule-based tag")
        verbose_name_plural = _("rule-based tags")
        ordering = ["tag__name"]

    def __str__(self) -> str:
        return str(self.tag_id)

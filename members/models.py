from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Store(models.Model):
    code = models.SlugField(_("code"), max_length=32, unique=True, help_text=_("Short code used by tills and APIs."))
    name = models.CharField(_("name"), max_length=100)
    city = models.CharField(_("city"), max_length=50, blank=True)
    address = models.CharField(_("address"), max_length=200, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("store")
        verbose_name_plural = _("stores")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Member(models.Model):
    class Gender(models.TextChoices):
        UNKNOWN = "unknown", _("not given")
        FEMALE = "female", _("female")
        MALE = "male", _("male")

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        FROZEN = "frozen", _("frozen")
        CLOSED = "closed", _("closed")

    # Identity: the phone number in E.164 form (+8613800138000); see members.phone.
    phone = models.CharField(_("phone"), max_length=20, unique=True)
    member_number = models.CharField(
        _("member number"), max_length=12, unique=True, help_text=_("Printed on the member card.")
    )
    name = models.CharField(_("full name"), max_length=100, blank=True)
    gender = models.CharField(_("gender"), max_length=10, choices=Gender.choices, default=Gender.UNKNOWN)
    birthday = models.DateField(_("birthday"), null=True, blank=True)
    email = models.EmailField(_("email"), blank=True)
    home_store = models.ForeignKey(
        Store, verbose_name=_("home store"), null=True, blank=True, on_delete=models.PROTECT, related_name="members"
    )
    joined_at = models.DateTimeField(_("joined at"), default=timezone.now)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # Marketing consent per channel: when it was given, or empty when it was not
    # (or was withdrawn). ConsentRecord keeps the history.
    sms_consent_at = models.DateTimeField(_("SMS marketing consent"), null=True, blank=True)
    email_consent_at = models.DateTimeField(_("email marketing consent"), null=True, blank=True)
    wechat_consent_at = models.DateTimeField(_("WeChat marketing consent"), null=True, blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("sign-in user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="member",
    )
    # Mini-program identity (members.miniprogram). The platform's session key is never kept.
    wechat_openid = models.CharField(  # noqa: DJ001 - NULL, not "", so unbound members never collide
        _("mini-program openid"), max_length=64, null=True, blank=True, unique=True
    )
    wechat_unionid = models.CharField(  # noqa: DJ001
        _("WeChat unionid"), max_length=64, null=True, blank=True, unique=True
    )
    erased_at = models.DateTimeField(
        _("erased at"), null=True, blank=True, help_text=_("Personal data removed at the member's request.")
    )

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        ordering = ["-joined_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(phone__startswith="+"), name="member_phone_e164"),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.member_number} ({self.phone})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ConsentRecord(models.Model):
    """Append-only history of marketing consent, one row per change (PIPL art. 14, 24)."""

    class Channel(models.TextChoices):
        SMS = "sms", _("SMS")
        EMAIL = "email", _("email")
        WECHAT = "wechat", _("WeChat")

    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="consent_records"
    )
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    granted = models.BooleanField(_("granted"))
    source = models.CharField(_("source"), max_length=50, help_text=_("Where it was given: web, api, import, admin."))
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)

    class Meta:
        verbose_name = _("consent record")
        verbose_name_plural = _("consent records")
        ordering = ["-recorded_at", "-id"]

    def __str__(self) -> str:
        return f"{self.channel}: {'granted' if self.granted else 'withdrawn'}"


class Notification(models.Model):
    """The outbox: a notice to a member, written in the transaction that caused it.

    A sender (``members.notifications``) delivers unsent rows after commit; member pages
    and the API read them. ``dedupe_key`` makes "once per lot / per member per period"
    a database rule: a job that runs twice cannot notify twice.
    """

    class Kind(models.TextChoices):
        EXPIRY_WARNING = "expiry_warning", _("points expiring soon")
        TIER_UP = "tier_up", _("tier upgrade")
        TIER_DOWN = "tier_down", _("tier downgrade")
        BIRTHDAY_GIFT = "birthday_gift", _("birthday gift")
        MONTHLY_BENEFIT = "monthly_benefit", _("monthly benefit")
        ONE_TIME_CODE = "one_time_code", _("one-time code")
        OTHER = "other", _("other")

    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("message"), blank=True)
    data = models.JSONField(_("data"), default=dict, blank=True)
    dedupe_key = models.CharField(_("deduplication key"), max_length=200, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["member", "-created_at"], name="notification_member_recent"),
            models.Index(fields=["created_at"], name="notification_unsent", condition=Q(sent_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.title}"


class OneTimeCode(models.Model):
    """A sign-in code sent by SMS (members.otp). Only a keyed hash of the code is kept."""

    phone = models.CharField(_("phone"), max_length=20)
    purpose = models.CharField(_("purpose"), max_length=20, default="sign_in")
    code_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    attempts = models.PositiveSmallIntegerField(_("failed attempts"), default=0)
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("one-time code")
        verbose_name_plural = _("one-time codes")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["phone", "purpose", "-created_at"], name="otp_phone_recent")]

    def __str__(self) -> str:
        return f"{self.phone} {self.purpose} {self.created_at:%Y-%m-%d %H:%M}"


class StaffProfile(models.Model):
    """What a staff user may reach: their stores (admin scoping) and their adjustment limit.

    See members.scoping and docs/roles.md. Superusers and members of the "Brand admin"
    group are not scoped and have no limit, whatever their profile says.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="staff_profile"
    )
    stores = models.ManyToManyField(
        Store,
        verbose_name=_("stores"),
        blank=True,
        related_name="staff_profiles",
        help_text=_("The stores whose members, orders and coupons this person sees in the admin."),
    )
    adjust_limit = models.PositiveIntegerField(
        _("adjustment limit"),
        null=True,
        blank=True,
        help_text=_("The largest points adjustment (either way) this person may make at once. Empty: no limit."),
    )

    class Meta:
        verbose_name = _("staff profile")
        verbose_name_plural = _("staff profiles")

    def __str__(self) -> str:
        return str(self.user)

import os
import uuid
from pathlib import PurePath

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import models
from django.db.models import Q
from django.db.models.functions import ExtractDay, ExtractMonth
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class Store(models.Model):
    code = models.SlugField(_("code"), max_length=32, unique=True, help_text=_("Short code used by tills and APIs."))
    name = models.CharField(_("name"), max_length=100)
    city = models.CharField(_("city"), max_length=50, blank=True)
    address = models.CharField(_("address"), max_length=200, blank=True)
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("store")
        verbose_name_plural = _("stores")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Tag(models.Model):
    """A label staff or an import put on members ("VIP", "wholesale"); journeys add them too."""

    name = models.CharField(_("name"), max_length=50, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Stage(models.TextChoices):
    """Lifecycle stage, recomputed nightly from orders (docs/lifecycle.md)."""

    NEW = "new", _("new")
    GROWING = "growing", _("growing")
    MATURE = "mature", _("mature")
    DORMANT = "dormant", _("dormant")
    CHURNED = "churned", _("churned")


class RfmSegment(models.TextChoices):
    """The named segments the three RFM scores form (docs/lifecycle.md)."""

    CHAMPIONS = "champions", _("champions")
    LOYAL = "loyal", _("loyal")
    POTENTIAL = "potential", _("potential loyalists")
    NEW_CUSTOMERS = "new_customers", _("new customers")
    PROMISING = "promising", _("promising")
    NEED_ATTENTION = "need_attention", _("need attention")
    ABOUT_TO_SLEEP = "about_to_sleep", _("about to sleep")
    AT_RISK = "at_risk", _("at risk")
    CANT_LOSE = "cant_lose", _("can't lose them")
    HIBERNATING = "hibernating", _("hibernating")
    LOST = "lost", _("lost")


class Member(models.Model):
    Stage = Stage
    RfmSegment = RfmSegment

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
    # Set once, at joining (members.erasure.phones_erased_recently): the rules read it on
    # every earn without hashing the phone again, and a later first order is judged by
    # what the member was when they joined.
    rejoined_after_erasure = models.BooleanField(
        _("rejoined after erasure"),
        default=False,
        editable=False,
        help_text=_(
            "The phone number belonged to a member erased shortly before this one joined: "
            "no signup bonus, first-purchase bonus or referral."
        ),
    )
    # Set by the database, never by Python: a trigger (migration 0010) stamps it when a
    # profile column changes, on every path (services, admin, imports, bulk updates).
    # Webhooks read member.updated events from it.
    updated_at = models.DateTimeField(_("profile changed at"), null=True, blank=True, editable=False, db_index=True)
    tags = models.ManyToManyField(Tag, verbose_name=_("tags"), blank=True, related_name="members")
    # The language the member's notices are written in (members.notifications): the one
    # they last signed in with or switched to on the member pages (members.language).
    # Empty: the site's LANGUAGE_CODE.
    language = models.CharField(
        _("language"), max_length=10, blank=True, choices=settings.LANGUAGES, help_text=_("Empty: the site's language.")
    )
    referral_code = models.CharField(  # noqa: DJ001 - NULL until the member first shares it
        _("referral code"), max_length=12, null=True, blank=True, unique=True, editable=False
    )
    # Order figures, refreshed nightly with the lifecycle stage (operations.lifecycle): what
    # segments, RFM and the member list filter on without summing orders per row.
    order_count = models.PositiveIntegerField(_("orders"), default=0, editable=False)
    spend_total = models.DecimalField(
        _("spend"), max_digits=14, decimal_places=2, default=0, editable=False, help_text=_("Paid less refunded, yuan.")
    )
    first_order_at = models.DateTimeField(_("first order"), null=True, blank=True, editable=False)
    last_order_at = models.DateTimeField(_("last order"), null=True, blank=True, editable=False)
    stage = models.CharField(
        _("lifecycle stage"), max_length=10, choices=Stage.choices, blank=True, default="", editable=False
    )
    stage_since = models.DateTimeField(_("in this stage since"), null=True, blank=True, editable=False)
    rfm_recency = models.PositiveSmallIntegerField(_("R score"), null=True, blank=True, editable=False)
    rfm_frequency = models.PositiveSmallIntegerField(_("F score"), null=True, blank=True, editable=False)
    rfm_monetary = models.PositiveSmallIntegerField(_("M score"), null=True, blank=True, editable=False)
    rfm_segment = models.CharField(
        _("RFM segment"), max_length=20, choices=RfmSegment.choices, blank=True, default="", editable=False
    )
    profile_refreshed_at = models.DateTimeField(_("stage and RFM computed at"), null=True, blank=True, editable=False)
    # Set when staff merged this record into another one of the same person (docs/merge.md):
    # the record stays, closed, as a pointer that lookups by its number or phone follow.
    merged_into = models.ForeignKey(
        "self",
        verbose_name=_("merged into"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="merged_records",
        editable=False,
    )

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        ordering = ["-joined_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(phone__startswith="+"), name="member_phone_e164"),
            models.CheckConstraint(
                condition=Q(stage__in=["", "new", "growing", "mature", "dormant", "churned"]),
                name="member_stage_valid",
            ),
            models.CheckConstraint(
                condition=Q(rfm_recency__range=(1, 5), rfm_frequency__range=(1, 5), rfm_monetary__range=(1, 5))
                | Q(rfm_recency__isnull=True, rfm_frequency__isnull=True, rfm_monetary__isnull=True),
                name="member_rfm_scores_1_to_5",
            ),
        ]
        indexes = [
            models.Index(fields=["stage"], name="member_stage"),
            models.Index(fields=["rfm_segment"], name="member_rfm_segment"),
            models.Index(fields=["last_order_at"], name="member_last_order"),
            # The hourly journeys' "joined" trigger reads the last days of joins.
            models.Index(fields=["joined_at"], name="member_joined"),
            # ... and its "birthday" trigger, members born on a given day (loyalty.jobs.birthday_filter).
            models.Index(ExtractMonth("birthday"), ExtractDay("birthday"), name="member_birthday_day"),
        ]

    def __str__(self) -> str:
        # The card number, not the phone: this text lands in admin history, logs and
        # select boxes, where a phone number is personal data nobody needs.
        return f"{self.name} ({self.member_number})" if self.name else self.member_number

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ErasedPhone(models.Model):
    """A keyed hash of the phone number of an erased member, so that joining again with the
    same number within ``LOYALTY_REJOIN_BONUS_BLOCK_DAYS`` earns no joining bonus.

    Holds no phone number and no link to the member: only HMAC-SHA256 of the normalised
    number under ``LOYALTY_ERASED_PHONE_KEY`` (members.erasure.erased_phone_hash) and when
    it was last erased. docs/privacy.md.
    """

    phone_hash = models.CharField(_("phone hash"), max_length=64, unique=True)
    erased_at = models.DateTimeField(_("erased at"))

    class Meta:
        verbose_name = _("erased phone number")
        verbose_name_plural = _("erased phone numbers")
        indexes = [models.Index(fields=["erased_at"], name="erasedphone_erased_at")]

    def __str__(self) -> str:
        return self.phone_hash[:12]


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

    # notification_member_recent (member, created_at) serves every lookup by member.
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="notifications", db_index=False
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("message"), blank=True)
    data = models.JSONField(_("data"), default=dict, blank=True)
    dedupe_key = models.CharField(_("deduplication key"), max_length=200)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-created_at", "-id"]
        # A constraint, not unique=True on the field: the same unique index, without the
        # second (LIKE) index Django adds to a unique text column on PostgreSQL, which
        # nothing reads and every notice written paid for (the tier review writes 500 000).
        constraints = [models.UniqueConstraint(fields=["dedupe_key"], name="members_notification_dedupe_key_key")]
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


class StageChange(models.Model):
    """One member moving from one lifecycle stage to another, written by the nightly run."""

    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.CharField(_("from"), max_length=10, choices=Stage.choices, blank=True)
    to_stage = models.CharField(_("to"), max_length=10, choices=Stage.choices)
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)

    class Meta:
        verbose_name = _("stage change")
        verbose_name_plural = _("stage changes")
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["changed_at"], name="stage_change_at"),
            models.Index(fields=["member", "-changed_at"], name="stage_change_member"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.from_stage or '-'} -> {self.to_stage}"


class Segment(models.Model):
    """A saved filter over members (operations.segments): an audience for journeys and exports."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    rules = models.JSONField(_("rules"), default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class StaffAction(models.Model):
    """Who did what to which member, when and why: the audit of staff actions."""

    class Action(models.TextChoices):
        ADJUST_POINTS = "adjust_points", _("adjusted points")
        PIN_TIER = "pin_tier", _("pinned a tier")
        ADD_TAG = "add_tag", _("added a tag")
        REMOVE_TAG = "remove_tag", _("removed a tag")
        FREEZE = "freeze", _("froze")
        UNFREEZE = "unfreeze", _("unfroze")
        CLOSE = "close", _("closed")
        RECORD_ORDER = "record_order", _("recorded an order")
        VERIFY_COUPON = "verify_coupon", _("verified a coupon")
        IMPORT = "import", _("imported members")
        MERGE = "merge", _("merged two member records")
        MERGE_UNDO = "merge_undo", _("undid a member merge")

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("staff user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_name = models.CharField(_("staff name"), max_length=150, help_text=_("Kept if the user is deleted."))
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    member = models.ForeignKey(
        Member,
        verbose_name=_("member"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="staff_actions",
    )
    reason = models.TextField(_("reason"), blank=True)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now)

    class Meta:
        verbose_name = _("staff action")
        verbose_name_plural = _("staff actions")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at"], name="staff_action_recent"),
            models.Index(fields=["member", "-created_at"], name="staff_action_member"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name}: {self.get_action_display()}"


@deconstructible
class ImportFileStorage(FileSystemStorage):
    """Uploaded member files: under ``LOYALTY_IMPORT_ROOT`` (``var/imports``), outside
    MEDIA_ROOT, so no web server serves them, and without a URL."""

    @property
    def base_location(self):
        return settings.LOYALTY_IMPORT_ROOT

    @property
    def location(self):
        return os.path.abspath(self.base_location)

    @property
    def base_url(self):
        return None


def import_file_name(job: "ImportJob", filename: str) -> str:
    """A random name (the original one is on the job): nothing to guess, no clash."""
    return f"{timezone.now():%Y/%m}/{uuid.uuid4().hex}{PurePath(filename).suffix.lower()}"


class ImportJob(models.Model):
    """A member file imported in the background (operations.imports): check every row, then write in chunks."""

    class Status(models.TextChoices):
        CHECKING = "checking", _("checking")
        INVALID = "invalid", _("has errors")
        CHECKED = "checked", _("checked, waiting for confirmation")
        IMPORTING = "importing", _("importing")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    file = models.FileField(_("file"), upload_to=import_file_name, storage=ImportFileStorage())
    original_name = models.CharField(_("file name"), max_length=255)
    format = models.CharField(_("format"), max_length=10)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.CHECKING)
    total_rows = models.PositiveIntegerField(_("rows"), default=0)
    checked_rows = models.PositiveIntegerField(_("rows checked"), default=0)
    imported_rows = models.PositiveIntegerField(_("rows imported"), default=0)
    error_count = models.PositiveIntegerField(_("errors"), default=0)
    errors = models.JSONField(_("first errors"), default=list, blank=True)
    summary = models.JSONField(_("summary"), default=dict, blank=True)
    message = models.TextField(_("message"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("uploaded by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("uploaded at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # Advanced by every chunk checked or imported: a CHECKING or IMPORTING job whose
    # progress stopped for IMPORT_STUCK_MINUTES lost its task (operations.imports).
    progress_at = models.DateTimeField(_("last progress at"), null=True, blank=True)

    class Meta:
        verbose_name = _("import job")
        verbose_name_plural = _("import jobs")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.original_name


class JobRun(models.Model):
    """One row per scheduled job (``members.jobs``): what it last finished, and its current run.

    - Date-keyed jobs (birthdays, monthly coupons) keep the last period they finished in
      ``last_period``: a job that did not run on its day covers every period since on its
      next run (``job_periods``).
    - Chunked jobs (expiry, release, ...) keep their current run: a dispatcher numbers it
      (``run``), writes one :class:`JobChunk` per member-id range and queues a short task per
      chunk; the run is finished (``finished_at``, ``last_success_at``) when its last chunk is.
    - Every job task records when it started (``started_at``): the watchdog compares it
      with the time beat last sent the task to find a task that was lost.
    """

    name = models.CharField(_("job"), max_length=100, unique=True)
    last_period = models.DateField(_("last period done"), null=True, blank=True)
    last_success_at = models.DateTimeField(_("last finished at"), null=True, blank=True)
    started_at = models.DateTimeField(_("last started at"), null=True, blank=True)
    run = models.PositiveIntegerField(_("run"), default=0)
    run_started_at = models.DateTimeField(_("run started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("run finished at"), null=True, blank=True)
    progress_at = models.DateTimeField(_("last progress at"), null=True, blank=True)
    chunk_task = models.CharField(_("chunk task"), max_length=100, blank=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    chunks = models.PositiveIntegerField(_("chunks"), default=0)
    resent_at = models.DateTimeField(_("last re-sent by the watchdog"), null=True, blank=True)

    class Meta:
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")

    def __str__(self) -> str:
        return f"{self.name}: {self.last_period or self.last_success_at}"


class JobChunk(models.Model):
    """One member-id range ``[lo, hi)`` of a chunked job's run; ``done_at`` set in the chunk's own transaction."""

    job = models.ForeignKey(JobRun, on_delete=models.CASCADE, related_name="chunk_rows")
    run = models.PositiveIntegerField()
    lo = models.BigIntegerField()
    hi = models.BigIntegerField()
    done_at = models.DateTimeField(null=True, blank=True)
    count = models.IntegerField(default=0)
    seconds = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "run", "lo"], name="job_chunk_once")]
        indexes = [models.Index(fields=["job", "run", "done_at"], name="job_chunk_pending")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.run} [{self.lo}, {self.hi})"


class MemberMerge(models.Model):
    """Staff merged ``merged`` (a second record of the same person) into ``keep``.

    ``moved`` lists what moved (ledger entries, orders, coupons, ... by id, and the
    merged record's identity fields), so an undo inside ``LOYALTY_MERGE_UNDO_DAYS`` puts
    exactly those back (operations.merge, docs/merge.md). At most one live merge per
    merged record.
    """

    keep = models.ForeignKey(
        Member, verbose_name=_("kept member"), on_delete=models.PROTECT, related_name="merges_kept"
    )
    merged = models.ForeignKey(
        Member, verbose_name=_("merged member"), on_delete=models.PROTECT, related_name="merges_merged"
    )
    reason = models.CharField(_("reason"), max_length=200)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("staff user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("merged at"), default=timezone.now)
    moved = models.JSONField(_("what moved"), default=dict, blank=True)
    undone_at = models.DateTimeField(_("undone at"), null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("undone by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    undo_reason = models.CharField(_("undo reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("member merge")
        verbose_name_plural = _("member merges")
        ordering = ["-created_at", "-id"]
        permissions = [("merge_members", _("Can merge two member records and undo a merge"))]
        constraints = [
            models.CheckConstraint(condition=~Q(keep=models.F("merged")), name="member_merge_not_self"),
            models.UniqueConstraint(
                fields=["merged"], condition=Q(undone_at__isnull=True), name="member_merge_one_live_per_merged"
            ),
        ]
        indexes = [models.Index(fields=["keep", "-created_at"], name="member_merge_keep")]

    def __str__(self) -> str:
        return f"{self.merged_id} -> {self.keep_id}"

"""Background jobs over many members or orders (docs/bulk.md): a batch of orders from a
shop system, a bulk award from staff. One ``BulkLine`` per order or member, with its
result, so a job can stop anywhere and go on, and its result file is the lines."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.models import Member, Segment, Store


class BulkJob(models.Model):
    class Kind(models.TextChoices):
        ORDERS = "orders", _("order batch")
        AWARD = "award", _("bulk award")

    class Status(models.TextChoices):
        PREVIEW = "preview", _("waiting for confirmation")
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        CANCELLED = "cancelled", _("cancelled")

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PREVIEW)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # The API key that sent an order batch (api.StoreApiKey id; bulk sits below api).
    owner_key_id = models.BigIntegerField(_("store key"), null=True, blank=True, editable=False)
    store = models.ForeignKey(
        Store, verbose_name=_("store"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    segment = models.ForeignKey(
        Segment, verbose_name=_("segment"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(_("members from"), max_length=20, blank=True)
    currency = models.CharField(_("currency"), max_length=10, blank=True)
    amount = models.PositiveIntegerField(_("points per member"), default=0)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    # A coupon award instead of points: {"title", "kind", "value", "valid_days"}.
    coupon = models.JSONField(_("coupon"), default=dict, blank=True)
    total = models.PositiveIntegerField(_("lines"), default=0)
    done = models.PositiveIntegerField(_("lines done"), default=0)
    preview = models.JSONField(_("preview"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    confirmed_at = models.DateTimeField(_("confirmed at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # Stamped by every chunk as it works: a queued or running job without a stamp for a
    # while lost its chunk tasks (a broker restart, a failed enqueue) and is sent again.
    progress_at = models.DateTimeField(_("last progress at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("bulk job")
        verbose_name_plural = _("bulk jobs")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else 1.0


class BulkLine(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        DONE = "done", _("done")
        REPLAYED = "replayed", _("replayed")
        REFUSED = "refused", _("refused")
        SKIPPED = "skipped", _("skipped")

    job = models.ForeignKey(BulkJob, verbose_name=_("job"), on_delete=models.CASCADE, related_name="lines")
    n = models.PositiveIntegerField(_("line"))
    member = models.ForeignKey(
        Member, verbose_name=_("member"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    given = models.CharField(_("as given"), max_length=64, blank=True)
    input = models.JSONField(_("input"), default=dict, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    code = models.CharField(_("code"), max_length=50, blank=True)
    message = models.CharField(_("message"), max_length=300, blank=True)
    result = models.JSONField(_("result"), default=dict, blank=True)

    class Meta:
        verbose_name = _("bulk job line")
        verbose_name_plural = _("bulk job lines")
        ordering = ["job", "n"]
        constraints = [models.UniqueConstraint(fields=["job", "n"], name="bulk_line_once")]
        indexes = [models.Index(fields=["job", "status", "n"], name="bulk_line_status")]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.n} {self.status}"

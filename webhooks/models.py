"""Webhooks to shop systems: endpoints, events, deliveries (docs/webhooks.md)."""

import secrets
import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from members.models import Member, Store


class EventType(models.TextChoices):
    MEMBER_CREATED = "member.created", "member.created"
    MEMBER_UPDATED = "member.updated", "member.updated"
    MEMBER_ERASED = "member.erased", "member.erased"
    ORDER_EARNED = "order.earned", "order.earned"
    ORDER_REFUNDED = "order.refunded", "order.refunded"
    POINTS_CHANGED = "points.changed", "points.changed"
    TIER_CHANGED = "tier.changed", "tier.changed"
    COUPON_ISSUED = "coupon.issued", "coupon.issued"
    COUPON_USED = "coupon.used", "coupon.used"
    REDEMPTION_CREATED = "redemption.created", "redemption.created"
    REDEMPTION_CANCELLED = "redemption.cancelled", "redemption.cancelled"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class Endpoint(models.Model):
    """A shop system's URL that receives signed events. ``stores`` empty: every store."""

    name = models.CharField(_("name"), max_length=100)
    url = models.URLField(_("URL"), max_length=500)
    secret = models.CharField(
        _("signing secret"), max_length=100, default=new_secret, help_text=_("The receiver checks signatures with it.")
    )
    events = models.JSONField(_("events"), default=list, help_text=_("Event types it receives; empty: all."))
    stores = models.ManyToManyField(
        Store,
        verbose_name=_("stores"),
        blank=True,
        related_name="webhook_endpoints",
        help_text=_("Only events of members of these home stores (or at these stores); empty: the whole brand."),
    )
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True, editable=False)
    disabled_reason = models.CharField(_("disabled because"), max_length=200, blank=True, editable=False)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


class Event(models.Model):
    """One change a shop system may care about. ``source`` + ``source_id`` (+ ``source_at``
    for a versioned row) name the row it was collected from (unique: each change becomes
    one event, once)."""

    event_id = models.UUIDField(_("event id"), default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(_("type"), max_length=30, choices=EventType.choices)
    member = models.ForeignKey(
        Member, verbose_name=_("member"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    store_ids = models.JSONField(_("stores"), default=list, blank=True)
    payload = models.JSONField(_("payload"), default=dict)
    occurred_at = models.DateTimeField(_("occurred at"))
    source = models.CharField(_("source"), max_length=30)
    source_id = models.BigIntegerField(_("source row"))
    # For a row that changes again and again (a member's profile): which version of it,
    # its ``updated_at``. Empty for rows that become one event only.
    source_at = models.DateTimeField(_("source version"), null=True, blank=True)
    created_at = models.DateTimeField(_("collected at"), default=timezone.now)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "source_id"], condition=Q(source_at__isnull=True), name="webhook_event_once"
            ),
            models.UniqueConstraint(
                fields=["source", "source_id", "source_at"],
                condition=Q(source_at__isnull=False),
                name="webhook_event_version_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("failed")

    event = models.ForeignKey(Event, verbose_name=_("event"), on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        Endpoint, verbose_name=_("endpoint"), on_delete=models.CASCADE, related_name="deliveries"
    )
    member_id_copy = models.BigIntegerField(_("member"), null=True, blank=True, editable=False)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    request_headers = models.JSONField(_("request headers"), default=dict, blank=True)
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True, blank=True)
    response_body = models.TextField(_("response"), blank=True)
    error = models.CharField(_("error"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once")]
        indexes = [
            models.Index(
                fields=["endpoint", "next_attempt_at"], name="webhook_delivery_due", condition=Q(status="pending")
            ),
            models.Index(
                fields=["endpoint", "member_id_copy", "event"],
                name="webhook_delivery_member",
                condition=Q(status__in=["pending", "sending"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id}: {self.status}"

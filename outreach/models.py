"""Delivery records and WeChat subscription consent (docs/channels.md).

A ``Delivery`` is one attempt chain on one channel for one message: the outbox row
(``members.Notification``) it carries, or none for a message never stored (a one-time
code). Its status moves queued -> sending -> sent (-> delivered where the provider reports
it) or -> failed with a reason; a temporary error puts it back to queued with a later
``next_attempt_at``.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.models import Member, Notification


class Channel(models.TextChoices):
    SMS = "sms", _("SMS")
    WECHAT = "wechat", _("WeChat subscription message")
    EMAIL = "email", _("email")
    INAPP = "inapp", _("in-app")


class Delivery(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("failed")

    notification = models.ForeignKey(
        Notification,
        verbose_name=_("notification"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    member = models.ForeignKey(
        Member, verbose_name=_("member"), null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    kind = models.CharField(_("kind"), max_length=20)
    marketing = models.BooleanField(_("marketing"), default=False)
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    provider = models.CharField(_("provider"), max_length=20, blank=True)
    recipient = models.CharField(_("recipient"), max_length=254, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    provider_message_id = models.CharField(_("provider message id"), max_length=100, blank=True)
    error_code = models.CharField(_("error code"), max_length=100, blank=True)
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # The channels still to try, in order, when this one fails for good: [[channel, provider], ...]
    fallback = models.JSONField(_("fallback"), default=list, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("delivered or failed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="delivery_due", condition=Q(status="queued")),
            models.Index(fields=["member", "created_at"], name="delivery_member_day"),
            models.Index(fields=["provider", "provider_message_id"], name="delivery_provider_id"),
            models.Index(fields=["created_at"], name="delivery_created"),
        ]

    def __str__(self) -> str:
        return f"{self.channel}/{self.provider or '-'} {self.status}"


class WechatSubscription(models.Model):
    """A member's consent to one mini-program subscription-message template.

    WeChat's one-time subscription: each "accept" in ``wx.requestSubscribeMessage`` allows
    one message on that template, so ``remaining`` counts accepts not yet used; a reject
    sets it to 0. ``ConsentRecord``-style history is in ``granted_at``/``refused_at``.
    """

    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="wechat_subscriptions"
    )
    template_id = models.CharField(_("template id"), max_length=64)
    remaining = models.PositiveIntegerField(_("messages allowed"), default=0)
    granted_at = models.DateTimeField(_("last accepted at"), null=True, blank=True)
    refused_at = models.DateTimeField(_("last refused at"), null=True, blank=True)

    class Meta:
        verbose_name = _("WeChat subscription")
        verbose_name_plural = _("WeChat subscriptions")
        constraints = [models.UniqueConstraint(fields=["member", "template_id"], name="wechat_subscription_once")]

    def __str__(self) -> str:
        return f"{self.member_id} {self.template_id}: {self.remaining}"

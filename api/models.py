"""Credentials of the REST API and the replay store of idempotent requests.

Every secret is kept only as its SHA-256: store keys and tokens are long random strings
(no dictionary to guess from), so a fast hash is enough and a leaked table reveals none.
"""

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from members.models import Member, Store


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class StoreApiKey(models.Model):
    """A till's or shop system's key: acts for one store, for the actions it lists."""

    class Action(models.TextChoices):
        LOOKUP = "lookup", _("look members up")
        EARN = "earn", _("earn for orders")
        REFUND = "refund", _("refund orders")
        ADJUST = "adjust", _("adjust points")
        VERIFY_COUPON = "verify_coupon", _("verify coupons")
        CHECKOUT = "checkout", _("pay with points")

    store = models.ForeignKey(Store, verbose_name=_("store"), on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=100, help_text=_("Which till or system uses it."))
    prefix = models.CharField(_("key starts with"), max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    actions = models.JSONField(_("allowed actions"), default=list, blank=True)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("acts as staff user"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_(
            "Recorded as the operator of coupon verifications and adjustments made with this key; "
            "adjustments need this user to have the “adjust points” permission."
        ),
    )
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        verbose_name = _("store API key")
        verbose_name_plural = _("store API keys")
        ordering = ["store__code", "name"]
        permissions = [
            ("pos_lookup", _("Can look members up through the API")),
            ("pos_earn", _("Can record orders through the API")),
            ("pos_refund", _("Can refund orders through the API")),
            ("pos_verify_coupon", _("Can verify coupons through the API")),
            ("pos_checkout", _("Can take points as payment through the API")),
        ]

    def __str__(self) -> str:
        return f"{self.store.code}: {self.name} ({self.prefix}…)"

    def allows(self, action: str) -> bool:
        return self.is_active and action in (self.actions or [])


class ApiToken(models.Model):
    """A bearer token: a member's access or refresh token, or a staff user's token."""

    class Kind(models.TextChoices):
        ACCESS = "access", _("member access")
        REFRESH = "refresh", _("member refresh")
        STAFF = "staff", _("staff")

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    member = models.ForeignKey(
        Member, verbose_name=_("member"), null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("staff user"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_tokens",
    )
    # A sign-in's access and refresh tokens share a family; rotation keeps it, sign-out ends it.
    family = models.UUIDField(_("sign-in"), default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="staff", user__isnull=False, member__isnull=True))
                | (Q(kind__in=["access", "refresh"], member__isnull=False, user__isnull=True)),
                name="api_token_owner_matches_kind",
            ),
        ]
        indexes = [models.Index(fields=["family"], name="api_token_family")]

    def __str__(self) -> str:
        return f"{self.kind} token {self.pk}"


class IdempotencyRecord(models.Model):
    """The first answer to a request sent with an ``Idempotency-Key`` header, for replays.

    A key names one request of one client (``client``: a store key, a staff user or a
    member), whatever the endpoint; ``request_hash`` fingerprints that request (endpoint,
    path, body), so the same key with anything else is refused. A row is written only
    when its request has answered, in the request's own transaction: while the request
    runs, its claim is a transaction-scoped lock (``api.services.idempotency_claim``),
    which dies with the transaction, so a request whose connection died leaves nothing.
    """

    client = models.CharField(_("client"), max_length=40)
    key = models.CharField(_("idempotency key"), max_length=128)
    scope = models.CharField(_("endpoint"), max_length=50)
    # The member who sent it (member clients), so their rows go with them.
    member = models.ForeignKey(
        Member, verbose_name=_("member"), null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(_("response status"))
    # The JSON text exactly as a replay sends it (a JSON column would reorder the keys).
    response_body = models.TextField(_("response body"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("idempotent request")
        verbose_name_plural = _("idempotent requests")
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_per_client")]

    def __str__(self) -> str:
        return f"{self.client} {self.scope} {self.key}"

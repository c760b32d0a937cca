"""The points ledger: accounts, immutable entries, lots and allocations; orders and refunds.

Invariants (checked by ``manage.py audit_ledger`` and the tests after every step):

- ``account.balance == sum(entry.amount) == sum(lot.remaining)`` over released lots;
- ``account.pending == sum(entry.pending_amount) == sum(lot.remaining)`` over pending lots;
- ``lot.remaining == lot.amount - sum(allocation.amount)`` for every lot;
- the newest entry's ``balance_after``/``pending_after`` equal the account's figures;
- no balance, pending figure or lot remainder below zero (database checks).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.models import Member, Store


class Currency(models.TextChoices):
    POINTS = "points", _("points")
    GROWTH = "growth", _("growth")


class Account(models.Model):
    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="accounts")
    currency = models.CharField(_("currency"), max_length=10, choices=Currency.choices)
    balance = models.BigIntegerField(_("balance"), default=0)
    pending = models.BigIntegerField(_("pending"), default=0, help_text=_("Earned but not yet available."))
    lifetime_earned = models.BigIntegerField(_("lifetime earned"), default=0)
    lifetime_spent = models.BigIntegerField(_("lifetime spent"), default=0)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        ordering = ["member_id", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["member", "currency"], name="account_one_per_member_currency"),
            models.CheckConstraint(condition=Q(balance__gte=0), name="account_balance_not_negative"),
            models.CheckConstraint(condition=Q(pending__gte=0), name="account_pending_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}/{self.currency}: {self.balance}"


class Order(models.Model):
    """A purchase, the source of earning. ``number`` is unique per store."""

    class Status(models.TextChoices):
        COMPLETED = "completed", _("completed")
        PARTIALLY_REFUNDED = "partially_refunded", _("partially refunded")
        REFUNDED = "refunded", _("refunded")

    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="orders")
    store = models.ForeignKey(Store, verbose_name=_("store"), on_delete=models.PROTECT, related_name="orders")
    number = models.CharField(_("order number"), max_length=64)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2, help_text=_("Total of the order, yuan."))
    points_paid_amount = models.DecimalField(
        _("paid with points"),
        max_digits=12,
        decimal_places=2,
        default=0,
        help_text=_("The part of the amount paid with points; it earns nothing."),
    )
    refunded_amount = models.DecimalField(_("refunded"), max_digits=12, decimal_places=2, default=0)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.COMPLETED)
    occurred_at = models.DateTimeField(_("occurred at"))
    created_at = models.DateTimeField(_("recorded at"), default=timezone.now)
    # Fingerprint of the request that created the order, to tell a replay from a conflict.
    request_hash = models.CharField(max_length=64, editable=False)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["store", "number"], name="order_number_unique_per_store"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="order_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(points_paid_amount__gte=0, points_paid_amount__lte=models.F("amount")),
                name="order_points_paid_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0, refunded_amount__lte=models.F("amount")),
                name="order_refunded_within_amount",
            ),
        ]
        indexes = [models.Index(fields=["member", "-occurred_at"], name="order_member_recent")]

    def __str__(self) -> str:
        return f"{self.store_id}/{self.number}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, verbose_name=_("order"), on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(_("SKU"), max_length=64)
    name = models.CharField(_("name"), max_length=200, blank=True)
    category = models.CharField(_("category"), max_length=64, blank=True)
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)

    class Meta:
        verbose_name = _("order line")
        verbose_name_plural = _("order lines")
        constraints = [models.CheckConstraint(condition=Q(amount__gte=0), name="order_line_amount_not_negative")]

    def __str__(self) -> str:
        return f"{self.sku} x{self.quantity}"


class Refund(models.Model):
    """A full or partial refund of an order; ``number`` is the till's refund number."""

    order = models.ForeignKey(Order, verbose_name=_("order"), on_delete=models.PROTECT, related_name="refunds")
    number = models.CharField(_("refund number"), max_length=64)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    points_shortfall = models.BigIntegerField(
        _("points shortfall"),
        default=0,
        help_text=_("Points the refund should have taken back but the balance lacked."),
    )
    growth_shortfall = models.BigIntegerField(_("growth shortfall"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    request_hash = models.CharField(max_length=64, editable=False)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "number"], name="refund_number_unique_per_order"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.order} refund {self.number}"


class LedgerEntry(models.Model):
    """One immutable change to an account. Never updated, never deleted."""

    class Kind(models.TextChoices):
        EARN = "earn", _("earned")
        SPEND = "spend", _("spent")
        REFUND = "refund", _("taken back for a refund")
        CANCEL = "cancel", _("pending cancelled")
        RELEASE = "release", _("released from pending")
        EXPIRE = "expire", _("expired")
        ADJUST = "adjust", _("staff adjustment")

    account = models.ForeignKey(Account, verbose_name=_("account"), on_delete=models.PROTECT, related_name="entries")
    # Denormalised from the account so member pages and the admin read one table.
    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="entries")
    currency = models.CharField(_("currency"), max_length=10, choices=Currency.choices)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    amount = models.BigIntegerField(_("amount"), help_text=_("Change to the available balance."))
    pending_amount = models.BigIntegerField(_("pending change"), default=0)
    balance_after = models.BigIntegerField(_("balance after"))
    pending_after = models.BigIntegerField(_("pending after"), default=0)
    # NULL, not "", for system entries (release, expiry): NULLs never collide in the unique key.
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(max_length=64, blank=True, editable=False)
    order = models.ForeignKey(
        Order, verbose_name=_("order"), null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    refund = models.ForeignKey(
        Refund, verbose_name=_("refund"), null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    store = models.ForeignKey(
        Store, verbose_name=_("store"), null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("operator"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ledger_entries",
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    reverses = models.ForeignKey(
        "self", verbose_name=_("reverses"), null=True, blank=True, on_delete=models.PROTECT, related_name="reversals"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    detail = models.JSONField(_("detail"), default=dict, blank=True)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        permissions = [("adjust_points", _("Can adjust members' points and growth"))]
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "idempotency_key"], name="entry_idempotency_key_per_account"),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="entry_balance_after_not_negative"),
            models.CheckConstraint(condition=Q(pending_after__gte=0), name="entry_pending_after_not_negative"),
            models.CheckConstraint(condition=~Q(amount=0) | ~Q(pending_amount=0), name="entry_changes_something"),
        ]
        indexes = [
            models.Index(fields=["account", "-id"], name="entry_account_latest"),
            models.Index(fields=["member", "-created_at", "-id"], name="entry_member_history"),
        ]

    # Set to True on an entry a service returns for a replayed request (nothing written).
    replayed = False

    def __str__(self) -> str:
        if self.amount == 0:
            return f"{self.get_kind_display()} {self.pending_amount:+d} {self.get_currency_display()} ({_('pending')})"
        return f"{self.get_kind_display()} {self.amount:+d} {self.get_currency_display()}"


class Lot(models.Model):
    """What one earn or positive adjustment put into an account, and how much of it is left."""

    account = models.ForeignKey(Account, verbose_name=_("account"), on_delete=models.PROTECT, related_name="lots")
    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="lots")
    currency = models.CharField(_("currency"), max_length=10, choices=Currency.choices)
    entry = models.OneToOneField(
        LedgerEntry, verbose_name=_("created by"), on_delete=models.PROTECT, related_name="lot"
    )
    amount = models.BigIntegerField(_("amount"))
    remaining = models.BigIntegerField(_("remaining"))
    pending = models.BooleanField(_("pending"), default=False)
    available_at = models.DateTimeField(_("available from"))
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("lot")
        verbose_name_plural = _("lots")
        ordering = ["expires_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="lot_amount_positive"),
            models.CheckConstraint(condition=Q(remaining__gte=0), name="lot_remaining_not_negative"),
            models.CheckConstraint(condition=Q(remaining__lte=models.F("amount")), name="lot_remaining_within_amount"),
        ]
        indexes = [
            # Spending walks an account's open lots FIFO by expiry.
            models.Index(
                fields=["account", "expires_at", "id"],
                name="lot_open_fifo",
                condition=Q(remaining__gt=0, pending=False),
            ),
            # The expiry and release jobs find due lots across all accounts.
            models.Index(fields=["expires_at"], name="lot_open_expiry", condition=Q(remaining__gt=0, pending=False)),
            models.Index(fields=["available_at"], name="lot_pending_release", condition=Q(pending=True)),
        ]

    def __str__(self) -> str:
        return f"lot {self.pk}: {self.remaining}/{self.amount} {self.currency}"


class Allocation(models.Model):
    """How much of a lot an entry consumed (spend, expiry, refund, cancellation)."""

    entry = models.ForeignKey(
        LedgerEntry, verbose_name=_("entry"), on_delete=models.PROTECT, related_name="allocations"
    )
    lot = models.ForeignKey(Lot, verbose_name=_("lot"), on_delete=models.PROTECT, related_name="allocations")
    amount = models.BigIntegerField(_("amount"))

    class Meta:
        verbose_name = _("allocation")
        verbose_name_plural = _("allocations")
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="allocation_amount_positive")]

    def __str__(self) -> str:
        return f"{self.amount} of lot {self.lot_id}"

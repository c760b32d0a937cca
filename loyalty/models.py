"""The points ledger: accounts, immutable entries, lots and allocations; orders and refunds.

Invariants (checked by ``manage.py audit_ledger`` and the tests after every step):

- ``account.balance == sum(entry.amount) == sum(lot.remaining)`` over released lots;
- ``account.pending == sum(entry.pending_amount) == sum(lot.remaining)`` over pending lots;
- ``lot.remaining == lot.amount - consumed + given back`` for every lot, where the
  allocations of a REVERSE entry give back what its spend's allocations consumed and
  every other allocation consumes;
- the newest entry's ``balance_after``/``pending_after`` equal the account's figures;
- no balance, pending figure or lot remainder below zero (database checks);
- ``account.owed`` is the open debt of the member's refunds in that currency
  (``shortfall - settled`` summed), each settled amount the sum of its ``settle`` entries;
- value: ``balance + pending <= lots' amounts - expired - what refunds claimed`` (taken,
  cancelled or shortfall): see docs/ledger.md, "The value invariant".
"""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from modeltranslation.utils import build_localized_fieldname

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
    owed = models.BigIntegerField(
        _("owed"),
        default=0,
        help_text=_("Refund shortfalls not settled yet: points that come back to the member pay these first."),
    )
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        ordering = ["member_id", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["member", "currency"], name="account_one_per_member_currency"),
            models.CheckConstraint(condition=Q(balance__gte=0), name="account_balance_not_negative"),
            models.CheckConstraint(condition=Q(pending__gte=0), name="account_pending_not_negative"),
            models.CheckConstraint(condition=Q(owed__gte=0), name="account_owed_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}/{self.currency}: {self.balance}"


# The orders that count, for raw SQL over ``loyalty_order`` aliased ``o``: the same rule as
# :meth:`OrderQuerySet.counting` (a test runs both over the same orders).
ORDERS_COUNTING_SQL = "o.status <> 'refunded'"


class OrderQuerySet(models.QuerySet):
    def counting(self) -> "OrderQuerySet":
        """The orders that count for activity, lifecycle stage, RFM, journeys and metrics:
        completed and partly refunded ones. A full refund undoes the order, so it is as if
        it never happened ("first" and "last" order alike); a partial refund keeps the
        sale, its net spend being ``amount - refunded_amount``."""
        return self.exclude(status=Order.Status.REFUNDED)


class Order(models.Model):
    """A purchase, the source of earning. ``number`` is unique per store."""

    class Status(models.TextChoices):
        COMPLETED = "completed", _("completed")
        PARTIALLY_REFUNDED = "partially_refunded", _("partially refunded")
        REFUNDED = "refunded", _("refunded")

    class Channel(models.TextChoices):
        STORE = "store", _("store")
        MINI_PROGRAM = "mini_program", _("mini-program")
        ONLINE_MALL = "online_mall", _("online mall")
        MARKETPLACE = "marketplace", _("marketplace (Tmall, JD ...)")
        PARTNER = "partner", _("partner")

    # No index of their own: order_member_recent (member, occurred_at) and the unique store +
    # number begin with these columns, and every earn would write two more index entries.
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="orders", db_index=False
    )
    store = models.ForeignKey(
        Store, verbose_name=_("store"), on_delete=models.PROTECT, related_name="orders", db_index=False
    )
    number = models.CharField(_("order number"), max_length=64)
    channel = models.CharField(
        _("channel"),
        max_length=12,
        choices=Channel.choices,
        default=Channel.STORE,
        db_default=Channel.STORE,
        help_text=_("Where the order was placed (docs/foresight.md)."),
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2, help_text=_("Total of the order, yuan."))
    points_paid_amount = models.DecimalField(
        _("paid with points"),
        max_digits=12,
        decimal_places=2,
        default=0,
        help_text=_("The part of the amount paid with points; it earns nothing."),
    )
    refunded_amount = models.DecimalField(_("refunded"), max_digits=12, decimal_places=2, default=0)
    member_discount = models.DecimalField(
        _("member discount"),
        max_digits=12,
        decimal_places=2,
        default=0,
        help_text=_("Yuan the member price discount took off at checkout; the amount is after it."),
    )
    benefits = models.JSONField(
        _("benefits used"), default=dict, blank=True, help_text=_("The member benefits the checkout applied.")
    )
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.COMPLETED)
    occurred_at = models.DateTimeField(_("occurred at"))
    created_at = models.DateTimeField(_("recorded at"), default=timezone.now)
    # Fingerprint of the request that created the order, to tell a replay from a conflict.
    request_hash = models.CharField(max_length=64, editable=False)

    objects = OrderQuerySet.as_manager()

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
            models.CheckConstraint(condition=Q(member_discount__gte=0), name="order_member_discount_not_negative"),
        ]
        indexes = [
            models.Index(fields=["member", "-occurred_at"], name="order_member_recent"),
            # The hourly journeys' order triggers read a few days of orders (first order, no order for N days).
            models.Index(fields=["occurred_at"], name="order_occurred"),
        ]

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
    # How much of each shortfall later ``settle`` entries paid, updated under the account lock.
    points_settled = models.BigIntegerField(_("points shortfall settled"), default=0)
    growth_settled = models.BigIntegerField(_("growth shortfall settled"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    request_hash = models.CharField(max_length=64, editable=False)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "number"], name="refund_number_unique_per_order"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=Q(points_settled__gte=0, points_settled__lte=models.F("points_shortfall")),
                name="refund_points_settled_within_shortfall",
            ),
            models.CheckConstraint(
                condition=Q(growth_settled__gte=0, growth_settled__lte=models.F("growth_shortfall")),
                name="refund_growth_settled_within_shortfall",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order} refund {self.number}"

    def owed(self, currency: str) -> int:
        """What is still open of this refund's shortfall in ``currency``."""
        return getattr(self, f"{currency}_shortfall") - getattr(self, f"{currency}_settled")


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
        REVERSE = "reverse", _("spend reversed")
        SETTLE = "settle", _("refund shortfall settled")
        TRANSFER = "transfer", _("points transfer")
        MERGE = "merge", _("member records merged")

    # Indexes: the composite ones in Meta lead with account and member, and the optional
    # references are indexed only where set, so a system entry (expiry, release) writes
    # into five indexes instead of twelve.
    account = models.ForeignKey(
        Account, verbose_name=_("account"), on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    # Denormalised from the account so member pages and the admin read one table.
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="entries", db_index=False
    )
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
        Order,
        verbose_name=_("order"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="entries",
        db_index=False,
    )
    refund = models.ForeignKey(
        Refund,
        verbose_name=_("refund"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="entries",
        db_index=False,
    )
    store = models.ForeignKey(
        Store,
        verbose_name=_("store"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="entries",
        db_index=False,
    )
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("operator"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ledger_entries",
        db_index=False,
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    reverses = models.ForeignKey(
        "self",
        verbose_name=_("reverses"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversals",
        db_index=False,
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    detail = models.JSONField(_("detail"), default=dict, blank=True)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        permissions = [
            ("adjust_points", _("Can adjust members' points and growth")),
            ("view_dashboard", _("Can view the operations dashboard")),
            ("use_till", _("Can use the till screen")),
        ]
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
            *(
                models.Index(fields=[field], name=f"entry_{field}", condition=Q(**{f"{field}__isnull": False}))
                for field in ("order", "refund", "store", "operator", "reverses")
            ),
        ]

    # Set to True on an entry a service returns for a replayed request (nothing written).
    replayed = False

    def __str__(self) -> str:
        if self.amount == 0:
            return f"{self.get_kind_display()} {self.pending_amount:+d} {self.get_currency_display()} ({_('pending')})"
        return f"{self.get_kind_display()} {self.amount:+d} {self.get_currency_display()}"

    @property
    def breakdown(self) -> list[dict]:
        """The earning breakdown (``detail["lines"]``) with each line's name in the active
        language: the rule's name as it was when the entry was written (``names``), the
        settings rate's in words. Pages and the API print this, not the raw lines."""
        return [{**line, "name": line_name(line)} for line in (self.detail or {}).get("lines") or []]


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
            # The jobs find due lots by member-id range (the member index) and account.
            models.Index(fields=["available_at"], name="lot_pending_release", condition=Q(pending=True)),
            # The journeys' "points about to expire" trigger: open lots by expiry date.
            models.Index(fields=["expires_at"], name="lot_open_expiry", condition=Q(remaining__gt=0, pending=False)),
            # Whether one account has a lot due for release (the earn's and spend's lock, and
            # settling): without it that read walks every lot the account ever had.
            models.Index(fields=["account", "available_at"], name="lot_pending_account", condition=Q(pending=True)),
        ]

    def __str__(self) -> str:
        return f"lot {self.pk}: {self.remaining}/{self.amount} {self.currency}"


class Allocation(models.Model):
    """How much of a lot an entry consumed (spend, expiry, refund, cancellation), or, for
    a REVERSE entry, gave back to it."""

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


# --- content in both languages -------------------------------------------------------------


def texts_in_languages(instance, field: str) -> dict[str, str]:
    """``instance.<field>`` in every language (``settings.LANGUAGES``), each falling back
    as the pages do (``MODELTRANSLATION_FALLBACK_LANGUAGES``), for a field registered in a
    translation.py. Reads the columns, no language switching: cheap on the earn path."""
    codes = [code for code, _name in settings.LANGUAGES]
    own = {code: getattr(instance, build_localized_fieldname(field, code), None) or "" for code in codes}
    if not any(own.values()):
        plain = str(getattr(instance, field, "") or "")
        return dict.fromkeys(codes, plain)
    order = [*settings.MODELTRANSLATION_FALLBACK_LANGUAGES, *codes]
    fallback = next(own[code] for code in order if own.get(code))
    return {code: str(own[code] or fallback) for code in codes}


class InLanguages(str):
    """A text kept with its translations (``names``): the default language's text, for
    configuration cached once per process whatever the request's language."""

    names: dict[str, str]

    def __new__(cls, names: dict[str, str]):
        default = names.get(settings.MODELTRANSLATION_DEFAULT_LANGUAGE) or next(
            (text for text in names.values() if text), ""
        )
        text = super().__new__(cls, default)
        text.names = names
        return text


def line_name(line: dict, language: str | None = None) -> str:
    """An earning-breakdown line's name in ``language`` (default: the active one)."""
    language = language or translation.get_language() or settings.LANGUAGE_CODE
    names = line.get("names") or {}
    if names.get(language):
        return names[language]
    if line.get("rule") == "base" and not names:
        # The settings rate (loyalty.rules.SETTINGS_BASE) has no rule row to name it.
        with translation.override(language):
            return str(_("Base rate"))
    return str(line.get("name", ""))


# --- tiers and benefits -------------------------------------------------------------------


class Tier(models.Model):
    """A membership level over the growth balance. A higher ``rank`` is a better tier."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=50)
    rank = models.PositiveSmallIntegerField(
        _("rank"), unique=True, help_text=_("Higher is better; 0 is the entry tier.")
    )
    qualify_threshold = models.BigIntegerField(
        _("growth to qualify"), default=0, help_text=_("Growth balance at which a member moves up to this tier.")
    )
    retain_threshold = models.BigIntegerField(
        _("growth to keep"), default=0, help_text=_("Growth balance needed at the review date to stay in this tier.")
    )
    is_default = models.BooleanField(_("default tier"), default=False, help_text=_("New members start here."))
    description = models.TextField(_("description"), blank=True)

    class Meta:
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        ordering = ["rank"]
        constraints = [
            models.CheckConstraint(condition=Q(qualify_threshold__gte=0), name="tier_qualify_not_negative"),
            models.CheckConstraint(
                condition=Q(retain_threshold__gte=0, retain_threshold__lte=models.F("qualify_threshold")),
                name="tier_retain_within_qualify",
            ),
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="tier_one_default"),
        ]

    def __str__(self) -> str:
        return self.name


class MemberTier(models.Model):
    """A member's current tier, when it started, when it is reviewed, and any staff pin."""

    member = models.OneToOneField(Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="tier_state")
    tier = models.ForeignKey(Tier, verbose_name=_("tier"), on_delete=models.PROTECT, related_name="members")
    started_at = models.DateTimeField(_("tier since"))
    review_at = models.DateTimeField(_("review date"), help_text=_("The tier can only go down on or after this date."))
    pinned_until = models.DateTimeField(
        _("pinned until"), null=True, blank=True, help_text=_("Staff pinned this tier; no change before this date.")
    )

    class Meta:
        verbose_name = _("member tier")
        verbose_name_plural = _("member tiers")
        indexes = [models.Index(fields=["review_at"], name="member_tier_review")]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.tier_id}"


class TierChange(models.Model):
    """Append-only history of tier changes, each with its reason."""

    class Reason(models.TextChoices):
        JOINED = "joined", _("joined")
        UPGRADE = "upgrade", _("qualified for a higher tier")
        DOWNGRADE = "downgrade", _("did not keep the tier at review")
        RETAINED = "retained", _("kept the tier at review")
        PINNED = "pinned", _("pinned by staff")
        REFUND = "refund", _("growth taken back by a refund")

    # tier_change_member_recent (member, created_at) serves every lookup by member.
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="tier_changes", db_index=False
    )
    from_tier = models.ForeignKey(
        Tier, verbose_name=_("from tier"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_tier = models.ForeignKey(Tier, verbose_name=_("to tier"), on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    growth = models.BigIntegerField(_("growth at the time"), default=0)
    note = models.CharField(_("note"), max_length=200, blank=True)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("operator"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("tier change")
        verbose_name_plural = _("tier changes")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["member", "-created_at"], name="tier_change_member_recent"),
            models.Index(fields=["created_at"], name="tier_change_recent"),  # the journeys' trigger
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.from_tier_id} -> {self.to_tier_id} ({self.reason})"


class CouponKind(models.TextChoices):
    """What a coupon gives; ``rewards.Coupon`` uses the same choices."""

    DISCOUNT_PERCENT = "discount_percent", _("discount percent")
    AMOUNT_OFF = "amount_off", _("amount off")
    GIFT = "gift", _("gift")
    FREE_SHIPPING = "free_shipping", _("free shipping")


class Benefit(models.Model):
    """Something a tier gives its members. Those that issue something are issued by jobs."""

    class Kind(models.TextChoices):
        EARN_MULTIPLIER = "earn_multiplier", _("earn multiplier")
        BIRTHDAY_POINTS = "birthday_points", _("birthday gift: points")
        BIRTHDAY_COUPON = "birthday_coupon", _("birthday gift: coupon")
        MONTHLY_COUPON = "monthly_coupon", _("monthly coupon")
        DISCOUNT_PERCENT = "discount_percent", _("discount percent")
        FREE_SHIPPING = "free_shipping", _("free shipping")
        CUSTOM_TEXT = "custom_text", _("custom text")

    tier = models.ForeignKey(Tier, verbose_name=_("tier"), on_delete=models.CASCADE, related_name="benefits")
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    value = models.DecimalField(
        _("value"),
        max_digits=10,
        decimal_places=2,
        default=0,
        help_text=_("Multiplier (1.5), points for a birthday, or discount in percent (10 = 10 percent off)."),
    )
    title = models.CharField(_("title"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    coupon_kind = models.CharField(
        _("coupon kind"),
        max_length=20,
        choices=CouponKind.choices,
        default=CouponKind.AMOUNT_OFF,
        help_text=_("For birthday and monthly coupons: what the coupon gives. Its value is the benefit's value."),
    )
    coupon_valid_days = models.PositiveSmallIntegerField(
        _("coupon valid for (days)"),
        default=30,
        validators=[MinValueValidator(1)],
        help_text=_(
            "For birthday coupons: days from the birthday until the coupon expires. "
            "Monthly coupons last to the end of their month."
        ),
    )
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)

    class Meta:
        verbose_name = _("benefit")
        verbose_name_plural = _("benefits")
        ordering = ["tier__rank", "kind"]
        constraints = [
            models.CheckConstraint(condition=Q(value__gte=0), name="benefit_value_not_negative"),
            models.CheckConstraint(
                condition=~Q(kind__in=["birthday_coupon", "monthly_coupon"], coupon_kind="discount_percent")
                | Q(value__lte=100),
                name="benefit_coupon_percent_at_most_100",
                violation_error_message=_("A percent-off coupon cannot take more than 100 percent off."),
            ),
            models.CheckConstraint(condition=Q(coupon_valid_days__gte=1), name="benefit_coupon_valid_days_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.tier}: {self.title}"


class BenefitGrant(models.Model):
    """One issue of a benefit to a member for a period ("2026" or "2026-11"): at most once."""

    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="benefit_grants"
    )
    benefit = models.ForeignKey(Benefit, verbose_name=_("benefit"), on_delete=models.PROTECT, related_name="grants")
    period = models.CharField(_("period"), max_length=10)
    entry = models.ForeignKey(
        LedgerEntry, verbose_name=_("ledger entry"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("benefit grant")
        verbose_name_plural = _("benefit grants")
        constraints = [
            models.UniqueConstraint(fields=["member", "benefit", "period"], name="benefit_grant_once_per_period")
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.benefit_id} {self.period}"


# --- earning rules and campaigns ------------------------------------------------------------


class EarnRule(models.Model):
    """A base rate or a campaign, valid for orders that happened inside its window.

    Rules are never edited in place once they have been used: a change closes the old
    rule (``valid_until``) and opens a new one, so an order always earns by the rules in
    force when it happened.
    """

    class Kind(models.TextChoices):
        BASE = "base", _("base rate per yuan")
        MULTIPLIER = "multiplier", _("campaign: multiplier")
        BONUS = "bonus", _("campaign: fixed bonus")
        SIGNUP = "signup", _("signup bonus")

    class Applies(models.TextChoices):
        POINTS = "points", _("points")
        GROWTH = "growth", _("growth")
        BOTH = "both", _("points and growth")

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    applies_to = models.CharField(_("applies to"), max_length=8, choices=Applies.choices, default=Applies.POINTS)
    value = models.DecimalField(
        _("value"),
        max_digits=10,
        decimal_places=2,
        help_text=_("Points per yuan (base), a multiplier such as 2 (campaign), or a number of points (bonus)."),
    )
    priority = models.PositiveSmallIntegerField(_("priority"), default=100, help_text=_("Lower runs first."))
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    stores = models.ManyToManyField(
        Store, verbose_name=_("stores"), blank=True, related_name="+", help_text=_("Empty: every store.")
    )
    weekdays = models.CharField(
        _("weekdays"),
        max_length=7,
        blank=True,
        help_text=_("ISO weekdays it runs on, e.g. 67 for weekends; empty: every day."),
    )
    include_categories = models.JSONField(_("only these categories"), default=list, blank=True)
    exclude_categories = models.JSONField(_("not these categories"), default=list, blank=True)
    include_skus = models.JSONField(_("only these SKUs"), default=list, blank=True)
    exclude_skus = models.JSONField(_("not these SKUs"), default=list, blank=True)
    birthday_month_only = models.BooleanField(_("member's birthday month only"), default=False)
    first_purchase_only = models.BooleanField(_("first purchase only"), default=False)
    cap_per_order = models.PositiveIntegerField(_("cap per order"), null=True, blank=True)
    cap_per_day = models.PositiveIntegerField(_("cap per member per day"), null=True, blank=True)
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("earning rule")
        verbose_name_plural = _("earning rules")
        ordering = ["priority", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(value__gte=0), name="earn_rule_value_not_negative"),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gt=models.F("valid_from")),
                name="earn_rule_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ProgrammeVersion(models.Model):
    """One row: a number that changes whenever the programme's configuration does.

    On PostgreSQL a statement trigger on earning rules (and their stores), tiers and
    benefits sets it from a sequence (migration 0008), so an edit by any path (admin,
    service, ``QuerySet.update``, raw SQL) is seen, and a rolled-back edit never leaves a
    number that meant other rows. ``loyalty.configuration`` caches the configuration per
    process under this number.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("programme version")
        verbose_name_plural = _("programme versions")

    def __str__(self) -> str:
        return str(self.version)

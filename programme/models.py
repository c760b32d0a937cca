"""Paid membership (付费会员): plans, a member's membership, the orders that pay for it, and
what each paid period gave (so a refund can take it back).

The paid ladder (plans, by ``rank``) is separate from the free tiers of ``loyalty``: a
member can be Gold and PLUS at once. A membership is active while ``status`` is active
and ``ends_at`` is in the future; the housekeeping job ends the ones whose time ran out.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from loyalty.models import CouponKind, LedgerEntry
from members.models import Member
from rewards.models import Coupon


class Plan(models.Model):
    """What a member can buy: a price for a period and the benefits that come with it."""

    class Period(models.TextChoices):
        MONTH = "month", _("monthly")
        QUARTER = "quarter", _("quarterly")
        YEAR = "year", _("yearly")

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=50)
    description = models.TextField(_("description"), blank=True)
    rank = models.PositiveSmallIntegerField(
        _("rank"), unique=True, help_text=_("The paid ladder: a higher rank is a better plan.")
    )
    price = models.DecimalField(_("price"), max_digits=10, decimal_places=2, help_text=_("Yuan per period."))
    period = models.CharField(_("period"), max_length=10, choices=Period.choices, default=Period.YEAR)
    trial_days = models.PositiveSmallIntegerField(
        _("trial days"),
        default=0,
        help_text=_("Free days before the first charge, for a member who never had a paid membership; 0: no trial."),
    )
    auto_renew = models.BooleanField(
        _("can auto-renew"), default=True, help_text=_("Members may agree to be charged again before the period ends.")
    )
    earn_multiplier = models.DecimalField(
        _("earn multiplier"),
        max_digits=4,
        decimal_places=2,
        default=1,
        help_text=_(
            "Points per order multiplied by this (1: none). Combined with the tier's by PROGRAMME_MULTIPLIERS."
        ),
    )
    monthly_coupon_count = models.PositiveSmallIntegerField(
        _("coupons per month"), default=0, help_text=_("The monthly coupon pack: how many coupons each month.")
    )
    monthly_coupon_kind = models.CharField(
        _("monthly coupon kind"), max_length=20, choices=CouponKind.choices, default=CouponKind.AMOUNT_OFF
    )
    monthly_coupon_value = models.DecimalField(
        _("monthly coupon value"), max_digits=10, decimal_places=2, default=0, help_text=_("Yuan or percent off.")
    )
    free_shipping = models.BooleanField(_("free shipping"), default=False)
    discount_percent = models.DecimalField(
        _("member price discount (percent)"), max_digits=5, decimal_places=2, default=0
    )
    welcome_points = models.PositiveIntegerField(
        _("welcome gift (points)"), default=0, help_text=_("Given once when a member buys the plan (not on renewal).")
    )
    is_active = models.BooleanField(_("on sale"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("paid plan")
        verbose_name_plural = _("paid plans")
        ordering = ["rank"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="plan_price_positive"),
            models.CheckConstraint(condition=Q(earn_multiplier__gte=1), name="plan_multiplier_at_least_one"),
            models.CheckConstraint(
                condition=Q(discount_percent__gte=0, discount_percent__lte=100), name="plan_discount_percent_range"
            ),
            models.CheckConstraint(condition=Q(monthly_coupon_value__gte=0), name="plan_coupon_value_not_negative"),
            models.CheckConstraint(
                condition=~Q(monthly_coupon_kind="discount_percent") | Q(monthly_coupon_value__lte=100),
                name="plan_coupon_percent_at_most_100",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A member's paid membership: one row per member, extended by each paid period."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        ENDED = "ended", _("ended")
        REFUNDED = "refunded", _("refunded")

    member = models.OneToOneField(
        Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="paid_membership"
    )
    plan = models.ForeignKey(Plan, verbose_name=_("plan"), on_delete=models.PROTECT, related_name="memberships")
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField(_("member since"))
    ends_at = models.DateTimeField(_("paid until"))
    on_trial = models.BooleanField(_("on trial"), default=False)
    auto_renew = models.BooleanField(_("auto-renew"), default=False)
    auto_renew_consent_at = models.DateTimeField(
        _("auto-renew consent given at"), null=True, blank=True, help_text=_("When the member agreed to be charged.")
    )
    cancelled_at = models.DateTimeField(_("auto-renew cancelled at"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    payment_contract = models.CharField(
        _("auto-debit contract"), max_length=64, blank=True, help_text=_("The payment platform's auto-debit contract.")
    )

    class Meta:
        verbose_name = _("paid membership")
        verbose_name_plural = _("paid memberships")
        ordering = ["ends_at", "id"]
        constraints = [
            # Charging needs the member's recorded consent (the database says so too).
            models.CheckConstraint(
                condition=Q(auto_renew=False) | Q(auto_renew_consent_at__isnull=False),
                name="membership_auto_renew_needs_consent",
            ),
        ]
        indexes = [models.Index(fields=["status", "ends_at"], name="membership_due")]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.plan_id} until {self.ends_at:%Y-%m-%d}"

    def is_active_at(self, moment) -> bool:
        return self.status == self.Status.ACTIVE and self.ends_at > moment


class PlanOrder(models.Model):
    """One purchase or renewal of a plan: its own record, paid through a payment adapter.

    Becomes paid only on a verified payment notification, once: ``payment_id`` (the
    platform's transaction id) is unique, so a repeated notification changes nothing.
    """

    class Kind(models.TextChoices):
        PURCHASE = "purchase", _("purchase")
        RENEWAL = "renewal", _("renewal")

    class Status(models.TextChoices):
        PENDING = "pending", _("waiting for payment")
        PAID = "paid", _("paid")
        FAILED = "failed", _("payment failed")
        CANCELLED = "cancelled", _("cancelled")
        REFUNDED = "refunded", _("refunded")

    number = models.CharField(_("order number"), max_length=32, unique=True)
    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="plan_orders")
    plan = models.ForeignKey(Plan, verbose_name=_("plan"), on_delete=models.PROTECT, related_name="orders")
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    amount = models.DecimalField(_("amount"), max_digits=10, decimal_places=2)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    adapter = models.CharField(_("payment adapter"), max_length=20)
    auto_renew = models.BooleanField(_("auto-renew asked"), default=False)
    auto_renew_consent_at = models.DateTimeField(_("auto-renew consent given at"), null=True, blank=True)
    # For an automatic renewal: the end of the period it renews (one renewal per period).
    renews_from = models.DateTimeField(_("renews the period ending"), null=True, blank=True)
    payment_id = models.CharField(  # noqa: DJ001 - NULL until paid, so unpaid orders never collide
        _("payment id"), max_length=64, null=True, blank=True, unique=True
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    period_start = models.DateTimeField(_("period from"), null=True, blank=True)
    period_end = models.DateTimeField(_("period until"), null=True, blank=True)
    failure = models.CharField(_("why the payment failed"), max_length=200, blank=True)
    refunded_at = models.DateTimeField(_("refunded at"), null=True, blank=True)
    refund_id = models.CharField(_("refund id"), max_length=64, blank=True)
    refund_reason = models.CharField(_("refund reason"), max_length=200, blank=True)
    refunded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("refunded by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    points_taken_back = models.BigIntegerField(_("points taken back"), default=0)
    points_not_recovered = models.BigIntegerField(
        _("points not recovered"), default=0, help_text=_("Welcome points already spent when the order was refunded.")
    )
    coupons_voided = models.PositiveIntegerField(_("coupons voided"), default=0)

    class Meta:
        verbose_name = _("plan order")
        verbose_name_plural = _("plan orders")
        ordering = ["-created_at", "-id"]
        permissions = [("refund_planorder", _("Can refund paid membership orders"))]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="plan_order_amount_not_negative"),
            models.CheckConstraint(
                condition=~Q(status__in=["paid", "refunded"]) | Q(payment_id__isnull=False, paid_at__isnull=False),
                name="plan_order_paid_has_payment",
            ),
            models.UniqueConstraint(
                fields=["member", "renews_from"],
                condition=Q(kind="renewal", status__in=["pending", "paid"], renews_from__isnull=False),
                name="plan_order_one_renewal_per_period",
            ),
        ]
        indexes = [models.Index(fields=["member", "-created_at"], name="plan_order_member_recent")]

    def __str__(self) -> str:
        return self.number


class PlanGrant(models.Model):
    """Something a paid period gave: the welcome points, a coupon of the monthly pack.

    A refund of the order takes back what is left of them. A coupon of the pack is given
    once per member, month and place in the pack.
    """

    class Kind(models.TextChoices):
        WELCOME_POINTS = "welcome_points", _("welcome gift: points")
        MONTHLY_COUPON = "monthly_coupon", _("monthly coupon")

    order = models.ForeignKey(PlanOrder, verbose_name=_("plan order"), on_delete=models.PROTECT, related_name="grants")
    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="plan_grants")
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    period = models.CharField(_("period"), max_length=10, help_text=_("2026-11 for a monthly coupon."))
    seq = models.PositiveSmallIntegerField(_("place in the pack"), default=0)
    entry = models.ForeignKey(
        LedgerEntry, verbose_name=_("ledger entry"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    coupon = models.ForeignKey(
        Coupon, verbose_name=_("coupon"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    points = models.BigIntegerField(_("points"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("paid membership grant")
        verbose_name_plural = _("paid membership grants")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["member", "kind", "period", "seq"], name="plan_grant_once_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.kind} {self.period}"


class Transfer(models.Model):
    """Points one member gave another (赠送积分): both sides' ledger entries, linked here."""

    class Status(models.TextChoices):
        PENDING = "pending", _("waiting for the receiver")
        COMPLETED = "completed", _("received")
        DECLINED = "declined", _("declined")
        CANCELLED = "cancelled", _("cancelled by the giver")
        REVERSED = "reversed", _("reversed by staff")

    giver = models.ForeignKey(Member, verbose_name=_("giver"), on_delete=models.PROTECT, related_name="transfers_given")
    receiver = models.ForeignKey(
        Member, verbose_name=_("receiver"), on_delete=models.PROTECT, related_name="transfers_received"
    )
    points = models.PositiveIntegerField(_("points"))
    message = models.CharField(_("message"), max_length=100, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    out_entry = models.OneToOneField(
        LedgerEntry, verbose_name=_("giver's entry"), on_delete=models.PROTECT, related_name="transfer_out"
    )
    in_entry = models.ForeignKey(
        LedgerEntry,
        verbose_name=_("receiver's entry"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("The first of the receiver's entries (one per expiry date of the points given)."),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    decided_at = models.DateTimeField(_("received or declined at"), null=True, blank=True)
    reversed_at = models.DateTimeField(_("reversed at"), null=True, blank=True)
    reversed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reversed by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reverse_reason = models.CharField(_("reason for reversing"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("points transfer")
        verbose_name_plural = _("points transfers")
        ordering = ["-created_at", "-id"]
        permissions = [("reverse_transfer", _("Can reverse points transfers"))]
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="transfer_points_positive"),
            models.CheckConstraint(condition=~Q(giver=models.F("receiver")), name="transfer_not_to_self"),
        ]
        indexes = [
            models.Index(fields=["giver", "-created_at"], name="transfer_giver_recent"),
            models.Index(fields=["receiver", "-created_at"], name="transfer_receiver_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.giver_id} -> {self.receiver_id}: {self.points}"


class Badge(models.Model):
    """An achievement with a condition over what the system records, maybe with a gift."""

    class Condition(models.TextChoices):
        ORDERS = "orders", _("number of orders")
        SPEND = "spend", _("spend (yuan), within the window")
        CHECKIN_STREAK = "checkin_streak", _("check-in streak (days)")
        REFERRALS = "referrals", _("referrals rewarded")
        TIER = "tier", _("tier reached")
        FIRST_STORE = "first_store", _("first purchase in a store")

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=50)
    description = models.CharField(_("description"), max_length=200, blank=True)
    condition = models.CharField(_("condition"), max_length=20, choices=Condition.choices)
    threshold = models.DecimalField(
        _("threshold"), max_digits=12, decimal_places=2, default=1, help_text=_("Orders, yuan, days or referrals.")
    )
    window_days = models.PositiveIntegerField(
        _("window (days)"), null=True, blank=True, help_text=_("Count only the last this many days; empty: all time.")
    )
    tier = models.ForeignKey(
        "loyalty.Tier", verbose_name=_("tier"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    store = models.ForeignKey(
        "members.Store", verbose_name=_("store"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    points = models.PositiveIntegerField(_("points on award"), default=0)
    coupon_kind = models.CharField(_("coupon on award"), max_length=20, choices=CouponKind.choices, blank=True)
    coupon_value = models.DecimalField(_("coupon value"), max_digits=10, decimal_places=2, default=0)
    coupon_valid_days = models.PositiveSmallIntegerField(_("coupon valid for (days)"), default=30)
    rank = models.PositiveSmallIntegerField(_("display order"), default=0)
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)

    class Meta:
        verbose_name = _("badge")
        verbose_name_plural = _("badges")
        ordering = ["rank", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(threshold__gte=0), name="badge_threshold_not_negative"),
            models.CheckConstraint(condition=~Q(condition="tier") | Q(tier__isnull=False), name="badge_tier_named"),
            models.CheckConstraint(
                condition=~Q(condition="first_store") | Q(store__isnull=False), name="badge_store_named"
            ),
            models.CheckConstraint(condition=Q(coupon_valid_days__gte=1), name="badge_coupon_days_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class MemberBadge(models.Model):
    """A badge a member holds: awarded once (unique), revoked by staff with a reason."""

    class Source(models.TextChoices):
        EVENT = "event", _("an event")
        SWEEP = "sweep", _("the nightly sweep")
        STAFF = "staff", _("staff")

    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="badges")
    badge = models.ForeignKey(Badge, verbose_name=_("badge"), on_delete=models.PROTECT, related_name="holders")
    source = models.CharField(_("awarded by"), max_length=10, choices=Source.choices)
    awarded_at = models.DateTimeField(_("awarded at"), default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("staff"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    entry = models.ForeignKey(
        LedgerEntry, verbose_name=_("points entry"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    coupon = models.ForeignKey(
        Coupon, verbose_name=_("coupon"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("revoked by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    revoke_reason = models.CharField(_("reason for revoking"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("member badge")
        verbose_name_plural = _("member badges")
        ordering = ["-awarded_at", "-id"]
        permissions = [("award_badge", _("Can award and revoke badges"))]
        constraints = [models.UniqueConstraint(fields=["member", "badge"], name="member_badge_once")]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.badge_id}"


class FanLevel(models.Model):
    """A level of the contribution track (贡献值): for fans, and owners alike."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=50)
    threshold = models.PositiveIntegerField(_("contribution to reach"), unique=True)
    benefits = models.TextField(_("benefits"), blank=True)

    class Meta:
        verbose_name = _("contribution level")
        verbose_name_plural = _("contribution levels")
        ordering = ["threshold"]

    def __str__(self) -> str:
        return self.name


class Contribution(models.Model):
    """One change of a member's contribution value, earned by actions that are not purchases.
    Append-only; ``key`` makes each action count once per member."""

    class Kind(models.TextChoices):
        CHECK_IN = "check_in", _("check-in")
        REFERRAL = "referral", _("referral")
        PROFILE = "profile", _("profile completed")
        EVENT = "event", _("event attended")
        COMMUNITY = "community", _("community action")

    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="contributions")
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    amount = models.PositiveIntegerField(_("contribution"))
    key = models.CharField(_("key"), max_length=100)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("staff"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("contribution")
        verbose_name_plural = _("contributions")
        ordering = ["-created_at", "-id"]
        permissions = [("record_contribution", _("Can record event attendance and community actions"))]
        constraints = [
            models.UniqueConstraint(fields=["member", "key"], name="contribution_once_per_key"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="contribution_positive"),
        ]
        indexes = [models.Index(fields=["member", "-created_at"], name="contribution_member_recent")]

    def __str__(self) -> str:
        return f"{self.member_id}: +{self.amount} {self.kind}"


# --- partners and ecosystem benefits -------------------------------------------------------


class Partner(models.Model):
    """A business in the brand's ecosystem (a coffee chain, a car wash, an airline): members
    earn points for its orders, which it pays for at ``issue_price`` a point, and spend points
    on its vouchers, which the brand pays it for at ``redeem_price`` a point."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    points_per_yuan = models.DecimalField(
        _("points per yuan"),
        max_digits=8,
        decimal_places=4,
        default=1,
        help_text=_("Points a member earns per yuan spent at the partner (rounded down)."),
    )
    issue_price = models.DecimalField(
        _("price per point issued"),
        max_digits=8,
        decimal_places=4,
        default=0,
        help_text=_("Yuan the partner pays for each point its orders earn."),
    )
    redeem_price = models.DecimalField(
        _("price per point redeemed"),
        max_digits=8,
        decimal_places=4,
        default=0,
        help_text=_("Yuan paid to the partner for each point spent on its vouchers."),
    )
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("partner")
        verbose_name_plural = _("partners")
        ordering = ["name", "id"]
        permissions = [("view_settlement", _("Can view partner settlements"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(points_per_yuan__gte=0, issue_price__gte=0, redeem_price__gte=0),
                name="partner_rates_not_negative",
            )
        ]

    def __str__(self) -> str:
        return self.name


class PartnerKey(models.Model):
    """A partner's API key (``Authorization: Partner-Key pk_...``): it opens the partner
    endpoints only. The key itself is shown once; its SHA-256 is kept."""

    partner = models.ForeignKey(Partner, verbose_name=_("partner"), on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(_("name"), max_length=100, help_text=_("Which system uses it."))
    prefix = models.CharField(_("begins with"), max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("partner API key")
        verbose_name_plural = _("partner API keys")
        ordering = ["partner", "-created_at"]

    def __str__(self) -> str:
        return f"{self.partner}: {self.name} ({self.prefix}…)"


class PartnerEarn(models.Model):
    """Points a member earned for an order at a partner, with the rates of that day."""

    partner = models.ForeignKey(Partner, verbose_name=_("partner"), on_delete=models.PROTECT, related_name="earns")
    member = models.ForeignKey(Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="partner_earns")
    order_number = models.CharField(_("partner's order number"), max_length=64)
    amount = models.DecimalField(_("order amount"), max_digits=12, decimal_places=2)
    points = models.PositiveIntegerField(_("points"))
    points_per_yuan = models.DecimalField(_("points per yuan"), max_digits=8, decimal_places=4)
    issue_price = models.DecimalField(_("price per point issued"), max_digits=8, decimal_places=4)
    owed = models.DecimalField(
        _("owed by the partner"), max_digits=12, decimal_places=2, help_text=_("points × price per point issued")
    )
    entry = models.OneToOneField(
        LedgerEntry, verbose_name=_("points entry"), on_delete=models.PROTECT, related_name="partner_earn"
    )
    request_hash = models.CharField(max_length=64, editable=False)
    occurred_at = models.DateTimeField(
        _("ordered at"), help_text=_("When the member ordered at the partner; the settlement month follows it.")
    )
    created_at = models.DateTimeField(_("recorded at"), default=timezone.now)

    class Meta:
        verbose_name = _("partner order")
        verbose_name_plural = _("partner orders")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "order_number"], name="partner_earn_once_per_order"),
            models.CheckConstraint(condition=Q(points__gt=0), name="partner_earn_points_positive"),
            models.CheckConstraint(condition=Q(amount__gt=0, owed__gte=0), name="partner_earn_amounts_valid"),
        ]
        indexes = [models.Index(fields=["partner", "occurred_at"], name="partner_earn_month")]

    def __str__(self) -> str:
        return f"{self.partner_id}/{self.order_number}: {self.points}"


class PartnerOffer(models.Model):
    """A partner voucher in the mall, bought with points. Its codes come from the partner's
    uploaded batch (``PartnerCode``) or are generated here."""

    class CodeSource(models.TextChoices):
        BATCH = "batch", _("the partner's batch")
        GENERATED = "generated", _("generated here")

    partner = models.ForeignKey(Partner, verbose_name=_("partner"), on_delete=models.PROTECT, related_name="offers")
    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True, help_text=_("What it gives and how to use it."))
    points_cost = models.PositiveIntegerField(_("points cost"))
    code_source = models.CharField(_("codes"), max_length=10, choices=CodeSource.choices, default=CodeSource.GENERATED)
    valid_days = models.PositiveSmallIntegerField(_("valid for (days)"), default=30)
    min_tier = models.ForeignKey(
        "loyalty.Tier",
        verbose_name=_("lowest tier"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Only members in this tier or a higher one; empty: every member."),
    )
    is_active = models.BooleanField(_("in the mall"), default=True)
    sort_order = models.PositiveSmallIntegerField(_("sort order"), default=100)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("partner voucher offer")
        verbose_name_plural = _("partner voucher offers")
        ordering = ["sort_order", "points_cost", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(points_cost__gte=1), name="partner_offer_cost_positive"),
            models.CheckConstraint(condition=Q(valid_days__gte=1), name="partner_offer_valid_days_positive"),
            models.CheckConstraint(
                condition=Q(code_source__in=["batch", "generated"]), name="partner_offer_code_source_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner}: {self.name}"


class PartnerVoucher(models.Model):
    """A partner voucher a member bought with points; the partner marks it used."""

    class Status(models.TextChoices):
        ISSUED = "issued", _("issued")
        USED = "used", _("used")
        VOID = "void", _("void")

    partner = models.ForeignKey(Partner, verbose_name=_("partner"), on_delete=models.PROTECT, related_name="vouchers")
    offer = models.ForeignKey(PartnerOffer, verbose_name=_("offer"), on_delete=models.PROTECT, related_name="vouchers")
    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.PROTECT, related_name="partner_vouchers"
    )
    code = models.CharField(_("code"), max_length=64)
    points = models.PositiveIntegerField(_("points spent"))
    redeem_price = models.DecimalField(_("price per point redeemed"), max_digits=8, decimal_places=4)
    owed = models.DecimalField(
        _("owed to the partner"), max_digits=12, decimal_places=2, help_text=_("points × price per point redeemed")
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.ISSUED)
    spend_entry = models.OneToOneField(
        LedgerEntry, verbose_name=_("spend entry"), on_delete=models.PROTECT, related_name="partner_voucher"
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=128)
    issued_at = models.DateTimeField(_("issued at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    voided_at = models.DateTimeField(_("voided at"), null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("voided by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    void_reason = models.CharField(_("reason for voiding"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("partner voucher")
        verbose_name_plural = _("partner vouchers")
        ordering = ["-issued_at", "-id"]
        permissions = [("void_partnervoucher", _("Can void partner vouchers"))]
        constraints = [
            models.UniqueConstraint(fields=["partner", "code"], name="partner_voucher_code_unique"),
            models.UniqueConstraint(fields=["member", "idempotency_key"], name="partner_voucher_key_per_member"),
            models.CheckConstraint(condition=Q(status__in=["issued", "used", "void"]), name="partner_voucher_status"),
            models.CheckConstraint(
                condition=Q(status="used", used_at__isnull=False) | (~Q(status="used") & Q(used_at__isnull=True)),
                name="partner_voucher_used_has_time",
            ),
        ]
        indexes = [models.Index(fields=["partner", "issued_at"], name="partner_voucher_month")]

    def __str__(self) -> str:
        return f"{self.partner_id}: {self.code}"


class PartnerCode(models.Model):
    """One code of a partner's uploaded batch for an offer; given to one voucher."""

    offer = models.ForeignKey(PartnerOffer, verbose_name=_("offer"), on_delete=models.CASCADE, related_name="codes")
    code = models.CharField(_("code"), max_length=64)
    voucher = models.OneToOneField(
        PartnerVoucher, verbose_name=_("voucher"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_at = models.DateTimeField(_("uploaded at"), default=timezone.now)

    class Meta:
        verbose_name = _("partner code")
        verbose_name_plural = _("partner codes")
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["offer", "code"], name="partner_code_unique_per_offer")]
        indexes = [models.Index(fields=["offer", "id"], name="partner_code_free", condition=Q(voucher__isnull=True))]

    def __str__(self) -> str:
        return self.code


class PartnerBenefit(models.Model):
    """What a partner gives members of some tiers or paid plans (a free car wash for Gold,
    lounge access for PLUS); the partner checks it through its API."""

    partner = models.ForeignKey(Partner, verbose_name=_("partner"), on_delete=models.CASCADE, related_name="benefits")
    title = models.CharField(_("title"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    tiers = models.ManyToManyField("loyalty.Tier", verbose_name=_("tiers"), blank=True, related_name="+")
    plans = models.ManyToManyField(Plan, verbose_name=_("paid plans"), blank=True, related_name="partner_benefits")
    is_active = models.BooleanField(pgettext_lazy("switch", "active"), default=True)

    class Meta:
        verbose_name = _("partner benefit")
        verbose_name_plural = _("partner benefits")
        ordering = ["partner", "id"]

    def __str__(self) -> str:
        return f"{self.partner}: {self.title}"

"""Request and response shapes. Input serializers validate types and sizes; the services
decide everything else. Output serializers read the objects services and selectors return."""

from decimal import Decimal

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from loyalty.models import Currency, LedgerEntry, Order, line_name
from members.models import Member
from members.notifications import notification_text

ZERO = Decimal("0")

# --- auth ---------------------------------------------------------------------------------


class OtpSendIn(serializers.Serializer):
    phone = serializers.CharField(max_length=40, help_text="Any spelling: 138 0013 8000, +86 138..., 0086...")


class OtpSentOut(serializers.Serializer):
    sent = serializers.BooleanField()
    expires_in = serializers.IntegerField(help_text="Seconds the code stays valid.")
    resend_after = serializers.IntegerField(help_text="Seconds before another code can be asked for.")


REFERRAL_CODE_HELP = (
    "Optional: a friend's referral code. Recorded only when this sign-in registers a new member; "
    "a code that cannot be used never blocks the sign-in (see referral in the answer)."
)


class OtpSignInIn(serializers.Serializer):
    phone = serializers.CharField(max_length=40)
    code = serializers.CharField(max_length=12)
    referral_code = serializers.CharField(max_length=20, required=False, allow_blank=True, help_text=REFERRAL_CODE_HELP)


class MiniProgramSignInIn(serializers.Serializer):
    code = serializers.CharField(max_length=128, help_text="The code from wx.login().")
    phone_code = serializers.CharField(
        max_length=128, required=False, help_text="A new user: the code from the getPhoneNumber button."
    )
    phone = serializers.CharField(max_length=40, required=False, help_text="A new user: phone, with otp_code.")
    otp_code = serializers.CharField(max_length=12, required=False, help_text="The SMS code sent to phone.")
    referral_code = serializers.CharField(max_length=20, required=False, allow_blank=True, help_text=REFERRAL_CODE_HELP)


class RefreshIn(serializers.Serializer):
    refresh = serializers.CharField(max_length=200)


class TokensOut(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()
    token_type = serializers.CharField(default="Bearer")
    access_expires_at = serializers.DateTimeField()
    refresh_expires_at = serializers.DateTimeField()
    member_number = serializers.CharField(source="member.member_number")


class ReferralOutcomeOut(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["recorded", "not_recorded"], help_text="recorded: the friend's code counts for this new member."
    )
    reason = serializers.CharField(
        allow_blank=True,
        help_text="Why not: referral_code_unknown, referral_self, referral_exists, referral_not_new, referral_cycle.",
    )
    message = serializers.CharField(help_text="For people, in the request's language.")


class SignInOut(TokensOut):
    referral = ReferralOutcomeOut(
        required=False,
        help_text="Only when referral_code was sent: what became of it. The sign-in succeeds either way.",
    )


class StaffTokenIn(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, style={"input_type": "password"})
    otp_token = serializers.CharField(
        max_length=12,
        required=False,
        default="",
        allow_blank=True,
        help_text="The authenticator app's code, for a staff user who turned two-factor sign-in on.",
    )


class StaffTokenOut(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


# --- members ---------------------------------------------------------------------------


class TierBriefOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    rank = serializers.IntegerField()


class DebtOut(serializers.Serializer):
    amount = serializers.IntegerField(help_text="Still owed from this refund.")
    order_number = serializers.CharField()
    refund_number = serializers.CharField()
    refunded_at = serializers.DateTimeField()


class BalanceOut(serializers.Serializer):
    balance = serializers.IntegerField()
    pending = serializers.IntegerField()
    expiring_soon = serializers.IntegerField(help_text="Available points expiring within 30 days.")
    next_expiry_date = serializers.DateField(allow_null=True)
    pending_next_release_date = serializers.DateField(allow_null=True)
    owed = serializers.IntegerField(
        help_text=(
            "Points refunds could not take back because they had been spent (the shortfall), not settled yet. "
            "Points that come back to the member, and new earns, pay this first."
        )
    )
    owed_from = DebtOut(many=True, help_text="The refunds owed, oldest first.")


class BalancesOut(serializers.Serializer):
    points = BalanceOut()
    growth = BalanceOut()


class ProfileOut(serializers.ModelSerializer):
    email = serializers.CharField(help_text="Empty when not given.")
    birthday_locked = serializers.SerializerMethodField()
    tier = serializers.SerializerMethodField()

    class Meta:
        model = Member
        fields = [
            "member_number",
            "phone",
            "name",
            "gender",
            "email",
            "birthday",
            "birthday_locked",
            "joined_at",
            "status",
            "tier",
        ]
        read_only_fields = fields

    def get_birthday_locked(self, member) -> bool:
        return member.birthday is not None

    @extend_schema_field(TierBriefOut(allow_null=True))
    def get_tier(self, member):
        state = getattr(member, "tier_state", None)
        return TierBriefOut(state.tier).data if state else None


class ProfileIn(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    gender = serializers.ChoiceField(choices=Member.Gender.choices, required=False)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    birthday = serializers.DateField(required=False, help_text="Can be set once.")


class CheckoutBenefitsOut(serializers.Serializer):
    """The member price benefits the checkout applies (the tier's and the paid plan's)."""

    discount_percent = serializers.DecimalField(max_digits=5, decimal_places=2, help_text="Percent off; 0 for none.")
    free_shipping = serializers.BooleanField()
    sources = serializers.ListField(child=serializers.CharField(), help_text="tier:<code>, plan:<code>.")


class MemberSummaryOut(serializers.Serializer):
    """What a till sees of a member it looked up."""

    member_number = serializers.CharField()
    name = serializers.CharField()
    phone = serializers.CharField()
    status = serializers.CharField()
    tier = TierBriefOut(allow_null=True)
    balances = BalancesOut()
    benefits = CheckoutBenefitsOut(help_text="Member discount and free shipping the checkout applies.")


# --- ledger --------------------------------------------------------------------------------


class RuleLineOut(serializers.Serializer):
    rule = serializers.CharField(help_text="Rule id, or base / tier.")
    name = serializers.CharField()
    kind = serializers.CharField()
    points = serializers.IntegerField()


class EntryOut(serializers.ModelSerializer):
    store = serializers.CharField(source="store.code", allow_null=True, default=None)
    store_name = serializers.CharField(source="store.name", allow_null=True, default=None)
    order_number = serializers.CharField(source="order.number", allow_null=True, default=None)
    kind_label = serializers.CharField(source="get_kind_display")
    breakdown = serializers.SerializerMethodField(help_text="For an earn: the earning rules and what each gave.")

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "created_at",
            "currency",
            "kind",
            "kind_label",
            "amount",
            "pending_amount",
            "balance_after",
            "reason",
            "store",
            "store_name",
            "order_number",
            "breakdown",
        ]

    @extend_schema_field(RuleLineOut(many=True))
    def get_breakdown(self, entry):
        return breakdown(entry.detail)


def breakdown(detail: dict | None) -> list[dict]:
    """An earn entry's rule lines (``detail["lines"]``) as the API shows them."""
    return [
        {
            "rule": str(line.get("rule", "")),
            "name": line_name(line),  # in the request's language (loyalty.models.line_name)
            "kind": str(line.get("kind", "")),
            "points": int(line.get("points", 0)),
        }
        for line in (detail or {}).get("lines") or []
    ]


class EntriesQuery(serializers.Serializer):
    kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices, required=False)
    currency = serializers.ChoiceField(choices=Currency.choices, required=False)
    since = serializers.DateField(required=False, help_text="From this local date (inclusive).")
    until = serializers.DateField(required=False, help_text="To this local date (inclusive).")


class CurrencyQuery(serializers.Serializer):
    currency = serializers.ChoiceField(choices=Currency.choices, required=False, default=Currency.POINTS)


class ExpiryBucketOut(serializers.Serializer):
    date = serializers.DateField()
    amount = serializers.IntegerField()


class ExpiryCalendarOut(serializers.Serializer):
    currency = serializers.CharField()
    expiring = ExpiryBucketOut(many=True)
    pending = ExpiryBucketOut(many=True, help_text="Pending points by the date they become available.")


class TierProgressOut(serializers.Serializer):
    tier = TierBriefOut(allow_null=True)
    next_tier = TierBriefOut(allow_null=True)
    growth = serializers.IntegerField()
    growth_to_next = serializers.IntegerField(allow_null=True, help_text="null at the top tier.")
    review_at = serializers.DateTimeField(allow_null=True, help_text="When the tier is reviewed.")
    growth_to_keep = serializers.IntegerField(help_text="Growth still needed by review_at to keep the tier.")
    pinned_until = serializers.DateTimeField(allow_null=True)


class BenefitOut(serializers.Serializer):
    kind = serializers.CharField()
    kind_label = serializers.CharField(source="get_kind_display")
    title = serializers.CharField()
    description = serializers.CharField()
    value = serializers.DecimalField(max_digits=10, decimal_places=2)


class NotificationOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    title = serializers.SerializerMethodField(help_text="In the request's language.")
    body = serializers.SerializerMethodField(help_text="In the request's language.")
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(serializers.CharField())
    def get_title(self, notification) -> str:
        return notification_text(notification)[0]

    @extend_schema_field(serializers.CharField())
    def get_body(self, notification) -> str:
        return notification_text(notification)[1]


class EraseIn(serializers.Serializer):
    confirm = serializers.CharField(max_length=20, help_text='Type "ERASE" to confirm.')


# --- coupons -------------------------------------------------------------------------------


class CouponOut(serializers.Serializer):
    code = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.CharField()
    value = serializers.DecimalField(max_digits=10, decimal_places=2)
    source = serializers.CharField()
    status = serializers.CharField()
    valid_from = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    used_at = serializers.DateTimeField(allow_null=True)
    used_store = serializers.CharField(source="used_store.code", allow_null=True, default=None)


class CouponsQuery(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["issued", "used", "expired", "void", "all"], required=False, default="issued"
    )


# --- POS ------------------------------------------------------------------------------------


class LookupQuery(serializers.Serializer):
    phone = serializers.CharField(max_length=40, required=False)
    member_number = serializers.CharField(max_length=20, required=False)
    card_code = serializers.CharField(max_length=40, required=False, help_text="As scanned from the member card.")

    def validate(self, data):
        if len([k for k in ("phone", "member_number", "card_code") if data.get(k)]) != 1:
            raise serializers.ValidationError("Give exactly one of phone, member_number, card_code.")
        return data


class OrderLineIn(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    category = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    quantity = serializers.IntegerField(min_value=1, max_value=100_000, required=False, default=1)
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=ZERO)


class OrderEarnIn(serializers.Serializer):
    member_number = serializers.CharField(max_length=20)
    store = serializers.CharField(max_length=32, required=False, help_text="Store code; a store key's own by default.")
    number = serializers.CharField(max_length=64, help_text="Order number, unique per store: the idempotency key.")
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=ZERO)
    points_paid_amount = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=ZERO, required=False, default=ZERO
    )
    occurred_at = serializers.DateTimeField(required=False)
    lines = OrderLineIn(many=True, required=False, max_length=500)
    channel = serializers.ChoiceField(
        choices=Order.Channel.choices, required=False, default=Order.Channel.STORE, help_text="Where it was placed."
    )


class EarnedOut(serializers.Serializer):
    currency = serializers.CharField()
    amount = serializers.IntegerField(help_text="Available now.")
    pending_amount = serializers.IntegerField(help_text="Pending until the return window ends.")
    breakdown = RuleLineOut(many=True)


class OrderOut(serializers.Serializer):
    store = serializers.CharField()
    number = serializers.CharField()
    member_number = serializers.CharField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    points_paid_amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    refunded_amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    status = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    channel = serializers.CharField(required=False, help_text="Where it was placed: store, mini_program ...")
    earned = EarnedOut(many=True)
    replayed = serializers.BooleanField(help_text="True when this is a replay of an order already recorded.")


class RefundIn(serializers.Serializer):
    store = serializers.CharField(max_length=32, required=False)
    order_number = serializers.CharField(max_length=64)
    number = serializers.CharField(max_length=64, help_text="Refund number, unique per order: the idempotency key.")
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=ZERO)
    reason = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


class TakenBackOut(serializers.Serializer):
    currency = serializers.CharField()
    amount = serializers.IntegerField()
    pending_amount = serializers.IntegerField()


class RefundOut(serializers.Serializer):
    order_number = serializers.CharField()
    number = serializers.CharField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    order_status = serializers.CharField()
    points_shortfall = serializers.IntegerField()
    growth_shortfall = serializers.IntegerField()
    taken_back = TakenBackOut(many=True)
    replayed = serializers.BooleanField()


class AdjustIn(serializers.Serializer):
    member_number = serializers.CharField(max_length=20)
    currency = serializers.ChoiceField(choices=Currency.choices, default=Currency.POINTS)
    amount = serializers.IntegerField(min_value=-(10**12), max_value=10**12, help_text="Signed: negative removes.")
    reason = serializers.CharField(max_length=200)


class AdjustOut(serializers.Serializer):
    member_number = serializers.CharField(source="member.member_number")
    currency = serializers.CharField()
    amount = serializers.IntegerField()
    balance_after = serializers.IntegerField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    replayed = serializers.BooleanField()


class VerifyCouponIn(serializers.Serializer):
    code = serializers.CharField(max_length=40)
    store = serializers.CharField(max_length=32, required=False)


class VerifiedCouponOut(CouponOut):
    member_number = serializers.CharField(source="member.member_number")


# --- rewards -----------------------------------------------------------------------------


class RewardOfferOut(serializers.Serializer):
    id = serializers.IntegerField(source="reward.pk")
    name = serializers.CharField(source="reward.name")
    description = serializers.CharField(source="reward.description")
    image = serializers.SerializerMethodField()
    points_cost = serializers.IntegerField(source="reward.points_cost")
    cash_cost = serializers.DecimalField(source="reward.cash_cost", max_digits=10, decimal_places=2)
    stock = serializers.IntegerField(source="reward.stock", allow_null=True, help_text="null: unlimited.")
    available_until = serializers.DateTimeField(source="reward.available_until", allow_null=True)
    min_tier = serializers.CharField(source="reward.min_tier.code", allow_null=True, default=None)
    coupon_kind = serializers.CharField(source="reward.coupon_kind")
    coupon_value = serializers.DecimalField(source="reward.coupon_value", max_digits=10, decimal_places=2)
    eligible = serializers.BooleanField()
    reason = serializers.CharField(help_text="Why not, in the request's language; empty when eligible.")
    code = serializers.CharField(help_text="The refusal code a redemption would get; empty when eligible.")
    points_missing = serializers.IntegerField()
    is_partner = serializers.BooleanField(help_text="True: a partner's voucher, used at the partner.")
    partner = serializers.SerializerMethodField(help_text="The partner of a partner voucher; null for our rewards.")
    redeem = serializers.SerializerMethodField(
        help_text="How to get it: POST this path (our rewards: with an Idempotency-Key header; partner "
        'vouchers: with {"offer": id, "idempotency_key": ...}).'
    )

    def get_image(self, offer) -> str | None:
        image = offer.reward.image
        return image.url if image else None

    @extend_schema_field(
        {"type": "object", "nullable": True, "properties": {"code": {"type": "string"}, "name": {"type": "string"}}}
    )
    def get_partner(self, offer) -> dict | None:
        return None

    def get_redeem(self, offer) -> str:
        return reverse("api:reward-redeem", kwargs={"pk": offer.reward.pk})


class PartnerMallOfferOut(RewardOfferOut):
    """A partner's voucher in the mall, in the shape of our rewards (``RewardOfferOut``)."""

    id = serializers.IntegerField(source="offer.pk")
    name = serializers.CharField(source="offer.name")
    description = serializers.CharField(source="offer.description")
    points_cost = serializers.IntegerField(source="offer.points_cost")
    cash_cost = serializers.SerializerMethodField()
    stock = serializers.IntegerField(source="codes_left", allow_null=True)
    available_until = serializers.SerializerMethodField()
    min_tier = serializers.CharField(source="offer.min_tier.code", allow_null=True, default=None)
    coupon_kind = serializers.SerializerMethodField()
    coupon_value = serializers.SerializerMethodField()

    def get_image(self, offer) -> str | None:
        return None

    def get_cash_cost(self, offer) -> str:
        return "0.00"

    def get_available_until(self, offer) -> None:
        return None

    def get_coupon_kind(self, offer) -> str:
        return "partner_voucher"

    def get_coupon_value(self, offer) -> str:
        return "0.00"

    def get_partner(self, offer) -> dict | None:
        return {"code": offer.offer.partner.code, "name": offer.offer.partner.name}

    def get_redeem(self, offer) -> str:
        return reverse("api:me-partner-vouchers")


class RewardsQuery(serializers.Serializer):
    eligible = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Only rewards I can redeem now."
    )
    min_points = serializers.IntegerField(required=False, min_value=0)
    max_points = serializers.IntegerField(required=False, min_value=0)


class RedemptionOut(serializers.Serializer):
    id = serializers.IntegerField()
    reward_id = serializers.IntegerField()
    reward_name = serializers.CharField(source="reward.name")
    points_cost = serializers.IntegerField()
    cash_cost = serializers.DecimalField(max_digits=10, decimal_places=2)
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    cancelled_at = serializers.DateTimeField(allow_null=True)
    coupon = CouponOut()


class CancelRedemptionIn(serializers.Serializer):
    reason = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


# --- checkout (积分抵扣) -----------------------------------------------------------------


class QuoteIn(serializers.Serializer):
    order_total = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=ZERO)


class PosQuoteIn(QuoteIn):
    member_number = serializers.CharField(max_length=20)


class QuoteOut(serializers.Serializer):
    max_points = serializers.IntegerField(help_text="The most points usable on this order.")
    value = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="Yuan those points pay.")
    point_value = serializers.DecimalField(max_digits=8, decimal_places=4, help_text="Yuan per point.")
    balance = serializers.IntegerField()
    order_total = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="Before the member discount.")
    discount_percent = serializers.DecimalField(max_digits=5, decimal_places=2)
    member_discount = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="Yuan off.")
    amount_due = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="After the member discount: what points and money pay."
    )
    free_shipping = serializers.BooleanField()
    benefit_sources = serializers.ListField(child=serializers.CharField())


class CheckoutIn(OrderEarnIn):
    points = serializers.IntegerField(min_value=1, max_value=10**12, help_text="Points to pay with.")
    points_paid_amount = None


class CheckoutOut(OrderOut):
    points_used = serializers.IntegerField()
    points_value = serializers.DecimalField(max_digits=12, decimal_places=2)
    member_discount = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="Yuan the member discount took off; amount is after it."
    )
    benefits = serializers.DictField(help_text="The benefits applied: discount_percent, free_shipping, sources.")

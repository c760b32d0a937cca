"""Serializers of the paid membership endpoints (``api.views.programme``)."""

from rest_framework import serializers


class PlanOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    rank = serializers.IntegerField(help_text="The paid ladder: higher is better.")
    price = serializers.DecimalField(max_digits=10, decimal_places=2, help_text="Yuan per period.")
    period = serializers.CharField(help_text="One of: month, quarter, year.")
    trial_days = serializers.IntegerField(help_text="0: no free trial.")
    auto_renew = serializers.BooleanField(help_text="Whether the plan can renew automatically.")
    earn_multiplier = serializers.DecimalField(max_digits=4, decimal_places=2)
    monthly_coupon_count = serializers.IntegerField()
    monthly_coupon_kind = serializers.CharField()
    monthly_coupon_value = serializers.DecimalField(max_digits=10, decimal_places=2)
    free_shipping = serializers.BooleanField()
    discount_percent = serializers.DecimalField(max_digits=5, decimal_places=2)
    welcome_points = serializers.IntegerField()


class PlanBriefOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class MembershipOut(serializers.Serializer):
    plan = PlanBriefOut()
    status = serializers.CharField(help_text="One of: active, ended, refunded.")
    active = serializers.BooleanField(help_text="Active now: status active and not past ends_at.")
    started_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField(help_text="Paid (or on trial) until.")
    on_trial = serializers.BooleanField()
    auto_renew = serializers.BooleanField()
    auto_renew_consent_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)


class MyMembershipOut(serializers.Serializer):
    membership = MembershipOut(allow_null=True, help_text="Null for a member who never had one.")


class PlanOrderOut(serializers.Serializer):
    number = serializers.CharField()
    plan = PlanBriefOut()
    kind = serializers.CharField(help_text="One of: purchase, renewal.")
    amount = serializers.DecimalField(max_digits=10, decimal_places=2)
    status = serializers.CharField(help_text="One of: pending, paid, failed, cancelled, refunded.")
    adapter = serializers.CharField()
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    refunded_at = serializers.DateTimeField(allow_null=True)


class PlanCheckoutOut(serializers.Serializer):
    order = PlanOrderOut()
    payment = serializers.DictField(
        help_text="What the client needs to pay: for wechat the wx.requestPayment parameters; for fake the order."
    )


class PurchaseIn(serializers.Serializer):
    plan = serializers.SlugField(max_length=32, help_text="The plan's code.")
    auto_renew = serializers.BooleanField(default=False)
    consent = serializers.BooleanField(default=False, help_text="The member agrees to be charged each new period.")
    adapter = serializers.CharField(max_length=20, required=False, help_text="Payment method; default the site's.")


class TrialIn(serializers.Serializer):
    plan = serializers.SlugField(max_length=32)
    consent = serializers.BooleanField(default=False, help_text="Agrees to be charged when the trial ends.")


class AutoRenewIn(serializers.Serializer):
    on = serializers.BooleanField()
    consent = serializers.BooleanField(default=False)


class PlanRefundIn(serializers.Serializer):
    reason = serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=False)


class PlanRefundOut(PlanOrderOut):
    points_taken_back = serializers.IntegerField()
    points_not_recovered = serializers.IntegerField(help_text="Welcome points already spent.")
    coupons_voided = serializers.IntegerField()
    refund_id = serializers.CharField()


class MonthFiguresOut(serializers.Serializer):
    month = serializers.CharField()
    new = serializers.IntegerField()
    renewed = serializers.IntegerField()
    churned = serializers.IntegerField()
    renewal_rate = serializers.FloatField(allow_null=True)
    revenue = serializers.DecimalField(max_digits=14, decimal_places=2)
    refunded = serializers.DecimalField(max_digits=14, decimal_places=2)
    welcome_points = serializers.IntegerField()
    coupons = serializers.IntegerField()
    benefit_cost = serializers.DecimalField(
        max_digits=14, decimal_places=2, help_text="Yuan: welcome points at the points' value plus yuan-off coupons."
    )


class DashboardOut(serializers.Serializer):
    paying_members = serializers.IntegerField()
    months = MonthFiguresOut(many=True)


class MemberBriefOut(serializers.Serializer):
    member_number = serializers.CharField()
    name = serializers.CharField()


class TransferOut(serializers.Serializer):
    id = serializers.IntegerField()
    giver = MemberBriefOut()
    receiver = MemberBriefOut()
    points = serializers.IntegerField()
    message = serializers.CharField()
    status = serializers.CharField(help_text="One of: pending, completed, declined, cancelled, reversed.")
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    reversed_at = serializers.DateTimeField(allow_null=True)
    reverse_reason = serializers.CharField()


class TransferIn(serializers.Serializer):
    to = serializers.CharField(max_length=32, help_text="The receiver's phone number or member number.")
    points = serializers.IntegerField(min_value=1, max_value=10**9)
    message = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class TransferReverseIn(serializers.Serializer):
    reason = serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=False)


class StaffTransfersQuery(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["pending", "completed", "declined", "cancelled", "reversed"], required=False
    )
    member = serializers.CharField(max_length=32, required=False, help_text="Phone or member number, either side.")
    since = serializers.DateTimeField(required=False)


class BadgeProgressOut(serializers.Serializer):
    code = serializers.CharField(source="badge.code")
    name = serializers.CharField(source="badge.name")
    description = serializers.CharField(source="badge.description")
    condition = serializers.CharField(source="badge.condition")
    held = serializers.SerializerMethodField()
    awarded_at = serializers.SerializerMethodField()
    value = serializers.DecimalField(max_digits=14, decimal_places=2, help_text="Where the member is now.")
    target = serializers.DecimalField(max_digits=14, decimal_places=2)
    percent = serializers.IntegerField()

    def get_held(self, progress) -> bool:
        return progress.held is not None and progress.held.revoked_at is None

    def get_awarded_at(self, progress) -> str | None:
        held = progress.held
        return held.awarded_at.isoformat() if held is not None and held.revoked_at is None else None


class BadgeAwardIn(serializers.Serializer):
    member = serializers.CharField(max_length=32, help_text="Phone or member number.")
    badge = serializers.SlugField(max_length=32)
    reason = serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=False)


class MemberBadgeOut(serializers.Serializer):
    member_number = serializers.CharField(source="member.member_number")
    badge = serializers.CharField(source="badge.code")
    source = serializers.CharField()
    awarded_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoke_reason = serializers.CharField()


class LevelOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    threshold = serializers.IntegerField()
    benefits = serializers.CharField()


class StandingOut(serializers.Serializer):
    track = serializers.CharField(help_text="The configured name of the member's track (owner or fan).")
    is_owner = serializers.BooleanField(help_text="Has a counted order.")
    value = serializers.IntegerField(help_text="Contribution value (贡献值).")
    level = LevelOut(allow_null=True)
    next_level = LevelOut(allow_null=True)
    to_next = serializers.IntegerField(allow_null=True)


class ContributionIn(serializers.Serializer):
    member = serializers.CharField(max_length=32, help_text="Phone or member number.")
    kind = serializers.CharField(max_length=10, help_text="event or community.")
    amount = serializers.IntegerField()
    key = serializers.CharField(max_length=100, help_text="Names the action: the same key counts once.")
    reason = serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=False)


class ContributionOut(serializers.Serializer):
    member_number = serializers.CharField(source="member.member_number")
    kind = serializers.CharField()
    amount = serializers.IntegerField()
    key = serializers.CharField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()

"""Serializers of the partner endpoints (``api.views.partners``)."""

from rest_framework import serializers


class PartnerBriefOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class PartnerEarnIn(serializers.Serializer):
    member = serializers.CharField(max_length=32, help_text="The member's phone number or member number.")
    order_number = serializers.CharField(max_length=64, help_text="The partner's own order number: once per partner.")
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="What the member paid, yuan.")
    occurred_at = serializers.DateTimeField(
        required=False, help_text="When the member ordered (default now); the settlement month follows it."
    )


class PartnerEarnOut(serializers.Serializer):
    order_number = serializers.CharField()
    member_number = serializers.CharField(source="member.member_number")
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    points = serializers.IntegerField(help_text="Points the member earned.")
    points_per_yuan = serializers.DecimalField(max_digits=8, decimal_places=4)
    issue_price = serializers.DecimalField(max_digits=8, decimal_places=4, help_text="Yuan per point, owed by you.")
    owed = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="What you owe for these points.")
    occurred_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    replayed = serializers.BooleanField(help_text="True when this order was recorded before.")


class VoucherUseIn(serializers.Serializer):
    code = serializers.CharField(max_length=64)


class PartnerVoucherOut(serializers.Serializer):
    id = serializers.IntegerField()
    partner = PartnerBriefOut()
    offer = serializers.CharField(source="offer.name")
    code = serializers.CharField()
    points = serializers.IntegerField()
    status = serializers.CharField(help_text="One of: issued, used, void.")
    issued_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    used_at = serializers.DateTimeField(allow_null=True)


class CodesIn(serializers.Serializer):
    codes = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=10_000, help_text="Your voucher codes for this offer."
    )


class CodesOut(serializers.Serializer):
    added = serializers.IntegerField()
    already_there = serializers.IntegerField()
    left = serializers.IntegerField(help_text="Codes not given to a member yet.")


class MemberQuery(serializers.Serializer):
    member = serializers.CharField(max_length=32, help_text="Phone number or member number.")


class PartnerBenefitOut(serializers.Serializer):
    partner = PartnerBriefOut()
    title = serializers.CharField()
    description = serializers.CharField()


class MemberBenefitsOut(serializers.Serializer):
    member_number = serializers.CharField()
    benefits = PartnerBenefitOut(many=True)


class MonthQuery(serializers.Serializer):
    month = serializers.CharField(required=False, max_length=7, help_text="YYYY-MM; empty: this month.")


class StaffMonthQuery(MonthQuery):
    export = serializers.ChoiceField(choices=["csv"], required=False, help_text="csv: the settlement as a CSV file.")


class SettlementOut(serializers.Serializer):
    partner = PartnerBriefOut()
    month = serializers.DateField(help_text="The month's first day.")
    orders = serializers.IntegerField()
    points_issued = serializers.IntegerField()
    owed_by_partner = serializers.DecimalField(max_digits=14, decimal_places=2)
    vouchers = serializers.IntegerField()
    points_redeemed = serializers.IntegerField()
    owed_to_partner = serializers.DecimalField(max_digits=14, decimal_places=2)
    balance = serializers.DecimalField(
        max_digits=14, decimal_places=2, help_text="owed_by_partner - owed_to_partner: negative, the brand pays."
    )


class OfferOut(serializers.Serializer):
    id = serializers.IntegerField()
    partner = PartnerBriefOut()
    is_partner = serializers.SerializerMethodField(help_text="Always true: a partner's reward, used at the partner.")
    name = serializers.CharField()
    description = serializers.CharField()
    points_cost = serializers.IntegerField()
    valid_days = serializers.IntegerField()
    min_tier = serializers.CharField(source="min_tier.code", allow_null=True, default=None)

    def get_is_partner(self, offer) -> bool:
        return True


class RedeemIn(serializers.Serializer):
    offer = serializers.IntegerField(help_text="The offer's id.")
    idempotency_key = serializers.CharField(max_length=128, help_text="A new key per redemption; resend it on retry.")

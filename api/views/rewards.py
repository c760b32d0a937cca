"""The points mall: catalogue, redeem (with an Idempotency-Key header), my redemptions, cancel."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from core.errors import LoyaltyError
from programme.partners import partner_mall_offers
from rewards.models import Redemption, Reward
from rewards.selectors import redemptions_for_member, reward_offers
from rewards.services import redemption_cancel, reward_redeem

from .. import serializers as s
from ..services import idempotency_key_clean
from ..throttles import RedeemThrottle
from .common import errors, example, idempotency_key_parameter, idempotent
from .me import MemberView

COUPON_EXAMPLE = {
    "code": "K7QXM2PA9RTB",
    "title": "Latte voucher",
    "description": "One large latte.",
    "kind": "gift",
    "value": "0.00",
    "source": "redemption",
    "status": "issued",
    "valid_from": "2026-11-23T10:10:00+08:00",
    "expires_at": "2026-12-23T10:10:00+08:00",
    "used_at": None,
    "used_store": None,
}
REDEMPTION_EXAMPLE = {
    "id": 77,
    "reward_id": 3,
    "reward_name": "Latte voucher",
    "points_cost": 500,
    "cash_cost": "0.00",
    "status": "completed",
    "created_at": "2026-11-23T10:10:00+08:00",
    "cancelled_at": None,
    "coupon": COUPON_EXAMPLE,
}


class RewardsView(MemberView):
    @extend_schema(
        operation_id="rewards_list",
        tags=["rewards"],
        summary="The points mall",
        description=(
            "Every reward in display order, with whether I can redeem it now and why not, then the partners' "
            "vouchers (is_partner true, partner set): get one of those with POST /api/v1/me/partner-vouchers/ "
            "(the path in redeem), not with the rewards' redeem."
        ),
        parameters=[s.RewardsQuery],
        responses={200: s.RewardOfferOut(many=True), **errors(400, 401, 403)},
        examples=[
            example(
                "mall",
                [
                    {
                        "id": 3,
                        "name": "Latte voucher",
                        "description": "One large latte.",
                        "image": None,
                        "points_cost": 500,
                        "cash_cost": "0.00",
                        "stock": 12,
                        "available_until": None,
                        "min_tier": None,
                        "coupon_kind": "gift",
                        "coupon_value": "0.00",
                        "eligible": False,
                        "reason": "You need 120 more points.",
                        "code": "insufficient_balance",
                        "points_missing": 120,
                        "is_partner": False,
                        "partner": None,
                        "redeem": "/api/v1/rewards/3/redeem/",
                    },
                    {
                        "id": 2,
                        "name": "Car wash",
                        "description": "One standard wash at any Sparkle station.",
                        "image": None,
                        "points_cost": 800,
                        "cash_cost": "0.00",
                        "stock": None,
                        "available_until": None,
                        "min_tier": None,
                        "coupon_kind": "partner_voucher",
                        "coupon_value": "0.00",
                        "eligible": True,
                        "reason": "",
                        "code": "",
                        "points_missing": 0,
                        "is_partner": True,
                        "partner": {"code": "sparkle", "name": "Sparkle Car Wash"},
                        "redeem": "/api/v1/me/partner-vouchers/",
                    },
                ],
            )
        ],
    )
    def get(self, request):
        query = s.RewardsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data

        def kept(offers):
            if wanted.get("eligible") is not None:
                offers = [o for o in offers if o.eligible == wanted["eligible"]]
            if wanted.get("min_points") is not None:
                offers = [o for o in offers if o.points_cost >= wanted["min_points"]]
            if wanted.get("max_points") is not None:
                offers = [o for o in offers if o.points_cost <= wanted["max_points"]]
            return offers

        ours = s.RewardOfferOut(kept(reward_offers(member=self.member)), many=True).data
        theirs = s.PartnerMallOfferOut(kept(partner_mall_offers(self.member)), many=True).data
        return Response([*ours, *theirs])


class RedeemView(MemberView):
    throttle_classes = [RedeemThrottle]

    @extend_schema(
        operation_id="rewards_redeem",
        tags=["rewards"],
        summary="Redeem a reward",
        description=(
            "Spends the points, takes one from stock and issues the coupon, all or nothing. Send a new "
            "Idempotency-Key for each redemption: a retry with the same key and body returns the first "
            "response exactly (header Idempotent-Replayed: true); the same key with a different body is 422; "
            "while the first request is still running, 409."
        ),
        parameters=[idempotency_key_parameter(required=True)],
        request=None,
        responses={201: s.RedemptionOut, **errors(400, 401, 403, 404, 409, 422, 429)},
        examples=[example("redeemed", REDEMPTION_EXAMPLE, status=201)],
    )
    def post(self, request, pk: int):
        return idempotent(request, scope="redeem", run=lambda: self._redeem(pk), required=True)

    def _redeem(self, pk: int) -> Response:
        reward = Reward.objects.filter(pk=pk, is_active=True).first()
        if reward is None:
            raise LoyaltyError("reward_not_found", _("This reward is not in the mall."))
        # The member is the key's client, so their redemption keeps the key as sent.
        key = idempotency_key_clean(self.request.headers.get("Idempotency-Key"))
        redemption = reward_redeem(member=self.member, reward=reward, idempotency_key=key)
        return Response(s.RedemptionOut(redemption).data, status=201)


class RedemptionsView(MemberView):
    @extend_schema(
        operation_id="me_redemptions",
        tags=["rewards"],
        summary="My redemptions",
        responses={200: s.RedemptionOut(many=True), **errors(401, 403)},
        examples=[example("redemptions", [REDEMPTION_EXAMPLE])],
    )
    def get(self, request):
        return Response(s.RedemptionOut(redemptions_for_member(member=self.member)[:200], many=True).data)


class CancelRedemptionView(MemberView):
    @extend_schema(
        operation_id="me_redemption_cancel",
        tags=["rewards"],
        summary="Cancel an unused redemption",
        description=(
            "Points go back to the lots they came from, stock goes back, the coupon is voided. Cancelling "
            "again is 409 already_cancelled, unless it is a retry with the first one's Idempotency-Key: "
            "that gets the first answer again."
        ),
        parameters=[idempotency_key_parameter(required=False)],
        request=s.CancelRedemptionIn,
        responses={200: s.RedemptionOut, **errors(400, 401, 403, 404, 409, 422)},
        examples=[example("reason", {"reason": "changed my mind"}, request=True)],
    )
    def post(self, request, pk: int):
        return idempotent(request, scope="cancel_redemption", run=lambda: self._cancel(request, pk))

    def _cancel(self, request, pk: int) -> Response:
        data = s.CancelRedemptionIn(data=request.data)
        data.is_valid(raise_exception=True)
        redemption = Redemption.objects.filter(pk=pk, member=self.member).first()
        if redemption is None:
            raise LoyaltyError("redemption_not_found", _("No such redemption."))
        redemption = redemption_cancel(redemption=redemption, reason=data.validated_data["reason"])
        redemption = Redemption.objects.select_related("reward", "coupon__used_store").get(pk=redemption.pk)
        return Response(s.RedemptionOut(redemption).data)

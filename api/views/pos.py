"""Staff and till endpoints: look a member up, earn for an order, refund, adjust, verify a coupon.

Callers: a store API key (acts for its own store, for the actions it lists) or a staff
user (bearer token or admin session) with the Django permission of the action. Writes at
a store (earn, refund, verify, checkout) are limited to the caller's stores
(``members.scoping``; 403 ``store_forbidden``); a lookup finds any member, since
membership is brand-wide. A staff caller adjusts only their stores' members, within their
adjustment limit, as ``operations.actions.member_points_adjust`` checks for every screen; a
store key's acting user adjusts any member, within their limit.
"""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from loyalty.checkout import checkout_benefits, checkout_quote, order_checkout
from loyalty.models import Order
from loyalty.selectors import member_balances
from loyalty.services import OrderLineInput, order_earn, order_refund
from members.models import Member
from members.phone import normalize_phone
from members.scoping import store_key_actor
from operations.actions import member_points_adjust
from rewards.services import coupon_verify

from .. import serializers as s
from ..models import StoreApiKey
from ..permissions import PosAction, require_store_scope
from ..services import idempotency_scoped_key
from .common import (
    clean_member_number,
    errors,
    example,
    follow_merge,
    idempotency_client,
    idempotency_key_parameter,
    idempotent,
    member_by_number,
    operator_for,
    store_for,
    written,
)

BALANCES_EXAMPLE = {
    "points": {
        "balance": 1280,
        "pending": 96,
        "expiring_soon": 200,
        "next_expiry_date": "2026-12-31",
        "pending_next_release_date": "2026-11-30",
    },
    "growth": {
        "balance": 2400,
        "pending": 96,
        "expiring_soon": 0,
        "next_expiry_date": "2027-05-02",
        "pending_next_release_date": "2026-11-30",
    },
}


class PosView(APIView):
    permission_classes = [PosAction]
    pos_action: str = ""

    def store(self, request, code: str | None):
        """The store this request acts for, refused when it is outside the caller's stores."""
        return require_store_scope(request, store_for(request, code))


def member_summary(member: Member) -> dict:
    state = getattr(member, "tier_state", None)
    return {
        "member_number": member.member_number,
        "name": member.name,
        "phone": member.phone,
        "status": member.status,
        "tier": s.TierBriefOut(state.tier).data if state else None,
        "balances": {c: vars(b) for c, b in member_balances(member).items()},
        "benefits": checkout_benefits(member).as_detail(),
    }


class LookupView(PosView):
    pos_action = StoreApiKey.Action.LOOKUP

    @extend_schema(
        operation_id="pos_member_lookup",
        tags=["pos"],
        summary="Look a member up",
        description="By phone (any spelling), member number or the code scanned from the member card; exactly one.",
        parameters=[s.LookupQuery],
        responses={200: s.MemberSummaryOut, **errors(400, 401, 403, 404)},
        examples=[
            example(
                "member",
                {
                    "member_number": "8123456782",
                    "name": "王芳",
                    "phone": "+8613800138000",
                    "status": "active",
                    "tier": {"code": "gold", "name": "Gold", "rank": 2},
                    "balances": BALANCES_EXAMPLE,
                },
            )
        ],
    )
    def get(self, request):
        query = s.LookupQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        values = query.validated_data
        members = Member.objects.select_related("tier_state__tier").filter(erased_at__isnull=True)
        if values.get("phone"):
            try:
                member = members.filter(phone=normalize_phone(values["phone"])).first()
            except LoyaltyError:
                member = None
        else:
            member = members.filter(
                member_number=clean_member_number(values.get("member_number") or values.get("card_code"))
            ).first()
        if member is None:
            raise LoyaltyError("member_not_found", _("No member matches."))
        member = follow_merge(member, related=("tier_state__tier",))  # a merged record: the one kept
        return Response(s.MemberSummaryOut(member_summary(member)).data)


def order_out(result) -> dict:
    order = result.order
    return {
        "store": order.store.code,
        "number": order.number,
        "member_number": order.member.member_number,
        "amount": order.amount,
        "points_paid_amount": order.points_paid_amount,
        "refunded_amount": order.refunded_amount,
        "status": order.status,
        "occurred_at": order.occurred_at,
        "channel": order.channel,
        "earned": [
            {
                "currency": currency,
                "amount": entry.amount,
                "pending_amount": entry.pending_amount,
                "breakdown": s.breakdown(entry.detail),
            }
            for currency, entry in sorted(result.entries.items())
        ],
        "replayed": result.replayed,
    }


ORDER_EXAMPLE = {
    "store": "sh001",
    "number": "A-10023",
    "member_number": "8123456782",
    "amount": "128.00",
    "points_paid_amount": "0.00",
    "refunded_amount": "0.00",
    "status": "completed",
    "occurred_at": "2026-11-23T10:02:00+08:00",
    "earned": [
        {
            "currency": "points",
            "amount": 0,
            "pending_amount": 128,
            "breakdown": [{"rule": "base", "name": "Base rate", "kind": "base", "points": 128}],
        }
    ],
    "replayed": False,
}


class OrderEarnView(PosView):
    pos_action = StoreApiKey.Action.EARN

    @extend_schema(
        operation_id="pos_order_earn",
        tags=["pos"],
        summary="Earn points for an order",
        description=(
            "Idempotent by store + order number: resending the same order returns the first result "
            "(200, replayed true); the same number with different details is 422 order_number_taken."
        ),
        request=s.OrderEarnIn,
        responses={201: s.OrderOut, 200: s.OrderOut, **errors(400, 401, 403, 404, 422)},
        examples=[
            example(
                "order",
                {
                    "member_number": "8123456782",
                    "number": "A-10023",
                    "amount": "128.00",
                    "lines": [{"sku": "LATTE-L", "category": "drinks", "quantity": 2, "amount": "128.00"}],
                },
                request=True,
            ),
            example("earned", ORDER_EXAMPLE, status=201),
        ],
    )
    def post(self, request):
        data = s.OrderEarnIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        store = self.store(request, values.get("store"))
        member = member_by_number(values["member_number"])
        result = order_earn(
            member=member,
            store=store,
            number=values["number"],
            amount=values["amount"],
            points_paid_amount=values["points_paid_amount"],
            occurred_at=values.get("occurred_at"),
            lines=[OrderLineInput(**line) for line in values.get("lines", [])],
            channel=values["channel"],
        )
        body = s.OrderOut(order_out(result)).data
        return written(body, replayed=result.replayed)


class RefundView(PosView):
    pos_action = StoreApiKey.Action.REFUND

    @extend_schema(
        operation_id="pos_order_refund",
        tags=["pos"],
        summary="Refund all or part of an order",
        description=(
            "Takes back the proportional points and growth. Idempotent by order + refund number. "
            "An order of another store is 404."
        ),
        request=s.RefundIn,
        responses={201: s.RefundOut, 200: s.RefundOut, **errors(400, 401, 403, 404, 409, 422)},
        examples=[
            example(
                "partial refund",
                {"order_number": "A-10023", "number": "R-1", "amount": "64.00", "reason": "one cup returned"},
                request=True,
            ),
            example(
                "refunded",
                {
                    "order_number": "A-10023",
                    "number": "R-1",
                    "amount": "64.00",
                    "order_status": "partially_refunded",
                    "points_shortfall": 0,
                    "growth_shortfall": 0,
                    "taken_back": [{"currency": "points", "amount": 0, "pending_amount": -64}],
                    "replayed": False,
                },
                status=201,
            ),
        ],
    )
    def post(self, request):
        data = s.RefundIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        store = self.store(request, values.get("store"))
        order = Order.objects.filter(store=store, number=values["order_number"]).first()
        if order is None:
            raise LoyaltyError(
                "order_not_found",
                _("No order %(number)s at store %(store)s.") % {"number": values["order_number"], "store": store.code},
            )
        result = order_refund(order=order, amount=values["amount"], number=values["number"], reason=values["reason"])
        refund = result.refund
        body = {
            "order_number": order.number,
            "number": refund.number,
            "amount": refund.amount,
            "order_status": refund.order.status,
            "points_shortfall": refund.points_shortfall,
            "growth_shortfall": refund.growth_shortfall,
            "taken_back": [
                {"currency": c, "amount": e.amount, "pending_amount": e.pending_amount}
                for c, e in sorted(result.entries.items())
            ],
            "replayed": result.replayed,
        }
        return written(s.RefundOut(body).data, replayed=result.replayed)


class AdjustView(PosView):
    pos_action = StoreApiKey.Action.ADJUST

    @extend_schema(
        operation_id="pos_points_adjust",
        tags=["pos"],
        summary="Adjust a member's points or growth, with a reason",
        description=(
            "A staff correction, attributed to the staff user (or the store key's acting user, who needs the "
            "“adjust points” permission). Send an Idempotency-Key header to make a retry safe: a retry "
            "answers 200 with the first entry (replayed true); the same key with another member, currency, "
            "amount or reason is 422 idempotency_key_reused."
        ),
        parameters=[idempotency_key_parameter(required=False)],
        request=s.AdjustIn,
        responses={201: s.AdjustOut, 200: s.AdjustOut, **errors(400, 401, 403, 404, 409, 422)},
        examples=[
            example(
                "goodwill",
                {"member_number": "8123456782", "currency": "points", "amount": 100, "reason": "late delivery"},
                request=True,
            ),
            example(
                "adjusted",
                {
                    "member_number": "8123456782",
                    "currency": "points",
                    "amount": 100,
                    "balance_after": 1380,
                    "reason": "late delivery",
                    "created_at": "2026-11-23T10:05:00+08:00",
                    "replayed": False,
                },
                status=201,
            ),
        ],
    )
    def post(self, request):
        return idempotent(request, scope="adjust", run=lambda: self._adjust(request), replay_as_200=True)

    def _adjust(self, request):
        data = s.AdjustIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        member = member_by_number(values["member_number"])
        key = request.headers.get("Idempotency-Key", "").strip()
        if key:
            # The ledger's key is unique per account; the client's key is theirs across
            # accounts, which idempotent() has checked, and the hash keeps its 128 characters.
            key = idempotency_scoped_key(client=idempotency_client(request)[0], key=key)
        actor = operator_for(request)
        if isinstance(request.auth, StoreApiKey):
            # The key is the store's: its acting user adjusts any member, within their limit.
            actor = store_key_actor(actor, request.auth.store)
        try:
            entry = member_points_adjust(
                member=member,
                currency=values["currency"],
                amount=values["amount"],
                reason=values["reason"],
                actor=actor,
                idempotency_key=key or None,
            )
        except LoyaltyError as error:
            if error.code != "out_of_scope":
                raise
            # The POS API has always answered a member of another store like a write at one.
            raise LoyaltyError(
                "store_forbidden",
                _("%(user)s may adjust only the points of their stores' members.") % {"user": actor.get_username()},
            ) from None
        return written(s.AdjustOut(entry).data, replayed=entry.replayed)


class VerifyCouponView(PosView):
    pos_action = StoreApiKey.Action.VERIFY_COUPON

    @extend_schema(
        operation_id="pos_coupon_verify",
        tags=["pos"],
        summary="Verify (核销) a coupon at the store",
        description=(
            "Marks the coupon used. A second verification is 409 coupon_used, unless it is a retry "
            "with the first one's Idempotency-Key: that gets the first answer again."
        ),
        parameters=[idempotency_key_parameter(required=False)],
        request=s.VerifyCouponIn,
        responses={200: s.VerifiedCouponOut, **errors(400, 401, 403, 404, 409, 422)},
        examples=[
            example("code", {"code": "K7QX-M2PA-9RTB"}, request=True),
            example(
                "used",
                {
                    "code": "K7QXM2PA9RTB",
                    "title": "10 yuan off",
                    "description": "",
                    "kind": "amount_off",
                    "value": "10.00",
                    "source": "redemption",
                    "status": "used",
                    "valid_from": "2026-11-01T00:00:00+08:00",
                    "expires_at": "2026-12-01T00:00:00+08:00",
                    "used_at": "2026-11-23T10:06:00+08:00",
                    "used_store": "sh001",
                    "member_number": "8123456782",
                },
            ),
        ],
    )
    def post(self, request):
        return idempotent(request, scope="verify_coupon", run=lambda: self._verify(request))

    def _verify(self, request):
        data = s.VerifyCouponIn(data=request.data)
        data.is_valid(raise_exception=True)
        store = self.store(request, data.validated_data.get("store"))
        coupon = coupon_verify(code=data.validated_data["code"], store=store, actor=operator_for(request))
        return Response(s.VerifiedCouponOut(coupon).data)


class CheckoutQuoteView(PosView):
    pos_action = StoreApiKey.Action.CHECKOUT

    @extend_schema(
        operation_id="pos_checkout_quote",
        tags=["pos"],
        summary="How many points a member may use on an order (积分抵扣)",
        description="The lesser of the balance and the points worth LOYALTY_MAX_DEDUCTION_SHARE of the order.",
        request=s.PosQuoteIn,
        responses={200: s.QuoteOut, **errors(400, 401, 403, 404)},
        examples=[
            example("order", {"member_number": "8123456782", "order_total": "128.00"}, request=True),
            example("quote", {"max_points": 1280, "value": "12.80", "point_value": "0.0100", "balance": 1280}),
        ],
    )
    def post(self, request):
        data = s.PosQuoteIn(data=request.data)
        data.is_valid(raise_exception=True)
        member = member_by_number(data.validated_data["member_number"])
        quote = checkout_quote(member=member, order_total=data.validated_data["order_total"])
        return Response(s.QuoteOut(quote).data)


class CheckoutView(PosView):
    pos_action = StoreApiKey.Action.CHECKOUT

    @extend_schema(
        operation_id="pos_checkout",
        tags=["pos"],
        summary="Pay part of an order with points and record the order",
        description=(
            "Spends the points and records the order in one transaction; the part paid with points earns "
            "nothing. Idempotent by store + order number like /pos/orders/. Needs the checkout action "
            "(and earn is implied)."
        ),
        request=s.CheckoutIn,
        responses={201: s.CheckoutOut, 200: s.CheckoutOut, **errors(400, 401, 403, 404, 409, 422)},
        examples=[
            example(
                "order paid partly with points",
                {"member_number": "8123456782", "number": "A-10024", "amount": "128.00", "points": 1000},
                request=True,
            ),
            example(
                "recorded",
                {
                    **ORDER_EXAMPLE,
                    "number": "A-10024",
                    "points_paid_amount": "10.00",
                    "points_used": 1000,
                    "points_value": "10.00",
                },
                status=201,
            ),
        ],
    )
    def post(self, request):
        data = s.CheckoutIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        store = self.store(request, values.get("store"))
        member = member_by_number(values["member_number"])
        result, value = order_checkout(
            member=member,
            store=store,
            number=values["number"],
            amount=values["amount"],
            points=values["points"],
            occurred_at=values.get("occurred_at"),
            lines=[OrderLineInput(**line) for line in values.get("lines", [])],
        )
        body = {
            **order_out(result),
            "points_used": values["points"],
            "points_value": value,
            "member_discount": result.order.member_discount,
            "benefits": result.order.benefits,
        }
        return written(s.CheckoutOut(body).data, replayed=result.replayed)

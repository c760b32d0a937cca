"""Paid membership endpoints: plans, the member's membership and its orders, the payment
platforms' notifications, and the staff's refund and dashboard. Thin: each validates,
calls one ``programme`` service or selector, shapes the answer."""

from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from members.scoping import require_staff
from programme import selectors, services
from programme.models import Plan, PlanOrder
from programme.payments import get_adapter

from .. import programme_serializers as s
from ..permissions import IsStaffCaller
from .common import errors, example, idempotency_key_parameter, idempotent
from .me import MemberView

PLAN_EXAMPLE = {
    "code": "plus",
    "name": "PLUS",
    "description": "Double points, two 10-yuan coupons a month, free shipping.",
    "rank": 1,
    "price": "99.00",
    "period": "year",
    "trial_days": 7,
    "auto_renew": True,
    "earn_multiplier": "2.00",
    "monthly_coupon_count": 2,
    "monthly_coupon_kind": "amount_off",
    "monthly_coupon_value": "10.00",
    "free_shipping": True,
    "discount_percent": "5.00",
    "welcome_points": 500,
}
MEMBERSHIP_EXAMPLE = {
    "plan": {"code": "plus", "name": "PLUS"},
    "status": "active",
    "active": True,
    "started_at": "2026-11-02T10:00:00+08:00",
    "ends_at": "2027-11-02T10:00:00+08:00",
    "on_trial": False,
    "auto_renew": True,
    "auto_renew_consent_at": "2026-11-02T10:00:00+08:00",
    "cancelled_at": None,
}
ORDER_EXAMPLE = {
    "number": "PM20261102A1B2C3D4E5",
    "plan": {"code": "plus", "name": "PLUS"},
    "kind": "purchase",
    "amount": "99.00",
    "status": "pending",
    "adapter": "wechat",
    "created_at": "2026-11-02T10:00:00+08:00",
    "paid_at": None,
    "period_start": None,
    "period_end": None,
    "refunded_at": None,
}


def _membership(membership, now=None) -> dict:
    return {
        "plan": membership.plan,
        "status": membership.status,
        "active": membership.is_active_at(now or timezone.now()),
        "started_at": membership.started_at,
        "ends_at": membership.ends_at,
        "on_trial": membership.on_trial,
        "auto_renew": membership.auto_renew,
        "auto_renew_consent_at": membership.auto_renew_consent_at,
        "cancelled_at": membership.cancelled_at,
    }


def _plan(code: str) -> Plan:
    plan = Plan.objects.filter(code=code).first()
    if plan is None:
        raise LoyaltyError("plan_not_found", _("No plan has the code “%(code)s”.") % {"code": code})
    return plan


class PlansView(MemberView):
    @extend_schema(
        operation_id="programme_plans",
        tags=["paid membership"],
        summary="Paid plans on sale",
        responses={200: s.PlanOut(many=True), **errors(401, 403)},
        examples=[example("plans", [PLAN_EXAMPLE])],
    )
    def get(self, request):
        return Response(s.PlanOut(selectors.plans_on_sale(), many=True).data)


class MyMembershipView(MemberView):
    @extend_schema(
        operation_id="me_membership",
        tags=["paid membership"],
        summary="My paid membership",
        responses={200: s.MyMembershipOut, **errors(401, 403)},
        examples=[example("member", {"membership": MEMBERSHIP_EXAMPLE})],
    )
    def get(self, request):
        membership = selectors.membership_for(self.member)
        return Response(s.MyMembershipOut({"membership": _membership(membership) if membership else None}).data)


class MyPlanOrdersView(MemberView):
    @extend_schema(
        operation_id="me_plan_orders",
        tags=["paid membership"],
        summary="My paid membership orders (the latest 20)",
        responses={200: s.PlanOrderOut(many=True), **errors(401, 403)},
        examples=[example("orders", [ORDER_EXAMPLE])],
    )
    def get(self, request):
        return Response(s.PlanOrderOut(selectors.orders_for(self.member), many=True).data)

    @extend_schema(
        operation_id="me_plan_order_create",
        tags=["paid membership"],
        summary="Buy or renew a plan",
        description=(
            "Opens an order (reusing one of the same plan still waiting for payment) and returns what the client "
            "needs to pay it. The membership starts or extends only when the payment platform's signed "
            "notification arrives. auto_renew needs consent: true."
        ),
        parameters=[idempotency_key_parameter(required=False)],
        request=s.PurchaseIn,
        responses={201: s.PlanCheckoutOut, **errors(400, 401, 403, 404, 409, 422, 503)},
        examples=[
            example("buy", {"plan": "plus", "auto_renew": True, "consent": True}, request=True),
            example(
                "opened",
                {"order": ORDER_EXAMPLE, "payment": {"adapter": "wechat", "package": "prepay_id=wx2"}},
                status=201,
            ),
        ],
    )
    def post(self, request):
        data = s.PurchaseIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data

        def run():
            checkout = services.plan_purchase_start(
                member=self.member,
                plan=_plan(values["plan"]),
                auto_renew=values["auto_renew"],
                consent=values["consent"],
                adapter=values.get("adapter"),
            )
            return Response(
                s.PlanCheckoutOut({"order": checkout.order, "payment": checkout.payment}).data,
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, scope="me_plan_order_create", run=run)


class TrialView(MemberView):
    @extend_schema(
        operation_id="me_membership_trial",
        tags=["paid membership"],
        summary="Start a plan's free trial",
        description="Active at once; charged when the trial ends unless cancelled. Needs consent: true.",
        request=s.TrialIn,
        responses={201: s.MembershipOut, **errors(400, 401, 403, 404, 409)},
        examples=[example("trial", {"plan": "plus", "consent": True}, request=True)],
    )
    def post(self, request):
        data = s.TrialIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.trial_start(
            member=self.member, plan=_plan(data.validated_data["plan"]), consent=data.validated_data["consent"]
        )
        return Response(s.MembershipOut(_membership(membership)).data, status=status.HTTP_201_CREATED)


class CancelView(MemberView):
    @extend_schema(
        operation_id="me_membership_cancel",
        tags=["paid membership"],
        summary="Cancel: no further renewal",
        description="The benefits last until ends_at. 404 without an active membership; 409 when cancelled already.",
        request=None,
        responses={200: s.MembershipOut, **errors(401, 403, 404, 409)},
        examples=[example("cancelled", MEMBERSHIP_EXAMPLE | {"auto_renew": False})],
    )
    def post(self, request):
        return Response(s.MembershipOut(_membership(services.membership_cancel(member=self.member))).data)


class AutoRenewView(MemberView):
    @extend_schema(
        operation_id="me_membership_auto_renew",
        tags=["paid membership"],
        summary="Turn automatic renewal on (with consent) or off",
        request=s.AutoRenewIn,
        responses={200: s.MembershipOut, **errors(400, 401, 403, 404, 409)},
        examples=[example("on", {"on": True, "consent": True}, request=True)],
    )
    def post(self, request):
        data = s.AutoRenewIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_auto_renew_set(member=self.member, **data.validated_data)
        return Response(s.MembershipOut(_membership(membership)).data)


class PaymentNotifyView(APIView):
    """The payment platform's server calls this; it proves itself by its signature."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    # Not in the client API's schema: the platform calls it and gets the platform's own
    # answer shape, not the API's error body (docs/programme.md describes it).
    @extend_schema(
        exclude=True,
        operation_id="programme_payment_notify",
        tags=["paid membership"],
        summary="Payment notification (called by the payment platform)",
        description=(
            "The body is the platform's signed notification, read raw: WeChat Pay v3 (Wechatpay-Signature, "
            "-Timestamp, -Nonce, -Serial headers; encrypted resource) or the fake adapter's (X-Fake-Signature). "
            "A notification that does not verify, or that the order refuses, changes nothing and is answered "
            "400 so the platform retries; a repeated one is answered 200 again."
        ),
        request={"application/json": {"type": "object"}},
        responses={
            200: OpenApiResponse(description="Recorded (or already recorded)."),
            400: OpenApiResponse(description="Not verified or refused: nothing changed."),
            404: OpenApiResponse(description="Unknown payment adapter."),
        },
    )
    def post(self, request, adapter: str):
        try:
            payment = get_adapter(adapter)
        except LoyaltyError as error:
            return JsonResponse({"code": error.code, "message": str(error.message)}, status=404)
        try:
            services.payment_notification_handle(adapter=adapter, headers=request.headers, body=request.body)
        except LoyaltyError as error:
            answer_status, body = payment.acknowledge(ok=False, message=f"{error.code}: {error.message}")
        else:
            answer_status, body = payment.acknowledge(ok=True)
        return JsonResponse(body, status=answer_status)


class RefundView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_order_refund",
        tags=["paid membership"],
        summary="Refund a paid membership order (staff)",
        description=(
            "Inside PROGRAMME_COOL_OFF_DAYS after payment: money back through the order's adapter, the membership "
            "ends, unused coupons it gave are voided and its welcome points taken back. Needs the permission "
            "programme.refund_planorder and the member in the caller's stores."
        ),
        request=s.PlanRefundIn,
        responses={200: s.PlanRefundOut, **errors(400, 401, 403, 404, 409, 503)},
        examples=[example("refund", {"reason": "changed mind within 7 days"}, request=True)],
    )
    def post(self, request, number: str):
        data = s.PlanRefundIn(data=request.data)
        data.is_valid(raise_exception=True)
        order = get_object_or_404(PlanOrder, number=number)
        with transaction.atomic():
            refunded = services.plan_order_refund(order=order, actor=request.user, reason=data.validated_data["reason"])
        return Response(s.PlanRefundOut(refunded).data)


class DashboardView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_dashboard",
        tags=["paid membership"],
        summary="Paid membership figures (staff)",
        description=(
            "Paying members now; per month: new, renewed, churned, renewal rate, revenue, refunds, benefit cost."
        ),
        responses={200: s.DashboardOut, **errors(401, 403)},
    )
    def get(self, request):
        require_staff(request.user, "loyalty.view_dashboard")
        return Response(s.DashboardOut(selectors.dashboard()).data)

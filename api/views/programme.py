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
from programme import badges, contribution, selectors, services, transfers
from programme.models import Badge, MemberBadge, Plan, PlanOrder, Transfer
from programme.payments import get_adapter

from .. import programme_serializers as s
from ..errors import STATUS_BY_CODE
from ..permissions import IsStaffCaller
from .common import errors, example, idempotency_key_parameter, idempotent
from .me import MemberView

# The paid membership's refusals that are not plain bad input (400). Kept here, beside the
# endpoints that raise them (the lead may fold them into api.errors.STATUS_BY_CODE).
STATUS_BY_CODE.update(
    {
        "plan_not_found": status.HTTP_404_NOT_FOUND,
        "payments_not_configured": status.HTTP_503_SERVICE_UNAVAILABLE,
        "membership_not_found": status.HTTP_404_NOT_FOUND,
        "plan_order_not_found": status.HTTP_404_NOT_FOUND,
        "plan_unavailable": status.HTTP_409_CONFLICT,
        "plan_change_unsupported": status.HTTP_409_CONFLICT,
        "trial_unavailable": status.HTTP_409_CONFLICT,
        "trial_used": status.HTTP_409_CONFLICT,
        "auto_renew_unavailable": status.HTTP_409_CONFLICT,
        "membership_cancelled": status.HTTP_409_CONFLICT,
        "payment_conflict": status.HTTP_409_CONFLICT,
        "plan_order_cancelled": status.HTTP_409_CONFLICT,
        "plan_order_not_paid": status.HTTP_409_CONFLICT,
        "plan_order_refunded": status.HTTP_409_CONFLICT,
        "cool_off_over": status.HTTP_409_CONFLICT,
        "refund_not_latest": status.HTTP_409_CONFLICT,
        "wechat_openid_required": status.HTTP_409_CONFLICT,
        "out_of_scope": status.HTTP_403_FORBIDDEN,
        "payment_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
        "payment_refund_failed": status.HTTP_503_SERVICE_UNAVAILABLE,
        "receiver_not_found": status.HTTP_404_NOT_FOUND,
        "transfer_not_found": status.HTTP_404_NOT_FOUND,
        "receiver_inactive": status.HTTP_409_CONFLICT,
        "transfer_limit_reached": status.HTTP_409_CONFLICT,
        "transfer_ping_pong": status.HTTP_409_CONFLICT,
        "transfer_to_self": status.HTTP_409_CONFLICT,
        "refund_shortfall_open": status.HTTP_409_CONFLICT,
        "transfer_not_pending": status.HTTP_409_CONFLICT,
        "transfer_not_received": status.HTTP_409_CONFLICT,
        "transfer_received": status.HTTP_409_CONFLICT,
        "badge_not_found": status.HTTP_404_NOT_FOUND,
        "badge_held": status.HTTP_409_CONFLICT,
        "badge_revoked": status.HTTP_409_CONFLICT,
    }
)

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


TRANSFER_EXAMPLE = {
    "id": 42,
    "giver": {"member_number": "8123456782", "name": "王芳"},
    "receiver": {"member_number": "8123456790", "name": "李伟"},
    "points": 300,
    "message": "生日快乐",
    "status": "completed",
    "created_at": "2026-11-20T15:04:00+08:00",
    "decided_at": "2026-11-20T15:04:00+08:00",
    "reversed_at": None,
    "reverse_reason": "",
}


class MyTransfersView(MemberView):
    @extend_schema(
        operation_id="me_transfers",
        tags=["points transfers"],
        summary="My points transfers, given and received (the latest 50)",
        responses={200: s.TransferOut(many=True), **errors(401, 403)},
        examples=[example("transfers", [TRANSFER_EXAMPLE])],
    )
    def get(self, request):
        return Response(s.TransferOut(selectors.transfers_for(self.member), many=True).data)

    @extend_schema(
        operation_id="me_transfer_create",
        tags=["points transfers"],
        summary="Give points to another member",
        description=(
            "The receiver is named by phone or member number. Refused: unknown receiver (404), oneself, a frozen "
            "giver (403) or receiver, over a daily or monthly limit, below the minimum tier, the same two members "
            "the other way round within the window, an open refund shortfall, not enough points (409). With "
            "confirmation on, the transfer waits for the receiver (status pending)."
        ),
        parameters=[idempotency_key_parameter(required=False)],
        request=s.TransferIn,
        responses={201: s.TransferOut, **errors(400, 401, 403, 404, 409, 422)},
        examples=[
            example("give", {"to": "13800138000", "points": 300, "message": "生日快乐"}, request=True),
            example("given", TRANSFER_EXAMPLE, status=201),
        ],
    )
    def post(self, request):
        data = s.TransferIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data

        def run():
            transfer = transfers.transfer_create(
                giver=self.member, to=values["to"], points=values["points"], message=values["message"]
            )
            return Response(s.TransferOut(transfer).data, status=status.HTTP_201_CREATED)

        return idempotent(request, scope="me_transfer_create", run=run)


def _transfer_action(name: str, summary: str, service):
    class View(MemberView):
        @extend_schema(
            operation_id=f"me_transfer_{name}",
            tags=["points transfers"],
            summary=summary,
            request=None,
            responses={200: s.TransferOut, **errors(401, 403, 404, 409)},
            examples=[example(name, TRANSFER_EXAMPLE)],
        )
        def post(self, request, pk: int):
            transfer = Transfer.objects.filter(pk=pk).first()
            if transfer is None or self.member.pk not in (transfer.giver_id, transfer.receiver_id):
                raise LoyaltyError("transfer_not_found", _("No such transfer."))
            return Response(s.TransferOut(service(transfer=transfer, member=self.member)).data)

    View.__name__ = View.__qualname__ = f"Transfer{name.title()}View"
    return View


TransferAcceptView = _transfer_action("accept", "Accept a transfer waiting for me", transfers.transfer_accept)
TransferDeclineView = _transfer_action("decline", "Decline a transfer waiting for me", transfers.transfer_decline)
TransferCancelView = _transfer_action("cancel", "Take back a transfer not accepted yet", transfers.transfer_cancel)


class StaffTransfersView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_transfers",
        tags=["points transfers"],
        summary="Points transfers (staff), filtered",
        parameters=[s.StaffTransfersQuery],
        responses={200: s.TransferOut(many=True), **errors(400, 401, 403, 404)},
        examples=[example("transfers", [TRANSFER_EXAMPLE])],
    )
    def get(self, request):
        query = s.StaffTransfersQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        values = query.validated_data
        require_staff(request.user, "programme.view_transfer")
        member = transfers.receiver_find(values["member"]) if values.get("member") else None
        rows = selectors.transfers_for_staff(status=values.get("status"), member=member, since=values.get("since"))
        return Response(s.TransferOut(rows, many=True).data)


class StaffTransferReverseView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_transfer_reverse",
        tags=["points transfers"],
        summary="Reverse a received transfer (staff), with a reason",
        description="Needs programme.reverse_transfer and both members in the caller's stores.",
        request=s.TransferReverseIn,
        responses={200: s.TransferOut, **errors(400, 401, 403, 404, 409)},
        examples=[example("reverse", {"reason": "reported as fraud"}, request=True)],
    )
    def post(self, request, pk: int):
        data = s.TransferReverseIn(data=request.data)
        data.is_valid(raise_exception=True)
        transfer = get_object_or_404(Transfer, pk=pk)
        reversed_ = transfers.transfer_reverse(
            transfer=transfer, actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(s.TransferOut(reversed_).data)


BADGE_EXAMPLE = {
    "code": "ten-orders",
    "name": "Regular",
    "description": "Ten orders",
    "condition": "orders",
    "held": False,
    "awarded_at": None,
    "value": "7.00",
    "target": "10.00",
    "percent": 70,
}
MEMBER_BADGE_EXAMPLE = {
    "member_number": "8123456782",
    "badge": "ten-orders",
    "source": "staff",
    "awarded_at": "2026-11-20T15:04:00+08:00",
    "revoked_at": None,
    "revoke_reason": "",
}


class MyBadgesView(MemberView):
    @extend_schema(
        operation_id="me_badges",
        tags=["badges"],
        summary="My badges and the progress toward the others",
        responses={200: s.BadgeProgressOut(many=True), **errors(401, 403)},
        examples=[example("badges", [BADGE_EXAMPLE])],
    )
    def get(self, request):
        return Response(s.BadgeProgressOut(badges.badges_progress(self.member), many=True).data)


def _badge(code: str) -> Badge:
    badge = Badge.objects.filter(code=code).first()
    if badge is None:
        raise LoyaltyError("badge_not_found", _("No badge has the code “%(code)s”.") % {"code": code})
    return badge


class StaffBadgeAwardView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_badge_award",
        tags=["badges"],
        summary="Award a badge (staff), with a reason",
        description="Needs programme.award_badge and the member in the caller's stores. 409 badge_held.",
        request=s.BadgeAwardIn,
        responses={201: s.MemberBadgeOut, **errors(400, 401, 403, 404, 409)},
        examples=[
            example("award", {"member": "13800138000", "badge": "ten-orders", "reason": "lost receipts"}, request=True)
        ],
    )
    def post(self, request):
        data = s.BadgeAwardIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        held = badges.badge_award(
            member=transfers.receiver_find(values["member"]),
            badge=_badge(values["badge"]),
            actor=request.user,
            reason=values["reason"],
        )
        return Response(s.MemberBadgeOut(held).data, status=status.HTTP_201_CREATED)


class StaffBadgeRevokeView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_badge_revoke",
        tags=["badges"],
        summary="Revoke a badge (staff), with a reason",
        description="Takes back what is left of its points and voids its unused coupon.",
        request=s.BadgeAwardIn,
        responses={200: s.MemberBadgeOut, **errors(400, 401, 403, 404, 409)},
        examples=[example("revoke", MEMBER_BADGE_EXAMPLE)],
    )
    def post(self, request):
        data = s.BadgeAwardIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        member = transfers.receiver_find(values["member"])
        held = MemberBadge.objects.filter(member=member, badge=_badge(values["badge"])).first()
        if held is None:
            raise LoyaltyError("badge_not_found", _("This member does not hold this badge."))
        revoked = badges.badge_revoke(held=held, actor=request.user, reason=values["reason"])
        return Response(s.MemberBadgeOut(revoked).data)


STANDING_EXAMPLE = {
    "track": "粉丝",
    "is_owner": False,
    "value": 35,
    "level": {"code": "friend", "name": "Friend", "threshold": 20, "benefits": "Event invitations"},
    "next_level": {"code": "insider", "name": "Insider", "threshold": 100, "benefits": "Test drives"},
    "to_next": 65,
}


class MyContributionView(MemberView):
    @extend_schema(
        operation_id="me_contribution",
        tags=["dual membership"],
        summary="My track (owner or fan), contribution value and level",
        responses={200: s.StandingOut, **errors(401, 403)},
        examples=[example("fan", STANDING_EXAMPLE)],
    )
    def get(self, request):
        return Response(s.StandingOut(contribution.standing(self.member)).data)


class StaffContributionView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_contribution_record",
        tags=["dual membership"],
        summary="Record an event attended or a community action (staff)",
        description=(
            "Needs programme.record_contribution and the member in the caller's stores. The key names the action: "
            "sent again it answers 200 with the first record; with another kind or amount it is 422."
        ),
        request=s.ContributionIn,
        responses={201: s.ContributionOut, 200: s.ContributionOut, **errors(400, 401, 403, 404, 422)},
        examples=[
            example(
                "event",
                {
                    "member": "13800138000",
                    "kind": "event",
                    "amount": 30,
                    "key": "event:2026-owners-day",
                    "reason": "Owners' day",
                },
                request=True,
            )
        ],
    )
    def post(self, request):
        data = s.ContributionIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        record = contribution.contribution_record(
            member=transfers.receiver_find(values["member"]),
            kind=values["kind"],
            amount=values["amount"],
            key=values["key"],
            reason=values["reason"],
            actor=request.user,
        )
        replayed = getattr(record, "replayed", False)
        return Response(
            s.ContributionOut(record).data, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED
        )

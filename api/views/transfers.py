"""Points transfers between members (docs/programme.md): the member's own and the staff's.

The refusal codes' statuses are registered in ``api.views.programme``."""

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from members.scoping import require_staff
from programme import selectors, transfers
from programme.models import Transfer

from .. import programme_serializers as s
from ..permissions import IsStaffCaller
from .common import errors, example, idempotency_key_parameter, idempotent
from .me import MemberView

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

"""Per-point provenance (docs/foresight.md): where each point a member holds came from and
which lots each spend, expiry or refund took. The member reads their own; staff read a
member of their stores (``loyalty.view_lot``). Read-only, three queries."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from foresight.provenance import member_provenance
from members.scoping import require_staff

from .. import serializers as s
from ..permissions import IsMember, IsStaffCaller
from .common import errors, example, member_by_number


class SourceOut(serializers.Serializer):
    entry_id = serializers.IntegerField()
    kind = serializers.CharField()
    kind_label = serializers.CharField()
    earned_at = serializers.DateTimeField()
    order_number = serializers.CharField(allow_null=True)
    campaigns = serializers.ListField(child=serializers.CharField())
    reason = serializers.CharField(allow_blank=True)
    label = serializers.CharField()


class LotOut(serializers.Serializer):
    lot_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    remaining = serializers.IntegerField()
    pending = serializers.BooleanField()
    available_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    source = SourceOut()


class ExpiringOut(serializers.Serializer):
    date = serializers.DateField(source="day")
    points = serializers.IntegerField()
    sources = SourceOut(many=True)


class TakenOut(serializers.Serializer):
    lot_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    source = SourceOut()


class ConsumptionOut(serializers.Serializer):
    entry_id = serializers.IntegerField()
    kind = serializers.CharField()
    kind_label = serializers.CharField()
    amount = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    reason = serializers.CharField(allow_blank=True)
    order_number = serializers.CharField(allow_null=True)
    gives_back = serializers.BooleanField(help_text="A reversal: the lots got these points back.")
    lots = TakenOut(many=True)


class ProvenanceOut(serializers.Serializer):
    currency = serializers.CharField()
    remaining = serializers.IntegerField()
    lots_truncated = serializers.BooleanField(help_text="More lots than shown (the 200 expiring first are).")
    lots = LotOut(many=True)
    expiring = ExpiringOut(many=True)
    consumptions = ConsumptionOut(many=True)


_SOURCE = {
    "entry_id": 812,
    "kind": "earn",
    "kind_label": "earned",
    "earned_at": "2025-12-31T15:20:00+08:00",
    "order_number": "A-1002",
    "campaigns": ["Double points week"],
    "reason": "",
    "label": "A-1002 (Double points week)",
}
PROVENANCE_EXAMPLE = {
    "currency": "points",
    "remaining": 120,
    "lots_truncated": False,
    "lots": [
        {
            "lot_id": 640,
            "amount": 240,
            "remaining": 120,
            "pending": False,
            "available_at": "2026-01-07T15:20:00+08:00",
            "expires_at": "2026-12-31T15:20:00+08:00",
            "source": _SOURCE,
        }
    ],
    "expiring": [{"date": "2026-12-31", "points": 120, "sources": [_SOURCE]}],
    "consumptions": [
        {
            "entry_id": 901,
            "kind": "spend",
            "kind_label": "spent",
            "amount": -120,
            "created_at": "2026-03-02T10:00:00+08:00",
            "reason": "Redeemed: Tote bag",
            "order_number": None,
            "gives_back": False,
            "lots": [{"lot_id": 640, "amount": 120, "source": _SOURCE}],
        }
    ],
}


def _body(member, currency: str) -> dict:
    return ProvenanceOut(member_provenance(member, currency=currency)).data


class MyProvenanceView(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        operation_id="me_points_provenance",
        tags=["me"],
        summary="Where my points came from",
        description=(
            "Every lot of points I hold (the 200 expiring first), with the order, rule or campaign that "
            "earned it, grouped by expiry date; and my latest 50 spends, expiries and refunds with the lots each took."
        ),
        parameters=[s.CurrencyQuery],
        responses={200: ProvenanceOut, **errors(400, 401, 403)},
        examples=[example("provenance", PROVENANCE_EXAMPLE)],
    )
    def get(self, request):
        query = s.CurrencyQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(_body(request.auth.member, query.validated_data["currency"]))


class StaffProvenanceView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="member_points_provenance",
        tags=["staff"],
        summary="Where a member's points came from (staff)",
        description="As ``me_points_provenance`` for a member of the caller's stores; needs loyalty.view_lot.",
        parameters=[s.CurrencyQuery],
        responses={200: ProvenanceOut, **errors(400, 401, 403, 404)},
        examples=[example("provenance", PROVENANCE_EXAMPLE)],
    )
    def get(self, request, number: str):
        query = s.CurrencyQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        member = member_by_number(number)
        require_staff(request.user, "loyalty.view_lot", members=[member])
        return Response(_body(member, query.validated_data["currency"]))

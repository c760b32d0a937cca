"""Staff figures: customer value overall or per segment, and the segments with their live counts.

Callers: a staff user (bearer token or admin session) with ``loyalty.view_dashboard``.
Members and store keys get 403. A staff user scoped to stores (members.scoping) gets the
figures of their stores' members only. Definitions: docs/segments.md.
"""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from members.models import Segment
from members.scoping import is_staff_with, staff_stores
from operations.metrics import member_metrics
from operations.segments import scoped_members, segment_counts, segment_members

from ..permissions import is_staff_caller
from .common import errors, example

PERMISSION = "loyalty.view_dashboard"


class ViewsFigures(BasePermission):
    """A staff caller (not a member, not a store key) allowed to see the operations dashboard."""

    def has_permission(self, request, view):
        return is_staff_caller(request) and is_staff_with(request.user, PERMISSION)


class MetricsQuery(serializers.Serializer):
    segment = serializers.IntegerField(
        required=False, min_value=1, max_value=2**31 - 1, help_text="A segment's id; omit for every member."
    )


class SegmentBriefOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


def _money(help_text: str):
    return serializers.DecimalField(
        max_digits=16, decimal_places=2, allow_null=True, coerce_to_string=True, help_text=help_text
    )


def _rate(help_text: str):
    return serializers.FloatField(allow_null=True, min_value=0, max_value=1, help_text=help_text)


class MetricsOut(serializers.Serializer):
    segment = SegmentBriefOut(allow_null=True, help_text="The segment measured; null for every member.")
    stores = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text="The caller's stores when scoped; null for all."
    )
    as_of = serializers.DateTimeField()
    members = serializers.IntegerField()
    buyers = serializers.IntegerField(help_text="Members with at least one purchase.")
    repeat_buyers = serializers.IntegerField(help_text="Buyers with two purchases or more.")
    orders = serializers.IntegerField(help_text="Purchases (orders not refunded in full).")
    revenue = _money("Net spend of every purchase (amount less refunds), yuan.")
    historical_clv = _money("Net spend per member since joining, yuan.")
    historical_clv_per_buyer = _money("Net spend per buyer, yuan.")
    average_order_value = _money("Net spend per purchase over the last 365 days, yuan.")
    purchase_frequency = _money("Purchases per buyer over the last 365 days.")
    repurchase_rate = _rate("Repeat buyers / buyers.")
    retention = _rate("Of the buyers of 180-90 days ago, the share who bought in the last 90 days.")
    expected_lifetime_years = _money("1 / (1 - retention) quarters, in years, at most 5.")
    predicted_clv = _money("Average order value x purchases a year x expected lifetime, yuan.")


class SegmentOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    members = serializers.IntegerField(allow_null=True, help_text="Live count; null when the rules are not valid.")
    updated_at = serializers.DateTimeField()


METRICS_EXAMPLE = {
    "segment": {"id": 3, "name": "Lapsed VIPs"},
    "stores": None,
    "as_of": "2026-11-23T10:00:00+08:00",
    "members": 1200,
    "buyers": 950,
    "repeat_buyers": 410,
    "orders": 3120,
    "revenue": "386400.00",
    "historical_clv": "322.00",
    "historical_clv_per_buyer": "406.74",
    "average_order_value": "121.50",
    "purchase_frequency": "2.40",
    "repurchase_rate": 0.4316,
    "retention": 0.62,
    "expected_lifetime_years": "0.66",
    "predicted_clv": "192.45",
}


def _store_codes(user) -> list[str] | None:
    stores = staff_stores(user)
    return None if stores is None else sorted(stores.values_list("code", flat=True))


class MetricsView(APIView):
    permission_classes = [ViewsFigures]

    @extend_schema(
        operation_id="metrics",
        tags=["staff"],
        summary="Customer value figures",
        description=(
            "Historical and predicted CLV, average order value, purchase frequency, repurchase rate and "
            "90-day retention, for every member or for one segment (`?segment=<id>`). Needs a staff caller "
            "with loyalty.view_dashboard; a staff user scoped to stores sees their stores' members only."
        ),
        parameters=[MetricsQuery],
        responses={200: MetricsOut, **errors(400, 401, 403, 404)},
        examples=[example("segment", METRICS_EXAMPLE)],
    )
    def get(self, request):
        query = MetricsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        members = scoped_members(request.user)
        segment = None
        segment_id = query.validated_data.get("segment")
        if segment_id is not None:
            segment = Segment.objects.filter(pk=segment_id).first()
            if segment is None:
                raise NotFound(_("There is no segment %(id)s.") % {"id": segment_id})
            members = segment_members(segment).filter(pk__in=members.values("pk"))
        body = {
            "segment": None if segment is None else {"id": segment.pk, "name": segment.name},
            "stores": _store_codes(request.user),
            **member_metrics(members).as_dict(),
        }
        return Response(MetricsOut(body).data)


class SegmentsView(APIView):
    permission_classes = [ViewsFigures]

    @extend_schema(
        operation_id="segments_list",
        tags=["staff"],
        summary="Segments with their live counts",
        description=(
            "Every saved segment, by name, with how many members it selects now (among the caller's "
            "stores' members when the caller is scoped). Needs loyalty.view_dashboard."
        ),
        responses={200: SegmentOut(many=True), **errors(401, 403)},
        examples=[
            example(
                "segments",
                [
                    {
                        "id": 3,
                        "name": "Lapsed VIPs",
                        "description": "VIP tag, no order for 90 days",
                        "members": 1200,
                        "updated_at": "2026-11-20T09:00:00+08:00",
                    }
                ],
            )
        ],
    )
    def get(self, request):
        segments = list(Segment.objects.order_by("name"))
        counts = segment_counts(segments, members=scoped_members(request.user))
        rows = [
            {
                "id": segment.pk,
                "name": segment.name,
                "description": segment.description,
                "members": counts.get(segment.pk),
                "updated_at": segment.updated_at,
            }
            for segment in segments
        ]
        return Response(SegmentOut(rows, many=True).data)

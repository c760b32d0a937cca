"""Webhooks: a receiver catching up on the events it was sent (docs/webhooks.md)."""

import hmac

from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from webhooks.models import Endpoint
from webhooks.services import events_for_endpoint

from .common import errors, example

SECRET_HEADER = "HTTP_LOYALTY_WEBHOOK_SECRET"


class EndpointEventsView(APIView):
    """Authenticated by the endpoint's own signing secret in ``Loyalty-Webhook-Secret``:
    whoever can verify the endpoint's events may read them."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class EndpointEventsQuery(serializers.Serializer):
        after = serializers.IntegerField(min_value=0, required=False, default=0, help_text="The last sequence seen.")
        limit = serializers.IntegerField(min_value=1, max_value=500, required=False, default=100)

    class WebhookEventOut(serializers.Serializer):
        sequence = serializers.IntegerField(source="pk")
        id = serializers.UUIDField(source="event_id")
        type = serializers.CharField()
        occurred_at = serializers.DateTimeField()
        data = serializers.JSONField(source="payload")

    class EndpointEventsOut(serializers.Serializer):
        events = serializers.ListField(child=serializers.DictField())
        next_after = serializers.IntegerField(help_text="Pass as after= for the next page.")

    @extend_schema(
        operation_id="webhook_endpoint_events",
        tags=["webhooks"],
        summary="Events sent to an endpoint, for catching up",
        description="Oldest first after the sequence number `after`; the same bodies the webhooks carried.",
        parameters=[
            EndpointEventsQuery,
            OpenApiParameter("Loyalty-Webhook-Secret", str, OpenApiParameter.HEADER, required=True),
        ],
        responses={200: EndpointEventsOut, **errors(400, 404)},
        examples=[
            example(
                "events",
                {
                    "events": [
                        {
                            "sequence": 1042,
                            "id": "0b9f3c1e-5d1a-4c7e-9a77-1f3e4c2b9d10",
                            "type": "points.changed",
                            "occurred_at": "2026-11-20T14:03:00+08:00",
                            "data": {"member_number": "8123456782", "amount": 100, "balance_after": 1350},
                        }
                    ],
                    "next_after": 1042,
                },
            )
        ],
    )
    def get(self, request, pk: int):
        endpoint = Endpoint.objects.filter(pk=pk).first()
        given = request.META.get(SECRET_HEADER, "")
        if endpoint is None or not given or not hmac.compare_digest(given.encode(), endpoint.secret.encode()):
            raise Http404
        query = self.EndpointEventsQuery(data=request.query_params)
        if not query.is_valid():
            raise LoyaltyError(
                "invalid", _("Some fields are not valid."), fields={k: str(v[0]) for k, v in query.errors.items()}
            )
        events = list(events_for_endpoint(endpoint=endpoint, **query.validated_data))
        out = {
            "events": self.WebhookEventOut(events, many=True).data,
            "next_after": events[-1].pk if events else query.validated_data["after"],
        }
        return Response(out)

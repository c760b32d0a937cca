"""A signed-in member's own data: profile, balances, history, tier, benefits, notifications,
coupons, data export and erasure. Everything is scoped to the token's member; another
member's objects look absent (404)."""

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from loyalty.checkout import checkout_quote
from loyalty.models import Benefit
from loyalty.selectors import entries_for_member, expiry_calendar, member_balances, pending_releases
from loyalty.tiers import tier_progress
from members.models import Member, Notification
from members.notifications import notification_mark_read
from members.services import member_update_profile
from operations.privacy import member_erase, member_export
from rewards.selectors import coupons_for_member

from .. import serializers as s
from ..pagination import CursorPagination
from ..permissions import IsMember
from .common import errors, example
from .pos import BALANCES_EXAMPLE

# The balances as the member sees them, here with a refund shortfall still owed.
BALANCES_WITH_OWED_EXAMPLE = {
    "points": BALANCES_EXAMPLE["points"]
    | {
        "owed": 650,
        "owed_from": [
            {
                "amount": 650,
                "order_number": "SO-20261102-0042",
                "refund_number": "RF-1",
                "refunded_at": "2026-11-20T15:04:00+08:00",
            }
        ],
    },
    "growth": BALANCES_EXAMPLE["growth"] | {"owed": 0, "owed_from": []},
}

PROFILE_EXAMPLE = {
    "member_number": "8123456782",
    "phone": "+8613800138000",
    "name": "王芳",
    "gender": "female",
    "email": "fang@example.com",
    "birthday": "1990-05-02",
    "birthday_locked": True,
    "joined_at": "2025-03-01T12:00:00+08:00",
    "status": "active",
    "tier": {"code": "gold", "name": "Gold", "rank": 2},
}


class MemberView(APIView):
    permission_classes = [IsMember]

    @property
    def member(self) -> Member:
        return self.request.auth.member


class ProfileView(MemberView):
    @extend_schema(
        operation_id="me_profile",
        tags=["me"],
        summary="My profile",
        responses={200: s.ProfileOut, **errors(401, 403)},
        examples=[example("profile", PROFILE_EXAMPLE)],
    )
    def get(self, request):
        member = Member.objects.select_related("tier_state__tier").get(pk=self.member.pk)
        return Response(s.ProfileOut(member).data)

    @extend_schema(
        operation_id="me_profile_update",
        tags=["me"],
        summary="Change my profile",
        description="Name, gender, email and birthday (once). Other fields are read-only and refused.",
        request=s.ProfileIn,
        responses={200: s.ProfileOut, **errors(400, 401, 403, 409)},
        examples=[example("name", {"name": "王芳", "birthday": "1990-05-02"}, request=True)],
    )
    def patch(self, request):
        unknown = sorted(set(request.data) - set(s.ProfileIn().fields)) if isinstance(request.data, dict) else []
        if unknown:
            raise LoyaltyError(
                "invalid",
                _("Some fields are not valid."),
                fields={name: _("This field cannot be changed here.") for name in unknown},
            )
        data = s.ProfileIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        member_update_profile(member=self.member, **data.validated_data)
        member = Member.objects.select_related("tier_state__tier").get(pk=self.member.pk)
        return Response(s.ProfileOut(member).data)


class BalancesView(MemberView):
    @extend_schema(
        operation_id="me_balances",
        tags=["me"],
        summary="My balances",
        description="Per currency: available, pending (until the return window ends), expiring within 30 days.",
        responses={200: s.BalancesOut, **errors(401, 403)},
        examples=[example("balances", BALANCES_WITH_OWED_EXAMPLE)],
    )
    def get(self, request):
        balances = member_balances(self.member)
        return Response(s.BalancesOut({c: vars(b) for c, b in balances.items()}).data)


class ExpiryCalendarView(MemberView):
    @extend_schema(
        operation_id="me_expiry_calendar",
        tags=["me"],
        summary="Which points expire when",
        description=(
            "Available points by the local date they expire (next 12 months), and pending points by release date."
        ),
        parameters=[s.CurrencyQuery],
        responses={200: s.ExpiryCalendarOut, **errors(400, 401, 403)},
        examples=[
            example(
                "calendar",
                {
                    "currency": "points",
                    "expiring": [{"date": "2026-12-31", "amount": 200}, {"date": "2027-03-31", "amount": 480}],
                    "pending": [{"date": "2026-11-30", "amount": 96}],
                },
            )
        ],
    )
    def get(self, request):
        query = s.CurrencyQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        currency = query.validated_data["currency"]
        body = {
            "currency": currency,
            "expiring": [vars(b) for b in expiry_calendar(self.member, currency=currency)],
            "pending": [vars(p) for p in pending_releases(self.member, currency=currency)],
        }
        return Response(s.ExpiryCalendarOut(body).data)


class EntryCursor(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class EntriesView(MemberView):
    pagination_class = EntryCursor

    @extend_schema(
        operation_id="me_entries",
        tags=["me"],
        summary="My points history",
        description="Newest first, by cursor (follow next). Each entry has its reason, store and earning breakdown.",
        parameters=[s.EntriesQuery],
        responses={200: s.EntryOut(many=True), **errors(400, 401, 403)},
        examples=[
            example(
                "page",
                {
                    "next": "https://example.com/api/v1/me/entries/?cursor=cD0yMDI2",
                    "previous": None,
                    "results": [
                        {
                            "id": 981,
                            "created_at": "2026-11-23T10:02:00+08:00",
                            "currency": "points",
                            "kind": "earn",
                            "kind_label": "earned",
                            "amount": 0,
                            "pending_amount": 128,
                            "balance_after": 1280,
                            "reason": "",
                            "store": "sh001",
                            "store_name": "Jing'an",
                            "order_number": "A-10023",
                            "breakdown": [{"rule": "base", "name": "Base rate", "kind": "base", "points": 128}],
                        }
                    ],
                },
            )
        ],
    )
    def get(self, request):
        query = s.EntriesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        entries = entries_for_member(self.member, **query.validated_data)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(s.EntryOut(page, many=True).data)


def _tier(tier) -> dict | None:
    return s.TierBriefOut(tier).data if tier else None


class TierView(MemberView):
    @extend_schema(
        operation_id="me_tier",
        tags=["me"],
        summary="My tier and progress",
        description="Growth needed for the next tier, and to keep this one by its review date.",
        responses={200: s.TierProgressOut, **errors(401, 403)},
        examples=[
            example(
                "gold",
                {
                    "tier": {"code": "gold", "name": "Gold", "rank": 2},
                    "next_tier": {"code": "platinum", "name": "Platinum", "rank": 3},
                    "growth": 2400,
                    "growth_to_next": 2600,
                    "review_at": "2027-03-01T12:00:00+08:00",
                    "growth_to_keep": 0,
                    "pinned_until": None,
                },
            )
        ],
    )
    def get(self, request):
        progress = tier_progress(self.member)
        body = {**vars(progress), "tier": _tier(progress.tier), "next_tier": _tier(progress.next_tier)}
        return Response(s.TierProgressOut(body).data)


class BenefitsView(MemberView):
    @extend_schema(
        operation_id="me_benefits",
        tags=["me"],
        summary="What my tier gives me",
        responses={200: s.BenefitOut(many=True), **errors(401, 403)},
        examples=[
            example(
                "gold",
                [
                    {
                        "kind": "earn_multiplier",
                        "kind_label": "earn multiplier",
                        "title": "1.5x points",
                        "description": "",
                        "value": "1.50",
                    }
                ],
            )
        ],
    )
    def get(self, request):
        benefits = Benefit.objects.filter(tier__members__member=self.member, is_active=True).order_by("kind", "id")
        return Response(s.BenefitOut(benefits, many=True).data)


class NotificationCursor(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 20


class NotificationsView(MemberView):
    pagination_class = NotificationCursor

    @extend_schema(
        operation_id="me_notifications",
        tags=["me"],
        summary="My notifications",
        responses={200: s.NotificationOut(many=True), **errors(401, 403)},
    )
    def get(self, request):
        notifications = Notification.objects.filter(member=self.member)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(notifications, request, view=self)
        return paginator.get_paginated_response(s.NotificationOut(page, many=True).data)


class NotificationReadView(MemberView):
    @extend_schema(
        operation_id="me_notification_read",
        tags=["me"],
        summary="Mark a notification read",
        request=None,
        responses={200: s.NotificationOut, **errors(401, 403, 404)},
    )
    def post(self, request, pk: int):
        notification = get_object_or_404(Notification, pk=pk, member=self.member)
        return Response(s.NotificationOut(notification_mark_read(notification=notification)).data)


class CouponsView(MemberView):
    @extend_schema(
        operation_id="me_coupons",
        tags=["me"],
        summary="My coupons",
        description="Usable (issued) ones by default; status=all for every coupon.",
        parameters=[s.CouponsQuery],
        responses={200: s.CouponOut(many=True), **errors(400, 401, 403)},
    )
    def get(self, request):
        query = s.CouponsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data["status"]
        coupons = coupons_for_member(member=self.member, status=None if wanted == "all" else wanted)
        return Response(s.CouponOut(coupons, many=True).data)


class ExportView(MemberView):
    @extend_schema(
        operation_id="me_export",
        tags=["me"],
        summary="Download my data",
        description="Everything kept about me: profile, consents, balances, entries, lots, orders, coupons, ...",
        responses={200: {"type": "object", "additionalProperties": True}, **errors(401, 403)},
    )
    def get(self, request):
        response = Response(member_export(member=self.member))
        response["Content-Disposition"] = f'attachment; filename="member-{self.member.member_number}.json"'
        return response


CONFIRMATION = "ERASE"


class EraseView(MemberView):
    @extend_schema(
        operation_id="me_erase",
        tags=["me"],
        summary="Erase my account",
        description=(
            'Removes personal data and closes the membership; send {"confirm": "ERASE"}. '
            "The points history is kept anonymously for accounting. All tokens stop working."
        ),
        request=s.EraseIn,
        responses={204: None, **errors(400, 401, 403, 409)},
        examples=[example("confirm", {"confirm": "ERASE"}, request=True)],
    )
    def post(self, request):
        data = s.EraseIn(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["confirm"] != CONFIRMATION:
            raise LoyaltyError(
                "confirmation_required",
                _("Type %(word)s to confirm that you want to erase your account.") % {"word": CONFIRMATION},
                fields={"confirm": _("Type %(word)s.") % {"word": CONFIRMATION}},
            )
        member_erase(member=self.member)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CheckoutQuoteView(MemberView):
    @extend_schema(
        operation_id="me_checkout_quote",
        tags=["me"],
        summary="How many of my points I may use on an order (积分抵扣)",
        parameters=[s.QuoteIn],
        responses={200: s.QuoteOut, **errors(400, 401, 403)},
        examples=[example("quote", {"max_points": 1280, "value": "12.80", "point_value": "0.0100", "balance": 1280})],
    )
    def get(self, request):
        query = s.QuoteIn(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(
            s.QuoteOut(checkout_quote(member=self.member, order_total=query.validated_data["order_total"])).data
        )

"""Partners (docs/programme.md): the partner's own endpoints under its key, the member's
partner vouchers and benefits, and the staff's settlement.

A partner key (``Authorization: Partner-Key pk_...``) opens the ``/partner/`` endpoints
only: no other view accepts that scheme, and these accept nothing else.
"""

from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from members.models import Member
from members.scoping import is_staff_with
from programme import partners, transfers
from programme.models import Partner, PartnerKey, PartnerOffer

from .. import partner_serializers as s
from ..permissions import IsStaffCaller
from .common import errors, example
from .me import MemberView


class PartnerKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Partner-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0].lower() != self.keyword.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(gettext_lazy("Invalid Authorization header: give one partner key."))
        key = partners.partner_for_key(header[1])
        if key is None:
            raise exceptions.AuthenticationFailed(
                gettext_lazy("The partner key is invalid or disabled."), code="key_invalid"
            )
        return AnonymousUser(), key

    def authenticate_header(self, request):
        return self.keyword


class PartnerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.views.partners.PartnerKeyAuthentication"
    name = "partnerKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A partner's key: `Authorization: Partner-Key pk_...` (partner endpoints only).",
        }


class IsPartner(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, PartnerKey)


class PartnerView(APIView):
    authentication_classes = [PartnerKeyAuthentication]
    permission_classes = [IsPartner]

    @property
    def partner(self) -> Partner:
        return self.request.auth.partner


def _member(text: str) -> Member:
    try:
        return transfers.receiver_find(text)
    except LoyaltyError:
        raise LoyaltyError(
            "member_not_found", _("No member has the phone or member number “%(to)s”.") % {"to": text}
        ) from None


EARN_EXAMPLE = {
    "order_number": "CW-20261120-0042",
    "member_number": "8123456782",
    "amount": "68.00",
    "points": 68,
    "points_per_yuan": "1.0000",
    "issue_price": "0.0050",
    "owed": "0.34",
    "occurred_at": "2026-11-20T14:50:00+08:00",
    "created_at": "2026-11-20T15:04:00+08:00",
    "replayed": False,
}
VOUCHER_EXAMPLE = {
    "id": 7,
    "partner": {"code": "carwash", "name": "Sparkle Car Wash"},
    "offer": "One wash",
    "code": "SPK-0001",
    "points": 800,
    "status": "issued",
    "issued_at": "2026-11-20T15:04:00+08:00",
    "expires_at": "2026-12-20T15:04:00+08:00",
    "used_at": None,
}
SETTLEMENT_EXAMPLE = {
    "partner": {"code": "carwash", "name": "Sparkle Car Wash"},
    "month": "2026-11-01",
    "orders": 12,
    "points_issued": 980,
    "owed_by_partner": "4.90",
    "vouchers": 3,
    "points_redeemed": 2400,
    "owed_to_partner": "12.00",
    "balance": "-7.10",
}


class PartnerEarnView(PartnerView):
    @extend_schema(
        operation_id="partner_order_earn",
        tags=["partners"],
        summary="Points for a member's order at the partner (earn at a partner)",
        description=(
            "The member earns amount × the partner's points per yuan (rounded down); the partner owes the points "
            "at its price per point issued, both recorded. Once per order number: sent again it answers 200 with "
            "the first record; with another member or amount it is 422 order_number_taken."
        ),
        request=s.PartnerEarnIn,
        responses={201: s.PartnerEarnOut, 200: s.PartnerEarnOut, **errors(400, 401, 403, 404, 409, 422)},
        examples=[
            example(
                "order",
                {"member": "13800138000", "order_number": "CW-20261120-0042", "amount": "68.00"},
                request=True,
            ),
            example("earned", EARN_EXAMPLE, status=201),
        ],
    )
    def post(self, request):
        data = s.PartnerEarnIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        earn = partners.partner_earn(
            partner=self.partner,
            member=_member(values["member"]),
            order_number=values["order_number"],
            amount=values["amount"],
            occurred_at=values.get("occurred_at"),
        )
        replayed = getattr(earn, "replayed", False)
        return Response(s.PartnerEarnOut(earn).data, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED)


class PartnerVoucherUseView(PartnerView):
    @extend_schema(
        operation_id="partner_voucher_use",
        tags=["partners"],
        summary="Mark one of the partner's vouchers used (burn at a partner)",
        description="404 voucher_not_found also for another partner's code; 409 voucher_used, voucher_void, "
        "voucher_expired.",
        request=s.VoucherUseIn,
        responses={200: s.PartnerVoucherOut, **errors(400, 401, 403, 404, 409)},
        examples=[example("use", {"code": "SPK-0001"}, request=True), example("used", VOUCHER_EXAMPLE)],
    )
    def post(self, request):
        data = s.VoucherUseIn(data=request.data)
        data.is_valid(raise_exception=True)
        voucher = partners.partner_voucher_use(partner=self.partner, code=data.validated_data["code"])
        return Response(s.PartnerVoucherOut(voucher).data)


class PartnerCodesView(PartnerView):
    @extend_schema(
        operation_id="partner_offer_codes_upload",
        tags=["partners"],
        summary="Upload a batch of voucher codes for one of the partner's offers",
        description="Codes already there are skipped. 409 offer_codes_generated for an offer whose codes are "
        "generated by the brand.",
        request=s.CodesIn,
        responses={200: s.CodesOut, **errors(400, 401, 403, 404, 409)},
        examples=[example("batch", {"codes": ["SPK-0001", "SPK-0002"]}, request=True)],
    )
    def post(self, request, pk: int):
        data = s.CodesIn(data=request.data)
        data.is_valid(raise_exception=True)
        offer = PartnerOffer.objects.filter(pk=pk, partner=self.partner).first()
        if offer is None:
            raise LoyaltyError("offer_not_found", _("You have no offer with this id."))
        added, there = partners.partner_codes_upload(offer=offer, codes=data.validated_data["codes"])
        return Response(s.CodesOut({"added": added, "already_there": there, "left": partners.codes_left(offer)}).data)


class PartnerMemberBenefitsView(PartnerView):
    @extend_schema(
        operation_id="partner_member_benefits",
        tags=["partners"],
        summary="The partner's benefits a member has now (by their tier or paid plan)",
        parameters=[s.MemberQuery],
        responses={200: s.MemberBenefitsOut, **errors(400, 401, 403, 404)},
        examples=[
            example(
                "gold member",
                {
                    "member_number": "8123456782",
                    "benefits": [
                        {
                            "partner": {"code": "carwash", "name": "Sparkle Car Wash"},
                            "title": "One free wash a month",
                            "description": "",
                        }
                    ],
                },
            )
        ],
    )
    def get(self, request):
        query = s.MemberQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        member = _member(query.validated_data["member"])
        mine = [b for b in partners.partner_benefits_for(member) if b.partner_id == self.partner.pk]
        return Response(s.MemberBenefitsOut({"member_number": member.member_number, "benefits": mine}).data)


class PartnerSettlementView(PartnerView):
    @extend_schema(
        operation_id="partner_settlement",
        tags=["partners"],
        summary="The partner's own settlement for a month",
        parameters=[s.MonthQuery],
        responses={200: s.SettlementOut, **errors(400, 401, 403)},
        examples=[example("november", SETTLEMENT_EXAMPLE)],
    )
    def get(self, request):
        query = s.MonthQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        month = partners.parse_month(query.validated_data.get("month"))
        settlement = partners.partner_settlement(partner=self.partner, month=month)
        return Response(s.SettlementOut(_settlement_body(settlement)).data)


def _settlement_body(settlement) -> dict:
    return {**vars(settlement), "balance": settlement.balance}


# --- the member's ------------------------------------------------------------------------


class OffersView(MemberView):
    @extend_schema(
        operation_id="partner_offers",
        tags=["partners"],
        summary="Partner rewards in the mall (each marked is_partner)",
        responses={200: s.OfferOut(many=True), **errors(401, 403)},
    )
    def get(self, request):
        return Response(s.OfferOut(partners.offers_available(), many=True).data)


class MyPartnerVouchersView(MemberView):
    @extend_schema(
        operation_id="me_partner_vouchers",
        tags=["partners"],
        summary="My partner vouchers (the latest 100)",
        responses={200: s.PartnerVoucherOut(many=True), **errors(401, 403)},
        examples=[example("vouchers", [VOUCHER_EXAMPLE])],
    )
    def get(self, request):
        return Response(s.PartnerVoucherOut(partners.member_vouchers(self.member), many=True).data)

    @extend_schema(
        operation_id="me_partner_voucher_redeem",
        tags=["partners"],
        summary="Spend points on a partner voucher",
        description="The same idempotency_key again answers 200 with the first voucher. 409 offer_unavailable, "
        "tier_too_low, out_of_codes, insufficient_balance.",
        request=s.RedeemIn,
        responses={201: s.PartnerVoucherOut, 200: s.PartnerVoucherOut, **errors(400, 401, 403, 404, 409, 422)},
        examples=[example("redeem", {"offer": 3, "idempotency_key": "c0ffee-1"}, request=True)],
    )
    def post(self, request):
        data = s.RedeemIn(data=request.data)
        data.is_valid(raise_exception=True)
        offer = PartnerOffer.objects.filter(pk=data.validated_data["offer"]).first()
        if offer is None:
            raise LoyaltyError("offer_not_found", _("No partner offer has this id."))
        voucher = partners.partner_voucher_redeem(
            member=self.member, offer=offer, idempotency_key=data.validated_data["idempotency_key"]
        )
        replayed = getattr(voucher, "replayed", False)
        return Response(
            s.PartnerVoucherOut(voucher).data, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED
        )


class MyPartnerBenefitsView(MemberView):
    @extend_schema(
        operation_id="me_partner_benefits",
        tags=["partners"],
        summary="Partner benefits I have now (by my tier or paid plan)",
        responses={200: s.PartnerBenefitOut(many=True), **errors(401, 403)},
    )
    def get(self, request):
        return Response(s.PartnerBenefitOut(partners.partner_benefits_for(self.member), many=True).data)


# --- the staff's -------------------------------------------------------------------------


class StaffSettlementView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_partner_settlement",
        tags=["partners"],
        summary="A partner's settlement for a month (staff); ?export=csv for the CSV",
        description="Needs programme.view_settlement.",
        parameters=[s.StaffMonthQuery],
        responses={200: s.SettlementOut, **errors(400, 401, 403, 404)},
        examples=[example("november", SETTLEMENT_EXAMPLE)],
    )
    def get(self, request, code: str):
        if not is_staff_with(request.user, "programme.view_settlement"):
            raise LoyaltyError("permission_denied", _("You may not view partner settlements."))
        partner = Partner.objects.filter(code=code).first()
        if partner is None:
            raise LoyaltyError("partner_not_found", _("No partner has the code “%(code)s”.") % {"code": code})
        query = s.StaffMonthQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        settlement = partners.partner_settlement(
            partner=partner, month=partners.parse_month(query.validated_data.get("month"))
        )
        if query.validated_data.get("export") == "csv":
            response = HttpResponse(partners.settlement_csv(settlement), content_type="text/csv; charset=utf-8")
            name = f"settlement-{partner.code}-{settlement.month:%Y-%m}.csv"
            response["Content-Disposition"] = f'attachment; filename="{name}"'
            return response
        return Response(s.SettlementOut(_settlement_body(settlement)).data)

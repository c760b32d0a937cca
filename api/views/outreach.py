"""Channels: a member's WeChat subscription answers, and the SMS providers' delivery
reports (docs/channels.md)."""

import hmac

from django.conf import settings
from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from outreach.models import WechatSubscription
from outreach.services import delivery_report, wechat_subscriptions_record

from .common import errors, example
from .me import MemberView

ANSWERS = ("accept", "reject", "ban", "filter")


class WechatSubscriptionsView(MemberView):
    class WechatSubscriptionsIn(serializers.Serializer):
        results = serializers.DictField(
            child=serializers.ChoiceField(choices=ANSWERS),
            allow_empty=False,
            help_text="What wx.requestSubscribeMessage answered: template id -> accept, reject, ban or filter.",
        )

    class WechatSubscriptionsOut(serializers.Serializer):
        accepted = serializers.IntegerField(help_text="Accepts recorded by this call.")
        subscriptions = serializers.ListField(child=serializers.DictField(), help_text="template_id and remaining.")

    @extend_schema(
        operation_id="me_wechat_subscriptions",
        tags=["me"],
        summary="Record my WeChat subscription answers",
        description=(
            "After wx.requestSubscribeMessage, the mini-program posts the answers. Each accept allows one "
            "subscription message on that template; reject, ban or filter allow none."
        ),
        request=WechatSubscriptionsIn,
        responses={200: WechatSubscriptionsOut, **errors(400, 401, 403)},
        examples=[
            example("answers", {"results": {"tpl-expiry": "accept", "tpl-offer": "reject"}}, request=True),
            example(
                "recorded",
                {
                    "accepted": 1,
                    "subscriptions": [
                        {"template_id": "tpl-expiry", "remaining": 1},
                        {"template_id": "tpl-offer", "remaining": 0},
                    ],
                },
            ),
        ],
    )
    def post(self, request):
        data = self.WechatSubscriptionsIn(data=request.data)
        data.is_valid(raise_exception=True)
        results = data.validated_data["results"]
        if len(results) > 20 or any(len(str(t)) > 64 or not str(t).strip() for t in results):
            raise LoyaltyError("invalid", _("Some fields are not valid."), fields={"results": _("Unknown template.")})
        accepted = wechat_subscriptions_record(member=self.member, results=results)
        rows = WechatSubscription.objects.filter(member=self.member).order_by("template_id")
        subscriptions = [{"template_id": r.template_id, "remaining": r.remaining} for r in rows]
        return Response(self.WechatSubscriptionsOut({"accepted": accepted, "subscriptions": subscriptions}).data)


class SmsReportView(APIView):
    """The providers' delivery-report callbacks (状态报告). They sign nothing, so the URL
    carries ``OUTREACH_REPORT_TOKEN``; a wrong token or none configured is a 404."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="outreach_sms_report",
        tags=["outreach"],
        summary="SMS delivery reports (provider callback)",
        description=(
            "Aliyun posts a list of {biz_id, success, err_code, ...}; Tencent Cloud a list of "
            "{sid, report_status, errmsg, ...}. Each report moves a sent delivery to delivered or failed."
        ),
        parameters=[
            OpenApiParameter("provider", str, OpenApiParameter.PATH, enum=["aliyun", "tencent"]),
            OpenApiParameter("token", str, OpenApiParameter.PATH),
        ],
        request={"application/json": {"type": "array", "items": {"type": "object"}}},
        responses={200: {"type": "object"}, **errors(400, 404)},
        examples=[
            example(
                "aliyun", [{"biz_id": "900619746936498440^0", "success": True, "err_code": "DELIVERED"}], request=True
            ),
            example("aliyun answer", {"code": 0, "msg": "成功"}),
        ],
    )
    def post(self, request, provider: str, token: str):
        body = request.data  # an unreadable body is a 415 before anything else
        expected = settings.OUTREACH_REPORT_TOKEN
        if (
            not expected
            or not hmac.compare_digest(token.encode(), expected.encode())
            or provider
            not in (
                "aliyun",
                "tencent",
            )
        ):
            raise Http404
        reports = body if isinstance(body, list) else None
        if reports is None or not all(isinstance(r, dict) for r in reports) or len(reports) > 1000:
            raise LoyaltyError("invalid", _("Some fields are not valid."), fields={"body": _("A list of reports.")})
        for report in reports:
            if provider == "aliyun":
                delivered = report.get("success") in (True, "true")
                message_id, reason = (
                    str(report.get("biz_id", "")),
                    str(report.get("err_msg") or report.get("err_code", "")),
                )
            else:
                delivered = report.get("report_status") == "SUCCESS"
                message_id, reason = (
                    str(report.get("sid", "")),
                    str(report.get("description") or report.get("errmsg", "")),
                )
            delivery_report(provider=provider, message_id=message_id, delivered=delivered, reason=reason)
        if provider == "aliyun":
            return Response({"code": 0, "msg": "成功"})
        return Response({"result": 0, "errmsg": "OK"})

"""The channels' endpoints: WeChat subscription answers and SMS delivery reports."""

import pytest
from rest_framework.test import APIClient

from loyalty.tests.factories import MemberFactory
from outreach.models import Delivery, WechatSubscription

pytestmark = pytest.mark.django_db


def test_a_member_records_wechat_subscription_answers(member_client, member):
    url = "/api/v1/me/wechat-subscriptions/"
    answer = member_client.post(url, {"results": {"tpl-a": "accept", "tpl-b": "reject"}}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["accepted"] == 1
    member_client.post(url, {"results": {"tpl-a": "accept"}}, format="json")
    assert dict(WechatSubscription.objects.filter(member=member).values_list("template_id", "remaining")) == {
        "tpl-a": 2,
        "tpl-b": 0,
    }


def test_bad_subscription_answers_are_refused_and_change_nothing(member_client):
    url = "/api/v1/me/wechat-subscriptions/"
    for body in ({"results": {"tpl-a": "maybe"}}, {"results": {}}, {"results": "accept"}, {}):
        answer = member_client.post(url, body, format="json")
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "invalid"
    assert not WechatSubscription.objects.exists()
    assert APIClient().post(url, {"results": {"t": "accept"}}, format="json").status_code == 401


def test_provider_reports_mark_deliveries_delivered_or_failed(settings):
    settings.OUTREACH_REPORT_TOKEN = "s3cret-token"
    member = MemberFactory()
    ok = Delivery.objects.create(
        member=member, kind="other", channel="sms", provider="aliyun", status="sent", provider_message_id="900^0"
    )
    bad = Delivery.objects.create(
        member=member, kind="other", channel="sms", provider="tencent", status="sent", provider_message_id="2028:1"
    )
    client = APIClient()
    answer = client.post(
        "/api/v1/outreach/reports/aliyun/s3cret-token/",
        [{"biz_id": "900^0", "success": True, "err_code": "DELIVERED"}],
        format="json",
    )
    assert answer.json() == {"code": 0, "msg": "成功"}
    answer = client.post(
        "/api/v1/outreach/reports/tencent/s3cret-token/",
        [{"sid": "2028:1", "report_status": "FAIL", "errmsg": "MK:0005", "description": "空号"}],
        format="json",
    )
    assert answer.json() == {"result": 0, "errmsg": "OK"}
    ok.refresh_from_db()
    bad.refresh_from_db()
    assert ok.status == "delivered"
    assert (bad.status, bad.reason) == ("failed", "空号")


def test_reports_with_a_wrong_token_or_body_are_refused(settings):
    settings.OUTREACH_REPORT_TOKEN = "s3cret-token"
    client = APIClient()
    assert client.post("/api/v1/outreach/reports/aliyun/guess/", [], format="json").status_code == 404
    assert client.post("/api/v1/outreach/reports/other/s3cret-token/", [], format="json").status_code == 404
    answer = client.post("/api/v1/outreach/reports/aliyun/s3cret-token/", {"biz_id": 1}, format="json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid"
    settings.OUTREACH_REPORT_TOKEN = ""
    assert client.post("/api/v1/outreach/reports/aliyun/s3cret-token/", [], format="json").status_code == 404

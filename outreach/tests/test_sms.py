"""SMS through Aliyun and Tencent Cloud, against local stubs that check the signatures."""

import datetime as dt
import json
import urllib.parse

import pytest
from django.utils import timezone

from loyalty.tests.factories import MemberFactory
from members.models import Notification
from members.notifications import notifications_send_pending, notify
from members.otp import otp_send, otp_verify
from outreach.models import Delivery
from outreach.providers import aliyun as aliyun_provider
from outreach.services import deliveries_send_due, delivery_report

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 4, 14, 0, tzinfo=dt.UTC)  # 22:00 in Shanghai: quiet hours tested elsewhere


def expiry_notice(member, key="exp:1"):
    return notify(
        member_id=member.pk,
        kind=Notification.Kind.EXPIRY_WARNING,
        title="Your points expire soon",
        body="%(points)s points expire on %(date)s.",
        params={"points": 120, "date": "2026-06-01"},
        dedupe_key=key,
        now=NOW,
    )


def test_aliyun_signature_matches_the_documented_example():
    # The example of Aliyun's "RPC signature" page: AccessKeySecret "testsecret".
    params = {
        "Timestamp": "2016-02-23T12:46:24Z",
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "Version": "2014-05-26",
        "SignatureVersion": "1.0",
    }
    assert aliyun_provider.sign("testsecret", "GET", params) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_aliyun_sends_a_signed_template_message_and_keeps_its_biz_id(settings, aliyun):
    settings.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms", "inapp"]}
    member = MemberFactory(phone="+8613912345678")
    expiry_notice(member)
    assert notifications_send_pending(now=NOW)["sent"] == 1

    delivery = Delivery.objects.get()
    assert (delivery.channel, delivery.provider, delivery.status) == ("sms", "aliyun", "sent")
    assert delivery.provider_message_id.endswith("00619746936498440^0")
    sent = dict(urllib.parse.parse_qsl(aliyun.requests[0]["body"].decode()))
    assert sent["PhoneNumbers"] == "13912345678"  # mainland numbers without +86
    assert sent["TemplateCode"] == "SMS_000000002"
    assert json.loads(sent["TemplateParam"]) == {"points": 120, "date": "2026-06-01"}
    assert sent["SignName"] == "测试品牌"


def test_a_wrong_secret_is_refused_by_the_provider_and_the_next_channel_takes_over(settings, aliyun):
    settings.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms", "inapp"]}
    settings.OUTREACH_ALIYUN = {**settings.OUTREACH_ALIYUN, "access_key_secret": "not-the-secret"}
    expiry_notice(MemberFactory())
    notifications_send_pending(now=NOW)

    sms, inapp = Delivery.objects.order_by("id")
    assert (sms.status, sms.error_code, sms.attempts) == ("failed", "SignatureDoesNotMatch", 1)
    assert (inapp.channel, inapp.status) == ("inapp", "delivered")


def test_flow_control_is_retried_after_a_backoff(settings, aliyun):
    settings.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms", "inapp"]}
    aliyun.fail_with = ["isv.BUSINESS_LIMIT_CONTROL", "isp.SYSTEM_ERROR"]
    expiry_notice(MemberFactory())
    notifications_send_pending(now=NOW)

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("queued", 1, "isv.BUSINESS_LIMIT_CONTROL")
    assert delivery.next_attempt_at == NOW + dt.timedelta(minutes=1)
    assert deliveries_send_due(now=NOW + dt.timedelta(seconds=30)) == {"attempted": 0, "sent": 0}
    assert deliveries_send_due(now=NOW + dt.timedelta(seconds=61)) == {"attempted": 1, "sent": 0}
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == NOW + dt.timedelta(seconds=61) + dt.timedelta(minutes=5)
    # The notification task sends what is due, after the outbox rows.
    assert notifications_send_pending(now=NOW + dt.timedelta(minutes=7))["retried"] == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 3)
    assert Delivery.objects.count() == 1  # no fallback while retrying


def test_temporary_errors_give_up_after_the_last_attempt_and_fall_back(settings, aliyun):
    settings.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    settings.OUTREACH_MAX_ATTEMPTS = 2
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms", "inapp"]}
    aliyun.fail_with = ["isp.SYSTEM_ERROR"] * 2
    expiry_notice(MemberFactory())
    notifications_send_pending(now=NOW)
    deliveries_send_due(now=NOW + dt.timedelta(hours=1))
    sms, inapp = Delivery.objects.order_by("id")
    assert (sms.status, sms.attempts) == ("failed", 2)
    assert inapp.status == "delivered"


def test_a_bad_number_is_not_retried_nor_sent_to_the_other_sms_provider(settings, aliyun, tencent):
    settings.OUTREACH_SMS_PROVIDERS = ["aliyun", "tencent"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms", "email", "inapp"]}
    aliyun.fail_with = ["isv.MOBILE_NUMBER_ILLEGAL"]
    expiry_notice(MemberFactory(email="ann@example.com"))
    notifications_send_pending(now=NOW)

    rows = list(Delivery.objects.order_by("id").values_list("channel", "provider", "status", "error_code"))
    assert rows == [
        ("sms", "aliyun", "failed", "isv.MOBILE_NUMBER_ILLEGAL"),
        ("email", "email", "sent", ""),
    ]
    assert tencent.requests == []
    assert deliveries_send_due(now=NOW + dt.timedelta(days=1))["attempted"] == 0


def test_an_unapproved_template_at_one_provider_goes_to_the_next(settings, aliyun, tencent):
    settings.OUTREACH_SMS_PROVIDERS = ["tencent", "aliyun"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms"]}
    tencent.fail_with = ["FailedOperation.TemplateIncorrectOrUnapproved"]
    expiry_notice(MemberFactory())
    notifications_send_pending(now=NOW)
    rows = list(Delivery.objects.order_by("id").values_list("provider", "status"))
    assert rows == [("tencent", "failed"), ("aliyun", "sent")]


def test_tencent_sends_a_tc3_signed_request(settings, tencent):
    settings.OUTREACH_SMS_PROVIDERS = ["tencent"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms"]}
    expiry_notice(MemberFactory(phone="+8613711112222"))
    notifications_send_pending(now=NOW)

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.provider_message_id) == ("sent", "2028:1")
    request = tencent.requests[0]
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert (headers["x-tc-action"], headers["x-tc-version"]) == ("SendSms", "2021-01-11")
    assert headers["authorization"].startswith("TC3-HMAC-SHA256 Credential=AKID-test-id/")
    body = json.loads(request["body"])
    assert body["PhoneNumberSet"] == ["+8613711112222"]
    assert (body["TemplateId"], body["TemplateParamSet"]) == ("100002", ["120", "2026-06-01"])


def test_tencent_rejects_a_bad_signature_and_nothing_is_retried(settings, tencent):
    settings.OUTREACH_SMS_PROVIDERS = ["tencent"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms"]}
    settings.OUTREACH_TENCENT = {**settings.OUTREACH_TENCENT, "secret_key": "wrong"}
    expiry_notice(MemberFactory())
    notifications_send_pending(now=NOW)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.error_code) == ("failed", "AuthFailure.SignatureFailure")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("LimitExceeded.PhoneNumberDailyLimit", "queued"),
        ("InvalidParameterValue.IncorrectPhoneNumber", "failed"),
        ("Error:InternalError.Timeout", "queued"),
        ("Error:FailedOperation.InsufficientBalanceInSmsPackage", "failed"),
    ],
)
def test_tencent_error_codes_map_to_retry_or_not(settings, tencent, code, status):
    settings.OUTREACH_SMS_PROVIDERS = ["tencent"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms"]}
    tencent.fail_with = [code]
    expiry_notice(MemberFactory())
    notifications_send_pending(now=NOW)
    assert Delivery.objects.get().status == status


def test_a_provider_that_is_down_or_too_slow_is_a_temporary_error(settings, aliyun):
    settings.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms"]}
    settings.OUTREACH_HTTP_TIMEOUT = 0.3
    aliyun.delay = 0.6
    expiry_notice(MemberFactory(), key="slow")
    notifications_send_pending(now=NOW)
    slow = Delivery.objects.get()
    assert (slow.status, slow.error_code) == ("queued", "unreachable")

    aliyun.delay = 0
    aliyun.stop()
    deliveries_send_due(now=NOW + dt.timedelta(minutes=2))
    slow.refresh_from_db()
    assert (slow.status, slow.attempts, slow.error_code) == ("queued", 2, "unreachable")


def test_a_sign_in_code_arrives_through_the_sms_provider(settings, aliyun, tencent):
    settings.OUTREACH_SMS_PROVIDERS = ["aliyun", "tencent"]
    aliyun.stop()  # the first provider is down: the code goes by the second at once
    otp_send(phone="13900001111")

    body = json.loads(tencent.requests[0]["body"])
    assert body["TemplateId"] == "100001"
    (code,) = body["TemplateParamSet"]
    assert otp_verify(phone="13900001111", code=code) == "+8613900001111"
    rows = list(Delivery.objects.order_by("id").values_list("provider", "status", "recipient"))
    assert rows == [("aliyun", "failed", "+8613900001111"), ("tencent", "sent", "+8613900001111")]
    assert not Delivery.objects.filter(reason__contains=code).exists()


def test_a_code_no_provider_takes_is_refused_to_the_member(settings, tencent):
    from core.errors import LoyaltyError

    settings.OUTREACH_SMS_PROVIDERS = ["tencent"]
    tencent.fail_with = ["Error:FailedOperation.InsufficientBalanceInSmsPackage"]
    with pytest.raises(LoyaltyError) as refused:
        otp_send(phone="13900001112")
    assert refused.value.code == "otp_send_failed"


def test_the_log_provider_sends_no_code_in_production(settings):
    from core.errors import LoyaltyError

    settings.PRODUCTION = True
    with pytest.raises(LoyaltyError):
        otp_send(phone="13900001113")
    assert Delivery.objects.get().error_code == "no_provider"


def test_a_delivery_report_marks_a_sent_message_delivered_once(settings, aliyun):
    settings.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["sms"]}
    expiry_notice(MemberFactory())
    notifications_send_pending(now=NOW)
    delivery = Delivery.objects.get()
    assert delivery_report(provider="aliyun", message_id=delivery.provider_message_id, delivered=True) == 1
    assert delivery_report(provider="aliyun", message_id=delivery.provider_message_id, delivered=False) == 0
    assert delivery_report(provider="tencent", message_id=delivery.provider_message_id, delivered=True) == 0
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.finished_at <= timezone.now()


def test_a_member_signs_in_through_the_api_with_a_code_from_the_stub_provider(settings, aliyun):
    from rest_framework.test import APIClient

    settings.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    client = APIClient()
    sent = client.post("/api/v1/auth/otp/", {"phone": "138 0013 8000"}, format="json")
    assert sent.status_code == 202, sent.content
    code = json.loads(dict(urllib.parse.parse_qsl(aliyun.requests[0]["body"].decode()))["TemplateParam"])["code"]
    signed_in = client.post("/api/v1/auth/otp/sign-in/", {"phone": "13800138000", "code": code}, format="json")
    assert signed_in.status_code in (200, 201), signed_in.content
    assert "access" in json.dumps(signed_in.json())

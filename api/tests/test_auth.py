import datetime as dt

import pytest
from rest_framework.test import APIClient

from api.models import ApiToken
from loyalty.tests.factories import MemberFactory
from members.models import Member
from operations.privacy import member_erase

pytestmark = pytest.mark.django_db

PHONE = "+8613800138000"


def post(path, data, client=None, **extra):
    return (client or APIClient()).post(path, data, format="json", **extra)


def test_otp_sign_in_registers_and_returns_tokens(sms):
    assert post("/api/v1/auth/otp/", {"phone": "138 0013 8000"}).status_code == 202
    response = post("/api/v1/auth/otp/sign-in/", {"phone": "13800138000", "code": sms.last_code()})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["access"].startswith("at_") and body["refresh"].startswith("rt_")
    member = Member.objects.get(phone=PHONE)
    assert body["member_number"] == member.member_number
    me = APIClient(HTTP_AUTHORIZATION=f"Bearer {body['access']}").get("/api/v1/me/")
    assert me.json()["phone"] == PHONE


def test_otp_wrong_code_is_400_with_code(sms):
    post("/api/v1/auth/otp/", {"phone": PHONE})
    response = post("/api/v1/auth/otp/sign-in/", {"phone": PHONE, "code": "abcdef"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "otp_invalid"


def test_otp_resend_within_a_minute_is_429_with_retry_after(sms):
    post("/api/v1/auth/otp/", {"phone": PHONE})
    response = post("/api/v1/auth/otp/", {"phone": PHONE})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "otp_rate_limited"
    assert int(response["Retry-After"]) > 0


def test_otp_endpoint_is_throttled_per_client(sms, settings):
    codes = [post("/api/v1/auth/otp/", {"phone": f"+86139001390{i:02d}"}).status_code for i in range(7)]
    assert codes[:5] == [202] * 5
    assert codes[5] == 429


def test_bad_phone_is_400_invalid_phone():
    response = post("/api/v1/auth/otp/", {"phone": "12"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_phone"


def test_errors_speak_the_requests_language():
    response = post("/api/v1/auth/otp/", {"phone": "12"}, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 400
    assert response["Content-Language"] == "zh-hans"
    english = post("/api/v1/auth/otp/", {"phone": "12"}, HTTP_ACCEPT_LANGUAGE="en")
    assert english["Content-Language"] == "en"
    assert "not a valid phone number" in english.json()["error"]["message"]


def test_miniprogram_new_user_binds_a_phone_then_signs_in_with_the_code_alone():
    response = post("/api/v1/auth/miniprogram/", {"code": "alice"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "phone_required"
    response = post("/api/v1/auth/miniprogram/", {"code": "alice", "phone_code": "13800138000"})
    assert response.status_code == 200
    member = Member.objects.get(phone=PHONE)
    assert member.wechat_openid == "fake-openid-alice"
    again = post("/api/v1/auth/miniprogram/", {"code": "alice"})
    assert again.status_code == 200
    assert again.json()["member_number"] == member.member_number
    assert "session_key" not in again.content.decode()


def test_miniprogram_new_user_can_bind_with_an_sms_code(sms):
    post("/api/v1/auth/otp/", {"phone": PHONE})
    response = post("/api/v1/auth/miniprogram/", {"code": "bob", "phone": PHONE, "otp_code": sms.last_code()})
    assert response.status_code == 200
    assert Member.objects.get(phone=PHONE).wechat_openid == "fake-openid-bob"


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("fail-40029", 400, "miniprogram_invalid_code"),
        ("fail-45011", 429, "miniprogram_rate_limited"),
        ("fail--1", 503, "miniprogram_unavailable"),
    ],
)
def test_miniprogram_platform_errors(code, status, error):
    response = post("/api/v1/auth/miniprogram/", {"code": code})
    assert response.status_code == status
    assert response.json()["error"]["code"] == error


def test_refresh_rotates_and_a_reused_refresh_token_ends_the_sign_in():
    MemberFactory(phone=PHONE, wechat_openid="fake-openid-alice")
    first = post("/api/v1/auth/miniprogram/", {"code": "alice"}).json()
    second = post("/api/v1/auth/refresh/", {"refresh": first["refresh"]})
    assert second.status_code == 200
    new = second.json()
    assert new["refresh"] != first["refresh"]
    # the old access token stopped working with the rotation
    assert APIClient(HTTP_AUTHORIZATION=f"Bearer {first['access']}").get("/api/v1/me/").status_code == 401
    reused = post("/api/v1/auth/refresh/", {"refresh": first["refresh"]})
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "token_invalid"
    # the reuse revoked the new pair too
    assert post("/api/v1/auth/refresh/", {"refresh": new["refresh"]}).status_code == 401


def test_sign_out_revokes_access_and_refresh():
    MemberFactory(phone=PHONE, wechat_openid="fake-openid-alice")
    tokens = post("/api/v1/auth/miniprogram/", {"code": "alice"}).json()
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.post("/api/v1/auth/sign-out/").status_code == 204
    assert client.get("/api/v1/me/").status_code == 401
    assert post("/api/v1/auth/refresh/", {"refresh": tokens["refresh"]}).status_code == 401


def test_an_expired_access_token_is_401(member):
    from django.utils import timezone

    from api.services import tokens_issue

    pair = tokens_issue(member=member, now=timezone.now() - dt.timedelta(hours=1))
    response = APIClient(HTTP_AUTHORIZATION=f"Bearer {pair.access}").get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"
    assert response["WWW-Authenticate"] == "Bearer"


def test_tokens_are_stored_hashed(member):
    from api.services import tokens_issue

    pair = tokens_issue(member=member)
    assert not ApiToken.objects.filter(key_hash__in=[pair.access, pair.refresh]).exists()


def test_an_erased_members_token_stops_working(member, member_client):
    member_erase(member=member)
    assert member_client.get("/api/v1/me/").status_code == 401


def test_staff_token_needs_a_staff_password(staff_user, member):
    assert post("/api/v1/auth/staff-token/", {"username": "clerk", "password": "wrong"}).status_code == 401
    ok = post("/api/v1/auth/staff-token/", {"username": "clerk", "password": "not-a-real-password-42"})
    assert ok.status_code == 201 and ok.json()["token"].startswith("st_")


def test_no_credentials_is_401_in_the_error_shape():
    response = APIClient().get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_malformed_json_is_400_parse_error():
    response = APIClient().post("/api/v1/auth/otp/", data="{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"

"""Per-client throttles count the real client: forged forwarding headers buy no new bucket."""

import itertools

import pytest
from rest_framework.test import APIClient

from api.services import tokens_issue

pytestmark = pytest.mark.django_db

_forged = (f"198.51.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def forged_headers() -> dict:
    """A new client address claimed on every request, in both headers proxies use."""
    address = next(_forged)
    return {"HTTP_X_FORWARDED_FOR": address, "HTTP_X_REAL_IP": address}


def post(path, data, **extra):
    return APIClient().post(path, data, format="json", **extra)


SIGN_IN_ENDPOINTS = [
    ("/api/v1/auth/otp/sign-in/", {"phone": "+8613800138000", "code": "000000"}),
    ("/api/v1/auth/miniprogram/", {"code": "fail-40029"}),
    ("/api/v1/auth/refresh/", {"refresh": "rt_not-a-token"}),
    ("/api/v1/auth/staff-token/", {"username": "nobody", "password": "wrong"}),
]


@pytest.mark.parametrize(("path", "body"), SIGN_IN_ENDPOINTS)
def test_sign_in_endpoints_throttle_one_client_whatever_it_forwards(path, body):
    # sign_in is 20/minute. The staff-token endpoint's per-username limit (10/hour) would
    # also stop this; each try uses a new username so only the address limit can.
    codes = []
    for n in range(21):
        data = {**body, "username": f"nobody-{n}"} if "username" in body else body
        codes.append(post(path, data, **forged_headers()).status_code)
    assert 429 not in codes[:20]
    assert codes[20] == 429


def test_otp_send_throttles_one_client_whatever_it_forwards(sms):
    codes = [
        post("/api/v1/auth/otp/", {"phone": f"+86139001390{i:02d}"}, **forged_headers()).status_code for i in range(6)
    ]
    assert codes == [202] * 5 + [429]


def test_staff_token_is_throttled_per_username_from_any_address(staff_user):
    # A password guessed from many addresses: each address stays under its own limit.
    codes = [
        post(
            "/api/v1/auth/staff-token/",
            {"username": "clerk", "password": f"guess-{n}"},
            REMOTE_ADDR=f"203.0.113.{n + 1}",
        ).status_code
        for n in range(11)
    ]
    assert codes == [401] * 10 + [429]
    # The limit is the username's: another username from a new address still gets an answer.
    assert (
        post(
            "/api/v1/auth/staff-token/", {"username": "other", "password": "x"}, REMOTE_ADDR="203.0.113.99"
        ).status_code
        == 401
    )


def test_redeem_is_throttled_per_member_whatever_address_they_claim(member):
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(member=member).access}")
    # The throttle runs before the reward is looked up, so an unknown reward counts too.
    codes = [
        client.post(
            "/api/v1/rewards/999999/redeem/", {}, format="json", REMOTE_ADDR=f"203.0.113.{n + 1}", **forged_headers()
        ).status_code
        for n in range(31)
    ]
    assert 429 not in codes[:30]
    assert codes[30] == 429


@pytest.fixture
def behind_proxy(settings):
    settings.LOYALTY_TRUSTED_PROXIES = ["10.0.0.0/8"]
    return {"REMOTE_ADDR": "10.0.0.2"}


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(sms, behind_proxy):
    def send(client_address, phone, forged=None):
        chain = f"{forged}, {client_address}" if forged else client_address
        return post("/api/v1/auth/otp/", {"phone": phone}, HTTP_X_FORWARDED_FOR=chain, **behind_proxy).status_code

    assert [send("198.51.100.1", f"+86139001391{i:02d}") for i in range(5)] == [202] * 5
    assert send("198.51.100.1", "+8613900139200") == 429
    # A header the client wrote itself, left of what our proxy appended, is not believed.
    assert send("198.51.100.1", "+8613900139201", forged="192.0.2.77") == 429
    # Another real client behind the same proxy is not throttled by the first one.
    assert send("198.51.100.2", "+8613900139202") == 202


def test_without_a_trusted_proxy_clients_behind_a_proxy_share_its_bucket(sms, settings):
    settings.LOYALTY_TRUSTED_PROXIES = []
    codes = [
        post(
            "/api/v1/auth/otp/",
            {"phone": f"+86139001393{i:02d}"},
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i + 1}",
        ).status_code
        for i in range(6)
    ]
    assert codes == [202] * 5 + [429]

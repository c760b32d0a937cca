"""The member pages' sign-in limits count the real client: forged forwarding headers change nothing."""

import itertools

import pytest
from django.contrib.auth import SESSION_KEY
from django.urls import reverse

from center import auth
from center.services import member_user_for_sign_in

pytestmark = pytest.mark.django_db

SIGN_IN = reverse("center:sign_in")
CODE = reverse("center:sign_in_code")
PASSWORD = reverse("center:sign_in_password")

_forged = (f"198.51.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def forged_headers() -> dict:
    address = next(_forged)
    return {"HTTP_X_FORWARDED_FOR": address, "HTTP_X_REAL_IP": address}


def with_password(member, password="a-Long-enough-pass-42"):
    user = member_user_for_sign_in(member=member)
    user.set_password(password)
    user.save()
    return password


def test_password_limit_per_address_ignores_forged_headers(client, member):
    password = with_password(member)
    for attempt in range(auth.PASSWORD_FAILURES_PER_IP):
        client.post(PASSWORD, {"phone": f"+86138001{attempt:05d}", "password": "wrong"}, **forged_headers())
    response = client.post(PASSWORD, {"phone": member.phone, "password": password}, **forged_headers())
    assert "Too many attempts" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_code_sending_is_limited_per_address_whatever_it_forwards(client, outbox):
    codes = [
        client.post(SIGN_IN, {"phone": f"+86139001{n:05d}"}, **forged_headers()).status_code
        for n in range(auth.CODE_SENDS_PER_IP + 1)
    ]
    assert codes[: auth.CODE_SENDS_PER_IP] == [302] * auth.CODE_SENDS_PER_IP
    assert codes[-1] == 429
    assert len(outbox) == auth.CODE_SENDS_PER_IP  # the refused request texted no one


def test_the_limit_page_says_what_to_do(client, outbox, settings):
    for n in range(auth.CODE_SENDS_PER_IP):
        client.post(SIGN_IN, {"phone": f"+86139001{n:05d}"})
    response = client.post(SIGN_IN, {"phone": "+8613900200000"})
    assert response.status_code == 429
    assert "Wait 15 minutes" in response.content.decode()
    assert int(response["Retry-After"]) > 0
    chinese = client.post(SIGN_IN, {"phone": "+8613900200000"}, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "15 分钟" in chinese.content.decode()


def test_code_checking_is_limited_per_address_whatever_it_forwards(client, outbox):
    client.post(SIGN_IN, {"phone": "+8613900139000"})
    codes = [
        client.post(CODE, {"code": f"{n:06d}"}, **forged_headers()).status_code
        for n in range(auth.CODE_CHECKS_PER_IP + 1)
    ]
    assert 429 not in codes[:-1]
    assert codes[-1] == 429


def test_behind_a_trusted_proxy_each_member_counts_on_their_own_address(client, member, settings):
    settings.LOYALTY_TRUSTED_PROXIES = ["10.0.0.0/8"]
    password = with_password(member)
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for attempt in range(auth.PASSWORD_FAILURES_PER_IP):
        client.post(
            PASSWORD,
            {"phone": f"+86138001{attempt:05d}", "password": "wrong"},
            HTTP_X_FORWARDED_FOR="198.51.100.1",
            **proxy,
        )
    # The sprayer is stopped, even when it writes its own header in front...
    refused = client.post(
        PASSWORD, {"phone": member.phone, "password": password}, HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.1", **proxy
    )
    assert "Too many attempts" in refused.content.decode()
    # ...while another member behind the same proxy signs in.
    response = client.post(
        PASSWORD, {"phone": member.phone, "password": password}, HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy
    )
    assert response.status_code == 302
    assert client.session[SESSION_KEY]

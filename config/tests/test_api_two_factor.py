"""The API is no way around two-factor sign-in: a staff token asks for the authenticator's
code when the admin would, and an admin session that still owes its code opens no API."""

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from api.models import ApiToken

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/staff-token/"
PASSWORD = "not-a-real-password-42"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def boss(django_user_model):
    return django_user_model.objects.create_user("boss", password=PASSWORD, is_staff=True)


@pytest.fixture
def device(boss):
    return TOTPDevice.objects.create(user=boss, name="phone", confirmed=True)


def code_for(device):
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def wrong_code(device):
    return "000000" if code_for(device) != "000000" else "111111"


def ask(**body):
    return Client().post(TOKEN_URL, {"username": "boss", "password": PASSWORD, **body}, content_type="application/json")


def test_with_an_authenticator_the_password_alone_gets_no_token(device):
    response = ask()
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authenticator_code_required"
    assert not ApiToken.objects.filter(kind=ApiToken.Kind.STAFF).exists()


def test_a_wrong_code_gets_no_token(device):
    response = ask(otp_token=wrong_code(device))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authenticator_code_invalid"
    assert not ApiToken.objects.filter(kind=ApiToken.Kind.STAFF).exists()


def test_the_right_code_gets_a_token(device):
    response = ask(otp_token=code_for(device))
    assert response.status_code == 201
    assert response.json()["token"].startswith("st_")


def test_a_role_that_requires_two_factor_gets_no_token_until_it_is_set_up(settings, boss):
    settings.LOYALTY_ADMIN_2FA_REQUIRED_GROUPS = ["Brand admin"]
    boss.groups.add(Group.objects.get_or_create(name="Brand admin")[0])
    response = ask()
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "two_factor_setup_required"
    assert not ApiToken.objects.filter(kind=ApiToken.Kind.STAFF).exists()


def test_staff_without_an_authenticator_get_a_token_with_the_password(boss):
    assert ask().status_code == 201


def test_an_admin_session_that_owes_its_code_opens_no_api(boss, device):
    client = Client()
    client.force_login(boss)  # a session that never gave the authenticator's code
    response = client.get("/api/v1/pos/members/lookup/?phone=13800000000")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_an_admin_session_without_two_factor_still_opens_the_api(boss):
    client = Client()
    client.force_login(boss)
    response = client.get("/api/v1/pos/members/lookup/?phone=13800000000")
    # Authenticated: what stops this staff user now is the POS permission, not the session.
    assert response.status_code == 403

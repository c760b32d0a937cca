"""The admin sign-in: lockout per username and per address (django-axes), two-factor sign-in (django-otp)."""

import datetime as dt
import itertools

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from config.tests.test_settings import REAL_KEY, run_manage

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")
INDEX = reverse("admin:index")
SETUP = reverse("admin:two_factor_setup")
PASSWORD = "not-a-real-password-42"

_addresses = (f"203.0.113.{n % 250 + 1}" for n in itertools.count())


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def boss(django_user_model):
    return django_user_model.objects.create_user("boss", password=PASSWORD, is_staff=True)


def sign_in(client, username, password, code=None, **extra):
    data = {"username": username, "password": password, "next": INDEX}
    if code is not None:
        data["otp_token"] = code
    return client.post(LOGIN, data, **extra)


def forged():
    address = next(_addresses)
    return {"HTTP_X_FORWARDED_FOR": address, "HTTP_X_REAL_IP": address}


def code_for(device):
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


# --- lockout -----------------------------------------------------------------------------


def test_a_username_is_locked_after_failures_from_many_addresses(settings, boss):
    codes = [
        sign_in(Client(REMOTE_ADDR=next(_addresses)), "boss", "wrong").status_code
        for _n in range(settings.AXES_FAILURE_LIMIT)
    ]
    # The failure that reaches the limit is answered with the lockout page already.
    assert codes == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    client = Client(REMOTE_ADDR="198.51.100.50")
    response = sign_in(client, "boss", PASSWORD)
    assert response.status_code == 429
    assert "Sign-in locked" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_an_address_is_locked_whatever_it_forwards(settings, boss):
    client = Client(REMOTE_ADDR="198.51.100.7")
    for n in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, f"guess-{n}", "wrong", **forged())
    # Another account from the same address is refused as well...
    assert sign_in(client, "boss", PASSWORD, **forged()).status_code == 429
    assert SESSION_KEY not in client.session
    # ...while the account itself is not locked for someone elsewhere.
    elsewhere = Client(REMOTE_ADDR="198.51.100.8")
    assert sign_in(elsewhere, "boss", PASSWORD).status_code == 302
    assert elsewhere.get(INDEX).status_code == 200


def test_the_lock_lifts_after_the_cool_off(settings, boss):
    client = Client()
    for _n in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "boss", "wrong")
    assert sign_in(client, "boss", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=dt.datetime.now(dt.UTC) - settings.AXES_COOLOFF_TIME - dt.timedelta(1))
    assert sign_in(client, "boss", PASSWORD).status_code == 302


def test_the_lockout_page_says_what_to_do_in_both_languages(settings, boss):
    client = Client()
    for _n in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "boss", "wrong")
    english = sign_in(client, "boss", PASSWORD).content.decode()
    assert "locked for 15 minutes" in english and "superuser" in english
    chinese = sign_in(client, "boss", PASSWORD, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert chinese.status_code == 429
    assert "15 分钟" in chinese.content.decode()


def test_member_page_failures_do_not_count_towards_the_admin_lockout(settings, boss):
    from loyalty.tests.factories import MemberFactory

    member = MemberFactory()
    client = Client(REMOTE_ADDR="198.51.100.9")
    for _n in range(settings.AXES_FAILURE_LIMIT + 1):
        client.post(reverse("center:sign_in_password"), {"phone": member.phone, "password": "wrong"})
    assert not AccessAttempt.objects.exists()
    assert sign_in(client, "boss", PASSWORD).status_code == 302


def test_test_client_login_and_the_staff_token_still_work(boss):
    assert Client().login(username="boss", password=PASSWORD)
    response = Client().post(
        "/api/v1/auth/staff-token/", {"username": "boss", "password": PASSWORD}, content_type="application/json"
    )
    assert response.status_code == 201


# --- two-factor sign-in ----------------------------------------------------------------


@pytest.fixture
def device(boss):
    return TOTPDevice.objects.create(user=boss, name="phone", confirmed=True)


def test_with_an_authenticator_the_password_alone_does_not_open_the_admin(boss, device):
    client = Client()
    response = sign_in(client, "boss", PASSWORD)
    assert response.status_code == 200
    assert "enter the code from your authenticator app" in response.content.decode()
    assert SESSION_KEY not in client.session
    response = sign_in(client, "boss", PASSWORD, code="000000" if code_for(device) != "000000" else "111111")
    assert "wrong or has expired" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_with_the_code_the_admin_opens(boss, device):
    client = Client()
    assert sign_in(client, "boss", PASSWORD, code=code_for(device)).status_code == 302
    assert client.get(INDEX).status_code == 200
    assert client.get(reverse("loyalty_till")).status_code in (200, 403)


def test_a_session_without_the_code_does_not_open_the_admin(boss, device):
    # A session opened some other way (the member pages' sign-in, or before the
    # authenticator was added) has not given the code.
    client = Client()
    client.force_login(boss)
    assert client.get(INDEX).status_code == 302
    assert client.get(reverse("loyalty_dashboard")).status_code == 302
    page = client.get(LOGIN)
    assert 'id="needs-code"' in page.content.decode()
    # Nor can it replace the authenticator with one of its own.
    assert client.get(SETUP).status_code == 302
    assert TOTPDevice.objects.filter(user=boss).count() == 1


def test_staff_without_an_authenticator_are_not_asked_for_a_code(boss):
    client = Client()
    assert sign_in(client, "boss", PASSWORD).status_code == 302
    assert client.get(INDEX).status_code == 200


def test_setting_up_an_authenticator(boss):
    client = Client()
    client.force_login(boss)
    page = client.get(SETUP)
    assert page.status_code == 200
    assert "<svg" in page.content.decode()
    pending = TOTPDevice.objects.get(user=boss, confirmed=False)
    assert pending.key in page.content.decode() or "two-factor-secret" in page.content.decode()
    wrong = client.post(SETUP, {"code": "000000" if code_for(pending) != "000000" else "111111"})
    assert "does not match" in wrong.content.decode()
    # django-otp makes the next try wait a moment after a wrong code; skip the wait.
    TOTPDevice.objects.filter(pk=pending.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    assert client.post(SETUP, {"code": code_for(pending)}).status_code == 302
    pending.refresh_from_db()
    assert pending.confirmed
    # This session gave the code: the admin stays open; the next sign-in asks for one.
    assert client.get(INDEX).status_code == 200
    assert sign_in(Client(), "boss", PASSWORD).status_code == 200


@pytest.fixture
def brand_admin(boss, settings):
    settings.LOYALTY_ADMIN_2FA_REQUIRED_GROUPS = ["Brand admin"]
    boss.groups.add(Group.objects.get_or_create(name="Brand admin")[0])
    return boss


def test_a_required_role_without_an_authenticator_is_sent_to_set_one_up(brand_admin):
    client = Client()
    response = sign_in(client, "boss", PASSWORD)
    assert response.status_code == 302
    index = client.get(INDEX)
    assert index.status_code == 302
    setup = client.get(index["Location"], follow=True)
    assert setup.request["PATH_INFO"] == SETUP
    assert "must use two-factor sign-in" in setup.content.decode()
    assert client.get(reverse("loyalty_till")).status_code == 302
    pending = TOTPDevice.objects.get(user=brand_admin, confirmed=False)
    assert client.post(SETUP, {"code": code_for(pending)}).status_code == 302
    assert client.get(INDEX).status_code == 200


def test_other_roles_are_not_required(brand_admin, django_user_model):
    django_user_model.objects.create_user("till", password=PASSWORD, is_staff=True)
    client = Client()
    sign_in(client, "till", PASSWORD)
    assert client.get(INDEX).status_code == 200


def test_a_superuser_is_required_like_a_brand_admin(settings, django_user_model):
    settings.LOYALTY_ADMIN_2FA_REQUIRED_GROUPS = ["Brand admin"]
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    client = Client()
    sign_in(client, "root", PASSWORD)
    assert client.get(INDEX).status_code == 302


def test_production_requires_two_factor_for_brand_admins_by_default():
    script = "from django.conf import settings; print(settings.LOYALTY_ADMIN_2FA_REQUIRED_GROUPS)"
    production = run_manage(
        "shell",
        "-c",
        script,
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=REAL_KEY,
        DJANGO_ALLOWED_HOSTS="members.example.com",
    )
    assert production.returncode == 0, production.stderr
    assert "['Brand admin']" in production.stdout
    development = run_manage("shell", "-c", script, DJANGO_ENV="development")
    assert "[]" in development.stdout

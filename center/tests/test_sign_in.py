import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from center.auth import PASSWORD_FAILURES_PER_PHONE
from center.services import member_user_for_sign_in
from center.tests.helpers import last_code
from members.models import Member

pytestmark = pytest.mark.django_db

SIGN_IN = reverse("center:sign_in")
CODE = reverse("center:sign_in_code")
PASSWORD = reverse("center:sign_in_password")
HOME = reverse("center:home")


def _send_code(client, phone: str):
    return client.post(SIGN_IN, {"phone": phone})


def test_code_sign_in_links_a_user_and_starts_a_new_session(client, member, outbox):
    client.get(SIGN_IN)
    client.session.save()
    session_before = client.session.session_key

    response = _send_code(client, member.phone.replace("+86", ""))  # typed without the country code
    assert response.status_code == 302 and response.url == CODE
    response = client.post(CODE, {"code": last_code(member.phone)})

    assert response.status_code == 302 and response.url == HOME
    member.refresh_from_db()
    assert member.user is not None and not member.user.has_usable_password() and not member.user.is_staff
    assert client.session[SESSION_KEY] == str(member.user.pk)
    assert client.session.session_key != session_before
    assert client.get(HOME).status_code == 200


def test_code_sign_in_registers_a_new_phone_number(client, outbox):
    _send_code(client, "138 0013 8000")
    client.post(CODE, {"code": last_code("+8613800138000")})

    member = Member.objects.get(phone="+8613800138000")
    assert client.session[SESSION_KEY] == str(member.user_id)


def test_second_sign_in_reuses_the_linked_user(client, member, outbox):
    user = member_user_for_sign_in(member=member)
    _send_code(client, member.phone)
    client.post(CODE, {"code": last_code(member.phone)})
    assert client.session[SESSION_KEY] == str(user.pk)


def test_wrong_code_shows_a_field_error_and_does_not_sign_in(client, member, outbox):
    _send_code(client, member.phone)
    code = last_code(member.phone)
    wrong = "000000" if code != "000000" else "111111"

    response = client.post(CODE, {"code": wrong})

    assert response.status_code == 200
    assert "tries left" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_code_that_is_not_digits_is_refused_by_the_form(client, member, outbox):
    _send_code(client, member.phone)
    response = client.post(CODE, {"code": "abcdef"})
    assert response.status_code == 200
    assert response.context["form"].errors["code"]
    assert SESSION_KEY not in client.session


def test_invalid_phone_re_renders_with_a_field_error(client, outbox):
    response = _send_code(client, "12345")
    assert response.status_code == 200
    assert response.context["form"].errors["phone"]
    assert outbox == []


def test_asking_again_at_once_is_rate_limited_with_what_to_do(client, member, outbox):
    _send_code(client, member.phone)
    response = _send_code(client, member.phone)
    assert response.status_code == 200
    text = response.content.decode()
    # What to do is said once: the refusal names the wait, no second sentence repeats it.
    assert text.count("before asking for another.") == 1
    assert "Wait a minute" not in text
    assert len(outbox) == 1


def test_code_step_without_a_phone_goes_back_to_the_first_step(client):
    response = client.get(CODE)
    assert response.status_code == 302 and response.url == SIGN_IN


def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(client, member, outbox):
    response = client.get(reverse("center:coupons"))
    assert response.status_code == 302 and response.url.startswith(SIGN_IN + "?next=")
    client.get(response.url)
    _send_code(client, member.phone)
    response = client.post(CODE, {"code": last_code(member.phone)})
    assert response.url == reverse("center:coupons")


def test_sign_in_ignores_an_off_site_next(client, other_member, outbox):
    client.get(SIGN_IN + "?next=https://evil.example.com/")
    _send_code(client, other_member.phone)
    response = client.post(CODE, {"code": last_code(other_member.phone)})
    assert response.url == HOME


# --- password ---------------------------------------------------------------------------------


def _with_password(member, password="a-Long-enough-pass-42"):
    user = member_user_for_sign_in(member=member)
    user.set_password(password)
    user.save()
    member.refresh_from_db()
    return password


def test_password_sign_in(client, member):
    password = _with_password(member)
    client.get(SIGN_IN)
    client.session.save()
    before = client.session.session_key
    response = client.post(PASSWORD, {"phone": member.phone, "password": password})
    assert response.status_code == 302 and response.url == HOME
    assert client.session[SESSION_KEY] == str(member.user_id)
    assert client.session.session_key != before


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(client, member):
    _with_password(member)
    response = client.post(PASSWORD, {"phone": member.phone, "password": "nope"})
    assert response.status_code == 200
    assert "do not match" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_member_without_a_password_cannot_sign_in_with_one(client, member):
    member_user_for_sign_in(member=member)  # unusable password
    response = client.post(PASSWORD, {"phone": member.phone, "password": ""})
    assert response.context["password_form"].errors["password"]
    response = client.post(PASSWORD, {"phone": member.phone, "password": "anything"})
    assert "do not match" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_password_attempts_are_limited_per_phone(client, member):
    password = _with_password(member)
    for _attempt in range(PASSWORD_FAILURES_PER_PHONE):
        client.post(PASSWORD, {"phone": member.phone, "password": "wrong"})

    response = client.post(PASSWORD, {"phone": member.phone, "password": password})

    assert "Too many attempts" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_password_attempts_are_limited_per_client_address(client, member):
    from center import auth

    password = _with_password(member)
    # Spraying many numbers from one address: each number alone stays under its limit.
    for attempt in range(auth.PASSWORD_FAILURES_PER_IP):
        client.post(PASSWORD, {"phone": f"+86138001{attempt:05d}", "password": "wrong"}, REMOTE_ADDR="10.0.0.9")
    # Another phone from the same address is refused too...
    response = client.post(PASSWORD, {"phone": member.phone, "password": password}, REMOTE_ADDR="10.0.0.9")
    assert "Too many attempts" in response.content.decode()
    # ...while another address may still try.
    response = client.post(PASSWORD, {"phone": member.phone, "password": password}, REMOTE_ADDR="10.0.0.10")
    assert response.status_code == 302


def test_password_form_shows_field_errors(client):
    response = client.post(PASSWORD, {"phone": "", "password": ""})
    form = response.context["password_form"]
    assert form.errors["phone"] and form.errors["password"]


# --- who may use the pages --------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_sign_in(client):
    for name in ("home", "history", "rewards", "coupons", "profile", "password", "export", "erase"):
        response = client.get(reverse(f"center:{name}"))
        assert response.status_code == 302 and response.url.startswith(SIGN_IN), name


def test_staff_user_without_a_member_cannot_use_the_member_center(client, staff_user):
    client.force_login(staff_user)
    response = client.get(HOME)
    assert response.status_code == 302 and response.url.startswith(SIGN_IN)
    page = client.get(SIGN_IN)
    assert "not a member account" in page.content.decode()


def test_staff_user_linked_to_a_member_may_use_it(client, staff_user, member):
    member.user = staff_user
    member.save()
    client.force_login(staff_user)
    assert client.get(HOME).status_code == 200


def test_closed_member_is_turned_away(member_client, member):
    Member.objects.filter(pk=member.pk).update(status=Member.Status.CLOSED)
    response = member_client.get(HOME)
    assert response.status_code == 302 and response.url.startswith(SIGN_IN)


def test_sign_out_needs_a_post_and_ends_the_session(member_client):
    assert member_client.get(reverse("center:sign_out")).status_code == 405
    response = member_client.post(reverse("center:sign_out"))
    assert response.status_code == 302 and response.url == SIGN_IN
    assert SESSION_KEY not in member_client.session
    assert member_client.get(HOME).status_code == 302


def test_forms_are_csrf_protected(member, outbox):
    client = Client(enforce_csrf_checks=True)
    assert client.post(SIGN_IN, {"phone": member.phone}).status_code == 403
    assert outbox == []

    page = client.get(SIGN_IN).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(SIGN_IN, {"phone": member.phone, "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and len(outbox) == 1


def test_sign_out_is_csrf_protected(member):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member_user_for_sign_in(member=member))
    assert client.post(reverse("center:sign_out")).status_code == 403
    assert client.get(HOME).status_code == 200

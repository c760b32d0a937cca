"""The code page: the phone as people read it, and a countdown to the next resend."""

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

SIGN_IN = reverse("center:sign_in")
CODE = reverse("center:sign_in_code")


def test_the_code_page_formats_the_phone_and_counts_down_to_a_resend(client, outbox):
    client.post(SIGN_IN, {"phone": "138 0013 8000", "referral_code": "ABCD1234"})
    page = client.get(CODE).content.decode()
    assert "+86 138 0013 8000" in page
    wait = int(re.search(r'id="resend" disabled data-countdown="(\d+)"', page).group(1))
    assert 55 <= wait <= 60
    # "Send a new code" posts the phone only: the referral code typed first is kept.
    client.post(SIGN_IN, {"phone": "+8613800138000"})
    assert client.session["center_sign_in_referral"] == "ABCD1234"


def test_without_a_recent_send_the_resend_button_is_usable(client, outbox):
    client.post(SIGN_IN, {"phone": "138 0013 8000"})
    session = client.session
    session["center_sign_in_sent_at"] = 0
    session.save()
    page = client.get(CODE).content.decode()
    assert 'id="resend">' in page and "data-countdown" not in page


def test_a_refused_resend_stays_on_the_code_page_and_says_it_once(client, outbox):
    client.post(SIGN_IN, {"phone": "138 0013 8000", "referral_code": "ABCD1234"})
    response = client.post(SIGN_IN, {"phone": "+8613800138000", "resend": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == CODE
    page = response.content.decode()
    assert page.count("before asking for another.") == 1
    assert re.search(r'id="resend" disabled data-countdown="\d+"', page)
    assert client.session["center_sign_in_referral"] == "ABCD1234"
    assert len(outbox) == 1

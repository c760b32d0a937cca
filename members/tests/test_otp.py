import datetime as dt
import logging

import pytest
from django.utils import timezone

from core.errors import LoyaltyError
from members.models import OneTimeCode
from members.otp import OTP_MAX_PER_DAY, otp_send, otp_verify

pytestmark = pytest.mark.django_db

PHONE = "+8613800138000"


def test_send_stores_only_a_hash_and_sends_the_code_to_the_phone(sms):
    otp_send(phone="138 0013 8000")
    otp = OneTimeCode.objects.get()
    code = sms.last_code()
    assert otp.phone == PHONE
    assert code not in otp.code_hash
    assert sms.sent[-1].data["phone"] == PHONE
    assert otp.expires_at - otp.created_at == dt.timedelta(minutes=5)


def test_the_log_sender_writes_the_code_for_developers(caplog):
    with caplog.at_level(logging.INFO, logger="members.notifications"):
        otp_send(phone=PHONE)
    assert "Your code is" in caplog.text


def test_verify_accepts_the_code_once_and_returns_the_e164_phone(sms):
    otp_send(phone=PHONE)
    code = sms.last_code()
    assert otp_verify(phone="0086 138-0013-8000", code=code) == PHONE
    with pytest.raises(LoyaltyError) as error:
        otp_verify(phone=PHONE, code=code)
    assert error.value.code == "otp_invalid"


def test_a_wrong_code_counts_and_five_wrong_ones_lock_the_code(sms):
    otp_send(phone=PHONE)
    code = sms.last_code()
    wrong = "000000" if code != "000000" else "111111"
    codes = []
    for _ in range(5):
        with pytest.raises(LoyaltyError) as error:
            otp_verify(phone=PHONE, code=wrong)
        codes.append(error.value.code)
    assert codes == ["otp_invalid"] * 4 + ["otp_too_many_attempts"]
    assert OneTimeCode.objects.get().attempts == 5
    with pytest.raises(LoyaltyError) as error:
        otp_verify(phone=PHONE, code=code)  # even the right code now
    assert error.value.code == "otp_too_many_attempts"


def test_a_code_expires_after_five_minutes(sms):
    now = timezone.now()
    otp_send(phone=PHONE, now=now)
    with pytest.raises(LoyaltyError) as error:
        otp_verify(phone=PHONE, code=sms.last_code(), now=now + dt.timedelta(minutes=5, seconds=1))
    assert error.value.code == "otp_expired"


def test_one_send_per_minute_and_ten_per_day(sms):
    now = timezone.now()
    otp_send(phone=PHONE, now=now)
    with pytest.raises(LoyaltyError) as error:
        otp_send(phone=PHONE, now=now + dt.timedelta(seconds=30))
    assert error.value.code == "otp_rate_limited"
    assert error.value.extra["retry_after"] == 30
    for minute in range(1, OTP_MAX_PER_DAY):
        otp_send(phone=PHONE, now=now + dt.timedelta(minutes=minute))
    with pytest.raises(LoyaltyError) as error:
        otp_send(phone=PHONE, now=now + dt.timedelta(hours=2))
    assert error.value.code == "otp_rate_limited"
    otp_send(phone=PHONE, now=now + dt.timedelta(days=1, minutes=1))
    assert OneTimeCode.objects.count() == OTP_MAX_PER_DAY + 1


def test_send_refuses_an_invalid_phone(sms):
    with pytest.raises(LoyaltyError) as error:
        otp_send(phone="12345")
    assert error.value.code == "invalid_phone"
    assert sms.sent == []


def test_a_code_is_bound_to_its_phone(sms):
    otp_send(phone=PHONE)
    with pytest.raises(LoyaltyError) as error:
        otp_verify(phone="+8613900139000", code=sms.last_code())
    assert error.value.code == "otp_invalid"


def test_a_failing_sender_is_a_clean_refusal(settings):
    settings.LOYALTY_NOTIFICATION_SENDER = "members.tests.test_otp.BrokenSender"
    with pytest.raises(LoyaltyError) as error:
        otp_send(phone=PHONE)
    assert error.value.code == "otp_send_failed"


class BrokenSender:
    def send(self, notification):
        raise ConnectionError("gateway down")

"""SMS one-time codes for signing in: send, verify.

A code is six random digits, valid for ``OTP_TTL`` (5 minutes), good for one sign-in and
for at most ``OTP_MAX_ATTEMPTS`` wrong guesses. Per phone number at most one code is sent
per ``OTP_RESEND_SECONDS`` and ``OTP_MAX_PER_DAY`` per day, so nobody can use the sign-in
page to flood a phone or a gateway bill. Only an HMAC of the code (keyed with the secret
key, bound to the phone and purpose) is stored; the code itself exists only in the SMS.

The code goes out through the notifications sender (``members.notifications.notice_send_unsaved``:
never stored in the outbox) as a message of kind ``one_time_code`` whose ``data`` carries
the phone; the development ``LogSender`` writes it to the log, where a developer can read it.
"""

import datetime as dt
import hashlib
import hmac
import logging
import secrets

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from core.db import is_postgresql
from core.errors import LoyaltyError

from .models import Notification, OneTimeCode
from .notifications import notice_send_unsaved
from .phone import normalize_phone

logger = logging.getLogger(__name__)

OTP_TTL = dt.timedelta(minutes=5)
OTP_MAX_ATTEMPTS = 5
OTP_RESEND_SECONDS = 60
OTP_MAX_PER_DAY = 10
PURPOSES = ("sign_in", "bind_phone")


def _hash(phone: str, purpose: str, code: str) -> str:
    message = f"{phone}|{purpose}|{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def _purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise LoyaltyError("invalid_purpose", _("Unknown purpose “%(purpose)s”.") % {"purpose": purpose})
    return purpose


def _serialise_phone(phone: str) -> None:
    """Make concurrent sends to one phone take turns, so the rate limit cannot be raced."""
    if is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"otp:{phone}"])
    # SQLite: IMMEDIATE transactions (config.settings) already take the write lock up front.


def otp_send(*, phone: str, purpose: str = "sign_in", now: dt.datetime | None = None) -> None:
    """Send a fresh one-time code to ``phone`` by SMS.

    Refuses an invalid phone number (``invalid_phone``) and a phone that had a code less
    than a minute ago or ten codes in the last day (``otp_rate_limited``, with
    ``retry_after`` seconds). A new code replaces nothing: each code is checked on its
    own, and only the newest unused one can be used.
    """
    now = now or timezone.now()
    purpose = _purpose(purpose)
    phone = normalize_phone(phone)
    code = f"{secrets.randbelow(10**6):06d}"
    with transaction.atomic():
        _serialise_phone(phone)
        recent = OneTimeCode.objects.filter(phone=phone, created_at__gt=now - dt.timedelta(days=1))
        last = recent.order_by("-created_at").values_list("created_at", flat=True).first()
        if last is not None and (now - last).total_seconds() < OTP_RESEND_SECONDS:
            wait = OTP_RESEND_SECONDS - int((now - last).total_seconds())
            raise LoyaltyError(
                "otp_rate_limited",
                _("A code was sent a moment ago. Wait %(seconds)s seconds before asking for another.")
                % {"seconds": wait},
                retry_after=wait,
            )
        if recent.count() >= OTP_MAX_PER_DAY:
            raise LoyaltyError(
                "otp_rate_limited",
                _("Too many codes were sent to this number today. Try again tomorrow."),
                retry_after=24 * 3600,
            )
        OneTimeCode.objects.create(
            phone=phone,
            purpose=purpose,
            code_hash=_hash(phone, purpose, code),
            created_at=now,
            expires_at=now + OTP_TTL,
        )
    # Outside the transaction: a slow SMS gateway never holds the lock.
    try:
        notice_send_unsaved(
            kind=Notification.Kind.ONE_TIME_CODE,
            title=_("Your sign-in code"),
            body=_("Your code is %(code)s. It is valid for 5 minutes. Do not share it with anyone.") % {"code": code},
            data={"phone": phone, "purpose": purpose},
            now=now,
        )
    except Exception:
        logger.exception("sending a one-time code to %s failed", phone)
        raise LoyaltyError(
            "otp_send_failed", _("The code could not be sent just now. Try again in a minute.")
        ) from None


def otp_verify(*, phone: str, code: str, purpose: str = "sign_in", now: dt.datetime | None = None) -> str:
    """Check a code typed by the member; return the phone number in E.164 form.

    Uses up the code on success. Refuses: no code sent or a wrong one (``otp_invalid``;
    a wrong guess counts against the code), the newest code past its five minutes
    (``otp_expired``), and a code guessed wrong five times (``otp_too_many_attempts``).
    """
    now = now or timezone.now()
    purpose = _purpose(purpose)
    try:
        phone = normalize_phone(phone)
    except LoyaltyError:
        raise LoyaltyError("otp_invalid", _("The code is wrong or was not sent to this number.")) from None
    code = (code or "").strip()
    refusal = None
    with transaction.atomic():
        otp = (
            OneTimeCode.objects.select_for_update()
            .filter(phone=phone, purpose=purpose, used_at__isnull=True)
            .order_by("-created_at", "-id")
            .first()
        )
        if otp is None:
            refusal = LoyaltyError("otp_invalid", _("The code is wrong or was not sent to this number."))
        elif otp.attempts >= OTP_MAX_ATTEMPTS:
            refusal = LoyaltyError("otp_too_many_attempts", _("Too many wrong tries. Ask for a new code."))
        elif otp.expires_at <= now:
            refusal = LoyaltyError("otp_expired", _("The code has expired. Ask for a new one."))
        elif not hmac.compare_digest(otp.code_hash, _hash(phone, purpose, code)):
            # Committed even though we refuse: the wrong guess must count.
            OneTimeCode.objects.filter(pk=otp.pk).update(attempts=F("attempts") + 1)
            left = OTP_MAX_ATTEMPTS - otp.attempts - 1
            refusal = LoyaltyError(
                "otp_invalid" if left else "otp_too_many_attempts",
                _("The code is wrong. %(left)s tries left.") % {"left": left}
                if left
                else _("Too many wrong tries. Ask for a new code."),
            )
        else:
            OneTimeCode.objects.filter(pk=otp.pk).update(used_at=now)
    if refusal is not None:
        raise refusal
    return phone

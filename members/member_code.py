"""The rotating member code shown on the member card and scanned at the till.

A code is 20 digits: the member number (10), the time step it was made in (4 digits, the
step number modulo 10,000) and a 6-digit signature over both (an HMAC of the member number
and the full step number, keyed by ``SECRET_KEY``). It needs no table: the till and the POS
check the signature and the age. A code is valid for ``VALID_SECONDS`` after its step
began; the card page fetches a new one every ``STEP_SECONDS``, so a screenshot (or a
photo of someone's phone) stops working within minutes.

All digits, so a barcode (Code 128 set C packs two digits a bar pattern) and a QR code
(numeric mode) both stay small, and a clerk can type it. Twenty digits is longer than any
phone number (E.164 stops at 15) and than a member number (10), so the till tells them apart
by length alone.
"""

import datetime as dt
import hmac
from dataclasses import dataclass

from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from core.errors import LoyaltyError

from .models import Member

STEP_SECONDS = 30
VALID_SECONDS = 180
# A code made on a server whose clock is a little ahead is still accepted.
FUTURE_STEPS = 1
STEP_DIGITS = 4
SIGNATURE_DIGITS = 6
NUMBER_DIGITS = 10
CODE_LENGTH = NUMBER_DIGITS + STEP_DIGITS + SIGNATURE_DIGITS
_SALT = "members.member_code"


@dataclass(frozen=True)
class MemberCode:
    code: str
    issued_at: dt.datetime
    expires_at: dt.datetime


def _step(moment: dt.datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def _signature(member_number: str, step: int) -> str:
    digest = salted_hmac(_SALT, f"{member_number}:{step}", algorithm="sha256").digest()
    # HOTP's dynamic truncation (RFC 4226): 31 bits from an offset the digest picks.
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 10**SIGNATURE_DIGITS:0{SIGNATURE_DIGITS}d}"


def _at(step: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(step * STEP_SECONDS, tz=dt.UTC)


def member_code_issue(member: Member, *, now: dt.datetime | None = None) -> MemberCode:
    """The member's code for this moment, and when it stops being accepted."""
    step = _step(now or timezone.now())
    number = member.member_number
    code = f"{number}{step % 10**STEP_DIGITS:0{STEP_DIGITS}d}{_signature(number, step)}"
    issued = _at(step)
    return MemberCode(code=code, issued_at=issued, expires_at=issued + dt.timedelta(seconds=VALID_SECONDS))


def _plain(text: str) -> str:
    return "".join(str(text or "").split()).replace("-", "")


def looks_like_member_code(text: str) -> bool:
    """Whether ``text`` (spaces and dashes ignored) has the shape of a member code."""
    plain = _plain(text)
    return len(plain) == CODE_LENGTH and plain.isascii() and plain.isdigit()


def member_code_verify(text: str, *, now: dt.datetime | None = None) -> str:
    """The member number a scanned or typed member code stands for.

    Refuses a code whose signature does not match its member number and step
    (``member_code_invalid``: mistyped, altered, or older than the step counter's cycle of
    about 3.5 days) and a genuine code older than ``VALID_SECONDS`` (``member_code_expired``).
    It does not look the member up: the caller does, with its own rules (erased members).
    """
    plain = _plain(text)
    if not looks_like_member_code(plain):
        raise LoyaltyError("member_code_invalid", _("This is not a member code. Scan the code on the member card."))
    number = plain[:NUMBER_DIGITS]
    residue = int(plain[NUMBER_DIGITS : NUMBER_DIGITS + STEP_DIGITS])
    signature = plain[NUMBER_DIGITS + STEP_DIGITS :]
    now = now or timezone.now()
    newest = _step(now) + FUTURE_STEPS
    # The latest step at or before ``newest`` with this residue.
    step = newest - ((newest - residue) % 10**STEP_DIGITS)
    if not hmac.compare_digest(signature, _signature(number, step)):
        raise LoyaltyError(
            "member_code_invalid",
            _("This member code is not valid. Ask the member to show the code on their card again."),
        )
    if (now - _at(step)).total_seconds() > VALID_SECONDS:
        raise LoyaltyError(
            "member_code_expired",
            _(
                "This member code has expired (codes are valid for %(minutes)s minutes). "
                "Ask the member to open their card again for a fresh code."
            )
            % {"minutes": VALID_SECONDS // 60},
        )
    return number

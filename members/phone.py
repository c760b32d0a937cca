"""Phone numbers are the member's identity, so there is exactly one spelling of each."""

import phonenumbers
from django.conf import settings
from django.utils.translation import gettext as _

from core.errors import LoyaltyError


def normalize_phone(raw: str) -> str:
    """Return the number in E.164 form (``+8613800138000``) or refuse it.

    Accepts the spellings people type: spaces, dashes, a leading 0086 or +86, or a bare
    national number of the configured region.
    """
    text = (raw or "").strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, settings.LOYALTY_PHONE_REGION)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise LoyaltyError(
            "invalid_phone",
            _("“%(phone)s” is not a valid phone number. Enter an 11-digit mobile number or one with its country code.")
            % {"phone": raw},
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

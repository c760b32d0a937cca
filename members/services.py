"""State changes of members. One function per business action, the transaction inside."""

import datetime as dt
import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.errors import LoyaltyError
from loyalty.services import member_joined

from .models import ConsentRecord, Member, Store
from .phone import normalize_phone

CONSENT_FIELDS = {
    ConsentRecord.Channel.SMS: "sms_consent_at",
    ConsentRecord.Channel.EMAIL: "email_consent_at",
    ConsentRecord.Channel.WECHAT: "wechat_consent_at",
}


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for ``digits``, so a mistyped card number is caught at the till."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def is_valid_member_number(number: str) -> bool:
    return len(number) == 10 and number.isdigit() and luhn_digit(number[:-1]) == number[-1]


def _new_member_number() -> str:
    body = "8" + f"{secrets.randbelow(10**8):08d}"
    return body + luhn_digit(body)


def member_create(
    *,
    phone: str,
    name: str = "",
    gender: str = Member.Gender.UNKNOWN,
    birthday: dt.date | None = None,
    email: str = "",
    home_store: Store | None = None,
    joined_at: dt.datetime | None = None,
    consents: tuple[str, ...] = (),
    source: str = "admin",
) -> Member:
    """Register a member under a normalised phone number.

    Refuses an invalid phone number and one that already belongs to a member.
    ``consents`` lists the marketing channels the member agreed to at sign-up.
    """
    normalized = normalize_phone(phone)
    joined_at = joined_at or timezone.now()
    if Member.objects.filter(phone=normalized).exists():
        raise LoyaltyError(
            "phone_taken", _("A member with phone number %(phone)s already exists.") % {"phone": normalized}
        )
    for _attempt in range(10):
        try:
            with transaction.atomic():
                member = Member.objects.create(
                    phone=normalized,
                    member_number=_new_member_number(),
                    name=name,
                    gender=gender,
                    birthday=birthday,
                    email=email,
                    home_store=home_store,
                    joined_at=joined_at,
                )
                for channel in consents:
                    _record_consent(member, channel=channel, granted=True, source=source, at=joined_at)
                member_joined(member=member, now=joined_at)
                return member
        except IntegrityError:
            # Either two sign-ups raced for one phone, or the random card number was taken.
            if Member.objects.filter(phone=normalized).exists():
                raise LoyaltyError(
                    "phone_taken", _("A member with phone number %(phone)s already exists.") % {"phone": normalized}
                ) from None
    raise LoyaltyError("member_number_exhausted", _("Could not allocate a member number; try again."))


def _record_consent(member: Member, *, channel: str, granted: bool, source: str, at: dt.datetime) -> None:
    if channel not in CONSENT_FIELDS:
        raise LoyaltyError("invalid_channel", _("Unknown consent channel “%(channel)s”.") % {"channel": channel})
    setattr(member, CONSENT_FIELDS[channel], at if granted else None)
    member.save(update_fields=[CONSENT_FIELDS[channel]])
    ConsentRecord.objects.create(member=member, channel=channel, granted=granted, source=source, recorded_at=at)


@transaction.atomic
def member_set_consent(*, member: Member, channel: str, granted: bool, source: str) -> Member:
    """Give or withdraw marketing consent on one channel; the change is kept in ConsentRecord."""
    member = Member.objects.select_for_update().get(pk=member.pk)
    _record_consent(member, channel=channel, granted=granted, source=source, at=timezone.now())
    return member


@transaction.atomic
def member_set_status(*, member: Member, status: str) -> Member:
    """Freeze, close or reactivate a member. A frozen or closed member cannot earn or spend."""
    if status not in Member.Status.values:
        raise LoyaltyError("invalid_status", _("Unknown member status “%(status)s”.") % {"status": status})
    Member.objects.filter(pk=member.pk).update(status=status)
    member.refresh_from_db(fields=["status"])
    return member

"""State changes of members. One function per business action, the transaction inside."""

import datetime as dt
import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.errors import LoyaltyError
from loyalty.services import member_joined

from .models import ConsentRecord, Member, StaffAction, Store
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


def staff_action_record(
    *, actor, action: str, member: Member | None = None, reason: str = "", detail: dict | None = None
) -> StaffAction:
    """Write the audit row of one staff action: who (``actor``, a user), what, to whom, why.

    Call it inside the transaction of the action itself, so the row exists exactly when
    the action happened.
    """
    if action not in StaffAction.Action.values:
        raise ValueError(f"unknown staff action {action!r}")
    return StaffAction.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=(actor.get_username() if getattr(actor, "pk", None) else "") or "system",
        action=action,
        member=member,
        reason=reason,
        detail=detail or {},
    )


# --- sign-in and profile (API and member pages) -------------------------------------------


def member_for_phone_sign_in(*, phone: str, now: dt.datetime | None = None) -> Member:
    """The member who signs in with ``phone`` (already verified by a one-time code or the
    mini-program), registering a new member when the number is new.

    Refuses an invalid phone number (``invalid_phone``) and a closed or erased member
    (``member_closed``). A frozen member may sign in and look, but not earn or spend.
    """
    now = now or timezone.now()
    normalized = normalize_phone(phone)
    member = Member.objects.filter(phone=normalized).first()
    if member is None:
        try:
            member = member_create(phone=normalized, joined_at=now, source="sign_in")
        except LoyaltyError as error:
            if error.code != "phone_taken":
                raise
            # Two first sign-ins raced; the other one registered the member.
            member = Member.objects.get(phone=normalized)
    if member.status == Member.Status.CLOSED:
        raise LoyaltyError("member_closed", _("This membership is closed. Contact the store to reopen it."))
    return member


PROFILE_FIELDS = ("name", "gender", "email", "birthday")
EARLIEST_BIRTHDAY = dt.date(1900, 1, 1)


def _profile_values(member: Member, fields: dict, today: dt.date) -> dict:
    """Validate the profile fields a member sent; return the cleaned values or raise ``invalid``."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    errors: dict[str, str] = {}
    cleaned: dict = {}
    for name in fields:
        if name not in PROFILE_FIELDS:
            errors[name] = _("This field cannot be changed here.")
    if "name" in fields:
        value = fields["name"]
        if not isinstance(value, str) or len(value.strip()) > 100:
            errors["name"] = _("Enter a name of at most 100 characters.")
        else:
            cleaned["name"] = value.strip()
    if "gender" in fields:
        if fields["gender"] not in Member.Gender.values:
            errors["gender"] = _("Choose one of: %(choices)s.") % {"choices": ", ".join(Member.Gender.values)}
        else:
            cleaned["gender"] = fields["gender"]
    if "email" in fields:
        value = (fields["email"] or "").strip() if isinstance(fields["email"], str | None) else None
        try:
            if value is None or len(value) > 254:
                raise ValidationError("")
            if value:
                validate_email(value)
            cleaned["email"] = value
        except ValidationError:
            errors["email"] = _("Enter a valid email address.")
    if "birthday" in fields:
        value = fields["birthday"]
        if isinstance(value, str):
            try:
                value = dt.date.fromisoformat(value)
            except ValueError:
                value = None
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            errors["birthday"] = _("Enter the date as YYYY-MM-DD.")
        elif not EARLIEST_BIRTHDAY <= value <= today:
            errors["birthday"] = _("Enter a birthday between 1900 and today.")
        elif member.birthday is not None and value != member.birthday:
            raise LoyaltyError(
                "birthday_locked",
                _("Your birthday is already set and cannot be changed. Contact the store if it is wrong."),
            )
        else:
            cleaned["birthday"] = value
    if errors:
        raise LoyaltyError("invalid", _("Some fields are not valid."), fields=errors)
    return cleaned


@transaction.atomic
def member_update_profile(*, member: Member, **fields) -> Member:
    """Change the member's own profile: name, gender, email, birthday.

    The birthday can be set once (it drives birthday gifts), then ``birthday_locked``.
    Refuses any other field and bad values with ``invalid`` and a message per field in
    ``error.extra["fields"]``; nothing is saved unless every field is valid.
    """
    member = Member.objects.select_for_update().get(pk=member.pk)
    cleaned = _profile_values(member, fields, timezone.localdate())
    for name, value in cleaned.items():
        setattr(member, name, value)
    if cleaned:
        member.save(update_fields=list(cleaned))
    return member


def member_for_miniprogram(*, openid: str) -> Member | None:
    """The member bound to this mini-program openid, or None (a new user must bind a phone)."""
    return Member.objects.filter(wechat_openid=openid).first()


@transaction.atomic
def member_bind_miniprogram(*, member: Member, openid: str, unionid: str | None = None) -> Member:
    """Bind a mini-program user (openid, unionid) to the member who proved their phone.

    Refuses a member already bound to another mini-program user and an openid already
    bound to another member (``miniprogram_already_bound``); binding the same again is a no-op.
    """
    member = Member.objects.select_for_update().get(pk=member.pk)
    if member.wechat_openid == openid:
        return member
    taken = Member.objects.filter(wechat_openid=openid).exclude(pk=member.pk).exists()
    if member.wechat_openid or taken:
        raise LoyaltyError(
            "miniprogram_already_bound",
            _("This phone number or this mini-program account is already bound to another one."),
        )
    member.wechat_openid = openid
    update = ["wechat_openid"]
    if unionid and not Member.objects.filter(wechat_unionid=unionid).exclude(pk=member.pk).exists():
        member.wechat_unionid = unionid
        update.append("wechat_unionid")
    try:
        with transaction.atomic():
            member.save(update_fields=update)
    except IntegrityError:
        raise LoyaltyError(
            "miniprogram_already_bound",
            _("This phone number or this mini-program account is already bound to another one."),
        ) from None
    return member

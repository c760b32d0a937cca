"""State changes of members. One function per business action, the transaction inside."""

import datetime as dt
import secrets
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.bulk import insert_rows
from core.cleaners import clean_reason
from core.errors import LoyaltyError

from .erasure import phones_erased_recently
from .models import ConsentRecord, Member, StaffAction, Store, Tag
from .phone import normalize_phone
from .scoping import require_staff

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
    Creates the identity only: a sign-up goes through ``operations.actions.member_create``,
    which adds what loyalty gives a new member in the same transaction. A number
    erased within ``LOYALTY_REJOIN_BONUS_BLOCK_DAYS`` joins, marked
    ``rejoined_after_erasure``: no signup bonus, first-purchase bonus or referral.
    """
    normalized = normalize_phone(phone)
    joined_at = joined_at or timezone.now()
    if Member.objects.filter(phone=normalized).exists():
        raise LoyaltyError(
            "phone_taken", _("A member with phone number %(phone)s already exists.") % {"phone": normalized}
        )
    rejoined = bool(phones_erased_recently([normalized], now=joined_at))
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
                    rejoined_after_erasure=rejoined,
                )
                for channel in consents:
                    _record_consent(member, channel=channel, granted=True, source=source, at=joined_at)
                return member
        except IntegrityError:
            # Either two sign-ups raced for one phone, or the random card number was taken.
            if Member.objects.filter(phone=normalized).exists():
                raise LoyaltyError(
                    "phone_taken", _("A member with phone number %(phone)s already exists.") % {"phone": normalized}
                ) from None
    raise LoyaltyError("member_number_exhausted", _("Could not allocate a member number; try again."))


def members_insert(rows: list[dict], *, joined_at: dt.datetime) -> dict[str, int]:
    """Register many members at once, set-based: the identity :func:`member_create` gives
    one (a free card number, ``rejoined_after_erasure`` for a phone erased lately), one
    INSERT for all. ``rows``: {phone (normalised), name, gender, birthday, email,
    home_store}. Returns {phone: member id}. The caller has checked that no member has
    these phones; a phone taken meanwhile raises IntegrityError.
    """
    if not rows:
        return {}
    numbers = _free_member_numbers(len(rows))
    rejoined = phones_erased_recently([row["phone"] for row in rows], now=joined_at)
    values = [
        {
            "phone": row["phone"],
            "member_number": number,
            "name": row.get("name") or "",
            "gender": row.get("gender") or Member.Gender.UNKNOWN,
            "birthday": row.get("birthday"),
            "email": row.get("email") or "",
            "home_store_id": row["home_store"].pk if row.get("home_store") else None,
            "rejoined_after_erasure": row["phone"] in rejoined,
        }
        for row, number in zip(rows, numbers, strict=True)
    ]
    inserted = insert_rows(Member, values, same={"joined_at": joined_at}, returning=("id", "phone"))
    return {phone: pk for pk, phone in inserted}


def _free_member_numbers(count: int) -> list[str]:
    """``count`` new card numbers that no member has yet (checked in one query per try)."""
    numbers: set[str] = set()
    while len(numbers) < count:
        wanted = {_new_member_number() for _n in range(count - len(numbers))} - numbers
        taken = set(Member.objects.filter(member_number__in=wanted).values_list("member_number", flat=True))
        numbers |= wanted - taken
    return list(numbers)


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
    """Freeze, close or reactivate a member. A frozen or closed member cannot earn or spend.

    Writes no audit row: for a staff user's change use ``member_freeze``,
    ``member_unfreeze`` or ``member_close``, which record who and why.
    """
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
    row = _staff_action(
        actor=actor, action=action, member_id=member.pk if member else None, reason=reason, detail=detail
    )
    row.member = member
    row.save()
    return row


def _staff_action(*, actor, action: str, member_id: int | None, reason: str, detail: dict | None) -> StaffAction:
    """An unsaved audit row (for ``bulk_create`` when one action touches many members)."""
    if action not in StaffAction.Action.values:
        raise ValueError(f"unknown staff action {action!r}")
    return StaffAction(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=(actor.get_username() if getattr(actor, "pk", None) else "") or "system",
        action=action,
        member_id=member_id,
        reason=reason,
        detail=detail or {},
    )


# --- staff actions on a member, each with its audit row (docs/member-admin.md) -------------
#
# Every function below changes members and writes one StaffAction row per member it
# changed, in the same transaction: the audit row exists exactly when the change does.
# ``actor`` is the staff user; None means the system (a job, an import), for which no
# permission or store scope applies and the audit row says "system".


def _lock_members(members: Iterable[Member]) -> list[int]:
    """Lock the members' rows in id order (two actions on the same members cannot deadlock)."""
    member_ids = sorted({member.pk for member in members})
    if not member_ids:
        raise LoyaltyError("no_members", _("Choose at least one member."))
    return list(
        Member.objects.select_for_update().filter(pk__in=member_ids).order_by("pk").values_list("pk", flat=True)
    )


def _tag_names(tags: Iterable[Tag | str]) -> tuple[list[Tag], list[str]]:
    """Split ``tags`` into Tag rows and cleaned new names; refuses a bad name."""
    rows: list[Tag] = []
    names: list[str] = []
    max_length = Tag._meta.get_field("name").max_length
    for tag in tags:
        if isinstance(tag, Tag):
            rows.append(tag)
            continue
        name = " ".join(str(tag).split())
        if not name:
            continue
        if len(name) > max_length:
            raise LoyaltyError(
                "invalid_tag",
                _("A tag name has at most %(max)d characters: “%(name)s”.") % {"max": max_length, "name": name},
            )
        if name.casefold() not in {n.casefold() for n in names}:
            names.append(name)
    return rows, names


def _tags_for(tags: Iterable[Tag | str], *, actor, create: bool) -> list[Tag]:
    """The Tag rows meant by ``tags`` (rows or names, names matched ignoring case).

    With ``create``, a name no tag has yet becomes a new tag, which takes ``members.add_tag``;
    without, an unknown name is refused.
    """
    rows, names = _tag_names(tags)
    for name in names:
        tag = Tag.objects.filter(name__iexact=name).first()
        if tag is None:
            if not create:
                raise LoyaltyError("unknown_tag", _("There is no tag “%(name)s”.") % {"name": name})
            if actor is not None and not actor.has_perm("members.add_tag"):
                raise LoyaltyError(
                    "unknown_tag",
                    _("There is no tag “%(name)s”, and you are not allowed to create tags.") % {"name": name},
                )
            try:
                with transaction.atomic():
                    tag = Tag.objects.create(name=name)
            except IntegrityError:  # created by someone else meanwhile
                tag = Tag.objects.get(name=name)
        rows.append(tag)
    unique = {tag.pk: tag for tag in rows}
    if not unique:
        raise LoyaltyError("tags_required", _("Choose or name at least one tag."))
    return sorted(unique.values(), key=lambda tag: tag.name)


@transaction.atomic
def member_tags_add(*, members: Iterable[Member], tags: Iterable[Tag | str], actor, reason: str) -> int:
    """Put ``tags`` (Tag rows or names; a new name becomes a tag) on each of ``members``.

    Writes one ADD_TAG audit row per member that gained a tag, with the tags it gained;
    a member who had them all is left alone. Returns how many members changed. Refuses:
    no reason, no tag, an actor without ``members.change_member`` (and ``members.add_tag``
    for a new name), any member outside the actor's stores; then nothing is changed.
    """
    reason = clean_reason(reason)
    members = list(members)
    member_ids = _lock_members(members)
    if actor is not None:
        require_staff(actor, "members.change_member", members=member_ids)
    tag_rows = _tags_for(tags, actor=actor, create=True)
    link = Member.tags.through
    had = set(
        link.objects.filter(member_id__in=member_ids, tag_id__in=[t.pk for t in tag_rows]).values_list(
            "member_id", "tag_id"
        )
    )
    added: dict[int, list[str]] = {}
    links = []
    for member_id in member_ids:
        for tag in tag_rows:
            if (member_id, tag.pk) not in had:
                links.append(link(member_id=member_id, tag_id=tag.pk))
                added.setdefault(member_id, []).append(tag.name)
    link.objects.bulk_create(links)
    StaffAction.objects.bulk_create(
        _staff_action(actor=actor, action=StaffAction.Action.ADD_TAG, member_id=m, reason=reason, detail={"tags": t})
        for m, t in added.items()
    )
    return len(added)


def member_tag_automatically(*, member_id: int, tag: Tag) -> bool:
    """Put ``tag`` on a member for an automated rule (a journey), which keeps its own run
    log instead of a staff-action row. True if the member did not have it yet."""
    _link, created = Member.tags.through.objects.get_or_create(member_id=member_id, tag_id=tag.pk)
    return created


@transaction.atomic
def member_tags_remove(*, members: Iterable[Member], tags: Iterable[Tag | str], actor, reason: str) -> int:
    """Take ``tags`` (Tag rows or names of existing tags) off each of ``members``.

    Writes one REMOVE_TAG audit row per member that lost a tag, with the tags it lost.
    Returns how many members changed. Refuses: no reason, no tag, an unknown tag name, an
    actor without ``members.change_member``, any member outside the actor's stores.
    """
    reason = clean_reason(reason)
    members = list(members)
    member_ids = _lock_members(members)
    if actor is not None:
        require_staff(actor, "members.change_member", members=member_ids)
    tag_rows = _tags_for(tags, actor=actor, create=False)
    names = {tag.pk: tag.name for tag in tag_rows}
    link = Member.tags.through
    had = link.objects.filter(member_id__in=member_ids, tag_id__in=list(names))
    removed: dict[int, list[str]] = {}
    for member_id, tag_id in had.order_by("member_id", "tag_id").values_list("member_id", "tag_id"):
        removed.setdefault(member_id, []).append(names[tag_id])
    had.delete()
    StaffAction.objects.bulk_create(
        _staff_action(
            actor=actor, action=StaffAction.Action.REMOVE_TAG, member_id=m, reason=reason, detail={"tags": sorted(t)}
        )
        for m, t in removed.items()
    )
    return len(removed)


def _member_status_change(
    *, member: Member, action: str, to: str, allowed_from: tuple[str, ...], refusal, actor, reason
):
    reason = clean_reason(reason)
    if actor is not None:
        require_staff(actor, "members.change_member", members=[member])
    locked = Member.objects.select_for_update().get(pk=member.pk)
    if locked.status not in allowed_from:
        raise LoyaltyError("invalid_status_change", refusal % {"status": locked.get_status_display()})
    if to == Member.Status.ACTIVE and locked.erased_at is not None:
        raise LoyaltyError("member_erased", _("This member's data was erased; the membership cannot be reopened."))
    Member.objects.filter(pk=member.pk).update(status=to)
    staff_action_record(
        actor=actor, action=action, member=locked, reason=reason, detail={"from": locked.status, "to": to}
    )
    member.status = to
    return member


@transaction.atomic
def member_freeze(*, member: Member, actor, reason: str) -> Member:
    """Freeze an active member (no earning or spending) and write the FREEZE audit row.

    Refuses: no reason, an actor without ``members.change_member`` or outside their
    stores, a member who is not active (already frozen, or closed).
    """
    return _member_status_change(
        member=member,
        action=StaffAction.Action.FREEZE,
        to=Member.Status.FROZEN,
        allowed_from=(Member.Status.ACTIVE,),
        refusal=_("Only an active member can be frozen; this one is %(status)s."),
        actor=actor,
        reason=reason,
    )


@transaction.atomic
def member_unfreeze(*, member: Member, actor, reason: str) -> Member:
    """Make a frozen (or closed, not erased) member active again; write the UNFREEZE audit row.

    Refuses: no reason, an actor without ``members.change_member`` or outside their
    stores, a member who is already active, an erased member.
    """
    return _member_status_change(
        member=member,
        action=StaffAction.Action.UNFREEZE,
        to=Member.Status.ACTIVE,
        allowed_from=(Member.Status.FROZEN, Member.Status.CLOSED),
        refusal=_("Only a frozen or closed member can be made active again; this one is %(status)s."),
        actor=actor,
        reason=reason,
    )


@transaction.atomic
def member_close(*, member: Member, actor, reason: str) -> Member:
    """Close a membership (the member can no longer sign in); write the CLOSE audit row.

    The ledger is kept. Refuses: no reason, an actor without ``members.change_member`` or
    outside their stores, a membership already closed.
    """
    return _member_status_change(
        member=member,
        action=StaffAction.Action.CLOSE,
        to=Member.Status.CLOSED,
        allowed_from=(Member.Status.ACTIVE, Member.Status.FROZEN),
        refusal=_("This membership is already %(status)s."),
        actor=actor,
        reason=reason,
    )


# --- sign-in and profile (API and member pages) -------------------------------------------


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

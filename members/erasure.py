"""Erased phone numbers, kept only as keyed hashes: a number erased lately joins again
without a second joining bonus (docs/privacy.md). Identity-level, so every way of joining
(members.services, the import) and the erasure itself (operations.privacy) share it.
"""

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable

from django.conf import settings

from .models import ErasedPhone
from .phone import normalize_phone


def rejoin_block_days() -> int:
    """``LOYALTY_REJOIN_BONUS_BLOCK_DAYS``: how long an erased phone number earns no joining bonus (0: off)."""
    return max(0, int(getattr(settings, "LOYALTY_REJOIN_BONUS_BLOCK_DAYS", 365)))


def _erased_phone_key() -> bytes:
    key = getattr(settings, "LOYALTY_ERASED_PHONE_KEY", "")
    if key:
        return key.encode()
    # Derived, not SECRET_KEY itself: a hash of a phone must not double as a check of the signing key.
    return hmac.new(settings.SECRET_KEY.encode(), b"members.ErasedPhone", hashlib.sha256).digest()


def erased_phone_hash(phone: str, *, key: bytes | None = None) -> str:
    """HMAC-SHA256 of a normalised (E.164) phone number under the erased-phone key, in hex.

    Keyed, because there are only so many phone numbers: a plain hash of each is a lookup
    table away from the number; without the key the hash says nothing.
    """
    return hmac.new(key or _erased_phone_key(), phone.encode(), hashlib.sha256).hexdigest()


def phones_erased_recently(phones: Iterable[str], *, now: dt.datetime) -> set[str]:
    """Those of ``phones`` (normalised, E.164) that belonged to a member erased within
    ``LOYALTY_REJOIN_BONUS_BLOCK_DAYS`` before ``now``; one query. Every way of joining
    asks this (members.services.member_create, the import), and stores the answer on the
    member as ``rejoined_after_erasure``.
    """
    days = rejoin_block_days()
    if not days:
        return set()
    key = _erased_phone_key()
    hashes = {erased_phone_hash(phone, key=key): phone for phone in set(phones)}
    if not hashes:
        return set()
    found = ErasedPhone.objects.filter(
        phone_hash__in=list(hashes), erased_at__gt=now - dt.timedelta(days=days)
    ).values_list("phone_hash", flat=True)
    return {hashes[phone_hash] for phone_hash in found}


def phone_erased_recently(phone: str, *, now: dt.datetime) -> bool:
    """Whether ``phone`` (any form :func:`members.phone.normalize_phone` accepts) belonged
    to a member erased within ``LOYALTY_REJOIN_BONUS_BLOCK_DAYS`` before ``now``.
    Refuses an invalid phone number (``invalid_phone``)."""
    normalized = normalize_phone(phone)
    return normalized in phones_erased_recently([normalized], now=now)


def erased_phone_record(phone: str, now: dt.datetime) -> None:
    """Remember ``phone``'s keyed hash as erased at ``now`` (a second erasure moves the
    date on) and forget the hashes older than the period: they block nothing any more."""
    days = rejoin_block_days()
    if not days:
        ErasedPhone.objects.all().delete()
        return
    ErasedPhone.objects.filter(erased_at__lte=now - dt.timedelta(days=days)).delete()
    ErasedPhone.objects.bulk_create(
        [ErasedPhone(phone_hash=erased_phone_hash(phone), erased_at=now)],
        update_conflicts=True,
        unique_fields=["phone_hash"],
        update_fields=["erased_at"],
    )

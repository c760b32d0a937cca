"""State changes of the API's own records: store keys, tokens, idempotent replays."""

import datetime as dt
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from members.models import Member, Store

from .models import ApiToken, IdempotencyRecord, StoreApiKey, secret_hash

KEY_PREFIX = "sk_"
TOKEN_PREFIXES = {ApiToken.Kind.ACCESS: "at_", ApiToken.Kind.REFRESH: "rt_", ApiToken.Kind.STAFF: "st_"}


def store_key_create(
    *, store: Store, name: str, actions: list[str], acting_user=None, now: dt.datetime | None = None
) -> tuple[StoreApiKey, str]:
    """Make a store API key; return it and the key in clear, which is shown this once only.

    Refuses an unknown action (``invalid_action``).
    """
    unknown = sorted(set(actions) - set(StoreApiKey.Action.values))
    if unknown:
        raise LoyaltyError("invalid_action", _("Unknown actions: %(actions)s.") % {"actions": ", ".join(unknown)})
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = StoreApiKey.objects.create(
        store=store,
        name=name,
        prefix=raw[:10],
        key_hash=secret_hash(raw),
        actions=sorted(set(actions)),
        acting_user=acting_user,
        created_at=now or timezone.now(),
    )
    return key, raw


@dataclass
class TokenPair:
    access: str
    refresh: str
    access_expires_at: dt.datetime
    refresh_expires_at: dt.datetime
    member: Member


def _token(kind: str, *, now: dt.datetime, lifetime: dt.timedelta, **owner) -> tuple[ApiToken, str]:
    raw = TOKEN_PREFIXES[kind] + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        kind=kind, key_hash=secret_hash(raw), created_at=now, expires_at=now + lifetime, **owner
    )
    return token, raw


@transaction.atomic
def tokens_issue(*, member: Member, now: dt.datetime | None = None, family=None) -> TokenPair:
    """A new access token (short-lived) and refresh token (long-lived) for a signed-in member."""
    now = now or timezone.now()
    extra = {"family": family} if family else {}
    access, access_raw = _token(
        ApiToken.Kind.ACCESS, now=now, lifetime=settings.API_ACCESS_TOKEN_LIFETIME, member=member, **extra
    )
    refresh, refresh_raw = _token(
        ApiToken.Kind.REFRESH,
        now=now,
        lifetime=settings.API_REFRESH_TOKEN_LIFETIME,
        member=member,
        family=access.family,
    )
    return TokenPair(access_raw, refresh_raw, access.expires_at, refresh.expires_at, member)


def _refused_refresh() -> LoyaltyError:
    return LoyaltyError("token_invalid", _("The refresh token is invalid or has expired. Sign in again."))


def tokens_refresh(*, refresh_token: str, now: dt.datetime | None = None) -> TokenPair:
    """Swap a refresh token for a new pair; the old refresh token and its access tokens stop working.

    A refresh token used a second time means it leaked: the whole sign-in is revoked
    and the member must sign in again. Refuses unknown, expired or revoked tokens and a
    closed member (``token_invalid``).
    """
    now = now or timezone.now()
    reuse = False
    with transaction.atomic():
        token = (
            ApiToken.objects.select_for_update(of=("self",))
            .select_related("member")
            .filter(key_hash=secret_hash(refresh_token or ""), kind=ApiToken.Kind.REFRESH)
            .first()
        )
        if token is None or token.expires_at <= now or token.member.status == Member.Status.CLOSED:
            raise _refused_refresh()
        if token.revoked_at is not None:
            ApiToken.objects.filter(family=token.family, revoked_at__isnull=True).update(revoked_at=now)
            reuse = True
        else:
            ApiToken.objects.filter(family=token.family, revoked_at__isnull=True).update(revoked_at=now)
            pair = tokens_issue(member=token.member, now=now, family=token.family)
    if reuse:  # raised after commit, so the revocation sticks
        raise _refused_refresh()
    return pair


def tokens_revoke(*, token: ApiToken, now: dt.datetime | None = None) -> None:
    """Sign out: end the sign-in the token belongs to (its access and refresh tokens)."""
    ApiToken.objects.filter(family=token.family, revoked_at__isnull=True).update(revoked_at=now or timezone.now())


def staff_token_create(*, username: str, password: str, now: dt.datetime | None = None) -> tuple[ApiToken, str]:
    """A bearer token for a staff user who gives their password; refuses anyone else (``invalid_credentials``)."""
    now = now or timezone.now()
    user = authenticate(username=username, password=password)
    if user is None or not user.is_staff or not user.is_active:
        raise LoyaltyError("invalid_credentials", _("Wrong username or password, or not a staff account."))
    return _token(ApiToken.Kind.STAFF, now=now, lifetime=settings.API_STAFF_TOKEN_LIFETIME, user=user)


# --- idempotent replays ------------------------------------------------------------------


IN_FLIGHT_TIMEOUT = dt.timedelta(minutes=5)


@dataclass
class Claim:
    record: IdempotencyRecord
    replay: bool


def idempotency_claim(*, member: Member, scope: str, key: str, request_hash: str) -> Claim:
    """Claim ``key`` for a request, or find the first request that used it.

    Returns a claim to complete with :func:`idempotency_complete`, or a replay of a
    finished first request. Refuses the key with a different body
    (``idempotency_key_reused``) and while the first request is still running
    (``idempotency_in_flight``).
    """
    key = (key or "").strip()
    if not key or len(key) > 128:
        raise LoyaltyError(
            "idempotency_key_required",
            _("Send an Idempotency-Key header of 1 to 128 characters, new for each new request."),
        )
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(member=member, scope=scope, key=key, request_hash=request_hash)
        return Claim(record, replay=False)
    except IntegrityError:
        record = IdempotencyRecord.objects.get(member=member, scope=scope, key=key)
    if record.request_hash != request_hash:
        raise LoyaltyError(
            "idempotency_key_reused",
            _("This Idempotency-Key was already used for a different request. Send a new key for a new request."),
        )
    if record.status == IdempotencyRecord.Status.IN_FLIGHT:
        # A first request that died without an answer (a killed worker) frees its key
        # after a while; a conditional update makes sure only one retry takes it over.
        stale = timezone.now() - IN_FLIGHT_TIMEOUT
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, status=IdempotencyRecord.Status.IN_FLIGHT, created_at__lt=stale
        ).update(created_at=timezone.now())
        if taken:
            return Claim(record, replay=False)
        raise LoyaltyError(
            "idempotency_in_flight", _("The first request with this Idempotency-Key is still running. Retry shortly.")
        )
    return Claim(record, replay=True)


def idempotency_complete(*, claim: Claim, status: int, body: str) -> None:
    """Keep the first response to replay it; a server error frees the key for a retry."""
    if status >= 500:
        IdempotencyRecord.objects.filter(pk=claim.record.pk).delete()
        return
    IdempotencyRecord.objects.filter(pk=claim.record.pk).update(
        status=IdempotencyRecord.Status.DONE, response_status=status, response_body=body
    )

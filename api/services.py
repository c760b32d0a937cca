"""State changes of the API's own records: store keys, tokens, idempotent replays."""

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.db import is_postgresql
from core.errors import LoyaltyError
from core.two_factor import clean_code, confirmed_device, two_factor_required
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


def staff_token_create(
    *, username: str, password: str, otp_token: str = "", now: dt.datetime | None = None
) -> tuple[ApiToken, str]:
    """A bearer token for a staff user who gives their password, and their authenticator's
    code when they turned two-factor sign-in on: the token opens what the admin opens, so
    it asks for what the admin's sign-in asks for.

    Refuses anyone else (``invalid_credentials``), a missing code (``otp_required``), a
    wrong or spent one (``otp_invalid``), and a user whose role requires two-factor sign-in
    who has not set it up yet (``two_factor_setup_required``).
    """
    now = now or timezone.now()
    user = authenticate(username=username, password=password)
    if user is None or not user.is_staff or not user.is_active:
        raise LoyaltyError("invalid_credentials", _("Wrong username or password, or not a staff account."))
    device = confirmed_device(user)
    if device is not None:
        code = clean_code(otp_token)
        if not code:
            raise LoyaltyError(
                "authenticator_code_required",
                _("Two-factor sign-in is on for this account: send the code from your authenticator app as otp_token."),
            )
        allowed, _extra = device.verify_is_allowed()
        if not allowed or not device.verify_token(code):
            raise LoyaltyError(
                "authenticator_code_invalid",
                _("That authenticator code is wrong or has expired. Send the code the app shows now."),
            )
    elif two_factor_required(user):
        raise LoyaltyError(
            "two_factor_setup_required",
            _(
                "Your role requires two-factor sign-in. "
                "Set up an authenticator in the admin first (/admin/two-factor/)."
            ),
        )
    return _token(ApiToken.Kind.STAFF, now=now, lifetime=settings.API_STAFF_TOKEN_LIFETIME, user=user)


# --- idempotent replays ------------------------------------------------------------------

KEY_MAX_LENGTH = 128
# The first of the two keys of pg_try_advisory_xact_lock(int, int): idempotency claims
# get their own space, apart from the one-key locks of jobs and one-time codes.
CLAIM_LOCK_CLASS = 0x1DE7


@dataclass
class Claim:
    """A request's hold on its key: either a first run to answer, or the first answer to replay."""

    client: str
    key: str
    scope: str
    request_hash: str
    member: Member | None
    replay: IdempotencyRecord | None


def idempotency_key_clean(key: str | None) -> str:
    """The key as sent (outer spaces dropped); refuses none (``idempotency_key_required``)
    and more than 128 characters (``invalid_idempotency_key``)."""
    key = (key or "").strip()
    if not key:
        raise LoyaltyError(
            "idempotency_key_required",
            _("Send an Idempotency-Key header of 1 to 128 characters, new for each new request."),
        )
    if len(key) > KEY_MAX_LENGTH:
        raise LoyaltyError(
            "invalid_idempotency_key",
            _("Send an Idempotency-Key header of 1 to 128 characters, new for each new request."),
        )
    return key


def idempotency_scoped_key(*, client: str, key: str) -> str:
    """The key a service stores for ``client``'s ``key`` (say, on a ledger entry): the same
    length whatever the client sent, so no prefix shortens what a client may send."""
    return "api:" + hashlib.sha256(f"{client}\n{key}".encode()).hexdigest()


def idempotency_claim(*, client: str, key: str, scope: str, request_hash: str, member: Member | None = None) -> Claim:
    """Claim ``client``'s ``key`` for this request, or find the first answer to it.

    Runs inside the caller's transaction, which must also run the request and
    :func:`idempotency_complete`: on PostgreSQL the claim is a transaction-scoped
    advisory lock on the key, so it ends with that transaction however it ends (commit,
    rollback, or a connection that died with the database), and a retry runs at once.
    SQLite takes its write lock at BEGIN (IMMEDIATE), so requests there run one at a time.
    Refuses the key with another request (``idempotency_key_reused``: another endpoint,
    path or body) and while a request with the key is running (``idempotency_in_flight``),
    besides what :func:`idempotency_key_clean` refuses.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("idempotency_claim must run inside the request's transaction")
    key = idempotency_key_clean(key)
    if is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", [CLAIM_LOCK_CLASS, f"{client}\n{key}"])
            if not cursor.fetchone()[0]:
                raise _in_flight()
    # Read after the lock: a request that held it has committed its answer or left nothing.
    record = IdempotencyRecord.objects.filter(client=client, key=key).first()
    if record is not None and record.request_hash != request_hash:
        raise LoyaltyError(
            "idempotency_key_reused",
            _("This Idempotency-Key was already used for a different request. Send a new key for a new request."),
        )
    return Claim(client=client, key=key, scope=scope, request_hash=request_hash, member=member, replay=record)


def _in_flight() -> LoyaltyError:
    return LoyaltyError(
        "idempotency_in_flight", _("The first request with this Idempotency-Key is still running. Retry shortly.")
    )


def idempotency_complete(*, claim: Claim, status: int, body: str) -> IdempotencyRecord:
    """Keep the answer to a claimed request, in the request's transaction, for replays.

    Refuses (``idempotency_in_flight``, which rolls the request back) when another
    request with the key answered first; the claim's lock rules that out on PostgreSQL.
    """
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                client=claim.client,
                key=claim.key,
                scope=claim.scope,
                member=claim.member,
                request_hash=claim.request_hash,
                response_status=status,
                response_body=body,
            )
    except IntegrityError:
        raise _in_flight() from None

"""Rewards mall and coupon state changes: redeem, cancel a redemption; issue, verify (核销)
at a till, void and expire coupons.

Every refusal is a ``core.errors.LoyaltyError`` with a stable code. Verify and void
lock the coupon row first, so two tills verifying one code at once cannot both succeed.
Redeem and cancel lock the reward row first, then the member's points account (inside
``loyalty.services``), then the coupon: the same order everywhere, so they cannot deadlock.
"""

import datetime as dt
import hashlib
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, F, IntegerField, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from modeltranslation.utils import build_localized_fieldname

from core.cleaners import KEY_MAX_LENGTH, clean_key, clean_reason
from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.models import Benefit, MemberTier, texts_in_languages
from members.models import Member, Store

from . import eligibility
from .models import Coupon, Redemption, Reward, new_code, normalise_code


def texts_by_language(make: Callable[[str], str]) -> dict[str, str]:
    """``make(code)`` run in each language of ``settings.LANGUAGES``: a coupon title or
    description composed from translated words, for :func:`coupon_issue`."""
    texts = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            texts[code] = str(make(code))
    return texts


def coupon_issue(
    *,
    member: Member,
    title: str | dict[str, str],
    kind: str,
    value: Decimal | int | str,
    expires_at: dt.datetime,
    source: str,
    benefit: Benefit | None = None,
    period: str = "",
    description: str | dict[str, str] = "",
    valid_from: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Coupon:
    """Issue a coupon to ``member`` with a fresh unguessable code. ``title`` and
    ``description`` are one text, or one per language (:func:`texts_by_language`).

    A benefit's coupon is issued once per member and period: asking again returns the
    coupon issued first and writes nothing. Refuses a window that ends before it starts.
    """
    now = now or timezone.now()
    valid_from = valid_from or now
    if expires_at <= valid_from:
        raise LoyaltyError("coupon_window_invalid", _("A coupon must expire after it becomes valid."))
    if benefit is not None:
        existing = Coupon.objects.filter(member=member, benefit=benefit, period=period).first()
        if existing is not None:
            return existing
    for _attempt in range(3):
        try:
            # A savepoint: a lost race (same benefit period, or a code collision) leaves
            # the caller's transaction usable.
            with transaction.atomic():
                coupon = _new_coupon(
                    member_id=member.pk,
                    title=title,
                    description=description,
                    kind=kind,
                    value=value,
                    source=source,
                    benefit_id=benefit.pk if benefit is not None else None,
                    period=period,
                    now=now,
                    valid_from=valid_from,
                    expires_at=expires_at,
                )
                coupon.save(force_insert=True)
                return coupon
        except IntegrityError:
            if benefit is not None:
                existing = Coupon.objects.filter(member=member, benefit=benefit, period=period).first()
                if existing is not None:
                    return existing
            # Otherwise the random code collided: draw another.
    raise LoyaltyError("coupon_code_exhausted", _("Could not draw a free coupon code; try again."))


def _new_coupon(
    *, member_id: int, title: str, value, benefit_id: int | None, now: dt.datetime, texts_from=None, **fields
) -> Coupon:
    """An unsaved coupon with a fresh code: what :func:`coupon_issue` and
    :func:`benefit_coupons_issue` write. ``texts_from`` (a reward or a benefit, with the
    name of its title field) gives the title and description in every language, so the
    member reads the coupon in theirs (rewards/translation.py)."""
    per_language = {}
    for field, limit in (("title", 100), ("description", None)):
        text = title if field == "title" else fields.get(field)
        if isinstance(text, dict):
            per_language[field] = {code: value[:limit] if limit else value for code, value in text.items()}
            text = text.get(settings.LANGUAGE_CODE) or next(iter(text.values()), "")
            if field == "title":
                title = text
            else:
                fields[field] = text
    coupon = Coupon(
        member_id=member_id,
        code=new_code(),
        title=title[:100],
        value=Decimal(value),
        benefit_id=benefit_id,
        issued_at=now,
        **fields,
    )
    for field, texts in per_language.items():
        for code, text in texts.items():
            setattr(coupon, build_localized_fieldname(field, code), text)
    if texts_from is not None:
        source, title_field = texts_from
        for field, source_field, limit in (("title", title_field, 100), ("description", "description", None)):
            for code, text in texts_in_languages(source, source_field).items():
                setattr(coupon, build_localized_fieldname(field, code), text[:limit] if limit else text)
    return coupon


def benefit_coupons_issue(
    wanted: list[tuple[int, Benefit, Decimal, str]],
    *,
    period: str,
    valid_from: dt.datetime,
    expires_at: Callable[[Benefit], dt.datetime],
    now: dt.datetime,
) -> tuple[dict[tuple[int, int], Coupon], int]:
    """:func:`coupon_issue` for many benefit coupons at once (the scheduled jobs): one
    ``(member id, benefit, value, title)`` per coupon, in the caller's transaction.

    Once per member, benefit and period, as the single form: a coupon already issued is
    kept. Returns every wanted coupon now in the database by (member id, benefit id), and
    how many of them this call issued.
    """
    ours: set[str] = set()
    missing = wanted
    issued: dict[tuple[int, int], Coupon] = {}
    # A coupon that conflicts is skipped: either another run issued it (fine) or, once in
    # about 2**59 draws, its random code was taken; those get a fresh code and go again.
    for _attempt in range(3):
        coupons = [
            _new_coupon(
                member_id=member_id,
                title=title,
                texts_from=(benefit, "title"),
                description=benefit.description,
                kind=benefit.coupon_kind,
                value=value,
                source=Coupon.Source.BENEFIT,
                benefit_id=benefit.pk,
                period=period,
                now=now,
                valid_from=valid_from,
                expires_at=expires_at(benefit),
            )
            for member_id, benefit, value, title in missing
        ]
        Coupon.objects.bulk_create(coupons, ignore_conflicts=True)
        ours.update(coupon.code for coupon in coupons)
        issued = {
            (coupon.member_id, coupon.benefit_id): coupon
            for coupon in Coupon.objects.filter(
                member_id__in={m for m, _b, _v, _t in wanted},
                benefit_id__in={b.pk for _m, b, _v, _t in wanted},
                period=period,
            )
        }
        missing = [row for row in wanted if (row[0], row[1].pk) not in issued]
        if not missing:
            break
    return issued, sum(1 for coupon in issued.values() if coupon.code in ours)


def _locked(code: str) -> Coupon:
    try:
        return Coupon.objects.select_for_update().get(code=normalise_code(code))
    except Coupon.DoesNotExist:
        raise LoyaltyError("coupon_not_found", _("No coupon has this code.")) from None


def _refuse_unusable(coupon: Coupon, now: dt.datetime) -> None:
    if coupon.status == Coupon.Status.USED:
        raise LoyaltyError(
            "coupon_used",
            _("This coupon was already used on %(date)s.")
            % {"date": timezone.localtime(coupon.used_at).strftime("%Y-%m-%d %H:%M")},
        )
    if coupon.status == Coupon.Status.VOID:
        raise LoyaltyError("coupon_void", _("This coupon was voided."))
    if coupon.status == Coupon.Status.EXPIRED or coupon.expires_at <= now:
        raise LoyaltyError("coupon_expired", _("This coupon has expired."))


@transaction.atomic
def coupon_verify(*, code: str, store: Store, actor: AbstractBaseUser | None, now: dt.datetime | None = None) -> Coupon:
    """Use a coupon at a till: mark it used with the store, the staff member (``actor``; None
    for a store key without an acting user) and the time.

    Refuses an unknown code (``coupon_not_found``), a used (``coupon_used``), voided
    (``coupon_void``) or expired (``coupon_expired``) coupon and one not yet valid
    (``coupon_not_yet_valid``). The row is locked first, so of two tills verifying the
    same code at once exactly one succeeds and the other gets ``coupon_used``.
    """
    now = now or timezone.now()
    coupon = _locked(code)
    _refuse_unusable(coupon, now)
    if coupon.valid_from > now:
        raise LoyaltyError(
            "coupon_not_yet_valid",
            _("This coupon is valid from %(date)s.") % {"date": timezone.localtime(coupon.valid_from)},
        )
    coupon.status = Coupon.Status.USED
    coupon.used_at = now
    coupon.used_store = store
    coupon.used_by = actor
    coupon.save(update_fields=["status", "used_at", "used_store", "used_by"])
    return coupon


def coupons_void_for_member(*, member: Member, reason: str, now: dt.datetime | None = None) -> int:
    """Void every unused coupon of ``member`` (say, when the member's account is erased), so
    none of them can be used at a till any more; returns how many. Call it inside the
    caller's transaction."""
    now = now or timezone.now()
    return Coupon.objects.filter(member=member, status=Coupon.Status.ISSUED).update(
        status=Coupon.Status.VOID, voided_at=now, void_reason=reason[:200]
    )


@transaction.atomic
def coupon_void(
    *, coupon: Coupon, actor: AbstractBaseUser | None, reason: str, now: dt.datetime | None = None
) -> Coupon:
    """Void an unused coupon, recording who did it, when and why.

    Refuses without a reason (``reason_required``) or with one over 200 characters
    (``reason_too_long``), and a coupon that is used
    (``coupon_used``), already void (``coupon_void``) or expired (``coupon_expired``).
    """
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Give a reason for voiding the coupon."))
    coupon = Coupon.objects.select_for_update().get(pk=coupon.pk)
    if coupon.status == Coupon.Status.USED:
        raise LoyaltyError("coupon_used", _("A used coupon cannot be voided."))
    if coupon.status == Coupon.Status.VOID:
        raise LoyaltyError("coupon_void", _("This coupon was voided."))
    if coupon.status == Coupon.Status.EXPIRED:
        raise LoyaltyError("coupon_expired", _("This coupon has expired."))
    coupon.status = Coupon.Status.VOID
    coupon.voided_at = now
    coupon.voided_by = actor
    coupon.void_reason = reason
    coupon.save(update_fields=["status", "voided_at", "voided_by", "void_reason"])
    return coupon


def coupons_expire(*, now: dt.datetime | None = None, member_ids: tuple[int, int] | None = None) -> int:
    """Mark issued coupons past their expiry as expired; returns how many.

    One ``UPDATE ... WHERE status = 'issued' AND expires_at <= now``, limited to the
    member-id range ``[lo, hi)`` when given (the job's chunks). Safe to rerun: an expired
    coupon no longer matches, and a coupon a till verified meanwhile is no longer issued.
    """
    now = now or timezone.now()
    due = Coupon.objects.filter(status=Coupon.Status.ISSUED, expires_at__lte=now)
    if member_ids is not None:
        due = due.filter(member_id__gte=member_ids[0], member_id__lt=member_ids[1])
    return due.update(status=Coupon.Status.EXPIRED)


# --- the rewards mall -------------------------------------------------------------------


def _spend_key(key: str) -> str:
    """The spend's ledger key: "redeem:" + the redemption's key while that fits the ledger's
    128 characters, else "redeem#" + its SHA-256, so a member may use every character of
    theirs. "#" is never in the plain form's prefix, so the two cannot meet."""
    plain = f"redeem:{key}"
    if len(plain) <= KEY_MAX_LENGTH:
        return plain
    return "redeem#" + hashlib.sha256(key.encode()).hexdigest()


def _replayed_redemption(member: Member, key: str, request_hash: str) -> Redemption | None:
    redemption = (
        Redemption.objects.select_related("reward", "coupon").filter(member=member, idempotency_key=key).first()
    )
    if redemption is None:
        return None
    if redemption.request_hash != request_hash:
        raise _conflict()
    redemption.replayed = True
    return redemption


def _conflict() -> LoyaltyError:
    return LoyaltyError(
        "idempotency_conflict",
        _("This idempotency key was already used to redeem another reward. Send a new key for a new redemption."),
    )


def reward_redeem(
    *, member: Member, reward: Reward, idempotency_key: str, now: dt.datetime | None = None
) -> Redemption:
    """Redeem a reward: spend its points, take one from stock, issue its coupon; all or nothing.

    Locks the reward row, then (through ``loyalty.services.points_spend``) the member's
    points account. The same key for the same reward returns the first redemption
    (``replayed=True``) and writes nothing, also when both requests arrive at once.
    Refuses: ``member_inactive``, ``reward_unavailable`` (out of the mall or outside its
    window), ``tier_too_low``, ``out_of_stock``, ``limit_reached`` (completed
    redemptions per member), ``insufficient_balance``, ``idempotency_conflict`` (the key
    was used for another reward), ``idempotency_key_required``/``invalid_idempotency_key``.

    Ten statements on the common path (the transaction's two ends included): the reward
    lock, one read of an earlier redemption under the key, the member's status, tier and
    redemptions of this reward, the spend's three (``points_spend``), the stock, the
    coupon, the redemption. No savepoints: a unique key that another request took at the
    same moment (the same key, or a coupon code drawn twice) fails the whole transaction,
    and it runs once more, when it sees the first request's rows.
    """
    now = now or timezone.now()
    key = clean_key(idempotency_key, required=True)
    request_hash = hashlib.sha256(f"reward:{reward.pk}".encode()).hexdigest()
    try:
        return _redeem(member=member, reward=reward, key=key, request_hash=request_hash, now=now)
    except IntegrityError:
        return _redeem(member=member, reward=reward, key=key, request_hash=request_hash, now=now)


@transaction.atomic
def _redeem(*, member: Member, reward: Reward, key: str, request_hash: str, now: dt.datetime) -> Redemption:
    completed = (
        Redemption.objects.filter(member_id=member.pk, reward_id=reward.pk, status=Redemption.Status.COMPLETED)
        .order_by()
        .values("member_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    # Stock and the per-member limit are decided under this lock; FOR UPDATE OF the
    # reward only, not the tier joined in.
    reward = Reward.objects.select_for_update(of=("self",)).select_related("min_tier").get(pk=reward.pk)
    # Read after the lock, in a statement of its own: a request that held the lock meanwhile
    # has committed, and only a statement started now sees its redemption.
    replay_id, member_status, tier_rank, redeemed = (
        Member.objects.filter(pk=member.pk)
        .annotate(
            replay_id=Subquery(Redemption.objects.filter(member_id=member.pk, idempotency_key=key).values("id")[:1]),
            tier_rank=Subquery(MemberTier.objects.filter(member_id=member.pk).values("tier__rank")[:1]),
            redeemed=Coalesce(Subquery(completed, output_field=IntegerField()), 0),
        )
        .values_list("replay_id", "status", "tier_rank", "redeemed")
        .get()
    )
    if replay_id is not None:
        return _replayed_redemption(member, key, request_hash)
    refused = eligibility.refusal(
        reward, now=now, member_status=member_status, tier_rank=tier_rank, redeemed=redeemed, balance=None
    )
    if refused is not None:
        raise LoyaltyError(refused.code, refused.message)

    try:
        spend = ledger.points_spend(
            member=member,
            amount=reward.points_cost,
            idempotency_key=_spend_key(key),
            reason=reward.name[:200],
            detail={"reward": reward.pk, "reward_name": reward.name, "redemption_key": key},
            now=now,
            savepoint=False,  # any refusal rolls this whole transaction back
        )
    except LoyaltyError as error:
        if error.code == "idempotency_key_reused":
            raise _conflict() from None
        raise
    if spend.replayed:
        # The same key, for another reward of the same cost, won the account lock first.
        replay = _replayed_redemption(member, key, request_hash)
        if replay is not None:
            return replay
        raise _conflict()

    if reward.stock is not None:
        Reward.objects.filter(pk=reward.pk).update(stock=F("stock") - 1)
        reward.stock -= 1
    # Not coupon_issue: no savepoint (see above); a redemption's coupon has no benefit period.
    coupon = _new_coupon(
        member_id=member.pk,
        title=reward.name,
        texts_from=(reward, "name"),
        description=reward.description,
        kind=reward.coupon_kind,
        value=reward.coupon_value,
        source=Coupon.Source.REDEMPTION,
        benefit_id=None,
        now=now,
        valid_from=now,
        expires_at=now + dt.timedelta(days=reward.coupon_valid_days),
    )
    coupon.save(force_insert=True)
    return Redemption.objects.create(
        member=member,
        reward=reward,
        points_cost=reward.points_cost,
        cash_cost=reward.cash_cost,
        spend_entry=spend,
        coupon=coupon,
        idempotency_key=key,
        request_hash=request_hash,
        created_at=now,
    )


@transaction.atomic
def redemption_cancel(
    *,
    redemption: Redemption,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
    now: dt.datetime | None = None,
) -> Redemption:
    """Cancel a redemption whose coupon is unused and not expired: points back, stock back, coupon void.

    The points go back to exactly the lots the redemption spent, each with its own expiry
    (``loyalty.services.points_spend_reverse``); points whose expiry has passed meanwhile
    expire again at once. ``actor`` is the staff user who cancelled, None when the member did.
    Refuses: a reason over 200 characters (``reason_too_long``), ``already_cancelled``,
    ``coupon_used``, ``coupon_expired``. A coupon staff
    voided earlier does not stop the cancellation (the member could not use it).
    """
    now = now or timezone.now()
    reason = clean_reason(reason, required=False)
    redemption = Redemption.objects.select_for_update().get(pk=redemption.pk)
    if redemption.status == Redemption.Status.CANCELLED:
        raise LoyaltyError(
            "already_cancelled",
            _("This redemption was already cancelled on %(date)s.")
            % {"date": timezone.localtime(redemption.cancelled_at).strftime("%Y-%m-%d %H:%M")},
        )
    reward = Reward.objects.select_for_update().get(pk=redemption.reward_id)
    coupon = Coupon.objects.select_for_update().get(pk=redemption.coupon_id)
    if coupon.status == Coupon.Status.USED:
        raise LoyaltyError(
            "coupon_used", _("Its coupon was already used, so this redemption can no longer be cancelled.")
        )
    if coupon.status == Coupon.Status.EXPIRED or coupon.expires_at <= now:
        raise LoyaltyError(
            "coupon_expired", _("Its coupon has expired, so this redemption can no longer be cancelled.")
        )

    reversal = ledger.points_spend_reverse(entry=redemption.spend_entry, reason=reason or reward.name[:200], now=now)
    if reward.stock is not None:
        Reward.objects.filter(pk=reward.pk).update(stock=F("stock") + 1)
    if coupon.status == Coupon.Status.ISSUED:
        coupon_void(coupon=coupon, actor=actor, reason=reason or _("Redemption cancelled"), now=now)
    redemption.status = Redemption.Status.CANCELLED
    redemption.reversal_entry = reversal
    redemption.cancelled_at = now
    redemption.cancelled_by = actor
    redemption.cancel_reason = reason
    redemption.save(update_fields=["status", "reversal_entry", "cancelled_at", "cancelled_by", "cancel_reason"])
    redemption.coupon = Coupon.objects.get(pk=coupon.pk)
    return redemption

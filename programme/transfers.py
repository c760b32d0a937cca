"""Points transfers between members (赠送积分): the programme's rules around the ledger's
``loyalty.services.points_transfer*``.

A member gives points to another, named by phone or member number. Refused, writing
nothing: an unknown receiver, oneself, a frozen or closed giver or receiver, a giver below
``PROGRAMME_TRANSFER_MIN_TIER``, more than the daily or monthly limits of the giver
(given) or the receiver (received), the same two members the other way round within
``PROGRAMME_TRANSFER_PING_PONG_HOURS``, an open refund shortfall on the giver's account,
more than the giver has. With ``PROGRAMME_TRANSFER_CONFIRM`` the points leave the giver
at once and reach the receiver when they accept; declined or cancelled, they go back to
the giver with their own lots. Staff reverse a received transfer with a reason.

Locking: both members' rows (``SELECT ... FOR UPDATE`` in id order) before the limits
are counted, so two transfers at once cannot both pass a limit; then the ledger locks
their accounts, in the same order.
"""

import datetime as dt
import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.cleaners import clean_points, clean_reason, clean_text
from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.models import MemberTier, Tier
from members.models import Member, Notification
from members.notifications import Notice, notices_enqueue
from members.phone import normalize_phone
from members.scoping import require_staff
from members.services import is_valid_member_number

from .models import Transfer

REVERSE_PERMISSION = "programme.reverse_transfer"
COUNTING = (Transfer.Status.PENDING, Transfer.Status.COMPLETED)


def receiver_find(to: str) -> Member:
    """The member named by ``to``: a member number (spaces and dashes ignored), else a
    phone number. Refuses text that is neither (``invalid_receiver``) and a number no
    active or frozen member has (``receiver_not_found``)."""
    text = to.strip() if isinstance(to, str) else ""
    digits = "".join(ch for ch in text if ch.isdigit())
    member = None
    if is_valid_member_number(digits) and not text.startswith("+"):
        member = Member.objects.filter(member_number=digits).first()
    if member is None:
        try:
            phone = normalize_phone(text)
        except LoyaltyError:
            if not is_valid_member_number(digits):
                raise LoyaltyError(
                    "invalid_receiver", _("Give the receiver's phone number or member number.")
                ) from None
        else:
            member = Member.objects.filter(phone=phone).first()
    if member is None or member.erased_at is not None or member.status == Member.Status.CLOSED:
        raise LoyaltyError("receiver_not_found", _("No member has the phone or member number “%(to)s”.") % {"to": to})
    return member


def _day_start(now: dt.datetime) -> dt.datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def _limits(giver: Member, receiver: Member, points: int, now: dt.datetime) -> None:
    day = _day_start(now)
    month = day.replace(day=1)
    checks = [
        ("giver", giver, settings.PROGRAMME_TRANSFER_GIVE_PER_DAY, day, _("You can give %(limit)s points a day.")),
        (
            "giver",
            giver,
            settings.PROGRAMME_TRANSFER_GIVE_PER_MONTH,
            month,
            _("You can give %(limit)s points a month."),
        ),
        (
            "receiver",
            receiver,
            settings.PROGRAMME_TRANSFER_RECEIVE_PER_DAY,
            day,
            _("The receiver can get %(limit)s points a day."),
        ),
        (
            "receiver",
            receiver,
            settings.PROGRAMME_TRANSFER_RECEIVE_PER_MONTH,
            month,
            _("The receiver can get %(limit)s points a month."),
        ),
    ]
    for side, member, limit, since, message in checks:
        if not limit:
            continue
        so_far = (
            Transfer.objects.filter(**{side: member}, status__in=COUNTING, created_at__gte=since).aggregate(
                total=Sum("points")
            )["total"]
            or 0
        )
        if so_far + points > limit:
            raise LoyaltyError(
                "transfer_limit_reached",
                (message % {"limit": limit}) + " " + _("%(left)s left.") % {"left": max(0, limit - so_far)},
            )


def _min_tier(giver: Member) -> None:
    code = settings.PROGRAMME_TRANSFER_MIN_TIER
    if not code:
        return
    needed = Tier.objects.filter(code=code).first()
    rank = MemberTier.objects.filter(member=giver).values_list("tier__rank", flat=True).first()
    if needed is not None and (rank is None or rank < needed.rank):
        raise LoyaltyError("tier_too_low", _("Members from %(tier)s up can give points.") % {"tier": needed.name})


def _notice(member_id: int, key: str, title, body, params: dict) -> Notice:
    return Notice(
        member_id=member_id,
        kind=Notification.Kind.OTHER,
        title=title,
        body=body,
        params=params,
        dedupe_key=f"programme:{key}",
        data={"programme": "transfer"},
    )


def _who(member: Member) -> str:
    return member.name or f"****{member.phone[-4:]}"


@transaction.atomic
def transfer_create(
    *, giver: Member, to: str, points: int, message: str = "", now: dt.datetime | None = None
) -> Transfer:
    """Give ``points`` to the member named by ``to``; see the module's docstring for the refusals
    (codes ``receiver_not_found``, ``invalid_receiver``, ``transfer_to_self``,
    ``member_inactive``, ``receiver_inactive``, ``tier_too_low``, ``transfer_limit_reached``,
    ``transfer_ping_pong``, ``refund_shortfall_open``, ``insufficient_balance``,
    ``invalid_amount``, ``invalid_text``)."""
    now = now or timezone.now()
    points = clean_points(points)
    message = clean_text(message, field_name=_("The message"), max_length=100, required=False)
    receiver = receiver_find(to)
    if receiver.pk == giver.pk:
        raise LoyaltyError("transfer_to_self", _("You cannot give points to yourself."))
    locked = {m.pk: m for m in Member.objects.select_for_update().filter(pk__in=[giver.pk, receiver.pk]).order_by("pk")}
    giver, receiver = locked[giver.pk], locked[receiver.pk]
    if giver.status != Member.Status.ACTIVE:
        raise LoyaltyError("member_inactive", _("Your account is frozen: you cannot give points. Ask our staff."))
    if receiver.status != Member.Status.ACTIVE:
        raise LoyaltyError("receiver_inactive", _("This member cannot receive points right now."))
    _min_tier(giver)
    _limits(giver, receiver, points, now)
    hours = settings.PROGRAMME_TRANSFER_PING_PONG_HOURS
    window = now - dt.timedelta(hours=hours)
    back = Transfer.objects.filter(giver=receiver, receiver=giver, status__in=COUNTING, created_at__gte=window)
    if hours and back.exists():
        raise LoyaltyError(
            "transfer_ping_pong",
            _("This member gave you points lately; points cannot go back within %(hours)s hours.")
            % {"hours": settings.PROGRAMME_TRANSFER_PING_PONG_HOURS},
        )
    out_entry = ledger.points_transfer_out(
        giver=giver,
        receiver=receiver,
        amount=points,
        reason=_("Given to %(who)s") % {"who": _who(receiver)},
        idempotency_key=f"transfer:{uuid.uuid4()}",
        now=now,
    )
    confirm = settings.PROGRAMME_TRANSFER_CONFIRM
    transfer = Transfer.objects.create(
        giver=giver,
        receiver=receiver,
        points=points,
        message=message,
        status=Transfer.Status.PENDING if confirm else Transfer.Status.COMPLETED,
        out_entry=out_entry,
        created_at=now,
    )
    if not confirm:
        _receive(transfer, now)
    params = {"who": _who(giver), "points": points}
    title = gettext_lazy("%(who)s gave you %(points)s points")
    body = gettext_lazy("Accept them in the member center.") if confirm else gettext_lazy("They are in your account.")
    notices_enqueue([_notice(receiver.pk, f"transfer:{transfer.pk}", title, body, params)], now=now)
    return transfer


def _receive(transfer: Transfer, now: dt.datetime) -> None:
    entries = ledger.points_transfer_in(
        out_entry=transfer.out_entry,
        receiver=transfer.receiver,
        reason=_("Gift from %(who)s") % {"who": _who(transfer.giver)},
        keep_expiry=settings.PROGRAMME_TRANSFER_KEEP_EXPIRY,
        now=now,
    )
    transfer.in_entry = entries[0]
    transfer.status = Transfer.Status.COMPLETED
    transfer.decided_at = now
    transfer.save(update_fields=["in_entry", "status", "decided_at"])


def _locked_pending(transfer: Transfer) -> Transfer:
    transfer = Transfer.objects.select_for_update().select_related("giver", "receiver", "out_entry").get(pk=transfer.pk)
    if transfer.status != Transfer.Status.PENDING:
        raise LoyaltyError(
            "transfer_not_pending",
            _("This transfer is %(status)s already.") % {"status": transfer.get_status_display()},
        )
    return transfer


def _mine(transfer: Transfer, member: Member, side: str) -> None:
    if getattr(transfer, f"{side}_id") != member.pk:
        raise LoyaltyError("transfer_not_found", _("No such transfer."))


@transaction.atomic
def transfer_accept(*, transfer: Transfer, member: Member, now: dt.datetime | None = None) -> Transfer:
    """The receiver takes a transfer waiting for them. Refuses another member's
    (``transfer_not_found``), one not waiting (``transfer_not_pending``), a receiver who
    is not active (``member_inactive``)."""
    now = now or timezone.now()
    _mine(transfer, member, "receiver")
    transfer = _locked_pending(transfer)
    _receive(transfer, now)
    return transfer


def _give_back(transfer: Transfer, status: str, now: dt.datetime) -> Transfer:
    ledger.points_transfer_return(out_entry=transfer.out_entry, reason=str(Transfer.Status(status).label), now=now)
    transfer.status = status
    transfer.decided_at = now
    transfer.save(update_fields=["status", "decided_at"])
    return transfer


@transaction.atomic
def transfer_decline(*, transfer: Transfer, member: Member, now: dt.datetime | None = None) -> Transfer:
    """The receiver declines a transfer waiting for them: the giver gets the points back."""
    now = now or timezone.now()
    _mine(transfer, member, "receiver")
    return _give_back(_locked_pending(transfer), Transfer.Status.DECLINED, now)


@transaction.atomic
def transfer_cancel(*, transfer: Transfer, member: Member, now: dt.datetime | None = None) -> Transfer:
    """The giver takes back a transfer the receiver has not accepted yet."""
    now = now or timezone.now()
    _mine(transfer, member, "giver")
    return _give_back(_locked_pending(transfer), Transfer.Status.CANCELLED, now)


@transaction.atomic
def transfer_reverse(
    *, transfer: Transfer, actor: AbstractBaseUser, reason: str, now: dt.datetime | None = None
) -> Transfer:
    """Staff undo a received transfer with a reason: the receiver's points go back to the
    giver's own lots. Refuses: an actor without "Can reverse points transfers" or outside
    either member's stores, no reason, a transfer not received (``transfer_not_received``),
    a receiver who spent the points (``insufficient_balance``)."""
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Say why the transfer is reversed: a reason is required."))
    require_staff(actor, REVERSE_PERMISSION, members=[transfer.giver_id, transfer.receiver_id])
    transfer = Transfer.objects.select_for_update().select_related("out_entry").get(pk=transfer.pk)
    if transfer.status != Transfer.Status.COMPLETED:
        raise LoyaltyError("transfer_not_received", _("Only a received transfer can be reversed."))
    ledger.points_transfer_reverse(out_entry=transfer.out_entry, reason=reason, actor=actor, now=now)
    transfer.status = Transfer.Status.REVERSED
    transfer.reversed_at, transfer.reversed_by = now, actor
    transfer.reverse_reason = reason
    transfer.save(update_fields=["status", "reversed_at", "reversed_by", "reverse_reason"])
    return transfer


def transfers_return_unanswered(*, now: dt.datetime | None = None) -> int:
    """Give back to their givers the transfers waiting longer than
    ``PROGRAMME_TRANSFER_CONFIRM_DAYS`` (the receiver never answered); returns how many.
    Each in its own transaction, the row claimed under its lock (a second run skips it)."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.PROGRAMME_TRANSFER_CONFIRM_DAYS)
    returned = 0
    for pk in Transfer.objects.filter(status=Transfer.Status.PENDING, created_at__lt=cutoff).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            try:
                transfer = _locked_pending(Transfer(pk=pk))
            except LoyaltyError:
                continue
            _give_back(transfer, Transfer.Status.DECLINED, now)
            returned += 1
    return returned

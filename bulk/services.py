"""Batch orders and bulk awards (docs/bulk.md). Every ledger change goes through
``loyalty.services``: orders and coupon or growth awards line by line (``order_earn``,
``points_adjust``), one savepoint per line, so a line that is refused changes nothing and
the others go on; a points award set-based, ``points_award_bulk`` for the chunk's lines in
one transaction (it refuses member by member too).

A job's lines are written first; chunk tasks (``bulk.run_chunk``) then work through the
pending lines of a range of line numbers, any worker taking any chunk. Line by line,
lines are done a hundred to a transaction, each line in a savepoint; a line's result
commits with its ledger rows: a chunk that dies halfway is run again and finds the lines it finished no
longer pending; even a line done twice replays (an order by store + number, an award by
the key ``bulk:<job>``), so no member gets anything twice.
"""

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from core.bulk import update_rows
from core.cleaners import clean_points, clean_reason
from core.db import is_postgresql
from core.errors import LoyaltyError
from loyalty.models import CouponKind, Currency
from loyalty.services import CURRENCIES, OrderLineInput, order_earn, points_adjust, points_award_bulk
from loyalty.services.credits import ADJUST_PERMISSION, ADJUST_REFUSAL, BulkAward
from members.models import Member, Segment, Store
from members.phone import normalize_phone
from members.scoping import require_staff, staff_stores
from members.services import is_valid_member_number
from operations.segments import segment_members
from rewards.models import Coupon
from rewards.services import coupon_issue

from .models import BulkJob, BulkLine

SYNC_ORDERS = 100  # a batch up to this size is answered at once; larger ones run in the background
MAX_ORDERS = 1000
MAX_AWARD = 100_000
CHUNK = 1000  # lines per chunk task
GROUP = 100  # lines per transaction inside a chunk
INSERT = 5000
STALLED_AFTER = dt.timedelta(minutes=10)  # a chunk of 1,000 lines takes seconds, at worst a minute or two

logger = logging.getLogger(__name__)

Line = BulkLine.Status


def _start(job: BulkJob, enqueue: Callable[[int, int, int], None]) -> None:
    """After commit: one chunk task per ``CHUNK`` line numbers."""
    transaction.on_commit(lambda: _enqueue_chunks(job.pk, range(0, job.total, CHUNK), job.total, enqueue))


def _enqueue_chunks(job_id: int, firsts: Iterable[int], total: int, enqueue: Callable[[int, int, int], None]) -> None:
    try:
        for first in firsts:
            enqueue(job_id, first, min(first + CHUNK - 1, total - 1))
    except Exception:
        # The job is confirmed and committed: the staff member is not shown an error for
        # a broker that did not answer; jobs_resume_stalled sends the chunks again.
        logger.exception("bulk job %s: queueing its chunks failed; it is resumed when stalled", job_id)


def jobs_resume_stalled(*, enqueue: Callable[[int, int, int], None], now: dt.datetime | None = None) -> list[int]:
    """Queue again the chunks with pending lines of every queued or running job that made
    no progress for :data:`STALLED_AFTER` (its tasks were lost). Safe to run at any time:
    a chunk only works on pending lines, and each award has the job's idempotency key.
    Returns the job ids resumed."""
    now = now or timezone.now()
    cutoff = now - STALLED_AFTER
    stalled = BulkJob.objects.filter(
        status__in=[BulkJob.Status.QUEUED, BulkJob.Status.RUNNING], confirmed_at__lt=cutoff
    ).filter(Q(progress_at__lt=cutoff) | Q(progress_at__isnull=True))
    resumed = []
    for job in stalled:
        # Claimed with a conditional update: two watchdogs resume a job once.
        claimed = (
            BulkJob.objects.filter(pk=job.pk, status=job.status)
            .filter(Q(progress_at__lt=cutoff) | Q(progress_at__isnull=True))
            .update(progress_at=now)
        )
        if not claimed:
            continue
        pending = BulkLine.objects.filter(job=job, status=Line.PENDING)
        firsts = sorted({n // CHUNK * CHUNK for n in pending.values_list("n", flat=True)})
        if not firsts:
            _finish_if_done(job)
            continue
        logger.warning("bulk job %s made no progress since %s: %d chunks queued again", job.pk, cutoff, len(firsts))
        _enqueue_chunks(job.pk, firsts, job.total, enqueue)
        resumed.append(job.pk)
    return resumed


# --- orders ------------------------------------------------------------------------------


def _order_line(values: dict, members: dict[str, Member], stores: dict[int, Store]) -> tuple[str, str, str, dict]:
    """One order through ``order_earn`` in a savepoint: (status, code, message, result)."""
    if values.get("refused"):
        code, message = values["refused"]
        return Line.REFUSED, code, message, {}
    member = members.get(values["member_number"])
    if member is None or member.erased_at is not None:
        return Line.REFUSED, "member_not_found", _("No member with this member number."), {}
    try:
        with transaction.atomic():
            result = order_earn(
                member=member,
                store=stores[values["store_id"]],
                number=values["number"],
                amount=values["amount"],
                points_paid_amount=values.get("points_paid_amount") or 0,
                occurred_at=dt.datetime.fromisoformat(values["occurred_at"]) if values.get("occurred_at") else None,
                lines=[OrderLineInput(**line) for line in values.get("lines") or []],
            )
    except LoyaltyError as error:
        return Line.REFUSED, error.code, str(error.message)[:300], {}
    earned = {c: {"amount": e.amount, "pending_amount": e.pending_amount} for c, e in result.entries.items()}
    return (Line.REPLAYED if result.replayed else Line.DONE), "", "", {"earned": earned}


def _members_by_number(numbers: Iterable[str]) -> dict[str, Member]:
    numbers = list(set(numbers))
    found: dict[str, Member] = {}
    for first in range(0, len(numbers), INSERT):
        found |= {m.member_number: m for m in Member.objects.filter(member_number__in=numbers[first : first + INSERT])}
    return found


def line_out(n: int, given: str, status: str, code: str, message: str, result: dict) -> dict:
    out = {"line": n, "number": given, "status": status}
    if code:
        out["error"] = {"code": code, "message": message}
    return out | result


def orders_batch(
    *, orders: list[dict], owner_key_id: int | None = None, actor=None, enqueue: Callable | None = None
) -> tuple[BulkJob | None, list[dict]]:
    """Earn for many orders, each idempotent by store + number; (job, results).

    ``orders`` are validated values (``store_id`` resolved, or ``refused`` with a code and
    message). Up to :data:`SYNC_ORDERS` are done at once and their results returned (job
    None); more, up to :data:`MAX_ORDERS`, become a background job (results empty) to
    poll. Refuses an empty batch and one over the limit (``batch_too_large``).
    """
    if not orders:
        raise LoyaltyError("invalid", _("Some fields are not valid."), fields={"orders": _("No orders.")})
    if len(orders) > MAX_ORDERS:
        raise LoyaltyError("batch_too_large", _("At most %(max)s orders in one batch.") % {"max": MAX_ORDERS})
    if len(orders) <= SYNC_ORDERS or enqueue is None:
        members = _members_by_number(o["member_number"] for o in orders)
        stores = Store.objects.in_bulk({o["store_id"] for o in orders if o.get("store_id")})
        return None, [line_out(n, o["number"], *_order_line(o, members, stores)) for n, o in enumerate(orders)]
    with transaction.atomic():
        job = BulkJob.objects.create(
            kind=BulkJob.Kind.ORDERS,
            status=BulkJob.Status.QUEUED,
            owner_key_id=owner_key_id,
            created_by=actor if getattr(actor, "pk", None) else None,
            total=len(orders),
            confirmed_at=timezone.now(),
        )
        BulkLine.objects.bulk_create(
            [BulkLine(job=job, n=n, given=o["number"][:64], input=o) for n, o in enumerate(orders)]
        )
        _start(job, enqueue)
    return job, []


# --- awards ------------------------------------------------------------------------------


def _identify(identifiers: list[str]) -> dict[int, tuple[str, Member | None, str]]:
    """Member numbers and phone numbers to members: {line: (given, member, code)}."""
    kinds: dict[int, tuple[str, str, str]] = {}  # line -> (given, "number" | "phone" | "", key)
    for n, raw in enumerate(identifiers):
        given = str(raw).strip()[:64]
        if is_valid_member_number(given):
            kinds[n] = (given, "number", given)
            continue
        try:
            kinds[n] = (given, "phone", normalize_phone(given))
        except LoyaltyError:
            kinds[n] = (given, "", "")
    by_number = _members_by_number(k for g, kind, k in kinds.values() if kind == "number")
    phones = list({k for g, kind, k in kinds.values() if kind == "phone"})
    by_phone: dict[str, Member] = {}
    for first in range(0, len(phones), INSERT):
        by_phone |= {m.phone: m for m in Member.objects.filter(phone__in=phones[first : first + INSERT])}
    out = {}
    for n, (given, kind, key) in kinds.items():
        member = (by_number if kind == "number" else by_phone).get(key) if kind else None
        out[n] = (given, member, "invalid" if not kind else ("not_found" if member is None else ""))
    return out


SKIP_REASONS = {
    "invalid": "not a member number or phone number",
    "not_found": "no such member",
    "duplicate": "listed twice",
    "not_active": "frozen, closed or erased",
    "out_of_scope": "not a member of your stores",
}


def award_job_preview(
    *,
    actor,
    currency: str,
    amount: int,
    reason: str,
    segment: Segment | None = None,
    identifiers: list[str] | None = None,
    source: str = "",
    coupon: dict | None = None,
    now: dt.datetime | None = None,
) -> BulkJob:
    """Write a bulk award waiting for confirmation: the members of ``segment`` or of
    ``identifiers`` (member numbers or phones, up to :data:`MAX_AWARD`) and its preview:
    how many members, the total, how many skipped and why (``SKIP_REASONS``). With
    ``coupon`` (title, kind, value, valid_days) each member gets that coupon as well as
    ``amount`` points (which may then be 0).

    Refuses: an actor without the adjust permission, an unknown currency, an amount that
    is not a positive whole number, no reason, no members named, or too many.
    """
    now = now or timezone.now()
    require_staff(actor, ADJUST_PERMISSION, refusal=ADJUST_REFUSAL)
    if currency not in CURRENCIES:
        raise LoyaltyError("invalid_currency", _("Unknown currency “%(currency)s”.") % {"currency": currency})
    coupon = _clean_coupon(coupon) if coupon else {}
    amount = 0 if coupon and not amount else clean_points(amount)
    if amount <= 0 and not coupon:
        raise LoyaltyError("invalid", _("Some fields are not valid."), fields={"amount": _("More than zero.")})
    reason = clean_reason(reason)
    scope = staff_stores(actor)
    scope_ids = None if scope is None else set(scope.values_list("pk", flat=True))
    found: dict[int, tuple[str, Member | None, str]]
    if segment is not None:
        members = (
            segment_members(segment, now=now)
            .only("pk", "member_number", "status", "erased_at", "home_store_id")
            .order_by("pk")
        )
        found = {n: (m.member_number, m, "") for n, m in enumerate(members[: MAX_AWARD + 1])}
    elif identifiers:
        found = _identify(identifiers[: MAX_AWARD + 1])
    else:
        raise LoyaltyError("invalid", _("Some fields are not valid."), fields={"members": _("Name some members.")})
    if len(found) > MAX_AWARD:
        raise LoyaltyError("batch_too_large", _("At most %(max)s members in one award.") % {"max": MAX_AWARD})
    seen: set[int] = set()
    lines = []
    for n, (given, member, code) in found.items():
        if not code and member.pk in seen:
            code = "duplicate"
        elif not code and (member.status != Member.Status.ACTIVE or member.erased_at is not None):
            code = "not_active"
        elif not code and scope_ids is not None and member.home_store_id not in scope_ids:
            code = "out_of_scope"
        if member is not None and not code:
            seen.add(member.pk)
        lines.append(
            BulkLine(
                n=n,
                member=member if not code else None,
                given=given,
                status=Line.SKIPPED if code else Line.PENDING,
                code=code,
                message=SKIP_REASONS.get(code, ""),
            )
        )
    skipped = Counter(line.code for line in lines if line.code)
    with transaction.atomic():
        job = BulkJob.objects.create(
            kind=BulkJob.Kind.AWARD,
            created_by=actor,
            segment=segment,
            source=source or ("segment" if segment else "list"),
            currency=currency,
            amount=amount,
            reason=reason,
            coupon=coupon,
            total=len(lines),
            done=sum(skipped.values()),
            preview={"members": len(seen), "total_points": len(seen) * amount, "skipped": dict(skipped)}
            | ({"coupons": len(seen)} if coupon else {}),
            created_at=now,
        )
        for line in lines:
            line.job = job
        BulkLine.objects.bulk_create(lines, batch_size=INSERT)
    return job


def award_job_confirm(*, job: BulkJob, actor, enqueue: Callable[[int, int, int], None]) -> BulkJob:
    """Start a previewed award. Refuses a job not waiting for confirmation
    (``job_not_waiting``) and a total larger than the actor's adjustment limit."""
    with transaction.atomic():
        job = BulkJob.objects.select_for_update().get(pk=job.pk)
        if job.kind != BulkJob.Kind.AWARD or job.status != BulkJob.Status.PREVIEW:
            raise LoyaltyError("job_not_waiting", _("This job is not waiting for confirmation."))
        require_staff(actor, ADJUST_PERMISSION, amount=job.preview.get("total_points", 0), refusal=ADJUST_REFUSAL)
        job.status, job.confirmed_at = BulkJob.Status.QUEUED, timezone.now()
        job.save(update_fields=["status", "confirmed_at"])
        if job.done >= job.total:
            job.status, job.finished_at = BulkJob.Status.DONE, timezone.now()
            job.save(update_fields=["status", "finished_at"])
        else:
            _start(job, enqueue)
    return job


# --- running -----------------------------------------------------------------------------


def job_run_chunk(*, job_id: int, first: int, last: int) -> dict[str, int]:
    """Work through the pending lines ``first``..``last`` of a job; counts by outcome."""
    job = BulkJob.objects.select_related("created_by").get(pk=job_id)
    if job.status not in (BulkJob.Status.QUEUED, BulkJob.Status.RUNNING):
        return {}
    BulkJob.objects.filter(pk=job.pk, status=BulkJob.Status.QUEUED).update(status=BulkJob.Status.RUNNING)
    BulkJob.objects.filter(pk=job.pk).update(progress_at=timezone.now())
    lines = BulkLine.objects.filter(job=job, status=Line.PENDING, n__gte=first, n__lte=last).order_by("n")
    lines = list(lines.only("id", "n", "member_id") if _set_based(job) else lines.select_related("member"))
    counts: Counter = Counter()
    if _set_based(job):
        for first_line in range(0, len(lines), CHUNK):
            _award_lines_set_based(job, lines[first_line : first_line + CHUNK], counts)
        _finish_if_done(job)
        return dict(counts)
    if job.kind == BulkJob.Kind.ORDERS:
        members = _members_by_number(line.input["member_number"] for line in lines)
        stores = Store.objects.in_bulk({line.input["store_id"] for line in lines if line.input.get("store_id")})
    for first_line in range(0, len(lines), GROUP):
        group = lines[first_line : first_line + GROUP]
        # One transaction per group, a savepoint per line: a commit per hundred lines
        # instead of per line, and each line's result commits with its ledger rows.
        with transaction.atomic():
            for line in group:
                if job.kind == BulkJob.Kind.ORDERS:
                    status, code, message, result = _order_line(line.input, members, stores)
                else:
                    status, code, message, result = _award_line(job, line)
                line.status, line.code, line.message, line.result = status, code, message, result
                counts[status] += 1
            BulkLine.objects.bulk_update(group, ["status", "code", "message", "result"])
            BulkJob.objects.filter(pk=job.pk).update(done=F("done") + len(group), progress_at=timezone.now())
    _finish_if_done(job)
    return dict(counts)


def _clean_coupon(coupon: dict) -> dict:
    """A coupon award's coupon: a title, a kind of ``CouponKind``, a value, days valid (1-3650)."""
    try:
        title = str(coupon.get("title", "")).strip()[:100]
        kind = str(coupon.get("kind", ""))
        value = Decimal(str(coupon.get("value", 0)))
        days = int(coupon.get("valid_days", 30))
    except (ArithmeticError, TypeError, ValueError, AttributeError):
        title, kind, value, days = "", "", Decimal(0), 0
    if not title or kind not in CouponKind.values or not 1 <= days <= 3650 or not value.is_finite() or value < 0:
        raise LoyaltyError(
            "invalid", _("Some fields are not valid."), fields={"coupon": _("A title, a kind, a value and valid days.")}
        )
    return {"title": title, "kind": kind, "value": str(value), "valid_days": days}


def _set_based(job: BulkJob) -> bool:
    """Whether the job's lines go through ``points_award_bulk``: a points award without a
    coupon (coupons and growth stay on the per-line path)."""
    return job.kind == BulkJob.Kind.AWARD and bool(job.amount) and job.currency == Currency.POINTS and not job.coupon


def _award_lines_set_based(job: BulkJob, lines: list[BulkLine], counts: Counter) -> None:
    """Award ``lines`` in one transaction with ``points_award_bulk``: a few statements for
    all of them, the lines' results committed with the ledger rows. The key is the same
    ``bulk:<job>`` as on the per-line path, so a rerun replays."""
    with transaction.atomic():
        try:
            awarded = points_award_bulk(
                [(line.member_id, f"bulk:{job.pk}", job.amount) for line in lines],
                reason=job.reason,
                actor=job.created_by,
            )
        except LoyaltyError as error:  # the whole call: the staff member lost the permission
            awarded = {line.member_id: BulkAward(error=error) for line in lines}
        for line in lines:
            award = awarded[line.member_id]
            if award.error is not None:
                line.status, line.code, line.message = Line.REFUSED, award.error.code, str(award.error.message)[:300]
                line.result = {}
            else:
                line.status, line.code, line.message = (Line.REPLAYED if award.replayed else Line.DONE), "", ""
                line.result = {"entry": award.entry_id, "balance_after": award.balance_after}
            counts[line.status] += 1
        _lines_write(lines)
        BulkJob.objects.filter(pk=job.pk).update(done=F("done") + len(lines))


def _lines_write(lines: list[BulkLine]) -> None:
    """The lines' outcomes, one statement. ``core.bulk.update_rows`` joins an unnest to the
    table, which the planner, its statistics behind a job's fresh lines, answered with a
    scan of every line of every job (100 ms a chunk at 169,000 lines, growing); the ids as
    an array make it the primary key's index."""
    if not is_postgresql():
        update_rows(BulkLine, lines, ["status", "code", "message", "result"])
        return
    rows = [{"id": line.pk, "status": line.status, "code": line.code, "message": line.message} for line in lines]
    for row, line in zip(rows, lines, strict=True):
        row["result"] = line.result
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(BulkLine._meta.db_table)} AS t "
            "SET status = v.status, code = v.code, message = v.message, result = v.result "
            "FROM json_to_recordset(%s::json) AS v(id bigint, status text, code text, message text, result jsonb) "
            "WHERE t.id = v.id AND t.id = ANY(%s::bigint[])",
            [json.dumps(rows), [line.pk for line in lines]],
        )


def _award_line(job: BulkJob, line: BulkLine) -> tuple[str, str, str, dict]:
    """One member's award in a savepoint. The coupon has no key of its own: the line's
    status, committed with it, is what keeps it to one."""
    result: dict = {}
    replayed = False
    try:
        with transaction.atomic():
            if job.amount:
                entry = points_adjust(
                    member=line.member,
                    currency=job.currency,
                    amount=job.amount,
                    reason=job.reason,
                    actor=job.created_by,
                    idempotency_key=f"bulk:{job.pk}",
                )
                replayed = entry.replayed
                result |= {"entry": entry.pk, "balance_after": entry.balance_after}
            if job.coupon and not replayed:
                now = timezone.now()
                coupon = coupon_issue(
                    member=line.member,
                    title=job.coupon["title"],
                    kind=job.coupon["kind"],
                    value=job.coupon["value"],
                    expires_at=now + dt.timedelta(days=job.coupon["valid_days"]),
                    source=Coupon.Source.STAFF,
                    description=job.reason,
                    now=now,
                )
                result["coupon"] = coupon.code
    except LoyaltyError as error:
        return Line.REFUSED, error.code, str(error.message)[:300], {}
    return (Line.REPLAYED if replayed else Line.DONE), "", "", result


def _finish_if_done(job: BulkJob) -> None:
    if not BulkLine.objects.filter(job=job, status=Line.PENDING).exists():
        BulkJob.objects.filter(pk=job.pk, status__in=[BulkJob.Status.QUEUED, BulkJob.Status.RUNNING]).update(
            status=BulkJob.Status.DONE, finished_at=timezone.now()
        )


def job_counts(job: BulkJob) -> dict[str, int]:
    """Lines by status, one query."""
    return dict(BulkLine.objects.filter(job=job).values_list("status").annotate(n=Count("id")).order_by())


def job_result_rows(job: BulkJob) -> Iterable[list]:
    """The result file's rows: a header, then one row per line."""
    yield ["line", "given", "member_number", "status", "code", "message", "result"]
    lines = BulkLine.objects.filter(job=job).select_related("member").order_by("n").iterator(chunk_size=2000)
    for line in lines:
        number = line.member.member_number if line.member_id else line.input.get("member_number", "")
        result = json.dumps(line.result, ensure_ascii=False, sort_keys=True) if line.result else ""  # not a repr
        yield [line.n, line.given, number, line.status, line.code, line.message, result]

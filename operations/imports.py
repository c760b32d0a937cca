"""Member files imported in the background: ``ImportJob`` (docs/import.md).

The life of a job:

1. :func:`import_job_create` stores the upload (status CHECKING) and queues the check.
2. :func:`import_job_check` reads the file once, streaming (a csv reader, openpyxl in
   read-only mode), and checks every row with the rules of the admin's import
   (``operations.resources.RowReader``), duplicate phones within the file included. It keeps
   the error count and the first :data:`MAX_ERRORS_KEPT` bad rows on the job. Writes
   nothing else: CHECKED, or INVALID.
3. :func:`import_job_confirm` (staff, only from CHECKED) queues the import, with one
   ``StaffAction`` row.
4. :func:`import_job_run` reads the file again in chunks of :data:`CHUNK_ROWS` rows, one
   transaction per chunk that also advances ``imported_rows``: a run stopped halfway
   resumes after the last committed chunk, and redoing a chunk changes nothing (members are
   matched by phone, opening balances have the key ``opening:<phone>``). DONE with a
   summary, or FAILED with a message (and can be resumed).

Memory stays bounded by the chunk, except the check's map of phones seen so far (to find
duplicates), about 150 bytes a row.
"""

import datetime as dt
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import PurePath

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from core.bulk import update_rows
from core.errors import LoyaltyError
from core.jobs import job_lock
from loyalty.models import Currency, LedgerEntry
from loyalty.services import accounts_open_with_balance, points_award
from loyalty.tiers import tiers_assign_default_bulk
from members.models import ImportJob, Member, StaffAction
from members.services import members_insert, staff_action_record

from .import_files import chunks, data_rows, estimate_rows, open_upload, refuse
from .resources import (
    RowReader,
    _text,
    duplicate_phone_message,
    merged_record_problem,
    opening_balance_award,
    opening_balance_key,
    opening_balance_problem,
)

logger = logging.getLogger(__name__)

CHUNK_ROWS = 1000
# A CHECKING or IMPORTING job whose progress (``progress_at``, advanced by every chunk)
# stopped this long ago lost its task (worker killed, broker restarted): it is stuck,
# and the admin's Resume and the watchdog (``operations.watch_jobs``) queue it again.
# A chunk takes seconds; a queued job waiting behind another import takes longer, and a
# second copy of a job that is still running only finds its lock and ends.
IMPORT_STUCK_AFTER = dt.timedelta(minutes=10)
MAX_ERRORS_KEPT = 1000
# 100 000 rows of a typical member list are about 7 MB as CSV.
MAX_UPLOAD_BYTES = getattr(settings, "LOYALTY_IMPORT_MAX_BYTES", 50 * 1024 * 1024)
FORMATS = ("csv", "xlsx")
_UPDATE_FIELDS = ("name", "gender", "birthday", "email", "home_store")


# --- checking rows -------------------------------------------------------------------------


@dataclass
class CheckedRow:
    number: int
    values: dict
    present: set[str]
    errors: dict[str, list[str]]
    member: Member | None = None  # the existing member with this phone
    award: int = 0  # the opening balance this row writes
    cells: dict = field(default_factory=dict)


def _check_chunk(
    reader: RowReader, rows: list[tuple[int, dict]], first_row_of_phone: dict | None, *, lock: bool = False
) -> list[CheckedRow]:
    """Apply every row rule to one chunk, with two queries for the whole chunk.

    ``first_row_of_phone`` (phone -> row number) finds phones listed twice in the file;
    None skips that rule (the import of a file checked before). ``lock`` locks the existing
    members, in id order, for the transaction that updates them.
    """
    checked = []
    for number, cells in rows:
        values, present, errors = reader.clean(cells)
        checked.append(CheckedRow(number, values, present, errors, cells=cells))
        if first_row_of_phone is not None and "phone" not in errors:
            first = first_row_of_phone.setdefault(values["phone"], number)
            if first != number:
                errors["phone"] = [duplicate_phone_message(values["phone"], first)]
    phones = [row.values["phone"] for row in checked if "phone" not in row.errors]
    # With the record a merged one points at, for merged_record_problem's message.
    members = Member.objects.filter(phone__in=phones).select_related("merged_into").order_by("id")
    if lock:
        members = members.select_for_update(of=("self",), no_key=True)
    existing = {member.phone: member for member in members}
    earlier = dict(
        LedgerEntry.objects.filter(
            member__in=[member.pk for member in existing.values()],
            currency=Currency.POINTS,
            idempotency_key__in=[opening_balance_key(phone) for phone in existing],
        ).values_list("member_id", "amount")
    )
    for row in checked:
        if "phone" in row.errors:
            continue
        row.member = existing.get(row.values["phone"])
        merged = merged_record_problem(row.member)
        if merged:
            row.errors["phone"] = [merged]
            continue
        if "opening_points" in row.errors:
            continue
        status = row.member.status if row.member else None
        before = earlier.get(row.member.pk) if row.member else None
        problem = opening_balance_problem(points=row.values["opening_points"], status=status, earlier=before)
        if problem:
            row.errors["opening_points"] = [problem]
        else:
            row.award = opening_balance_award(points=row.values["opening_points"], status=status, earlier=before)
    return checked


def _error_entry(row: CheckedRow) -> dict:
    return {"row": row.number, "phone": _text(row.cells.get("phone")), "errors": row.errors}


# --- services ------------------------------------------------------------------------------


def import_job_create(*, file: UploadedFile, user) -> ImportJob:
    """Store an uploaded member file as a job and queue its check (after commit).

    Refuses a file that is neither CSV nor XLSX, an empty one, and one over
    :data:`MAX_UPLOAD_BYTES`.
    """
    name = PurePath(file.name or "").name[:255]
    extension = PurePath(name).suffix.lower().lstrip(".")
    if extension not in FORMATS:
        raise refuse(_("Upload a .csv or .xlsx file; “%(name)s” is neither.") % {"name": name})
    if not file.size:
        raise refuse(_("The file is empty."))
    if file.size > MAX_UPLOAD_BYTES:
        raise refuse(
            _("The file is %(size)s MB; the most an import takes is %(limit)s MB. Split it into smaller files.")
            % {"size": round(file.size / 2**20, 1), "limit": MAX_UPLOAD_BYTES // 2**20}
        )
    from .tasks import check_import

    with transaction.atomic():
        job = ImportJob(
            original_name=name,
            format=extension,
            created_by=user if getattr(user, "pk", None) else None,
            # The check's messages are for the uploader: in their language, not the site's.
            summary={"language": translation.get_language() or settings.LANGUAGE_CODE},
        )
        job.file.save(name, file, save=False)
        job.save()
        transaction.on_commit(lambda: check_import.delay(job.pk))
    return job


def import_job_check(job_id: int) -> ImportJob:
    """Check every row of the job's file without writing any member: CHECKED or INVALID.

    Streams the file, checks it in chunks of :data:`CHUNK_ROWS` rows and advances
    ``checked_rows`` after each chunk, so the admin shows progress. A job that is not
    CHECKING is returned unchanged (a task delivered twice checks once).
    """
    job = ImportJob.objects.get(pk=job_id)
    if job.status != ImportJob.Status.CHECKING:
        return job
    with job_lock(f"import_check:{job.pk}") as acquired:
        if not acquired:
            logger.info("import job %s is being checked elsewhere; skipped", job.pk)
            return job
        with translation.override(job.summary.get("language") or settings.LANGUAGE_CODE):
            return _check(job)


def _check(job: ImportJob) -> ImportJob:
    ImportJob.objects.filter(pk=job.pk).update(started_at=timezone.now(), progress_at=timezone.now(), checked_rows=0)
    reader = RowReader()
    first_row_of_phone: dict[str, int] = {}
    errors: list[dict] = []
    bad_rows = rows = 0
    try:
        with open_upload(job) as handle:
            estimate = estimate_rows(job, handle)
            ImportJob.objects.filter(pk=job.pk).update(total_rows=estimate)
            for chunk in chunks(data_rows(job, handle), CHUNK_ROWS):
                for row in _check_chunk(reader, chunk, first_row_of_phone):
                    if row.errors:
                        bad_rows += 1
                        if len(errors) < MAX_ERRORS_KEPT:
                            errors.append(_error_entry(row))
                rows += len(chunk)
                ImportJob.objects.filter(pk=job.pk).update(
                    checked_rows=rows,
                    total_rows=max(estimate, rows),
                    error_count=bad_rows,
                    progress_at=timezone.now(),
                )
        if not rows:
            raise refuse(_("The file has no rows under its header."))
    except LoyaltyError as error:
        return _finish_check(
            job, status=ImportJob.Status.INVALID, rows=rows, errors=errors, bad=bad_rows, message=error.message
        )
    except Exception:
        logger.exception("checking import job %s failed", job.pk)
        return _finish_check(
            job,
            status=ImportJob.Status.INVALID,
            rows=rows,
            errors=errors,
            bad=bad_rows,
            message=_("The file could not be read. Save it again as CSV UTF-8 or XLSX and upload it again."),
        )
    status = ImportJob.Status.INVALID if bad_rows else ImportJob.Status.CHECKED
    return _finish_check(job, status=status, rows=rows, errors=errors, bad=bad_rows, message="")


def _finish_check(job: ImportJob, *, status: str, rows: int, errors: list, bad: int, message: str) -> ImportJob:
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.CHECKING).update(
        status=status,
        total_rows=rows,
        checked_rows=rows,
        error_count=bad,
        errors=errors,
        message=str(message),
        finished_at=timezone.now() if status == ImportJob.Status.INVALID else None,
    )
    job.refresh_from_db()
    if job.status == ImportJob.Status.INVALID:
        _drop_file(job)  # the operator fixes their own copy and uploads it again
    return job


def _drop_file(job: ImportJob) -> None:
    """Delete the uploaded file once it is no longer needed: it holds personal data."""
    try:
        job.file.storage.delete(job.file.name)
    except OSError:
        logger.warning("could not delete the file of import job %s", job.pk, exc_info=True)


def import_job_confirm(*, job_id: int, user) -> ImportJob:
    """Start importing a checked job (one ``StaffAction`` of kind IMPORT) and queue it after commit.

    Refuses a job that is not CHECKED, e.g. one with bad rows or already confirmed.
    """
    from .tasks import run_import

    with transaction.atomic():
        claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.CHECKED).update(
            status=ImportJob.Status.IMPORTING, imported_rows=0, summary={}
        )
        job = ImportJob.objects.get(pk=job_id)
        if claimed != 1:
            raise LoyaltyError(
                "import_not_checked",
                _("Only a checked file without bad rows can be imported; this one is “%(status)s”.")
                % {"status": job.get_status_display()},
            )
        staff_action_record(
            actor=user,
            action=StaffAction.Action.IMPORT,
            reason=_("Imported the member file %(name)s") % {"name": job.original_name},
            detail={"job": job.pk, "file": job.original_name, "rows": job.total_rows},
        )
        transaction.on_commit(lambda: run_import.delay(job.pk))
    return job


def import_jobs_stuck(*, now: dt.datetime | None = None):
    """CHECKING or IMPORTING jobs without progress for :data:`IMPORT_STUCK_AFTER` (their task was lost)."""
    now = now or timezone.now()
    return ImportJob.objects.annotate(last_progress=Coalesce("progress_at", "started_at", "created_at")).filter(
        status__in=(ImportJob.Status.CHECKING, ImportJob.Status.IMPORTING), last_progress__lt=now - IMPORT_STUCK_AFTER
    )


def import_job_is_stuck(job: ImportJob, *, now: dt.datetime | None = None) -> bool:
    return import_jobs_stuck(now=now).filter(pk=job.pk).exists()


def import_job_resume(*, job_id: int, user, now: dt.datetime | None = None) -> ImportJob:
    """Queue a FAILED or stuck (:func:`import_jobs_stuck`) job again; it resumes where it stopped.

    A failed or stuck import continues after its last committed chunk; a stuck check
    starts its check again (it writes no member). ``user`` is the staff member, or None for
    the watchdog. Refuses any other job (one running, done, invalid, not confirmed).
    """
    from .tasks import check_import, run_import

    now = now or timezone.now()
    with transaction.atomic():
        # Claimed with a conditional update: two clicks, or a click and the watchdog, queue it once.
        claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.FAILED).update(
            status=ImportJob.Status.IMPORTING, message="", progress_at=now
        )
        task = run_import
        if not claimed:
            status = import_jobs_stuck(now=now).filter(pk=job_id).values_list("status", flat=True).first()
            if status is not None:
                claimed = (
                    ImportJob.objects.filter(pk=job_id, status=status)
                    .exclude(progress_at__gte=now - IMPORT_STUCK_AFTER)
                    .update(progress_at=now)
                )
            task = check_import if status == ImportJob.Status.CHECKING else run_import
        if claimed != 1:
            raise LoyaltyError(
                "import_not_failed",
                _("Only an import that stopped with an error, or that made no progress for a while, can be resumed."),
            )
        logger.info("import job %s resumed by %s", job_id, user or "the watchdog")
        transaction.on_commit(lambda: task.delay(job_id))
    return ImportJob.objects.get(pk=job_id)


def import_jobs_resume_stuck(*, now: dt.datetime | None = None) -> list[int]:
    """Queue every stuck job again (the watchdog); returns their ids."""
    resumed = []
    for job_id in import_jobs_stuck(now=now).values_list("pk", flat=True):
        try:
            import_job_resume(job_id=job_id, user=None, now=now)
        except LoyaltyError:
            continue  # it moved on meanwhile
        resumed.append(job_id)
    return resumed


def import_job_run(job_id: int, *, chunk_rows: int = CHUNK_ROWS) -> ImportJob:
    """Import a confirmed job in chunks: DONE with ``summary`` {new, updated, unchanged,
    opening_points, refused}, or FAILED with ``message``.

    Resumes after the last committed chunk (``imported_rows``); a DONE job is returned
    unchanged. A row that went bad after the check (say, its member was frozen meanwhile)
    is refused on its own and listed with the job's errors; the rest is imported. Refuses
    a job that was never confirmed.
    """
    job = ImportJob.objects.get(pk=job_id)
    if job.status == ImportJob.Status.DONE:
        return job
    if job.status not in (ImportJob.Status.IMPORTING, ImportJob.Status.FAILED):
        raise LoyaltyError("import_not_confirmed", _("This import has not been confirmed."))
    with job_lock(f"import_job:{job.pk}") as acquired:
        if not acquired:
            logger.info("import job %s is running elsewhere; skipped", job.pk)
            return job
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.IMPORTING,
            message="",
            started_at=Coalesce("started_at", timezone.now()),
            progress_at=timezone.now(),
        )
        try:
            with translation.override(settings.LANGUAGE_CODE):
                _run(job, chunk_rows)
        except Exception as error:
            logger.exception("import job %s failed", job.pk)
            ImportJob.objects.filter(pk=job.pk).update(
                status=ImportJob.Status.FAILED,
                message=_("The import stopped after %(rows)s rows: %(error)s. Resume it to import the rest.")
                % {"rows": ImportJob.objects.values_list("imported_rows", flat=True).get(pk=job.pk), "error": error},
                finished_at=timezone.now(),
            )
            job.refresh_from_db()
            return job
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.DONE, finished_at=timezone.now())
    _drop_file(job)
    job.refresh_from_db()
    return job


def _run(job: ImportJob, chunk_rows: int) -> None:
    job.refresh_from_db()
    done = job.imported_rows
    summary = {"new": 0, "updated": 0, "unchanged": 0, "opening_points": 0, "refused": 0}
    if done:
        summary.update(job.summary or {})
    actor = (
        StaffAction.objects.filter(action=StaffAction.Action.IMPORT, detail__job=job.pk)
        .values_list("actor_id", flat=True)
        .first()
    )
    detail = {"source": "import", "file": job.original_name, "imported_by": actor, "job": job.pk}
    reader = RowReader()
    with open_upload(job) as handle:
        # The rows of chunks committed before are read past, not imported again.
        for chunk in chunks(itertools.islice(data_rows(job, handle), done, None), chunk_rows):
            for attempt in range(3):
                try:
                    with transaction.atomic():
                        # The job row is the resume point; locked, it keeps two runners apart.
                        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
                        counts, refused = _import_chunk(reader, chunk, detail=detail)
                        errors = list(locked.errors or [])
                        errors.extend(_error_entry(row) for row in refused[: max(MAX_ERRORS_KEPT - len(errors), 0)])
                        ImportJob.objects.filter(pk=job.pk).update(
                            imported_rows=done + len(chunk),
                            summary={key: summary.get(key, 0) + counts.get(key, 0) for key in summary},
                            errors=errors,
                            error_count=locked.error_count + len(refused),
                            progress_at=timezone.now(),
                        )
                    break
                except IntegrityError:
                    # A member signed up with one of these phones meanwhile: check the chunk again.
                    if attempt == 2:
                        raise
                    reader = RowReader()  # and read the stores again
            done += len(chunk)
            summary = {key: summary.get(key, 0) + counts.get(key, 0) for key in summary}


def _import_chunk(reader: RowReader, rows: list[tuple[int, dict]], *, detail: dict) -> tuple[dict, list[CheckedRow]]:
    """Write one chunk, inside the caller's transaction; returns (counts, rows refused)."""
    now = timezone.now()
    checked = _check_chunk(reader, rows, None, lock=True)
    refused = [row for row in checked if row.errors]
    good = [row for row in checked if not row.errors]
    new_rows = [row for row in good if row.member is None]
    counts = {"new": len(new_rows), "updated": 0, "unchanged": 0, "opening_points": 0, "refused": len(refused)}

    ids = _members_insert([row.values for row in new_rows], now=now)
    reason = _("Opening balance (import)")
    awards = [
        (ids[row.values["phone"]], opening_balance_key(row.values["phone"]), row.award) for row in new_rows if row.award
    ]
    counts["opening_points"] += accounts_open_with_balance(awards, reason=reason, detail=detail, now=now)

    changed = []
    for row in good:
        member = row.member
        if member is None:
            continue
        if row.award:
            try:
                points_award(
                    member=member,
                    currency=Currency.POINTS,
                    amount=row.award,
                    kind=LedgerEntry.Kind.ADJUST,
                    reason=reason,
                    idempotency_key=opening_balance_key(member.phone),
                    detail=detail,
                    now=now,
                )
            except LoyaltyError as error:
                row.errors["opening_points"] = [str(error.message)]
                refused.append(row)
                counts["refused"] += 1
                continue
            counts["opening_points"] += row.award
        fields_changed = _apply_cells(member, row)
        if fields_changed:
            changed.append(member)
        if fields_changed or row.award:
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    _save_members(changed)
    return counts, refused


def _apply_cells(member: Member, row: CheckedRow) -> bool:
    """Put the row's non-empty cells on the member (an empty cell keeps what the member has);
    return whether anything changed. Compares the store by id: no query per member."""
    changed = False
    for name in _UPDATE_FIELDS:
        if name not in row.present:
            continue
        value = row.values[name]
        attname, value = ("home_store_id", value.pk if value else None) if name == "home_store" else (name, value)
        if getattr(member, attname) != value:
            setattr(member, attname, value)
            changed = True
    return changed


def _save_members(members: list[Member]) -> None:
    """Write the imported fields of ``members`` in one statement (``core.bulk.update_rows``)."""
    update_rows(Member, members, list(_UPDATE_FIELDS))


# --- creating members in bulk --------------------------------------------------------------


def import_members_create(*, rows: list[dict], now: dt.datetime | None = None) -> list[Member]:
    """Register imported members in bulk, in the caller's transaction: one per row of
    ``rows`` ({phone (E.164), name, gender, birthday, email, home_store}), same order.

    What ``operations.actions.member_create`` does for a sign-up, set-based: a card number,
    and the default tier as ``loyalty.tiers.tier_assign_default`` gives it (a MemberTier
    reviewed ``LOYALTY_TIER_REVIEW_MONTHS`` later and a JOINED TierChange; nothing without
    a default tier). No signup bonus: imported members are existing customers, their
    points come with their opening balance (docs/import.md); a phone erased lately is
    marked ``rejoined_after_erasure`` as at a sign-up. The caller has checked that
    no member has these phones; a phone taken meanwhile raises IntegrityError.
    """
    now = now or timezone.now()
    ids = _members_insert(rows, now=now)
    members = Member.objects.in_bulk(list(ids.values()))
    return [members[ids[row["phone"]]] for row in rows]


def _members_insert(rows: list[dict], *, now: dt.datetime) -> dict[str, int]:
    """:func:`import_members_create` without reading the members back: {phone: member id}."""
    ids = members_insert(rows, joined_at=now)
    tiers_assign_default_bulk(member_ids=list(ids.values()), now=now)
    return ids

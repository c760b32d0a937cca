"""Member files imported in the background (operations.imports): check, confirm, run in chunks."""

import io
from pathlib import Path

import pytest
import tablib
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from core.errors import LoyaltyError
from loyalty.models import Account, Currency, EarnRule, LedgerEntry, Lot, Tier, TierChange
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import ImportJob, Member, StaffAction
from operations import imports
from operations.actions import member_create
from operations.imports import import_job_check, import_job_confirm, import_job_create, import_job_run
from operations.resources import opening_balance_key

pytestmark = pytest.mark.django_db

HEADER = "phone,name,gender,birthday,email,home_store,opening_points\n"
GOOD_FILE = (
    HEADER + "138 0013 8000,Li Lei,male,1990-05-01,lilei@example.com,sh01,1200\n"
    "+86 139-0013-9000,Han Meimei,女,1992/12/31,,SH01,0\n"
    "008613700137000,Wang Fang,,,,,\n"
)
BAD_FILE = (
    HEADER + "13800138000,Good Row,female,1990-01-01,,sh01,10\n"  # row 2 (the header is row 1): fine
    "12345,Bad Phone,,,,,\n"  # row 3
    "13900139000,Bad Date,,1990-13-40,,,\n"  # row 4
    "13700137000,Bad Store,,,,nowhere,\n"  # row 5
    "13600136000,Negative,,,,,-5\n"  # row 6
    "13400134000,Bad Email,,,not-an-email,,\n"  # row 7
    "138-0013-8000,Duplicate,,,,,\n"  # row 8: the phone of row 2 in another spelling
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.LOYALTY_IMPORT_ROOT = tmp_path / "imports"


@pytest.fixture
def store():
    return StoreFactory(code="sh01", name="Shanghai 1")


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("operator", password="not-a-real-password-42")


def upload(text: str, name: str = "members.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def checked_job(text: str, user=None, name: str = "members.csv") -> ImportJob:
    job = import_job_create(file=upload(text, name), user=user)
    return import_job_check(job.pk)


def imported_job(text: str, user) -> ImportJob:
    job = checked_job(text, user)
    assert job.status == ImportJob.Status.CHECKED, job.errors
    import_job_confirm(job_id=job.pk, user=user)
    return import_job_run(job.pk)


def errors_by_row(job: ImportJob) -> dict[int, dict[str, list[str]]]:
    return {entry["row"]: entry["errors"] for entry in job.errors}


def test_a_good_file_is_checked_then_imported_with_opening_balances(store, operator):
    Tier.objects.create(code="bronze", name="Bronze", rank=0, qualify_threshold=0, retain_threshold=0, is_default=True)

    job = checked_job(GOOD_FILE, operator)

    assert (job.status, job.total_rows, job.checked_rows, job.error_count) == (ImportJob.Status.CHECKED, 3, 3, 0)
    assert Member.objects.count() == 0  # the check writes no member

    job = import_job_confirm(job_id=job.pk, user=operator)
    assert job.status == ImportJob.Status.IMPORTING
    job = import_job_run(job.pk)

    assert job.status == ImportJob.Status.DONE
    assert job.summary == {"new": 3, "updated": 0, "unchanged": 0, "opening_points": 1200, "refused": 0}
    assert job.imported_rows == 3
    li = Member.objects.get(phone="+8613800138000")
    assert (li.name, li.gender, str(li.birthday), li.email, li.home_store) == (
        "Li Lei",
        Member.Gender.MALE,
        "1990-05-01",
        "lilei@example.com",
        store,
    )
    assert len(li.member_number) == 10
    assert TierChange.objects.filter(reason=TierChange.Reason.JOINED).count() == 3
    entry = LedgerEntry.objects.get(idempotency_key=opening_balance_key(li.phone))
    assert (entry.member, entry.kind, entry.amount, entry.balance_after) == (li, LedgerEntry.Kind.ADJUST, 1200, 1200)
    assert entry.detail == {"source": "import", "file": "members.csv", "imported_by": operator.pk, "job": job.pk}
    assert Lot.objects.get(entry=entry).remaining == 1200
    assert Account.objects.get(member=li, currency=Currency.POINTS).balance == 1200
    action = StaffAction.objects.get(action=StaffAction.Action.IMPORT)
    assert (action.actor, action.detail["job"]) == (operator, job.pk)
    assert ledger_violations() == []


def test_bad_rows_are_listed_with_their_reasons_and_nothing_is_imported(store, operator):
    job = checked_job(BAD_FILE, operator)

    assert job.status == ImportJob.Status.INVALID
    assert (job.total_rows, job.error_count) == (7, 6)
    errors = errors_by_row(job)
    assert sorted(errors) == [3, 4, 5, 6, 7, 8]  # the spreadsheet's rows: the header is row 1
    assert "not a valid phone number" in errors[3]["phone"][0]
    assert "not a date" in errors[4]["birthday"][0]
    assert "no store with the code “nowhere”" in errors[5]["home_store"][0]
    assert "whole number from 0" in errors[6]["opening_points"][0]
    assert errors[7]["email"] == ["Enter a valid email address."]
    assert errors[8]["phone"] == ["+8613800138000 is also on row 2; list each member once."]
    assert job.errors[0]["phone"] == "12345"  # the cell as written, to find the row
    with pytest.raises(LoyaltyError) as refused:
        import_job_confirm(job_id=job.pk, user=operator)
    assert refused.value.code == "import_not_checked"
    with pytest.raises(LoyaltyError):
        import_job_run(job.pk)
    assert Member.objects.count() == 0
    assert LedgerEntry.objects.count() == 0
    assert not StaffAction.objects.exists()


def test_the_background_check_says_what_the_admin_preview_says(store):
    from operations.tests.test_import import row_errors, run_import

    job = checked_job(BAD_FILE)

    assert errors_by_row(job) == row_errors(run_import(BAD_FILE, dry_run=True))


def test_duplicate_phones_are_refused_even_when_the_member_exists(store):
    MemberFactory(phone="+8613800138000", name="Before")

    job = checked_job(HEADER + "13800138000,First,,,,,\n0086 138 0013 8000,Second,,,,,\n")

    assert errors_by_row(job) == {3: {"phone": ["+8613800138000 is also on row 2; list each member once."]}}
    assert Member.objects.get(phone="+8613800138000").name == "Before"


def test_existing_members_are_updated_by_phone_not_duplicated(store, operator):
    existing = member_create(phone="13800138000", name="Old Name", email="old@example.com")
    before = Member.objects.count()

    job = imported_job(HEADER + "+86 138 0013 8000,New Name,female,,,sh01,300\n13900139000,New,,,,,\n", operator)

    assert job.summary == {"new": 1, "updated": 1, "unchanged": 0, "opening_points": 300, "refused": 0}
    assert Member.objects.count() == before + 1
    existing.refresh_from_db()
    assert (existing.name, existing.gender, existing.home_store) == ("New Name", Member.Gender.FEMALE, store)
    assert existing.email == "old@example.com"  # an empty cell leaves what the member has
    assert LedgerEntry.objects.get(idempotency_key=opening_balance_key(existing.phone)).member == existing
    assert ledger_violations() == []


def test_a_row_naming_a_merged_records_phone_is_refused_on_both_paths(store, operator):
    from django.core.management import call_command

    from operations.merge import member_merge
    from operations.tests.test_import import row_errors, run_import

    call_command("setup_roles", stdout=open("/dev/null", "w"))  # noqa: SIM115
    keep = member_create(phone="13900139000", name="Kept")
    merged = member_create(phone="13800138000", name="Merged")
    member_merge(keep=keep, merged=merged, reason="same person, two phones", actor=operator)
    text = HEADER + "13800138000,New Name,female,,,sh01,0\n13700137000,Someone New,,,,,\n"
    message = (
        f"This phone is on member {merged.member_number}, which was merged into member {keep.member_number}. "
        f"Put the row under {keep.member_number}'s phone +8613900139000, or leave it out."
    )
    before = Member.objects.count()

    job = checked_job(text, operator)

    assert job.status == ImportJob.Status.INVALID
    assert errors_by_row(job) == {2: {"phone": [message]}}
    assert row_errors(run_import(text)) == {2: {"phone": [message]}}  # the admin's import says the same
    assert Member.objects.count() == before  # all or nothing: the good row waits too
    merged.refresh_from_db()
    keep.refresh_from_db()
    assert (merged.name, merged.gender, keep.name) == ("Merged", Member.Gender.UNKNOWN, "Kept")


def test_reimporting_the_same_file_changes_nothing(store, operator):
    imported_job(GOOD_FILE, operator)
    members = {m.pk: (m.name, m.email, m.birthday, m.member_number) for m in Member.objects.all()}
    entries = LedgerEntry.objects.count()

    job = imported_job(GOOD_FILE, operator)

    assert job.summary == {"new": 0, "updated": 0, "unchanged": 3, "opening_points": 0, "refused": 0}
    assert LedgerEntry.objects.count() == entries
    assert {m.pk: (m.name, m.email, m.birthday, m.member_number) for m in Member.objects.all()} == members
    # The synchronous import agrees: the same file again is all skipped.
    from operations.tests.test_import import run_import

    assert run_import(GOOD_FILE).totals["skip"] == 3
    assert ledger_violations() == []


def test_an_opening_balance_imported_by_the_admin_is_not_written_again(store, operator):
    from operations.tests.test_import import run_import

    run_import(HEADER + "13800138000,Li Lei,,,,,1200\n")

    job = checked_job(HEADER + "13800138000,Li Lei,,,,,1500\n")
    assert "already has an imported opening balance of 1200" in errors_by_row(job)[2]["opening_points"][0]
    job = imported_job(HEADER + "13800138000,Li Lei,,,,,1200\n", operator)
    assert job.summary["unchanged"] == 1
    assert LedgerEntry.objects.filter(idempotency_key__startswith="opening:").count() == 1


def test_imported_members_get_no_signup_bonus_on_either_path(store, operator):
    from operations.tests.test_import import run_import

    EarnRule.objects.create(name="Welcome", kind=EarnRule.Kind.SIGNUP, value=50)
    member_create(phone="13600136000")  # a sign-up does get it
    assert LedgerEntry.objects.filter(idempotency_key__startswith="signup:").count() == 1

    imported_job(HEADER + "13800138000,Job,,,,,\n", operator)
    run_import(HEADER + "13900139000,Admin,,,,,\n")

    assert Member.objects.count() == 3
    assert LedgerEntry.objects.filter(idempotency_key__startswith="signup:").count() == 1


def _many_rows(count: int, *, start: int = 0, points: bool = True) -> str:
    lines = [HEADER]
    for i in range(start, start + count):
        lines.append(f"1370{i:07d},Member {i},,,,sh01,{(i % 50) + 1 if points else ''}\n")
    return "".join(lines)


def test_a_run_stopped_halfway_resumes_and_a_redo_changes_nothing(store, operator, monkeypatch):
    job = checked_job(_many_rows(50), operator)
    import_job_confirm(job_id=job.pk, user=operator)
    real = imports._import_chunk
    calls = {"n": 0}

    def crash_on_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("worker killed")  # not an Exception: nothing marks the job
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "_import_chunk", crash_on_third_chunk)
    with pytest.raises(SystemExit):
        import_job_run(job.pk, chunk_rows=10)
    job.refresh_from_db()
    assert (job.status, job.imported_rows) == (ImportJob.Status.IMPORTING, 20)  # two chunks committed
    assert Member.objects.count() == 20

    monkeypatch.setattr(imports, "_import_chunk", real)
    # As if the progress had been lost too: the first two chunks are done again and change
    # nothing; the rest is imported.
    ImportJob.objects.filter(pk=job.pk).update(imported_rows=0)
    job = import_job_run(job.pk, chunk_rows=10)

    assert (job.status, job.imported_rows) == (ImportJob.Status.DONE, 50)
    assert (job.summary["new"], job.summary["unchanged"], job.summary["updated"]) == (30, 20, 0)
    assert Member.objects.count() == 50
    assert LedgerEntry.objects.filter(idempotency_key__startswith="opening:").count() == 50
    assert ledger_violations() == []
    # A finished job run again is left as it is (its file is gone by now).
    assert import_job_run(job.pk, chunk_rows=10).summary == job.summary


def test_a_failed_chunk_marks_the_job_failed_and_it_can_be_resumed(store, operator, monkeypatch):
    job = checked_job(_many_rows(30), operator)
    import_job_confirm(job_id=job.pk, user=operator)
    real = imports._import_chunk
    calls = {"n": 0}

    def fail_on_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "_import_chunk", fail_on_second_chunk)
    job = import_job_run(job.pk, chunk_rows=10)
    assert (job.status, job.imported_rows) == (ImportJob.Status.FAILED, 10)
    assert "after 10 rows" in job.message and "database went away" in job.message

    monkeypatch.setattr(imports, "_import_chunk", real)
    job = import_job_run(job.pk, chunk_rows=10)
    assert (job.status, job.imported_rows, job.summary["new"]) == (ImportJob.Status.DONE, 30, 30)


def test_progress_fields_move_chunk_by_chunk(store, operator, monkeypatch):
    seen = []
    real = imports._check_chunk

    def spy(*args, **kwargs):
        seen.append(ImportJob.objects.values_list("checked_rows", "total_rows").get())
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "CHUNK_ROWS", 10)
    monkeypatch.setattr(imports, "_check_chunk", spy)
    job = checked_job(_many_rows(35), operator)

    assert [checked for checked, _total in seen] == [0, 10, 20, 30]
    assert all(total == 35 for _checked, total in seen)  # estimated before the first chunk
    assert (job.checked_rows, job.total_rows) == (35, 35)


def test_a_chunk_runs_a_bounded_number_of_queries_however_many_members(store, operator, django_assert_max_num_queries):
    Tier.objects.create(code="bronze", name="Bronze", rank=0, qualify_threshold=0, retain_threshold=0, is_default=True)
    other = StoreFactory(code="bj01")
    for i in range(0, 60, 2):  # every other row is an existing member of another store
        MemberFactory(phone=f"+861370{i:07d}", home_store=other)
    job = checked_job(_many_rows(60, points=False), operator)
    import_job_confirm(job_id=job.pk, user=operator)

    with django_assert_max_num_queries(30):
        job = import_job_run(job.pk)

    assert job.summary == {"new": 30, "updated": 30, "unchanged": 0, "opening_points": 0, "refused": 0}
    assert Member.objects.filter(home_store=store).count() == 60


def test_a_row_that_went_bad_after_the_check_is_refused_alone(store, operator):
    member = MemberFactory(phone="+8613800138000")
    job = checked_job(HEADER + "13800138000,,,,,,100\n13900139000,New,,,,,5\n", operator)
    assert job.status == ImportJob.Status.CHECKED
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)

    import_job_confirm(job_id=job.pk, user=operator)
    job = import_job_run(job.pk)

    assert job.status == ImportJob.Status.DONE
    assert job.summary == {"new": 1, "updated": 0, "unchanged": 0, "opening_points": 5, "refused": 1}
    assert "frozen" in errors_by_row(job)[2]["opening_points"][0]
    assert not LedgerEntry.objects.filter(member=member).exists()


def test_files_that_cannot_be_imported_get_a_clear_message(operator):
    with pytest.raises(LoyaltyError, match="Upload a .csv or .xlsx file"):
        import_job_create(file=upload("x", "members.txt"), user=operator)
    with pytest.raises(LoyaltyError, match="empty"):
        import_job_create(file=upload("", "members.csv"), user=operator)

    job = checked_job("name,email\nLi Lei,li@example.com\n")
    assert job.status == ImportJob.Status.INVALID and "“phone”" in job.message
    job = checked_job(HEADER)
    assert job.status == ImportJob.Status.INVALID and "no rows" in job.message
    job = checked_job("not a workbook", name="members.xlsx")
    assert job.status == ImportJob.Status.INVALID and "not a valid XLSX" in job.message
    assert not ImportJob.objects.filter(status=ImportJob.Status.CHECKED).exists()


def test_the_size_limit_is_told_before_anything_is_stored(operator, monkeypatch):
    monkeypatch.setattr(imports, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(LoyaltyError, match="the most an import takes"):
        import_job_create(file=upload(GOOD_FILE), user=operator)
    assert not ImportJob.objects.exists()


def test_xlsx_and_gb18030_csv_are_read_like_utf8_csv(store, operator):
    workbook = tablib.Dataset().load(GOOD_FILE, format="csv").export("xlsx")
    job = import_job_create(
        file=SimpleUploadedFile("members.xlsx", workbook, content_type="application/octet-stream"), user=operator
    )
    job = import_job_check(job.pk)
    assert (job.status, job.total_rows) == (ImportJob.Status.CHECKED, 3)

    chinese = SimpleUploadedFile("gbk.csv", (HEADER + "13600136000,王芳,女,,,,\n").encode("gb18030"))
    job = import_job_check(import_job_create(file=chinese, user=operator).pk)
    assert job.status == ImportJob.Status.CHECKED
    import_job_confirm(job_id=job.pk, user=operator)
    import_job_run(job.pk)
    assert Member.objects.get(phone="+8613600136000").name == "王芳"


# --- the admin ------------------------------------------------------------------------------


def test_the_admin_uploads_shows_errors_and_confirms(admin_client, store):
    response = admin_client.post(reverse("admin:members_importjob_add"), {"file": upload(BAD_FILE)}, follow=False)
    assert response.status_code == 302
    job = ImportJob.objects.get()
    import_job_check(job.pk)  # what the queued task does

    page = admin_client.get(reverse("admin:members_importjob_change", args=[job.pk])).content.decode()
    assert "not a valid phone number" in page and "is also on row 2" in page
    assert "Confirm import" not in page
    status = admin_client.get(reverse("admin:members_importjob_status", args=[job.pk])).json()
    assert (status["status"], status["error_count"], status["done"]) == ("invalid", 6, True)
    download = admin_client.get(reverse("admin:members_importjob_errors", args=[job.pk]))
    assert download["Content-Type"].startswith("text/csv")
    lines = download.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "row,phone,column,reason" and len(lines) == 7

    admin_client.post(reverse("admin:members_importjob_add"), {"file": upload(GOOD_FILE)})
    job = ImportJob.objects.latest("id")
    import_job_check(job.pk)
    page = admin_client.get(reverse("admin:members_importjob_change", args=[job.pk])).content.decode()
    assert "Confirm import" in page
    response = admin_client.post(reverse("admin:members_importjob_confirm", args=[job.pk]))
    assert response.status_code == 302
    assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.IMPORTING
    assert Member.objects.count() == 0  # the task imports, not the request


def test_the_admin_refuses_a_file_over_the_limit_with_a_message(admin_client, monkeypatch):
    monkeypatch.setattr(imports, "MAX_UPLOAD_BYTES", 10)
    response = admin_client.post(reverse("admin:members_importjob_add"), {"file": upload(GOOD_FILE)})
    assert response.status_code == 200
    assert "the most an import takes is" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_import_jobs_need_add_and_change_member_and_an_unscoped_user(client, django_user_model, store):
    from members.models import StaffProfile

    user = django_user_model.objects.create_user("manager", password="not-a-real-password-42", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_member", "change_member"]))
    client.force_login(user)
    url = reverse("admin:members_importjob_add")
    assert client.get(url).status_code == 403

    user.user_permissions.add(Permission.objects.get(codename="add_member"))
    profile = StaffProfile.objects.create(user=user)
    profile.stores.add(store)
    client.force_login(django_user_model.objects.get(pk=user.pk))
    assert client.get(url).status_code == 403  # a store-scoped user: imports are brand-wide

    profile.delete()
    from django.contrib.auth.models import Group

    group, _ = Group.objects.get_or_create(name="Brand admin")
    user.groups.add(group)
    client.force_login(django_user_model.objects.get(pk=user.pk))
    assert client.get(url).status_code == 200


def test_the_status_view_answers_in_a_bounded_number_of_queries(admin_client, django_assert_max_num_queries):
    job = checked_job(BAD_FILE)
    with django_assert_max_num_queries(8):
        admin_client.get(reverse("admin:members_importjob_status", args=[job.pk]))
    with django_assert_max_num_queries(12):
        admin_client.get(reverse("admin:members_importjob_change", args=[job.pk]))


# --- a big job: 10 000 rows here, 100 000 in `make thorough` ----------------------------
# Ten chunks of CHUNK_ROWS prove the chunked check and import as well as a hundred do; the
# statement bound per chunk keeps them set-based (the pace is bench/import_job.py's figure).


@pytest.mark.parametrize("rows", [10_000, pytest.param(100_000, marks=pytest.mark.thorough)])
def test_a_big_import_job_completes(rows):
    from django.contrib.auth import get_user_model

    StoreFactory(code="sh01")
    Tier.objects.create(code="bronze", name="Bronze", rank=0, qualify_threshold=0, retain_threshold=0, is_default=True)
    step = rows // 10
    existing = [member_create(phone=f"1370{i:07d}", name="Before") for i in range(0, rows, step)]
    user = get_user_model().objects.create_superuser("bulk", password="not-a-real-password-42")
    text = io.StringIO()
    text.write(_many_rows(rows))
    with CaptureQueriesContext(connection) as statements:
        job = import_job_check(import_job_create(file=upload(text.getvalue()), user=user).pk)
        assert (job.status, job.total_rows, job.error_count) == (ImportJob.Status.CHECKED, rows, 0)
        assert rows // imports.CHUNK_ROWS >= 10  # the check and the import ran in many chunks
        import_job_confirm(job_id=job.pk, user=user)
        job = import_job_run(job.pk)
    # Set-based: a bounded number of statements per chunk of CHUNK_ROWS rows, whatever the
    # rows in it (365 for the ten chunks of 10 000 rows when written), never one per row.
    assert len(statements) <= 40 * (rows // imports.CHUNK_ROWS)

    assert job.status == ImportJob.Status.DONE, job.message
    assert job.imported_rows == rows
    assert job.summary == {
        "new": rows - 10,
        "updated": 10,
        "unchanged": 0,
        "opening_points": sum((i % 50) + 1 for i in range(rows)),
        "refused": 0,
    }
    assert Member.objects.count() == rows
    assert Member.objects.get(pk=existing[3].pk).name == f"Member {3 * step}"
    assert TierChange.objects.filter(reason=TierChange.Reason.JOINED).count() == rows
    assert LedgerEntry.objects.filter(idempotency_key__startswith="opening:").count() == rows
    assert ledger_violations() == []


def test_the_check_speaks_the_uploaders_language_not_the_workers(store, operator):
    with translation.override("zh-hans"):
        job = import_job_create(file=upload(BAD_FILE), user=operator)
    with translation.override("en"):  # the worker's own language
        job = import_job_check(job.pk)

    assert "不是有效的手机号" in errors_by_row(job)[3]["phone"][0]


def test_the_uploaded_file_is_private_randomly_named_and_deleted_when_done(store, operator, settings, tmp_path):
    job = import_job_create(file=upload(GOOD_FILE, "members.csv"), user=operator)
    stored = Path(settings.LOYALTY_IMPORT_ROOT) / job.file.name
    assert stored.is_file() and stored.read_text() == GOOD_FILE
    assert "members" not in job.file.name and not str(stored).startswith(str(settings.MEDIA_ROOT))
    with pytest.raises(ValueError):
        job.file.url  # noqa: B018 - no URL: no web server serves these files

    import_job_check(job.pk)
    import_job_confirm(job_id=job.pk, user=operator)
    assert import_job_run(job.pk).status == ImportJob.Status.DONE
    assert not stored.exists()


def test_a_file_with_bad_rows_is_deleted_after_the_check(store, operator, settings):
    job = checked_job(BAD_FILE, operator)

    assert job.status == ImportJob.Status.INVALID and job.error_count
    assert not (Path(settings.LOYALTY_IMPORT_ROOT) / job.file.name).exists()

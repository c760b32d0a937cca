"""Member import (operations.resources): all or nothing, matched by phone, opening balances once."""

import datetime as dt

import pytest
import tablib
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from loyalty.models import Account, Currency, LedgerEntry, Tier, TierChange
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, StaffProfile
from members.scoping import BRAND_ADMIN
from operations.actions import member_create
from operations.resources import MemberResource, opening_balance_key

pytestmark = pytest.mark.django_db

HEADER = "phone,name,gender,birthday,email,home_store,opening_points\n"
IMPORT_URL = "admin:members_member_import"


def run_import(csv_text: str, *, dry_run: bool = False):
    """Import as the admin's confirm step does: roll everything back on any bad row."""
    dataset = tablib.Dataset().load(csv_text, format="csv")
    return MemberResource().import_data(
        dataset, dry_run=dry_run, raise_errors=False, use_transactions=True, rollback_on_validation_errors=True
    )


def row_errors(result) -> dict[int, dict[str, list[str]]]:
    """{row number: {field: [messages]}} for every invalid row."""
    return {row.number: {k: [str(m) for m in v] for k, v in row.error_dict.items()} for row in result.invalid_rows}


def opening_entries():
    return LedgerEntry.objects.filter(idempotency_key__startswith="opening:")


@pytest.fixture
def store():
    return StoreFactory(code="sh01", name="Shanghai 1")


GOOD_FILE = (
    HEADER + "138 0013 8000,Li Lei,male,1990-05-01,lilei@example.com,sh01,1200\n"
    "+86 139-0013-9000,Han Meimei,女,1992/12/31,,SH01,0\n"
    "008613700137000,Wang Fang,,,,,\n"
)


def test_good_file_creates_members_with_their_fields_and_opening_balances(store):
    Tier.objects.create(code="bronze", name="Bronze", rank=0, qualify_threshold=0, retain_threshold=0, is_default=True)

    result = run_import(GOOD_FILE)

    assert not result.has_errors() and not result.has_validation_errors()
    assert result.totals["new"] == 3
    li = Member.objects.get(phone="+8613800138000")
    assert (li.name, li.gender, li.birthday, li.email, li.home_store) == (
        "Li Lei",
        Member.Gender.MALE,
        dt.date(1990, 5, 1),
        "lilei@example.com",
        store,
    )
    assert li.member_number  # issued by member_create
    han = Member.objects.get(phone="+8613900139000")
    assert (han.gender, han.birthday, han.home_store) == (Member.Gender.FEMALE, dt.date(1992, 12, 31), store)
    wang = Member.objects.get(phone="+8613700137000")
    assert (wang.gender, wang.birthday, wang.home_store) == (Member.Gender.UNKNOWN, None, None)

    # Like any new member: the joining service put each one in the default tier.
    assert TierChange.objects.filter(reason=TierChange.Reason.JOINED).count() == 3
    entry = opening_entries().get()
    assert (entry.member, entry.currency, entry.kind, entry.amount) == (
        li,
        Currency.POINTS,
        LedgerEntry.Kind.ADJUST,
        1200,
    )
    assert entry.reason == "Opening balance (import)"
    assert entry.idempotency_key == opening_balance_key("+8613800138000")
    assert Account.objects.get(member=li, currency=Currency.POINTS).balance >= 1200
    assert ledger_violations() == []


def test_dry_run_writes_nothing(store):
    result = run_import(GOOD_FILE, dry_run=True)

    assert result.totals["new"] == 3
    assert Member.objects.count() == 0
    assert LedgerEntry.objects.count() == 0


def test_bad_rows_are_each_reported_and_nothing_is_imported(store):
    csv_text = (
        HEADER + "13800138000,Good Row,female,1990-01-01,,sh01,10\n"  # row 2 (the header is row 1): fine
        "12345,Bad Phone,,,,,\n"  # row 3
        "13900139000,Bad Date,,1990-13-40,,,\n"  # row 4
        "13700137000,Bad Store,,,,nowhere,\n"  # row 5
        "13600136000,Negative,,,,,-5\n"  # row 6
        "13500135000,Fraction,,,,,2.5\n"  # row 7
        "13400134000,Bad Email,,,not-an-email,,\n"  # row 8
        "138-0013-8000,Duplicate,,,,,\n"  # row 9: the phone of row 2 in another spelling
        "13300133000,Bad Gender,robot,,,,\n"  # row 10
        ",No Phone,,,,,\n"  # row 11
    )
    result = run_import(csv_text)

    errors = row_errors(result)
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9, 10, 11]  # the spreadsheet's rows: the header is row 1
    assert "not a valid phone number" in errors[3]["phone"][0]
    assert "not a date" in errors[4]["birthday"][0]
    assert "no store with the code “nowhere”" in errors[5]["home_store"][0]
    assert "whole number from 0" in errors[6]["opening_points"][0]
    assert "whole number from 0" in errors[7]["opening_points"][0]
    assert "valid email" in errors[8]["email"][0]
    assert errors[9]["phone"] == ["+8613800138000 is also on row 2; list each member once."]
    assert "not a gender" in errors[10]["gender"][0]
    assert "phone number is required" in errors[11]["phone"][0]
    # All or nothing: the good row 2 was rolled back with the rest.
    assert Member.objects.count() == 0
    assert LedgerEntry.objects.count() == 0


def test_one_bad_cell_reports_every_problem_of_its_row(store):
    result = run_import(HEADER + "13800138000,Two Problems,,1990-02-30,,nowhere,-1\n")

    assert set(row_errors(result)[2]) == {"birthday", "home_store", "opening_points"}


def test_existing_member_is_updated_by_phone_not_duplicated(store):
    existing = member_create(phone="13800138000", name="Old Name", email="old@example.com")
    members_before = Member.objects.count()

    result = run_import(HEADER + "+86 138 0013 8000,New Name,female,,,sh01,300\n")

    assert not result.has_validation_errors()
    assert result.totals["update"] == 1
    assert Member.objects.count() == members_before
    existing.refresh_from_db()
    assert (existing.name, existing.gender, existing.home_store) == ("New Name", Member.Gender.FEMALE, store)
    # Empty cells leave what the member already has.
    assert existing.email == "old@example.com"
    assert opening_entries().get().member == existing
    assert ledger_violations() == []


def test_duplicate_phones_in_one_file_are_refused_even_when_the_member_exists(store):
    MemberFactory(phone="+8613800138000")

    result = run_import(HEADER + "13800138000,First,,,,,\n0086 138 0013 8000,Second,,,,,\n")

    assert row_errors(result) == {3: {"phone": ["+8613800138000 is also on row 2; list each member once."]}}
    assert Member.objects.get(phone="+8613800138000").name != "First"


def test_reimporting_the_same_file_changes_nothing(store):
    run_import(GOOD_FILE)
    members = {m.pk: (m.name, m.email, m.birthday, m.member_number) for m in Member.objects.all()}
    entries = LedgerEntry.objects.count()

    result = run_import(GOOD_FILE)

    assert not result.has_errors() and not result.has_validation_errors()
    assert result.totals["skip"] == 3
    assert result.totals["new"] == result.totals["update"] == 0
    assert LedgerEntry.objects.count() == entries
    assert {m.pk: (m.name, m.email, m.birthday, m.member_number) for m in Member.objects.all()} == members
    assert ledger_violations() == []


def test_a_different_opening_balance_for_an_imported_member_is_refused(store):
    run_import(HEADER + "13800138000,Li Lei,,,,,1200\n")

    result = run_import(HEADER + "13800138000,Li Lei,,,,,1500\n")

    assert "already has an imported opening balance of 1200" in row_errors(result)[2]["opening_points"][0]
    assert opening_entries().get().amount == 1200


def test_opening_points_for_a_frozen_member_are_refused(store):
    MemberFactory(phone="+8613800138000", status=Member.Status.FROZEN)

    result = run_import(HEADER + "13800138000,,,,,,100\n")

    assert "frozen" in row_errors(result)[2]["opening_points"][0]
    assert LedgerEntry.objects.count() == 0


def test_headers_are_read_in_any_case_and_with_a_byte_order_mark(store):
    result = run_import("\ufeffPhone,Name,Opening Points\n13800138000,Li Lei,5\n")

    assert not result.has_validation_errors()
    assert Member.objects.get(phone="+8613800138000").name == "Li Lei"
    assert opening_entries().get().amount == 5


# --- the admin's import page --------------------------------------------------------------


def upload(name: str, text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def test_admin_dry_run_lists_bad_rows_and_writes_nothing(admin_client, store):
    csv_text = HEADER + "13800138000,Good,,,,sh01,10\n12345,Bad Phone,,,,,\n13900139000,Bad Store,,,,nowhere,\n"

    response = admin_client.post(
        reverse(IMPORT_URL), {"import_file": upload("members.csv", csv_text), "format": "0", "resource": "0"}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "not a valid phone number" in page
    assert "There is no store with the code" in page
    assert [row.number for row in response.context["result"].invalid_rows] == [3, 4]
    assert "confirm_form" not in response.context or response.context["confirm_form"] is None
    assert Member.objects.count() == 0
    assert LedgerEntry.objects.count() == 0


def test_admin_dry_run_then_confirm_imports_a_good_file(admin_client, store):
    response = admin_client.post(
        reverse(IMPORT_URL), {"import_file": upload("members.csv", GOOD_FILE), "format": "0", "resource": "0"}
    )
    assert response.status_code == 200
    assert Member.objects.count() == 0  # the preview wrote nothing
    confirm = response.context["confirm_form"]

    response = admin_client.post(reverse("admin:members_member_process_import"), confirm.initial)

    assert response.status_code == 302
    assert Member.objects.count() == 3
    assert opening_entries().count() == 1
    assert ledger_violations() == []


def test_import_needs_add_and_change_permissions_and_every_store(client, django_user_model, store):
    user = django_user_model.objects.create_user("operator", password="not-a-real-password-42", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_member"))
    user.user_permissions.add(Permission.objects.get(codename="change_member"))
    user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    client.force_login(user)

    assert client.get(reverse(IMPORT_URL)).status_code == 403

    user.user_permissions.add(Permission.objects.get(codename="add_member"))
    user = django_user_model.objects.get(pk=user.pk)  # forget the cached permissions
    client.force_login(user)
    assert client.get(reverse(IMPORT_URL)).status_code == 200

    # A store-scoped user with the same permissions: an import matches members of every
    # store by phone, so it is not theirs to run.
    user.groups.clear()
    StaffProfile.objects.create(user=user).stores.set([store])
    user = django_user_model.objects.get(pk=user.pk)
    client.force_login(user)
    assert client.get(reverse(IMPORT_URL)).status_code == 403


@pytest.mark.parametrize(
    "url", ["admin:members_member_export", "admin:loyalty_ledgerentry_export", "admin:rewards_coupon_export"]
)
def test_exports_download_csv(admin_client, url, store):
    member_create(phone="13800138000", name="Li Lei", home_store=store)

    form = admin_client.get(reverse(url)).context["form"]
    every_field = {name: "on" for name, field in form.fields.items() if getattr(field, "is_selectable_field", False)}

    response = admin_client.post(reverse(url), {"format": "0", "resource": "0", **every_field})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    header = response.content.decode().splitlines()[0]
    assert len(header.split(",")) == len(every_field) > 3


def test_an_xlsx_file_imports_like_the_csv(store):
    rows = tablib.Dataset().load(GOOD_FILE, format="csv")
    workbook = tablib.Dataset().load(rows.export("xlsx"), format="xlsx")  # a real XLSX round trip
    result = MemberResource().import_data(
        workbook, dry_run=False, raise_errors=False, use_transactions=True, rollback_on_validation_errors=True
    )
    assert not result.has_errors() and not result.has_validation_errors()
    assert Member.objects.filter(phone__in=["+8613800138000", "+8613900139000", "+8613700137000"]).count() == 3
    assert ledger_violations() == []


@pytest.mark.parametrize("escape", [True, False])
def test_exported_formulae_are_escaped(settings, store, escape):
    from import_export.formats.base_formats import CSV

    from operations.resources import MemberExportResource

    settings.IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = escape
    member_create(phone="13800138000", name='=HYPERLINK("http://x")', source="import")
    body = CSV().export_data(MemberExportResource().export())  # what the admin's export sends
    assert "HYPERLINK" in body
    assert (',"=HYPERLINK' in body or ",=HYPERLINK" in body) is not escape  # escaped only with the setting on

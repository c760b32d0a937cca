"""The member import pages (docs/import.md): the template files to download, row numbers
that are the spreadsheet's (the header is row 1), reasons in plain sight, headings in
Chinese in the Chinese admin."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from openpyxl import Workbook, load_workbook

from loyalty.tests.factories import StoreFactory
from members.models import ImportJob, Member
from operations.imports import import_job_check, import_job_create
from operations.resources import COLUMNS

pytestmark = pytest.mark.django_db

HEADER = ",".join(COLUMNS) + "\n"
BAD = HEADER + "13800138000,Good,,,,sh01,10\n12345,Bad Phone,,,,,\n13900139000,Bad Store,,,,nowhere,\n"
GARBLED = "某些行验数据证失败"


@pytest.fixture
def store():
    return StoreFactory(code="sh01", name="Shanghai 1")


def xlsx(rows: list[list]) -> bytes:
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def checked(name: str, content: bytes, user) -> ImportJob:
    job = import_job_create(file=SimpleUploadedFile(name, content), user=user)
    return import_job_check(job.pk)


# --- the template files ---------------------------------------------------------------------


def test_the_csv_template_has_the_header_and_one_example_row(admin_client, store):
    response = admin_client.get(reverse("admin:members_importjob_template"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="members-template.csv"'
    assert response.content.startswith("\ufeff".encode())  # Excel reads the Chinese as UTF-8
    header, example = response.content.decode("utf-8-sig").splitlines()
    assert header.split(",") == list(COLUMNS)
    assert example.split(",") == ["13800138000", "王芳", "female", "1990-05-17", "wang@example.com", "sh01", "100"]


def test_the_xlsx_template_has_the_header_one_example_row_and_notes(admin_client, store):
    response = admin_client.get(reverse("admin:members_importjob_template_xlsx"))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="members-template.xlsx"'
    workbook = load_workbook(io.BytesIO(response.content))
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    assert rows == [COLUMNS, ("13800138000", "王芳", "female", "1990-05-17", "wang@example.com", "sh01", "100")]
    notes = [row[0] for row in workbook.worksheets[1].iter_rows(values_only=True)]
    assert set(COLUMNS) <= set(notes)  # every column explained


def test_the_template_notes_are_in_the_users_language(admin_client, store):
    response = admin_client.get(reverse("admin:members_importjob_template_xlsx"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    workbook = load_workbook(io.BytesIO(response.content))
    assert workbook.sheetnames[1] == "说明"
    assert "必填" in dict(workbook.worksheets[1].iter_rows(values_only=True))["phone"]


@pytest.mark.parametrize("name", ["template.csv", "template.xlsx"])
def test_each_template_imports_as_it_is(admin_client, admin_user, store, name):
    """The example row is a valid row: the file a user downloads passes the check unchanged."""
    url = reverse("admin:members_importjob_template" + ("_xlsx" if name.endswith("xlsx") else ""))
    job = checked(name, admin_client.get(url).content, admin_user)
    assert (job.status, job.total_rows, job.errors) == (ImportJob.Status.CHECKED, 1, [])


def test_both_import_pages_offer_both_templates(admin_client, store):
    for url in (reverse("admin:members_importjob_add"), reverse("admin:members_member_import")):
        page = admin_client.get(url).content.decode()
        assert reverse("admin:members_importjob_template") in page, url
        assert reverse("admin:members_importjob_template_xlsx") in page, url
        assert "the header is row 1" in page


def test_a_user_who_may_not_import_gets_no_template(client, django_user_model, store):
    client.force_login(django_user_model.objects.create_user("viewer", is_staff=True))
    assert client.get(reverse("admin:members_importjob_template_xlsx")).status_code == 403


# --- row numbers: the spreadsheet's ------------------------------------------------------------


def test_the_preview_numbers_rows_as_the_spreadsheet(admin_client, store):
    response = admin_client.post(
        reverse("admin:members_member_import"),
        {"import_file": SimpleUploadedFile("m.csv", BAD.encode()), "format": "0", "resource": "0"},
    )
    # Header row 1, the good member row 2, the bad ones rows 3 and 4.
    assert [row.number for row in response.context["result"].invalid_rows] == [3, 4]
    assert not Member.objects.exists()


def test_the_background_check_numbers_rows_as_the_spreadsheet_blank_rows_included(admin_user, store):
    content = xlsx(
        [
            list(COLUMNS),  # row 1
            ["13800138000", "Good"],  # row 2
            [],  # row 3, empty
            ["12345", "Bad Phone"],  # row 4
            ["13900139000", "Bad Store", None, None, None, "nowhere"],  # row 5
        ]
    )
    job = checked("members.xlsx", content, admin_user)
    assert [(entry["row"], sorted(entry["errors"])) for entry in job.errors] == [(4, ["phone"]), (5, ["home_store"])]


def test_a_repeated_phone_names_the_spreadsheet_row_of_its_first_use(admin_client, admin_user, store):
    text = HEADER + "13800138000,First,,,,,\n138 0013 8000,Again,,,,,\n"
    job = checked("m.csv", text.encode(), admin_user)
    assert job.errors == [
        {
            "row": 3,
            "phone": "138 0013 8000",
            "errors": {"phone": ["+8613800138000 is also on row 2; list each member once."]},
        }
    ]
    page = admin_client.post(
        reverse("admin:members_member_import"),
        {"import_file": SimpleUploadedFile("m.csv", text.encode()), "format": "0", "resource": "0"},
    ).content.decode()
    assert "+8613800138000 is also on row 2; list each member once." in page


# --- reasons in plain sight, headings in Chinese ------------------------------------------------


def test_the_preview_lists_each_reason_in_a_table_cell_not_behind_a_hover(admin_client, store):
    page = admin_client.post(
        reverse("admin:members_member_import"),
        {"import_file": SimpleUploadedFile("m.csv", BAD.encode()), "format": "0", "resource": "0"},
    ).content.decode()
    table = page[page.index('id="import-invalid"') :]
    assert '<td class="reason">There is no store with the code “nowhere”.</td>' in table
    assert "<td>3</td>" in table and "<td>home_store</td>" in table
    assert "validation-error-container" not in page  # django-import-export's hover box


def test_the_chinese_preview_has_proper_chinese_headings(admin_client, store):
    page = admin_client.post(
        reverse("admin:members_member_import"),
        {"import_file": SimpleUploadedFile("m.csv", BAD.encode()), "format": "0", "resource": "0"},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    ).content.decode()
    assert GARBLED not in page
    assert "部分行未通过校验" in page
    for heading in ("文件中的行号", "手机号", "列", "原因"):
        assert f'<th scope="col">{heading}</th>' in page
    assert "不是有效的手机号" in page  # the reasons too
    assert "Some rows failed" not in page and "Row in the file" not in page


def test_the_chinese_job_page_has_chinese_headings_and_spreadsheet_rows(admin_client, admin_user, store):
    job = checked("m.csv", BAD.encode(), admin_user)
    page = admin_client.get(
        reverse("admin:members_importjob_change", args=[job.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).content.decode()
    assert '<th scope="col">文件中的行号</th>' in page and '<th scope="col">原因</th>' in page
    assert "表头为第 1 行" in page and "<tr><td>3</td>" in page
    download = admin_client.get(reverse("admin:members_importjob_errors", args=[job.pk]))
    assert [line.split(",")[0] for line in download.content.decode("utf-8-sig").splitlines()] == ["row", "3", "4"]

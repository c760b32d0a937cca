"""The member import in a real browser (Playwright driving Debian's Chromium).

An operator uploads a 10 000-member CSV with a few bad rows, sees each one listed with its
reason while nothing is imported, uploads the fixed file, confirms, and watches the
progress bar reach done. The celery tasks are stood in for by the test: it runs the same
services in a thread while the page polls, as a worker would. Also the admin's synchronous
preview (Members -> Import). Screenshots go to ``ARTIFACTS_DIR`` (default ``var/artifacts/``).
"""

import os
import threading
from pathlib import Path

import pytest
from django.conf import settings

from loyalty.tests.factories import StoreFactory
from members.models import ImportJob, Member
from operations import tasks
from operations.imports import import_job_check, import_job_run

# Playwright's sync API runs an event loop in this thread; Django's ORM calls in the
# same test are then refused as "async unsafe" unless told otherwise.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "not-a-real-password-42"
HEADER = "phone,name,gender,birthday,email,home_store,opening_points\n"
ROWS = 10_000
# Member row under the header -> (the bad line, the reason the page must show); the page
# numbers rows as the spreadsheet does (the header is row 1), so row n shows as n + 1.
BAD = {
    17: ("12345,Bad Phone,,,,,", "is not a valid phone number"),
    2500: ("13900000001,Bad Date,,1990-13-40,,,", "is not a date"),
    7000: ("13900000002,Bad Store,,,,nowhere,", "There is no store with the code “nowhere”"),
    9999: ("13700000001,Twice,,,,,", "+8613700000001 is also on row 2; list each member once."),
}


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("ARTIFACTS_DIR") or Path(settings.BASE_DIR) / "var" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def member_file(*, bad: bool) -> str:
    lines = [HEADER]
    for row in range(1, ROWS + 1):
        if bad and row in BAD:
            lines.append(BAD[row][0] + "\n")
        else:
            lines.append(f"1370{row:07d},Member {row},,,,sh01,{row % 100}\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()


@pytest.fixture
def queued(monkeypatch):
    """The job ids the admin queued, instead of sending them to a broker."""
    sent = {"check": [], "run": []}
    monkeypatch.setattr(tasks.check_import, "delay", lambda job_id: sent["check"].append(job_id))
    monkeypatch.setattr(tasks.run_import, "delay", lambda job_id: sent["run"].append(job_id))
    return sent


@pytest.fixture
def page(browser, live_server, django_user_model, settings, tmp_path):
    settings.LOYALTY_IMPORT_ROOT = tmp_path / "imports"
    django_user_model.objects.create_superuser("operator", password=PASSWORD)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")  # the sign-in button
    page.wait_for_url(f"{live_server.url}/admin/")
    yield page
    context.close()


def in_background(service, job_id: int) -> threading.Thread:
    """Run a job's service as the worker would, while the page polls its status."""
    from django.db import connection

    def work():
        try:
            service(job_id)
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def upload(page, live_server, path: Path) -> None:
    page.goto(f"{live_server.url}/admin/members/importjob/add/")
    page.set_input_files("#id_file", str(path))
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/members/importjob/*/change/")


def test_operator_sees_bad_rows_fixes_them_and_imports_10k_members(page, live_server, queued, tmp_path):
    StoreFactory(code="sh01")
    bad_file = tmp_path / "members.csv"
    bad_file.write_text(member_file(bad=True), encoding="utf-8")

    upload(page, live_server, bad_file)
    [job_id] = queued["check"]
    worker = in_background(import_job_check, job_id)
    page.wait_for_selector("#import-errors")  # the page polls, then reloads when the check is over
    worker.join()

    rows = page.locator("#import-errors tbody tr")
    assert rows.count() == len(BAD)
    for index, (number, (_line, reason)) in enumerate(sorted(BAD.items())):
        cells = rows.nth(index).locator("td")
        assert cells.nth(0).inner_text() == str(number + 1)
        assert reason in cells.nth(3).inner_text()
    assert "4 bad rows" in page.inner_text("#import-errors-title")
    assert page.locator("#confirm-import").count() == 0
    page.screenshot(path=str(artifacts_dir() / "import-job-bad-rows.png"), full_page=True)
    assert Member.objects.count() == 0

    with page.expect_download() as download:
        page.click("#download-errors")
    assert "is not a date" in Path(download.value.path()).read_text(encoding="utf-8-sig")

    good_file = tmp_path / "members-fixed.csv"
    good_file.write_text(member_file(bad=False), encoding="utf-8")
    upload(page, live_server, good_file)
    job_id = queued["check"][-1]
    in_background(import_job_check, job_id).join()
    page.reload()
    page.wait_for_selector("#confirm-import")
    assert "all 10000 rows are fine" in page.inner_text("#content-main").replace(",", "")

    page.click("#confirm-import")
    page.wait_for_url(f"**/admin/members/importjob/{job_id}/change/")
    assert queued["run"] == [job_id]
    worker = in_background(import_job_run, job_id)
    page.wait_for_selector("#import-summary", timeout=60_000)
    worker.join()

    assert page.get_attribute("#import-progress-bar", "style") == "width: 100%"
    assert "10000 new members" in page.inner_text("#import-summary").replace(",", "")
    page.screenshot(path=str(artifacts_dir() / "import-job-done.png"), full_page=True)
    assert ImportJob.objects.get(pk=job_id).status == ImportJob.Status.DONE
    assert Member.objects.filter(phone__startswith="+861370").count() == ROWS


def test_the_synchronous_preview_lists_bad_rows(page, live_server, tmp_path):
    StoreFactory(code="sh01")
    small = tmp_path / "small.csv"
    small.write_text(HEADER + "13800138000,Good,,,,sh01,5\n12345,Bad Phone,,,,,\n", encoding="utf-8")

    page.goto(f"{live_server.url}/admin/members/member/import/")
    page.set_input_files("#id_import_file", str(small))
    page.select_option("#id_format", label="csv")
    page.click("#content [type=submit]")  # the theme's submit is a button

    page.wait_for_selector("text=is not a valid phone number")
    page.screenshot(path=str(artifacts_dir() / "import-preview-bad-rows.png"), full_page=True)
    assert page.get_by_text("Confirm import").count() == 0
    assert Member.objects.count() == 0

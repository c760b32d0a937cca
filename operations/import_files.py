"""Reading an uploaded member file for the background import (operations.imports): its
encoding, its rows under the header, in chunks; never the whole file at once."""

import codecs
import contextlib
import csv
import io
from collections.abc import Iterable, Iterator

from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from members.models import ImportJob, Store

from .resources import COLUMNS, _text, normalize_header

# Tried in this order: Excel's "CSV UTF-8", then what Excel saves as plain "CSV" in China.
CSV_ENCODINGS = ("utf-8-sig", "gb18030")
_READ_BLOCK = 1 << 20


def refuse(message: str) -> LoyaltyError:
    return LoyaltyError("import_file_invalid", message)


def csv_encoding(handle) -> tuple[str, int]:
    """The file's encoding and its number of lines, read in blocks (never the whole file at once)."""
    for encoding in CSV_ENCODINGS:
        handle.seek(0)
        decoder = codecs.getincrementaldecoder(encoding)()
        lines = 0
        try:
            while block := handle.read(_READ_BLOCK):
                decoder.decode(block)
                lines += block.count(b"\n")
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        handle.seek(0)
        return encoding, lines
    raise refuse(_("The file is not readable text. Save it as “CSV UTF-8” and upload it again."))


def _csv_rows(handle) -> Iterator[list]:
    encoding, _lines = csv_encoding(handle)
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    try:
        yield from csv.reader(text)
    except csv.Error as error:
        raise refuse(_("The file is not a valid CSV file: %(error)s") % {"error": error}) from None
    finally:
        with contextlib.suppress(ValueError):  # already closed when the reading stopped early
            text.detach()  # the caller closes the file


def _xlsx_rows(handle) -> Iterator[tuple]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(handle, read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds on a file that is not a workbook
        raise refuse(_("The file is not a valid XLSX workbook. Save it again from the spreadsheet.")) from None
    try:
        yield from workbook.worksheets[0].iter_rows(values_only=True)
    finally:
        workbook.close()


def estimate_rows(job: ImportJob, handle) -> int:
    """About how many data rows the file holds, for the progress bar while checking."""
    if job.format == "csv":
        return max(csv_encoding(handle)[1] - 1, 0)
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(handle, read_only=True)
        rows = workbook.worksheets[0].max_row or 0
        workbook.close()
    except Exception:
        return 0
    finally:
        handle.seek(0)
    return max(rows - 1, 0)


@contextlib.contextmanager
def open_upload(job: ImportJob) -> Iterator:
    try:
        handle = job.file.storage.open(job.file.name, "rb")
    except OSError:
        raise refuse(_("The uploaded file is gone; upload it again.")) from None
    try:
        yield getattr(handle, "file", handle)
    finally:
        handle.close()


def data_rows(job: ImportJob, handle) -> Iterator[tuple[int, dict]]:
    """(row number, {column: cell}) for every non-empty row under the header.

    The row number is the spreadsheet's (the header is row 1 when it is the first row, so
    the first member is row 2), as in the admin's preview; empty rows are skipped but
    counted, so the numbers stay those the spreadsheet shows.
    """
    rows = _xlsx_rows(handle) if job.format == "xlsx" else _csv_rows(handle)
    header = None
    for number, cells in enumerate(rows, 1):
        if not any(_text(cell) for cell in cells):
            continue
        if header is None:
            header = [normalize_header(cell) for cell in cells]
            if "phone" not in header:
                raise refuse(
                    _("The first row must name the columns, and one of them must be “phone”. Columns: %(columns)s.")
                    % {"columns": ", ".join(COLUMNS)}
                )
            positions = [(name, index) for index, name in enumerate(header) if name in COLUMNS]
            continue
        yield number, {name: cells[index] for name, index in positions if index < len(cells)}


def chunks(rows: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- the template file to fill in ---------------------------------------------------------


def template_example_row() -> list[str]:
    """One example member: what each column takes, with a store code that exists here."""
    store = Store.objects.filter(is_active=True).order_by("code").values_list("code", flat=True).first() or ""
    return ["13800138000", "王芳", "female", "1990-05-17", "wang@example.com", store, "100"]


def template_notes() -> list[tuple[str, str]]:
    """(column, what it takes) for the notes sheet of the XLSX template, in the user's language."""
    return [
        ("phone", _("Required. A mobile number in any spelling: 13800138000, 138 0013 8000, +86 138-0013-8000.")),
        ("name", _("Up to 100 characters.")),
        ("gender", _("female, male or unknown (女, 男 or 未知); empty means unknown.")),
        ("birthday", _("YYYY-MM-DD, e.g. 1990-05-17.")),
        ("email", _("A valid email address.")),
        ("home_store", _("The code of an existing store.")),
        ("opening_points", _("A whole number from 0 to 1,000,000,000; empty or 0 for none.")),
    ]


def template_csv() -> bytes:
    """The template as CSV: UTF-8 with a byte-order mark (so Excel reads the Chinese), the
    header row and one example row."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerow(template_example_row())
    return out.getvalue().encode("utf-8")


def template_xlsx() -> bytes:
    """The template as XLSX: the first sheet (the one the import reads) holds the header row
    and one example row, every cell text so a phone is not shown as 1.38E+10; a second
    sheet explains each column."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "members"
    sheet.append(list(COLUMNS))
    sheet.append(template_example_row())
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for cell in sheet[2]:
        cell.number_format = "@"  # text
    for column, width in zip("ABCDEFG", (16, 12, 10, 12, 22, 12, 16), strict=True):
        sheet.column_dimensions[column].width = width
    sheet.freeze_panes = "A2"
    notes = workbook.create_sheet(str(_("Notes")))
    notes.append([str(_("Column")), str(_("What it takes"))])
    for cell in notes[1]:
        cell.font = Font(bold=True)
    for column, text in template_notes():
        notes.append([column, str(text)])
    notes.append([])
    notes.append(["", str(_("Row numbers in the error report are this spreadsheet's: the header is row 1."))])
    notes.column_dimensions["A"].width = 16
    notes.column_dimensions["B"].width = 90
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()

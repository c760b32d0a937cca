"""Reading an uploaded member file for the background import (operations.imports): its
encoding, its rows under the header, in chunks; never the whole file at once."""

import codecs
import contextlib
import csv
import io
from collections.abc import Iterable, Iterator

from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from members.models import ImportJob

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

    Row 1 is the first row under the header (line 2 of the spreadsheet), as in the
    admin's preview; empty rows are skipped but keep their number.
    """
    rows = _xlsx_rows(handle) if job.format == "xlsx" else _csv_rows(handle)
    header = None
    number = 0
    for cells in rows:
        if not any(_text(cell) for cell in cells):
            if header is not None:
                number += 1
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
        number += 1
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

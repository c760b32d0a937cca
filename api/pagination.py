"""Cursor pagination for every list endpoint, strict about what the client sends.

DRF's ``CursorPagination`` answers a cursor it cannot read with 404 "Invalid cursor"
(a status the schema does not document), reads some garbage as the first page (its
base64 decoder skips characters it does not know), and quietly replaces a bad
``page_size`` with the default. Here each of those is a 400 in the API's error shape:
``invalid_cursor`` or ``invalid_page_size``, with ``fields`` naming the parameter.
"""

import binascii
from base64 import b64decode
from urllib import parse

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.utils.translation import gettext as _
from rest_framework import pagination

from core.errors import LoyaltyError

# What DRF's encode_cursor writes: offset, reverse, position.
_CURSOR_TOKENS = {"o", "r", "p"}


def _invalid_cursor(param: str) -> LoyaltyError:
    message = _("This cursor is not one the API gave out. Start again from the first page (no cursor).")
    return LoyaltyError("invalid_cursor", message, fields={param: message})


class CursorPagination(pagination.CursorPagination):
    """Base class of the API's cursor paginations: bad cursors and page sizes are 400s."""

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        if not encoded:  # absent or empty: the first page
            return None
        try:
            # validate=True: refuse characters outside the alphabet instead of skipping them.
            querystring = b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
            tokens = parse.parse_qs(querystring, keep_blank_values=True, strict_parsing=True)
            if not tokens or set(tokens) - _CURSOR_TOKENS or any(len(v) != 1 for v in tokens.values()):
                raise ValueError(querystring)
            offset = int(tokens.get("o", ["0"])[0])
            # Past the cutoff DRF would quietly serve another page than the one asked for.
            if not 0 <= offset <= self.offset_cutoff:
                raise ValueError(offset)
            reverse = tokens.get("r", ["0"])[0]
            if reverse not in ("0", "1"):
                raise ValueError(reverse)
            position = tokens.get("p", [None])[0]
        except (TypeError, ValueError, UnicodeError, binascii.Error):
            raise _invalid_cursor(self.cursor_query_param) from None
        return pagination.Cursor(offset=offset, reverse=reverse == "1", position=position)

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, DataError, OverflowError, ValueError):
            # The cursor's position is compared with the ordering field: a position that
            # is no such value (not a date, out of range) fails here, not in decode_cursor.
            if not request.query_params.get(self.cursor_query_param):
                raise
            raise _invalid_cursor(self.cursor_query_param) from None

    def get_page_size(self, request):
        if not self.page_size_query_param or self.page_size_query_param not in request.query_params:
            return self.page_size
        raw = request.query_params[self.page_size_query_param]
        try:
            size = int(raw)
        except ValueError:
            size = None
        # Past the maximum is refused, not cut down: the schema states the range, and a
        # client asking for more has a bug it should hear about.
        if size is None or size < 1 or (self.max_page_size and size > self.max_page_size):
            message = _("Give a whole number from 1 to %(max)s.") % {"max": self.max_page_size}
            raise LoyaltyError(
                "invalid_page_size",
                _("page_size must be a whole number from 1 to %(max)s.") % {"max": self.max_page_size},
                fields={self.page_size_query_param: message},
            )
        return size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
                if self.max_page_size:
                    parameter["schema"]["maximum"] = self.max_page_size
            if parameter["name"] == self.cursor_query_param:
                parameter["description"] = (
                    "The next or previous link's cursor, as given. Anything else is 400 invalid_cursor."
                )
        return parameters

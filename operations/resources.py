"""Member import and export (django-import-export), used by the member admin.

An import is all or nothing: every bad row is listed with its reason in the dry-run
preview, and the confirm step refuses to write while any row is bad (the admin rolls the
whole import back on a validation error). Rows are matched to members by their phone
number in E.164 form, so a member is updated, never duplicated. New members are
registered by ``operations.imports.import_members_create`` (a card number and the default
tier, but no signup bonus: they are existing customers being migrated) and opening
balances go through ``loyalty.services.points_award`` with the key ``opening:<phone>``:
importing the same file twice changes nothing. See docs/import.md.

The row rules (the widgets, the member fields' own validation, the duplicate-phone and
opening-balance rules) are shared with the background import of large files,
``operations.imports``, so both say the same about the same row.
"""

import contextlib
import datetime as dt
import re

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _
from import_export import fields, resources, widgets
from import_export.formats import base_formats
from import_export.results import Result

from core.errors import LoyaltyError
from loyalty.models import Currency, LedgerEntry
from loyalty.services import points_award
from members.models import Member, Store
from members.phone import normalize_phone
from members.services import EARLIEST_BIRTHDAY

# CSV and XLSX (openpyxl, in requirements.txt); a format whose library is missing is left out.
MEMBER_FORMATS = [fmt for fmt in (base_formats.CSV, base_formats.XLSX) if fmt.is_available()]

MAX_OPENING_POINTS = 10**9
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d")
_WHOLE_NUMBER = re.compile(r"^\d+$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Spellings of gender seen in member lists, by the value stored.
GENDER_SPELLINGS = {
    Member.Gender.FEMALE: {"female", "f", "woman", "女"},
    Member.Gender.MALE: {"male", "m", "man", "男"},
    Member.Gender.UNKNOWN: {"unknown", "not given", "-", "未知"},
}


# Row numbers in every report are the spreadsheet's: the header is row 1, so the n-th
# member row under it is row n + 1 (what Excel and WPS show in their left margin).
HEADER_ROW = 1


def spreadsheet_row(data_row: int) -> int:
    """The spreadsheet's row number of the ``data_row``-th row under the header (1-based)."""
    return data_row + HEADER_ROW


def opening_balance_key(phone: str) -> str:
    """The idempotency key of a member's imported opening balance: one per phone number."""
    return f"opening:{phone}"


def normalize_header(header) -> str:
    """A column name as the import reads it: "Opening Points" and a leading byte-order mark are fine."""
    return _text(header).lstrip("\ufeff").lower().replace(" ", "_")


def duplicate_phone_message(phone: str, first_row: int) -> str:
    return _("%(phone)s is also on row %(row)s; list each member once.") % {"phone": phone, "row": first_row}


def merged_record_problem(member: Member | None) -> str | None:
    """Why a row cannot update ``member``: its phone is on a record merged into another.

    The merged record is closed and only points at the kept one (docs/merge.md); a row
    written to it would change a profile nobody sees, and a row written to the kept member
    would give that member a phone it does not have. So the row is refused, with the kept
    member to use instead."""
    if member is None or member.merged_into_id is None:
        return None
    kept = member.merged_into
    return _(
        "This phone is on member %(merged)s, which was merged into member %(kept)s. "
        "Put the row under %(kept)s's phone %(phone)s, or leave it out."
    ) % {"merged": member.member_number, "kept": kept.member_number, "phone": kept.phone}


def opening_balance_problem(*, points: int, status: str | None, earlier: int | None) -> str | None:
    """Why a row's opening balance cannot be written, or None when it can (or there is nothing to do).

    ``status`` is the existing member's status (None for a new member); ``earlier`` the
    amount of the member's imported opening balance, if they have one.
    """
    if status is None:
        return None
    if earlier is not None:
        if points and points != earlier:
            return _(
                "This member already has an imported opening balance of %(earlier)s points; "
                "correct it with a points adjustment, not a new import."
            ) % {"earlier": earlier}
        return None  # already imported: nothing to do
    if points and status != Member.Status.ACTIVE:
        return _("This member is %(status)s, so no opening points can be added.") % {
            "status": Member.Status(status).label
        }
    return None


def opening_balance_award(*, points: int, status: str | None, earlier: int | None) -> int:
    """The points a valid row awards as an opening balance (0 when already imported)."""
    return 0 if earlier is not None else points


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a spreadsheet's 13800138000.0
    return str(value).strip()


# --- widgets: each turns one cell into a value or raises ValueError with the reason -------


class TextWidget(widgets.CharWidget):
    def clean(self, value, row=None, **kwargs):
        return _text(value)


class PhoneWidget(TextWidget):
    def clean(self, value, row=None, **kwargs):
        text = _text(value)
        if not text:
            raise ValueError(_("A phone number is required."))
        try:
            return normalize_phone(text)
        except LoyaltyError as error:
            raise ValueError(str(error.message)) from None


class GenderWidget(TextWidget):
    def clean(self, value, row=None, **kwargs):
        text = _text(value).lower()
        if not text:
            return Member.Gender.UNKNOWN
        for gender, spellings in GENDER_SPELLINGS.items():
            if text in spellings:
                return gender
        raise ValueError(
            _("“%(value)s” is not a gender; write female, male or unknown (or leave it empty).") % {"value": value}
        )


class BirthdayWidget(widgets.DateWidget):
    def clean(self, value, row=None, **kwargs):
        if isinstance(value, dt.datetime):
            value = value.date()
        if isinstance(value, dt.date):
            day = value
        else:
            text = _text(value)
            if not text:
                return None
            day = None
            if _ISO_DATE.match(text):
                # The usual spelling, ten times faster than strptime (which would read it the same).
                with contextlib.suppress(ValueError):
                    day = dt.date.fromisoformat(text)
            for fmt in DATE_FORMATS if day is None else ():
                try:
                    day = dt.datetime.strptime(text, fmt).date()
                    break
                except ValueError:
                    continue
            if day is None:
                raise ValueError(_("“%(value)s” is not a date; write it as YYYY-MM-DD.") % {"value": value})
        if not EARLIEST_BIRTHDAY <= day <= timezone.localdate():
            raise ValueError(_("%(value)s is not a possible birthday.") % {"value": day.isoformat()})
        return day


class StoreCodeWidget(widgets.ForeignKeyWidget):
    """A store by its code in any case; ``stores`` ({code.lower(): store}) saves a query per row."""

    def __init__(self, stores: dict[str, Store] | None = None):
        super().__init__(Store, field="code")
        self.stores = stores

    def clean(self, value, row=None, **kwargs):
        code = _text(value)
        if not code:
            return None
        if self.stores is not None:
            store = self.stores.get(code.lower())
        else:
            store = Store.objects.filter(code__iexact=code).first()
        if store is None:
            raise ValueError(_("There is no store with the code “%(code)s”.") % {"code": code})
        return store


class OpeningPointsWidget(widgets.Widget):
    def clean(self, value, row=None, **kwargs):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            points = value
        else:
            text = _text(value).replace(",", "")
            if not text:
                return 0
            points = int(text) if _WHOLE_NUMBER.match(text) else -1
        if not 0 <= points <= MAX_OPENING_POINTS:
            raise ValueError(
                _("Opening points must be a whole number from 0 to %(max)s, not “%(value)s”.")
                % {"max": MAX_OPENING_POINTS, "value": value}
            )
        return points

    def render(self, value, obj=None, **kwargs):
        return "" if value is None else str(value)


# --- one row outside django-import-export (the background import) -------------------------

COLUMNS = ("phone", "name", "gender", "birthday", "email", "home_store", "opening_points")


class RowReader:
    """The import's rules for one row, for code that reads files itself (``operations.imports``).

    The same widgets as :class:`MemberResource`, then the member fields' own validation
    (what ``full_clean`` runs for them), so a bad cell gets the same message on both paths.
    Stores are read once, not once per row.
    """

    def __init__(self):
        stores = {store.code.lower(): store for store in Store.objects.all()}
        self.widgets = {
            "phone": PhoneWidget(),
            "name": TextWidget(),
            "gender": GenderWidget(),
            "birthday": BirthdayWidget(),
            "email": TextWidget(),
            "home_store": StoreCodeWidget(stores=stores),
            "opening_points": OpeningPointsWidget(),
        }
        self.model_fields = {name: Member._meta.get_field(name) for name in ("name", "gender", "email")}

    def clean(self, cells: dict) -> tuple[dict, set[str], dict[str, list[str]]]:
        """(values, the columns with a non-empty cell, {column: [reasons]}) of one row."""
        values: dict = {}
        errors: dict[str, list[str]] = {}
        present = {name for name in COLUMNS if _text(cells.get(name)) != ""}
        for name, widget in self.widgets.items():
            try:
                values[name] = widget.clean(cells.get(name))
            except ValueError as error:
                errors[name] = [str(error)]
        for name, field in self.model_fields.items():
            if name in errors:
                continue
            try:
                values[name] = field.clean(values[name], None)
            except ValidationError as error:
                errors[name] = [str(message) for message in error.messages]
        return values, present, errors


# --- the import ---------------------------------------------------------------------------


class SpreadsheetResult(Result):
    """django-import-export's result with the spreadsheet's row numbers (header = row 1)
    instead of its count of rows under the header, in the preview's bad rows and errors."""

    def append_invalid_row(self, number, row, validation_error):
        super().append_invalid_row(spreadsheet_row(number), row, validation_error)

    def append_error_row(self, number, row, errors):
        super().append_error_row(spreadsheet_row(number), row, errors)

    def row_errors(self):
        return [(spreadsheet_row(i), row.errors) for i, row in enumerate(self.rows, 1) if row.errors]


class MemberResource(resources.ModelResource):
    """Members in and out of a spreadsheet; see the module docstring for the rules."""

    phone = fields.Field(attribute="phone", column_name="phone", widget=PhoneWidget())
    name = fields.Field(attribute="name", column_name="name", widget=TextWidget())
    gender = fields.Field(attribute="gender", column_name="gender", widget=GenderWidget())
    birthday = fields.Field(attribute="birthday", column_name="birthday", widget=BirthdayWidget())
    email = fields.Field(attribute="email", column_name="email", widget=TextWidget())
    home_store = fields.Field(attribute="home_store", column_name="home_store", widget=StoreCodeWidget())
    # Not a member field: kept on the instance for the preview, then written as a ledger entry.
    opening_points = fields.Field(
        attribute="opening_points", column_name="opening_points", widget=OpeningPointsWidget()
    )

    # Fields whose value lives on the member; the rest are handled by this resource.
    MEMBER_FIELDS = ("phone", "name", "gender", "birthday", "email", "home_store")

    class Meta:
        model = Member
        fields = ("phone", "name", "gender", "birthday", "email", "home_store", "opening_points")
        import_id_fields = ("phone",)
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True
        use_transactions = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first_row_of_phone: dict[str, int] = {}  # phone -> its first spreadsheet row

    def get_result_class(self):
        return SpreadsheetResult

    # --- the whole file first: header spelling and phones that appear twice ---

    def before_import(self, dataset, **kwargs):
        # Spreadsheets save "Phone", "Opening points" and a byte-order mark before the first header.
        dataset.headers = [normalize_header(header) for header in dataset.headers or []]
        self.first_row_of_phone = {}
        if "phone" not in dataset.headers:
            return
        for number, phone in enumerate(dataset["phone"], spreadsheet_row(1)):
            try:
                self.first_row_of_phone.setdefault(normalize_phone(_text(phone)), number)
            except LoyaltyError:
                continue  # reported on its own row

    def get_instance(self, instance_loader, row):
        try:
            return super().get_instance(instance_loader, row)
        except ValueError:
            return None  # a bad phone matches nobody; the phone field reports it

    # --- one row ---

    def import_field(self, field, instance, row, is_m2m=False, **kwargs):
        # An empty cell never erases what an existing member already has.
        if instance.pk and field.attribute != "opening_points" and _text(row.get(field.column_name)) == "":
            return
        super().import_field(field, instance, row, is_m2m, **kwargs)

    def import_instance(self, instance, row, **kwargs):
        errors: dict = {}
        instance.opening_points = 0
        instance.opening_award = 0
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        if "phone" not in errors:
            first = self.first_row_of_phone.get(instance.phone)
            if first is not None and first != spreadsheet_row(kwargs.get("row_number") or 0):
                errors["phone"] = [ValidationError(duplicate_phone_message(instance.phone, first))]
            elif merged := merged_record_problem(instance):
                errors["phone"] = [ValidationError(merged)]
            elif "opening_points" not in errors:
                problem = self._plan_opening_balance(instance)
                if problem:
                    errors["opening_points"] = [ValidationError(problem)]
        if errors:
            raise ValidationError(errors)

    def _plan_opening_balance(self, instance: Member) -> str | None:
        """Decide whether this row awards an opening balance; return the reason it cannot."""
        points = instance.opening_points
        status = earlier = None
        if instance.pk is not None:
            status = instance.status
            earlier = (
                LedgerEntry.objects.filter(
                    member_id=instance.pk, currency=Currency.POINTS, idempotency_key=opening_balance_key(instance.phone)
                )
                .values_list("amount", flat=True)
                .first()
            )
        problem = opening_balance_problem(points=points, status=status, earlier=earlier)
        if problem is None:
            instance.opening_award = opening_balance_award(points=points, status=status, earlier=earlier)
        return problem

    def skip_row(self, instance, original, row, import_validation_errors=None):
        if import_validation_errors or getattr(instance, "opening_award", 0):
            return False
        if original is None or original.pk is None:
            return False
        # Unchanged when every member field is the same; the opening points were handled above.
        return all(
            self.fields[name].get_value(instance) == self.fields[name].get_value(original)
            for name in self.MEMBER_FIELDS
        )

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True):
        errors = dict(import_validation_errors or {})
        # The card number is issued on save; the phone is unique by matching and the duplicate check.
        exclude = {*errors, "member_number", "opening_points"}
        try:
            instance.full_clean(exclude=exclude, validate_unique=False)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)

    def do_instance_save(self, instance, is_create):
        if not is_create:
            instance.save(update_fields=[f for f in self.MEMBER_FIELDS if f != "phone"])
            return
        from .imports import import_members_create  # imports.py builds on this module

        # Like the background import: the default tier, no signup bonus (docs/import.md).
        values = {name: getattr(instance, name) for name in self.MEMBER_FIELDS}
        [member] = import_members_create(rows=[values])
        # The preview and the admin log show the member that was made.
        for field in Member._meta.concrete_fields:
            setattr(instance, field.attname, getattr(member, field.attname))
        instance._state.adding = False

    def after_save_instance(self, instance, row, **kwargs):
        if not instance.opening_award:
            return
        user = kwargs.get("user")
        points_award(
            member=instance,
            currency=Currency.POINTS,
            amount=instance.opening_award,
            kind=LedgerEntry.Kind.ADJUST,
            reason=_("Opening balance (import)"),
            idempotency_key=opening_balance_key(instance.phone),
            detail={
                "source": "import",
                "file": kwargs.get("file_name") or "",
                "imported_by": getattr(user, "pk", None),
            },
        )


# --- exports ------------------------------------------------------------------------------


class MemberExportResource(resources.ModelResource):
    """Members as staff see them in the list, balances included (the admin annotates them)."""

    home_store = fields.Field(attribute="home_store__code", column_name="home_store")
    points_balance = fields.Field(attribute="points_balance", column_name="points_balance")
    growth_balance = fields.Field(attribute="growth_balance", column_name="growth_balance")

    class Meta:
        model = Member
        fields = (
            "member_number",
            "phone",
            "name",
            "gender",
            "birthday",
            "email",
            "home_store",
            "status",
            "joined_at",
            "points_balance",
            "growth_balance",
        )
        export_order = fields

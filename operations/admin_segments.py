"""Segments in the admin: a form over the rules (operators never type JSON), the live count,
a sample of the members, their value figures, and an export of the members (docs/segments.md).

A staff user scoped to stores (members.scoping) counts, sees and exports only their stores'
members; the segment itself is shared.
"""

import datetime as dt
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from import_export.formats import base_formats

from core.errors import LoyaltyError
from loyalty.models import Order, Tier
from members.models import Member, RfmSegment, Segment, Stage, Store, Tag

from .metrics import member_metrics
from .resources import MemberExportResource
from .segments import SCORES, rules_describe, scoped_members, segment_counts, segment_q, segment_rules_clean

SAMPLE_SIZE = 20  # members shown on the segment page
EXPORT_FORMATS = {"csv": base_formats.CSV, "xlsx": base_formats.XLSX}
_SCOPE = "_segment_scope"
_CAN_EXPORT = "_segment_can_export"
_CAN_SEE_MEMBERS = "_segment_can_see_members"


def _multiple(label, choices, help_text=""):
    return forms.MultipleChoiceField(
        label=label, choices=choices, required=False, widget=forms.CheckboxSelectMultiple, help_text=help_text
    )


class FilteredPicker(FilteredSelectMultiple):
    """The admin's two-box picker; wrapped like a model field's, since its script puts the
    boxes first in the parent element (which would otherwise put them before the label)."""

    def render(self, name, value, attrs=None, renderer=None):
        return format_html('<div class="related-widget-wrapper">{}</div>', super().render(name, value, attrs, renderer))


def _named(label, queryset, column, *, filtered=False):
    widget = FilteredPicker(label, is_stacked=False) if filtered else forms.CheckboxSelectMultiple
    return forms.ModelMultipleChoiceField(
        label=label, queryset=queryset, to_field_name=column, required=False, widget=widget
    )


def _day(label):
    return forms.DateField(label=label, required=False, widget=forms.DateInput(attrs={"type": "date"}))


def _whole(label, help_text="", min_value=0):
    return forms.IntegerField(label=label, required=False, min_value=min_value, help_text=help_text)


SEGMENT_RULE_FIELDS = (
    "stages",
    "rfm_segments",
    "tiers",
    "tags_any",
    "tags_all",
    "stores",
    "gender",
    "status",
    "consent",
    "spend_min",
    "spend_max",
    "orders_min",
    "orders_max",
    "points_min",
    "points_max",
    "joined_within_days",
    "last_order_within_days",
    "no_order_for_days",
    "channels",
    "rfm_recency",
    "rfm_frequency",
    "joined_from",
    "joined_to",
    "bought_from",
    "bought_to",
    "bought_orders_min",
)
# Form field -> the model column a ModelMultipleChoiceField stores in the rules.
_NAMED_COLUMNS = {"tiers": "code", "tags_any": "name", "tags_all": "name", "stores": "code"}


class SegmentForm(forms.ModelForm):
    """The segment's conditions as form fields; ``clean`` turns them into the JSON rules."""

    stages = _multiple(gettext_lazy("lifecycle stages"), Stage.choices)
    rfm_segments = _multiple(gettext_lazy("RFM segments"), RfmSegment.choices)
    tiers = _named(gettext_lazy("tiers"), Tier.objects.order_by("rank"), "code")
    tags_any = _named(gettext_lazy("has any of these tags"), Tag.objects.all(), "name", filtered=True)
    tags_all = _named(gettext_lazy("has all of these tags"), Tag.objects.all(), "name", filtered=True)
    stores = _named(gettext_lazy("home stores"), Store.objects.all(), "code", filtered=True)
    gender = _multiple(gettext_lazy("gender"), Member.Gender.choices)
    status = _multiple(gettext_lazy("status"), Member.Status.choices)
    consent = forms.ChoiceField(
        label=gettext_lazy("marketing consent"),
        required=False,
        choices=[
            ("", gettext_lazy("no condition")),
            ("sms", gettext_lazy("SMS")),
            ("email", gettext_lazy("email")),
            ("wechat", gettext_lazy("WeChat")),
            ("any", gettext_lazy("any channel")),
        ],
    )
    spend_min = forms.DecimalField(
        label=gettext_lazy("spend at least (yuan)"), required=False, min_value=0, max_digits=14, decimal_places=2
    )
    spend_max = forms.DecimalField(
        label=gettext_lazy("spend at most (yuan)"), required=False, min_value=0, max_digits=14, decimal_places=2
    )
    orders_min = _whole(gettext_lazy("orders at least"))
    orders_max = _whole(gettext_lazy("orders at most"))
    points_min = _whole(gettext_lazy("available points at least"))
    points_max = _whole(gettext_lazy("available points at most"))
    joined_within_days = _whole(gettext_lazy("joined in the last (days)"), min_value=1)
    last_order_within_days = _whole(gettext_lazy("last order in the last (days)"), min_value=1)
    no_order_for_days = _whole(
        gettext_lazy("no order for (days)"),
        gettext_lazy("Members who never ordered count too; add “orders at least 1” for lapsed buyers."),
        min_value=1,
    )

    channels = _multiple(
        pgettext_lazy("segment", "order channels"),
        Order.Channel.choices,
        gettext_lazy("Members with an order (not refunded in full) placed through one of these channels."),
    )
    rfm_recency = _multiple(gettext_lazy("R scores"), [(n, f"R{n}") for n in SCORES])
    rfm_frequency = _multiple(gettext_lazy("F scores"), [(n, f"F{n}") for n in SCORES])
    joined_from = _day(gettext_lazy("joined on or after"))
    joined_to = _day(gettext_lazy("joined on or before"))
    bought_from = _day(gettext_lazy("bought on or after"))
    bought_to = _day(gettext_lazy("bought on or before"))
    bought_orders_min = _whole(
        gettext_lazy("orders in that window at least"),
        gettext_lazy("Counts the orders between the two “bought” dates; empty: one is enough."),
        min_value=1,
    )

    class Meta:
        model = Segment
        fields = ("name", "description")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        rules = self.instance.rules if isinstance(self.instance.rules, dict) else {}
        for key, value in rules.items():
            if key in self.fields and key not in self.initial:
                self.initial[key] = value
        # Conditions the form has no field for (set through the API or a newer version):
        # kept as they are when the operator saves, and listed so they are not a surprise.
        self.kept_rules = {key: value for key, value in rules.items() if key not in SEGMENT_RULE_FIELDS}

    def clean(self):
        cleaned = super().clean()
        rules = {}
        for key in SEGMENT_RULE_FIELDS:
            if key in self.errors:
                continue
            value = cleaned.get(key)
            if key in _NAMED_COLUMNS:
                value = [getattr(obj, _NAMED_COLUMNS[key]) for obj in value or []]
            elif value is not None and key.startswith("spend_"):
                value = str(value)
            elif isinstance(value, dt.date):
                value = value.isoformat()
            if value not in (None, "", []):
                rules[key] = value
        if self.errors:
            return cleaned
        try:
            self.instance.rules = segment_rules_clean({**self.kept_rules, **rules})
        except LoyaltyError as error:
            key = error.extra.get("key")
            self.add_error(key if key in self.fields else None, error.message)
        return cleaned


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ("name", "live_count", "description", "updated_at", "creator")
    list_select_related = ("created_by",)
    search_fields = ("name", "description")
    actions = ("export_csv", "export_xlsx")
    readonly_fields = ("live_count", "export_links", "sample", "metrics", "creator", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "description")}),
        (
            gettext_lazy("Who"),
            {
                "fields": (
                    "stages",
                    "rfm_segments",
                    ("rfm_recency", "rfm_frequency"),
                    "tiers",
                    "tags_any",
                    "tags_all",
                    "stores",
                    "gender",
                    "status",
                )
            },
        ),
        (
            gettext_lazy("Activity and value"),
            {
                "fields": (
                    ("spend_min", "spend_max"),
                    ("orders_min", "orders_max"),
                    ("points_min", "points_max"),
                    "joined_within_days",
                    ("last_order_within_days", "no_order_for_days"),
                    ("joined_from", "joined_to"),
                    ("bought_from", "bought_to", "bought_orders_min"),
                    "channels",
                    "consent",
                ),
                "description": gettext_lazy("Empty fields set no condition; all conditions must hold together."),
            },
        ),
    )
    matching_fieldset = (
        gettext_lazy("Matching members now"),
        {"fields": ("live_count", "export_links", "sample", "metrics")},
    )
    about_fieldset = (gettext_lazy("About"), {"fields": ("creator", "created_at", "updated_at")})

    # The model's "created by" is also the lot's ledger entry ("来源流水"): here, the staff member.
    @admin.display(description=pgettext_lazy("segment", "created by"), ordering="created_by")
    def creator(self, segment):
        return segment.created_by or "-"

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self.fieldsets
        return (*self.fieldsets, self.matching_fieldset, self.about_fieldset)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    # --- the staff user's scope travels on the objects the page shows (the admin is shared by threads) ---

    def get_object(self, request, object_id, from_field=None):
        segment = super().get_object(request, object_id, from_field)
        if segment is not None:
            setattr(segment, _SCOPE, scoped_members(request.user))
            setattr(segment, _CAN_EXPORT, self.has_export_permission(request))
            setattr(segment, _CAN_SEE_MEMBERS, request.user.has_perm("members.view_member"))
        return segment

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            # One query counts every segment on the page (operations.segments.segment_counts).
            segments = list(changelist.result_list)
            counts = segment_counts(segments, members=scoped_members(request.user))
            for segment in segments:
                segment._live_count = counts.get(segment.pk)
            changelist.result_list = segments
        return response

    @staticmethod
    def _members(segment):
        return getattr(segment, _SCOPE, Member.objects.none()).filter(segment_q(segment.rules))

    @staticmethod
    def _once(segment, name: str, compute):
        """``compute()`` once per segment shown: the theme renders a read-only field more than
        once per page, and each of these is a query over the members."""
        cache = segment.__dict__.setdefault("_shown", {})
        if name not in cache:
            cache[name] = compute()
        return cache[name]

    # --- what the page shows ---

    @admin.display(description=gettext_lazy("members now"))
    def live_count(self, segment):
        if hasattr(segment, "_live_count"):
            count = segment._live_count
            return "–" if count is None else count
        return self._once(segment, "live_count", lambda: self._live_count(segment))

    def _live_count(self, segment):
        try:
            return self._members(segment).count()
        except LoyaltyError as error:
            return error.message

    @admin.display(description=gettext_lazy("export"))
    def export_links(self, segment):
        if not getattr(segment, _CAN_EXPORT, False):
            return _("You may not export members.")
        return format_html_join(
            " ",
            '<a class="button" href="{}">{}</a>',
            (
                (reverse("admin:members_segment_export", args=[segment.pk, key]), label)
                for key, label in (("csv", _("Export members (CSV)")), ("xlsx", _("Export members (Excel)")))
            ),
        )

    @admin.display(description=gettext_lazy("sample"))
    def sample(self, segment):
        return self._once(segment, "sample", lambda: self._sample(segment))

    def _sample(self, segment):
        if not getattr(segment, _CAN_SEE_MEMBERS, False):
            return _("You may not view members.")
        try:
            members = list(
                self._members(segment).select_related("home_store").order_by("-joined_at", "-id")[:SAMPLE_SIZE]
            )
        except LoyaltyError as error:
            return error.message
        if not members:
            return _("No member matches now.")
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:members_member_change", args=[m.pk]),
                    m.member_number,
                    m.name,
                    m.phone,
                    m.get_stage_display() or "–",
                    m.get_rfm_segment_display() or "–",
                    m.home_store.code if m.home_store else "–",
                )
                for m in members
            ),
        )
        head = format_html(
            "<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>",
            _("member number"),
            _("name"),
            _("phone"),
            _("lifecycle stage"),
            _("RFM segment"),
            _("home store"),
        )
        note = format_html(
            '<p class="help">{}</p>',
            _("Up to %(n)d members, those who joined last; export the segment for all of them.") % {"n": SAMPLE_SIZE},
        )
        return format_html('<table id="segment-sample">{}<tbody>{}</tbody></table>{}', head, rows, note)

    @admin.display(description=gettext_lazy("value"))
    def metrics(self, segment):
        return self._once(segment, "metrics", lambda: self._metrics(segment))

    def _metrics(self, segment):
        try:
            figures = member_metrics(self._members(segment))
        except LoyaltyError as error:
            return error.message

        def money(value):
            return "–" if value is None else f"¥{value}"

        def rate(value):
            return "–" if value is None else f"{value * 100:.1f}%"

        rows = (
            (_("Members"), figures.members),
            (_("Buyers"), figures.buyers),
            (_("Historical CLV (per member)"), money(figures.historical_clv)),
            (_("Historical CLV (per buyer)"), money(figures.historical_clv_per_buyer)),
            (_("Average order value (12 months)"), money(figures.average_order_value)),
            (_("Orders per buyer per year"), "–" if figures.purchase_frequency is None else figures.purchase_frequency),
            (_("Repurchase rate (all time)"), rate(figures.repurchase_rate)),
            (_("90-day retention"), rate(figures.retention)),
            (_("Predicted CLV"), money(figures.predicted_clv)),
        )
        return format_html(
            '<table id="segment-metrics"><tbody>{}</tbody></table><p class="help">{}</p>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
            _("Definitions: docs/segments.md."),
        )

    # --- export: the member list's export columns (operations.resources.MemberExportResource) ---

    def get_urls(self):
        return [
            path(
                "<path:object_id>/export/<str:fmt>/",
                self.admin_site.admin_view(self.export_view),
                name="members_segment_export",
            ),
            *super().get_urls(),
        ]

    def _member_admin(self):
        return self.admin_site.get_model_admin(Member)

    def has_export_permission(self, request) -> bool:
        """Exporting shows members' personal data: it takes the member export permission too."""
        return self.has_view_permission(request) and self._member_admin().has_export_permission(request)

    def _export(self, request, segments: list[Segment], fmt: str) -> HttpResponse:
        if not self.has_export_permission(request):
            raise PermissionDenied
        condition = Q(pk__in=[])
        for segment in segments:
            condition |= segment_q(segment.rules)
        # The member admin's queryset: the staff user's scope and the balance columns.
        members = self._member_admin().get_queryset(request).filter(condition).select_related("home_store")
        file_format = EXPORT_FORMATS[fmt]()
        dataset = MemberExportResource().export(queryset=members.order_by("pk"))
        body = file_format.export_data(dataset)
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        name = segments[0].name if len(segments) == 1 else "segments"
        filename = f"{name}-{stamp}.{file_format.get_extension()}"
        for segment in segments:
            self.log_change(
                request,
                segment,
                _("Exported %(count)d members (%(format)s).") % {"count": len(dataset), "format": fmt.upper()},
            )
        response = HttpResponse(body, content_type=file_format.get_content_type())
        response["Content-Disposition"] = f"attachment; filename*=UTF-8''{_quote(filename)}"
        return response

    def export_view(self, request, object_id, fmt):
        segment = self.get_object(request, unquote(object_id))
        if segment is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if fmt not in EXPORT_FORMATS:
            self.message_user(request, _("Export as CSV or Excel (xlsx)."), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:members_segment_change", args=[segment.pk]))
        try:
            return self._export(request, [segment], fmt)
        except LoyaltyError as error:
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:members_segment_change", args=[segment.pk]))

    def _export_action(self, request, queryset, fmt):
        try:
            return self._export(request, list(queryset.order_by("pk")), fmt)
        except LoyaltyError as error:
            self.message_user(request, error.message, messages.ERROR)
            return None

    @admin.action(description=gettext_lazy("Export the members of the selected segments (CSV)"))
    def export_csv(self, request, queryset):
        return self._export_action(request, queryset, "csv")

    @admin.action(description=gettext_lazy("Export the members of the selected segments (Excel)"))
    def export_xlsx(self, request, queryset):
        return self._export_action(request, queryset, "xlsx")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.has_export_permission(request):
            actions.pop("export_csv", None)
            actions.pop("export_xlsx", None)
        return actions


def _quote(filename: str) -> str:
    from urllib.parse import quote

    return quote(filename)


class SegmentRulesFilter(admin.SimpleListFilter):
    """The member list filtered by segment rules (``?rules=<JSON>``): the dashboard's drill-downs.

    The same ``segment_q`` as a saved segment, so the members listed are exactly the
    members a segment with these rules selects (within the staff user's scope, like every
    list). Only shown when the list was opened with rules; bad rules are a bad filter.
    """

    title = gettext_lazy("dashboard selection")
    parameter_name = "rules"

    def _rules(self):
        try:
            return segment_rules_clean(json.loads(self.value() or "{}"), check_names=False)
        except (ValueError, LoyaltyError):
            raise IncorrectLookupParameters(_("The selection's rules are not valid.")) from None

    def lookups(self, request, model_admin):
        if not self.value():
            return []
        return [(self.value(), rules_describe(self._rules()))]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(segment_q(self._rules()))

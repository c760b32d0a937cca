"""The member list: find a member (search, filters, balances), sign one up, edit the plain fields.

``MemberAdmin`` is composed of this list and sign-up, the change page
(``operations.admin_member_page``) and the audited staff actions
(``operations.admin_member_actions``). Sign-up goes through
``operations.actions.member_create``; nothing here writes ledger rows. docs/member-admin.md.
"""

import datetime as dt

from django.contrib import admin, messages
from django.db.models import BigIntegerField, Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export.admin import ImportExportMixin

from core.errors import LoyaltyError
from loyalty.models import Account, Currency, Order, Tier
from members.admin_mixins import PhoneSearchMixin
from members.models import ConsentRecord, Member, Store
from members.scoping import sees_everything, staff_stores

from .actions import member_create
from .admin_member_actions import MemberActionsMixin
from .admin_member_page import MemberPageMixin
from .admin_segments import SegmentRulesFilter
from .forms import MemberAddForm, MemberChangeForm
from .resources import MEMBER_FORMATS, MemberExportResource, MemberResource

# --- member list filters ------------------------------------------------------------------


def _thousands(value):
    """A balance with thousands separators (12,500); None as it is (the admin's dash)."""
    return None if value is None else f"{value:,}"


class TierFilter(admin.SimpleListFilter):
    """The member's current tier (loyalty.MemberTier), one choice per tier row."""

    title = gettext_lazy("tier")
    parameter_name = "tier"
    NONE = "none"

    def lookups(self, request, model_admin):
        tiers = [(str(pk), name) for pk, name in Tier.objects.order_by("rank").values_list("pk", "name")]
        return [*tiers, (self.NONE, _("no tier yet"))]

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.NONE:
            return queryset.filter(tier_state__isnull=True)
        if value and value.isdigit():
            return queryset.filter(tier_state__tier_id=int(value))
        return queryset


class MonthFilter(admin.SimpleListFilter):
    """A calendar month in ``TIME_ZONE`` ("2026-05"), offered for the last 12 months; the
    dashboard's cohort cells link here with any month."""

    MONTHS = 12

    @staticmethod
    def month_range(value: str | None) -> tuple[dt.datetime, dt.datetime] | None:
        try:
            first = dt.datetime.strptime(value or "", "%Y-%m")
        except ValueError:
            return None
        zone = timezone.get_current_timezone()
        start = first.replace(tzinfo=zone)
        after = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1, tzinfo=zone)
        return start, after

    def lookups(self, request, model_admin):
        month = timezone.localdate().replace(day=1)
        choices = []
        for _n in range(self.MONTHS):
            choices.append((f"{month:%Y-%m}", f"{month:%Y-%m}"))
            month = (month - dt.timedelta(days=1)).replace(day=1)
        return choices


class JoinedInFilter(MonthFilter):
    title = gettext_lazy("joined in")
    parameter_name = "joined"

    def queryset(self, request, queryset):
        span = self.month_range(self.value())
        if span is None:
            return queryset
        return queryset.filter(joined_at__gte=span[0], joined_at__lt=span[1])


class BoughtInFilter(MonthFilter):
    """Members with a purchase (an order not refunded in full) in the month, at any store."""

    title = gettext_lazy("bought in")
    parameter_name = "bought"

    def queryset(self, request, queryset):
        span = self.month_range(self.value())
        if span is None:
            return queryset
        purchases = Order.objects.filter(
            member=OuterRef("pk"), occurred_at__gte=span[0], occurred_at__lt=span[1]
        ).exclude(status=Order.Status.REFUNDED)
        return queryset.filter(Exists(purchases))


class ConsentFilter(admin.SimpleListFilter):
    """Marketing consent given on any channel, on one channel, or on none."""

    title = gettext_lazy("marketing consent")
    parameter_name = "consent"
    CHANNELS = {"sms": "sms_consent_at", "email": "email_consent_at", "wechat": "wechat_consent_at"}

    def lookups(self, request, model_admin):
        return [
            ("any", _("any channel")),
            ("sms", ConsentRecord.Channel.SMS.label),
            ("email", ConsentRecord.Channel.EMAIL.label),
            ("wechat", ConsentRecord.Channel.WECHAT.label),
            ("none", _("none")),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        given = Q()
        for field in self.CHANNELS.values():
            given |= Q(**{f"{field}__isnull": False})
        if value == "any":
            return queryset.filter(given)
        if value == "none":
            return queryset.exclude(given)
        if value in self.CHANNELS:
            return queryset.filter(**{f"{self.CHANNELS[value]}__isnull": False})
        return queryset


class HomeStoreFilter(admin.RelatedFieldListFilter):
    """Home store, offering only the staff user's own stores when they are scoped."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.stores = staff_stores(request.user)
        super().__init__(field, request, params, model, model_admin, field_path)

    @property
    def include_empty_choice(self):
        # Members without a home store are visible to unscoped staff only.
        return self.stores is None and super().include_empty_choice

    def field_choices(self, field, request, model_admin):
        stores = Store.objects.all() if self.stores is None else self.stores
        return [(store.pk, str(store)) for store in stores.order_by("code")]


def _account_figure(currency: str, column: str) -> Coalesce:
    """The member's figure from one account, as a correlated subquery (0 without an account)."""
    figure = Account.objects.filter(member_id=OuterRef("pk"), currency=currency).values(column)[:1]
    return Coalesce(Subquery(figure, output_field=BigIntegerField()), Value(0))


@admin.register(Member)
class MemberAdmin(MemberActionsMixin, MemberPageMixin, ImportExportMixin, PhoneSearchMixin, admin.ModelAdmin):
    form = MemberChangeForm
    # Import and export (operations.resources, docs/import.md): a dry-run preview lists every
    # bad row, and nothing is written until the operator confirms a file without any.
    formats = MEMBER_FORMATS
    import_template_name = "admin/members/importjob/member_import.html"  # template files, bad rows in a table
    add_form = MemberAddForm
    list_display = (
        "phone",
        "name",
        "member_number",
        "tier",
        "points_balance",
        "points_pending",
        "stage",
        "rfm_segment",
        "status",
        "home_store",
    )
    list_display_links = ("phone", "name", "member_number")
    list_filter = (
        TierFilter,
        "stage",
        "rfm_segment",
        "tags",
        ("home_store", HomeStoreFilter),
        ConsentFilter,
        "status",
        "gender",
        JoinedInFilter,
        BoughtInFilter,
        SegmentRulesFilter,  # the dashboard's drill-downs (operations.admin_segments)
    )
    list_select_related = ("home_store",)
    # "=": the openid only as a whole (it is an identifier, not words to search in).
    search_fields = ("phone", "name", "member_number", "=wechat_openid")
    search_help_text = gettext_lazy("Phone number (with or without +86), name, member number or mini-program openid.")
    # A full count of a large member table on every search costs more than it tells.
    show_full_result_count = False
    add_fieldsets = ((None, {"fields": ("phone", "name", "gender", "birthday", "email", "home_store")}),)

    # --- import and export ---

    def get_import_resource_classes(self, request):
        return [MemberResource]

    def get_export_resource_classes(self, request):
        return [MemberExportResource]

    def has_import_permission(self, request):
        # An import adds and changes members of every store (matched by phone), so it takes
        # both permissions and a user who sees every store, as the background import does.
        return request.user.has_perms(["members.add_member", "members.change_member"]) and sees_everything(request.user)

    def has_export_permission(self, request):
        return self.has_view_permission(request)

    # --- reading ---

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        stores = staff_stores(request.user)
        if stores is not None:
            queryset = queryset.filter(home_store__in=stores)
        return queryset.annotate(
            points_balance=_account_figure(Currency.POINTS, "balance"),
            points_pending=_account_figure(Currency.POINTS, "pending"),
            growth_balance=_account_figure(Currency.GROWTH, "balance"),
            growth_pending=_account_figure(Currency.GROWTH, "pending"),
            # One LEFT JOIN through the member's tier row, not a query per row.
            tier_name=F("tier_state__tier__name"),
        )

    @admin.display(description=gettext_lazy("tier"), ordering="tier_state__tier__rank")
    def tier(self, member):
        return getattr(member, "tier_name", None) or "-"

    @admin.display(description=gettext_lazy("points balance"), ordering="points_balance")
    def points_balance(self, member):
        return _thousands(getattr(member, "points_balance", None))

    @admin.display(description=gettext_lazy("points pending"), ordering="points_pending")
    def points_pending(self, member):
        return _thousands(getattr(member, "points_pending", None))

    @admin.display(description=gettext_lazy("growth balance"), ordering="growth_balance")
    def growth_balance(self, member):
        return _thousands(getattr(member, "growth_balance", None))

    @admin.display(description=gettext_lazy("growth pending"), ordering="growth_pending")
    def growth_pending(self, member):
        return _thousands(getattr(member, "growth_pending", None))

    # --- sign-up through the service; edits of the plain fields as usual ---

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "home_store":
            # Scoped staff cannot move a member to a store they do not work for.
            stores = staff_stores(request.user)
            if stores is not None:
                kwargs["queryset"] = stores
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else super().get_readonly_fields(request, obj)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_inlines(self, request, obj):
        return () if obj is None else super().get_inlines(request, obj)

    def add_view(self, request, form_url="", extra_context=None):
        # The form refuses a taken phone, but a second request for the same phone can pass
        # the form while the first commits; member_create then refuses it. The admin's
        # transaction has rolled back by the time the error gets here: say why, start over.
        try:
            return super().add_view(request, form_url, extra_context)
        except LoyaltyError as error:
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_form(self, request, form, change):
        if change:
            return super().save_form(request, form, change)
        # The service issues the card number; the form has already refused a taken phone.
        return member_create(**form.cleaned_data, source="admin")

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)

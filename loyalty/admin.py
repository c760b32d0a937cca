"""Staff admin for the points ledger and orders: look, search, never edit.

Accounts, entries, lots, allocations and orders are written only by ``loyalty.services``
(the ledger is append-only; orders are records of the till), so every admin here is
read-only and nothing can be deleted. Staff change points with the "Adjust points"
action on members.
"""

from django.contrib import admin
from django.db.models import F
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from import_export import resources
from import_export.admin import ExportMixin

from core.admin import ReadOnlyAdminMixin, ReadOnlyInline
from members.admin_mixins import PhoneSearchMixin
from members.scoping import staff_stores

from .models import Account, Allocation, LedgerEntry, Lot, Order, OrderLine, Refund

MEMBER_SEARCH_FIELDS = ("member__phone", "member__member_number")
MEMBER_SEARCH_HELP = _("Member's phone number or member number.")


class LedgerAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    phone_lookup = "member__phone"
    search_fields = MEMBER_SEARCH_FIELDS
    search_help_text = MEMBER_SEARCH_HELP
    # These tables grow without end: skip the unfiltered count on every search.
    show_full_result_count = False
    # Store scoping (members.scoping): the rows of the staff user's stores only.
    store_lookup = "member__home_store"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        stores = staff_stores(request.user)
        if stores is not None:
            queryset = queryset.filter(**{f"{self.store_lookup}__in": stores})
        return queryset


@admin.register(Account)
class AccountAdmin(LedgerAdmin):
    list_display = ("member", "currency", "balance", "pending", "lifetime_earned", "lifetime_spent", "updated_at")
    list_filter = ("currency",)
    list_select_related = ("member",)


class AllocationInline(ReadOnlyInline):
    model = Allocation
    limit = 100
    show_change_link = False


class EntryAllocationInline(AllocationInline):
    fk_name = "entry"
    verbose_name_plural = _("lots consumed")
    fields = ("lot_label", "amount")
    readonly_fields = fields

    @admin.display(description=_("lot"))
    def lot_label(self, allocation):
        """The lot in the page's language (its ``__str__`` is for logs)."""
        lot = allocation.lot
        return _("Lot %(id)s: %(remaining)s of %(amount)s left") % {
            "id": lot.pk,
            "remaining": f"{lot.remaining:,}",
            "amount": f"{lot.amount:,}",
        }

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("lot").order_by("id")


class LotAllocationInline(AllocationInline):
    fk_name = "lot"
    verbose_name_plural = _("consumed by")
    fields = ("entry", "amount")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("entry").order_by("id")


class LedgerEntryExportResource(resources.ModelResource):
    """Entries for accountants and auditors: export only, never imported."""

    class Meta:
        model = LedgerEntry
        fields = (
            "id", "created_at", "member__member_number", "member__phone", "currency", "kind", "amount",
            "pending_amount", "balance_after", "pending_after", "reason", "operator__username", "store__code",
            "order__number", "reverses", "idempotency_key",
        )  # fmt: skip
        export_order = fields


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ExportMixin, LedgerAdmin):
    resource_classes = [LedgerEntryExportResource]
    list_display = (
        "created_at",
        "member",
        "currency",
        "kind",
        "amount",
        "pending_amount",
        "balance_after",
        "reason",
        "operator",
        "store",
        "order",
    )
    list_filter = ("kind", "currency", "created_at", "store")
    list_select_related = ("member", "operator", "store", "order")
    inlines = (EntryAllocationInline,)
    readonly_fields = ("breakdown",)
    fieldsets = (
        (None, {"fields": ("member", "account", "currency", "kind", "amount", "pending_amount", "balance_after",
                           "pending_after", "breakdown")}),
        (_("Where from"), {"fields": ("order", "refund", "store", "operator", "reason", "reverses", "created_at")}),
        (_("For auditors"), {"classes": ("collapse",), "fields": ("idempotency_key", "detail")}),
    )  # fmt: skip

    def has_export_permission(self, request):
        return self.has_view_permission(request)

    @admin.display(description=_("why it earned this"))
    def breakdown(self, entry):
        """The earning rules' lines kept with the entry: which rule gave how many points."""
        lines = entry.detail.get("lines") if isinstance(entry.detail, dict) else None
        if not lines:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td style='text-align:right'>{}</td></tr>",
            ((line.get("name") or line.get("rule"), line.get("kind", ""), line.get("points")) for line in lines),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            _("rule"),
            _("kind"),
            _("points"),
            rows,
        )


@admin.register(Lot)
class LotAdmin(LedgerAdmin):
    list_display = (
        "id",
        "member",
        "currency",
        "amount",
        "remaining",
        "pending",
        "available_at",
        "expires_at",
        "created_at",
    )
    list_filter = ("currency", "pending", "created_at", "expires_at")
    list_select_related = ("member",)
    inlines = (LotAllocationInline,)
    # Spending order: the lot that expires first is used first.
    ordering = (F("expires_at").asc(nulls_last=True), "id")


@admin.register(Allocation)
class AllocationAdmin(LedgerAdmin):
    phone_lookup = "entry__member__phone"
    store_lookup = "entry__member__home_store"
    list_display = ("id", "entry", "entry_member", "lot", "amount")
    list_filter = ("entry__kind", "lot__currency")
    list_select_related = ("entry__member", "lot")
    search_fields = ("entry__member__phone", "entry__member__member_number")

    @admin.display(description=_("member"), ordering="entry__member")
    def entry_member(self, allocation):
        return allocation.entry.member


# --- orders -----------------------------------------------------------------------------


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    formset = admin.TabularInline.formset  # every line of an order, however many
    fields = ("sku", "name", "category", "quantity", "amount")
    readonly_fields = fields
    show_change_link = False


class RefundInline(ReadOnlyInline):
    model = Refund
    formset = admin.TabularInline.formset
    fields = ("number", "amount", "reason", "points_shortfall", "growth_shortfall", "created_at")
    readonly_fields = fields
    show_change_link = False


class OrderEntryInline(ReadOnlyInline):
    model = LedgerEntry
    fk_name = "order"
    verbose_name_plural = _("ledger entries of this order")
    fields = ("created_at", "currency", "kind", "amount", "pending_amount", "reason", "refund")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("refund")


@admin.register(Order)
class OrderAdmin(LedgerAdmin):
    list_display = (
        "store",
        "number",
        "member",
        "amount",
        "points_paid_amount",
        "refunded_amount",
        "status",
        "occurred_at",
    )
    list_display_links = ("number",)
    list_filter = ("status", "store", "occurred_at")
    list_select_related = ("store", "member")
    search_fields = ("number", *MEMBER_SEARCH_FIELDS)
    search_help_text = _("Order number, or the member's phone number or member number.")
    inlines = (OrderLineInline, RefundInline, OrderEntryInline)
    store_lookup = "store"


# --- the programme's settings, for staff to read --------------------------------------------


def programme_settings_view(request):
    """What the deployment configured (environment variables): staff can read it, not change it."""
    from django.conf import settings
    from django.template.response import TemplateResponse

    from .models import Currency
    from .policies import expiry_policy

    rows = [
        (_("Points"), expiry_policy(Currency.POINTS).describe(), "LOYALTY_POINTS_EXPIRY"),
        (_("Growth (tier window)"), expiry_policy(Currency.GROWTH).describe(), "LOYALTY_GROWTH_EXPIRY"),
        (_("Order return window"), _("%(days)s days pending") % {"days": settings.LOYALTY_PENDING_DAYS},
         "LOYALTY_PENDING_DAYS"),
        (_("Default earn rate"), _("%(points)s points and %(growth)s growth per yuan when no base rule matches")
         % {"points": settings.LOYALTY_POINTS_PER_YUAN, "growth": settings.LOYALTY_GROWTH_PER_YUAN},
         "LOYALTY_POINTS_PER_YUAN, LOYALTY_GROWTH_PER_YUAN"),
        (_("Tier review"), _("%(months)s months after the tier started")
         % {"months": settings.LOYALTY_TIER_REVIEW_MONTHS}, "LOYALTY_TIER_REVIEW_MONTHS"),
        (_("Soft landing"), _("on: down at most one tier per review") if settings.LOYALTY_TIER_SOFT_LANDING
         else _("off: down to the tier the growth keeps"), "LOYALTY_TIER_SOFT_LANDING"),
        (_("Expiry notice"), _("%(days)s days before points expire") % {"days": settings.LOYALTY_EXPIRY_NOTICE_DAYS},
         "LOYALTY_EXPIRY_NOTICE_DAYS"),
        (_("Time zone"), settings.TIME_ZONE, "DJANGO_TIME_ZONE"),
    ]  # fmt: skip
    context = {**admin.site.each_context(request), "title": _("Programme settings"), "rows": rows}
    return TemplateResponse(request, "admin/loyalty/programme_settings.html", context)


# Tiers, benefits and earning rules keep their admin in modules of their own.
from . import admin_rules  # noqa: E402, F401

"""Staff admin for the rewards mall and coupons.

Rewards are catalogue configuration that staff edit here. Redemptions and coupons are
written by ``rewards.services`` only, so every field is read-only and nothing can be added
or deleted; their one change each is an action ("Cancel redemption", "Void") that calls
the service and reports refusals as messages.
"""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from import_export import resources
from import_export.admin import ExportMixin
from modeltranslation.admin import TranslationAdmin

from core.admin import ReadOnlyAdminMixin
from core.errors import LoyaltyError
from members.admin_mixins import PhoneSearchMixin
from members.scoping import staff_stores

from . import services
from .models import Coupon, Redemption, Reward


class CouponExportResource(resources.ModelResource):
    """Coupons with their use: export only, never imported."""

    class Meta:
        model = Coupon
        fields = (
            "code", "member__member_number", "member__phone", "title", "kind", "value", "source", "status",
            "issued_at", "valid_from", "expires_at", "used_at", "used_store__code", "voided_at", "void_reason",
        )  # fmt: skip
        export_order = fields


@admin.register(Coupon)
class CouponAdmin(ExportMixin, ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    resource_classes = [CouponExportResource]
    list_display = ("code", "member", "title", "kind", "value", "status", "source", "issued_at", "expires_at")
    list_filter = ("status", "kind", "source", "expires_at", "used_store")
    list_select_related = ("member",)
    search_fields = ("=code", "member__phone", "member__member_number")
    search_help_text = _("Coupon code, member's phone number or member number.")
    phone_lookup = "member__phone"
    show_full_result_count = False
    actions = ("void",)
    readonly_fields = [field.name for field in Coupon._meta.fields]

    def get_queryset(self, request):
        # Store scoping (members.scoping): coupons of the stores' members or used at the stores.
        queryset = super().get_queryset(request)
        stores = staff_stores(request.user)
        if stores is not None:
            queryset = queryset.filter(Q(member__home_store__in=stores) | Q(used_store__in=stores))
        return queryset

    def get_search_results(self, request, queryset, search_term):
        # Codes are stored upper case; staff type them any way.
        return super().get_search_results(request, queryset, search_term.strip().upper() or search_term)

    def has_export_permission(self, request):
        return self.has_view_permission(request)

    def has_void_permission(self, request) -> bool:
        return request.user.has_perm("rewards.void_coupon")

    @admin.action(description=_("Void selected coupons"), permissions=["void"])
    def void(self, request, queryset):
        voided = 0
        for coupon in queryset.order_by("pk"):
            try:
                services.coupon_void(coupon=coupon, actor=request.user, reason=str(_("Voided in the admin")))
            except LoyaltyError as error:
                self.message_user(request, f"{coupon.code}: {error.message}", messages.WARNING)
            else:
                voided += 1
        if voided:
            self.message_user(request, _("%(count)d coupons voided.") % {"count": voided}, messages.SUCCESS)


@admin.register(Reward)
class RewardAdmin(TranslationAdmin):
    # Name and description per language (rewards/translation.py): a field for each.
    list_display = (
        "name",
        "points_cost",
        "cash_cost",
        "stock_display",
        "per_member_limit",
        "available_from",
        "available_until",
        "min_tier",
        "is_active",
        "sort_order",
    )
    list_filter = ("is_active", "min_tier", "coupon_kind")
    list_select_related = ("min_tier",)
    search_fields = ("name_zh_hans", "name_en")
    ordering = ("sort_order", "points_cost", "id")
    fieldsets = (
        (None, {"fields": ("name", "description", "image", "is_active", "sort_order")}),
        (_("Cost and stock"), {"fields": ("points_cost", "cash_cost", "stock", "per_member_limit")}),
        (_("Who and when"), {"fields": ("min_tier", "available_from", "available_until")}),
        (_("Coupon issued on redemption"), {"fields": ("coupon_kind", "coupon_value", "coupon_valid_days")}),
    )

    @admin.display(description=_("stock"), ordering="stock")
    def stock_display(self, reward: Reward) -> str:
        return _("unlimited") if reward.stock is None else str(reward.stock)


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    list_display = ("created_at", "member", "reward", "points_cost", "cash_cost", "status", "coupon", "cancelled_at")
    list_filter = ("status", "reward", "created_at")
    list_select_related = ("member", "reward", "coupon")
    search_fields = ("member__phone", "member__member_number", "=coupon__code")
    search_help_text = _("Member's phone number or member number, or the coupon code.")
    phone_lookup = "member__phone"
    show_full_result_count = False
    date_hierarchy = "created_at"
    actions = ("cancel",)
    readonly_fields = [field.name for field in Redemption._meta.fields]

    def get_queryset(self, request):
        # Store scoping (members.scoping): redemptions of the stores' members.
        queryset = super().get_queryset(request)
        stores = staff_stores(request.user)
        if stores is not None:
            queryset = queryset.filter(member__home_store__in=stores)
        return queryset

    def get_search_results(self, request, queryset, search_term):
        # Coupon codes are stored upper case; staff type them any way.
        return super().get_search_results(request, queryset, search_term.strip().upper() or search_term)

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("rewards.cancel_redemption")

    @admin.action(description=_("Cancel redemption (points and stock back, coupon void)"), permissions=["cancel"])
    def cancel(self, request, queryset):
        cancelled = 0
        for redemption in queryset.select_related("reward").order_by("pk"):
            try:
                services.redemption_cancel(
                    redemption=redemption, actor=request.user, reason=str(_("Cancelled in the admin"))
                )
            except LoyaltyError as error:
                self.message_user(request, f"{redemption.reward}: {error.message}", messages.WARNING)
            else:
                cancelled += 1
        if cancelled:
            self.message_user(request, _("%(count)d redemptions cancelled.") % {"count": cancelled}, messages.SUCCESS)

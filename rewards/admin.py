"""Staff admin for coupons: look and search; the only change is the "Void" action.

Coupons are written by ``rewards.services`` (issue, verify, void, expire), so every field
is read-only and nothing can be added or deleted here.
"""

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from loyalty.errors import LoyaltyError
from members.admin import PhoneSearchMixin, ReadOnlyAdminMixin

from . import services
from .models import Coupon


@admin.register(Coupon)
class CouponAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    list_display = ("code", "member", "title", "kind", "value", "status", "source", "issued_at", "expires_at")
    list_filter = ("status", "kind", "source", "expires_at", "used_store")
    list_select_related = ("member",)
    search_fields = ("=code", "member__phone", "member__member_number")
    search_help_text = _("Coupon code, member's phone number or member number.")
    phone_lookup = "member__phone"
    show_full_result_count = False
    actions = ("void",)
    readonly_fields = [field.name for field in Coupon._meta.fields]

    def get_search_results(self, request, queryset, search_term):
        # Codes are stored upper case; staff type them any way.
        return super().get_search_results(request, queryset, search_term.strip().upper() or search_term)

    def has_void_permission(self, request) -> bool:
        return request.user.has_perm("rewards.void_coupon")

    @admin.action(description=_("Void selected coupons"), permissions=["void"])
    def void(self, request, queryset):
        voided = 0
        for coupon in queryset.order_by("pk"):
            try:
                services.coupon_void(coupon=coupon, staff=request.user, reason=str(_("Voided in the admin")))
            except LoyaltyError as error:
                self.message_user(request, f"{coupon.code}: {error.message}", messages.WARNING)
            else:
                voided += 1
        if voided:
            self.message_user(request, _("%(count)d coupons voided.") % {"count": voided}, messages.SUCCESS)

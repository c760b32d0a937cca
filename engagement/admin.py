"""Staff admin for the check-in and referral programmes: look and search, never edit.

Check-ins and referrals are written only by ``engagement.checkin`` and
``engagement.referrals`` (their points are ledger entries), so these admins are
read-only. Store scoping (members.scoping): staff see the rows of their stores' members;
a referral shows when either member belongs to one of the staff user's stores.
"""

from django.contrib import admin
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from core.admin import ReadOnlyAdminMixin
from members.admin_mixins import PhoneSearchMixin
from members.scoping import staff_stores

from .models import CheckIn, Referral


@admin.register(CheckIn)
class CheckInAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    list_display = ("day", "member", "streak", "points", "entry", "created_at")
    list_filter = ("day",)
    list_select_related = ("member", "entry")
    search_fields = ("member__phone", "member__member_number")
    search_help_text = _("Member's phone number or member number.")
    phone_lookup = "member__phone"
    date_hierarchy = "day"
    show_full_result_count = False
    raw_id_fields = ("member", "entry")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        stores = staff_stores(request.user)
        if stores is not None:
            queryset = queryset.filter(member__home_store__in=stores)
        return queryset


@admin.register(Referral)
class ReferralAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "referrer", "referee", "code", "status", "order", "reason", "decided_at")
    list_filter = ("status", "created_at")
    list_select_related = ("referrer", "referee", "order")
    search_fields = ("=code", "referrer__phone", "referrer__member_number", "referee__phone", "referee__member_number")
    search_help_text = _("Referral code, or the phone number or member number of either member.")
    date_hierarchy = "created_at"
    show_full_result_count = False
    raw_id_fields = ("referrer", "referee", "order")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        stores = staff_stores(request.user)
        if stores is not None:
            queryset = queryset.filter(Q(referrer__home_store__in=stores) | Q(referee__home_store__in=stores))
        return queryset

    def get_search_results(self, request, queryset, search_term):
        # Codes are stored upper case; staff type them any way.
        return super().get_search_results(request, queryset, search_term.strip().upper() or search_term)

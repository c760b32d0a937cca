"""Deliveries in the admin: read-only, filtered by channel, status and provider, with the
day's counts above the list."""

import datetime as dt

from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.admin import ReadOnlyAdminMixin

from .models import Delivery, WechatSubscription
from .selectors import delivery_counts


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "member",
        "kind",
        "channel",
        "provider",
        "status",
        "attempts",
        "error_code",
        "provider_message_id",
        "next_attempt_at",
    )
    list_filter = ("status", "channel", "provider", "kind", "marketing")
    search_fields = ("recipient", "provider_message_id", "member__member_number")
    list_select_related = ("member",)
    raw_id_fields = ("member", "notification")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def changelist_view(self, request, extra_context=None):
        since = timezone.now() - dt.timedelta(days=1)
        extra_context = {**(extra_context or {}), "title": _("Deliveries"), "last_day": delivery_counts(since=since)}
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(WechatSubscription)
class WechatSubscriptionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("member", "template_id", "remaining", "granted_at", "refused_at")
    search_fields = ("member__member_number", "template_id")
    raw_id_fields = ("member",)

"""Webhook endpoints (staff add and edit them), events and the delivery log with "send again"."""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.admin import ReadOnlyAdminMixin

from .models import Endpoint, Event, EventType, WebhookDelivery
from .services import deliveries_send_again, endpoint_enable, event_body, url_problem


class EndpointForm(forms.ModelForm):
    url = forms.URLField(label=_("URL"), max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        label=_("events"),
        choices=EventType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every event."),
    )

    class Meta:
        model = Endpoint
        fields = ["name", "url", "events", "stores", "is_active"]

    def clean_url(self):
        url = self.cleaned_data["url"]
        problem = url_problem(url)
        if problem:
            raise forms.ValidationError(_("Events cannot be sent there: %(problem)s.") % {"problem": problem})
        return url


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ("name", "url", "is_active", "failing_since", "disabled_at", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "url")
    filter_horizontal = ("stores",)
    readonly_fields = ("secret", "failing_since", "disabled_at", "disabled_reason", "created_at")
    actions = ["enable"]

    @admin.action(description=_("Enable again (pending events go out)"))
    def enable(self, request, queryset):
        for endpoint in queryset:
            endpoint_enable(endpoint=endpoint)
        self.message_user(request, _("Enabled."), messages.SUCCESS)


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "type", "event_id", "member", "occurred_at", "created_at")
    list_filter = ("type",)
    search_fields = ("=event_id", "member__member_number")
    raw_id_fields = ("member",)
    list_select_related = ("member",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "endpoint",
        "event",
        "status",
        "attempts",
        "response_status",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "endpoint")
    search_fields = ("=event__event_id",)
    list_select_related = ("endpoint", "event")
    raw_id_fields = ("event", "endpoint")
    readonly_fields = (
        "event",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "delivered_at",
        "request_headers",
        "request_body",
        "response_status",
        "response_body",
        "error",
    )
    exclude = ("member_id_copy",)
    actions = ["send_again"]

    @admin.display(description=_("request body"))
    def request_body(self, obj):
        return event_body(obj.event).decode()

    def has_change_permission(self, request, obj=None):
        # The action needs change permission; the form stays read-only (readonly_fields).
        return request.user.has_perm("webhooks.change_webhookdelivery")

    @admin.action(description=_("Send again"), permissions=["change"])
    def send_again(self, request, queryset):
        n = deliveries_send_again(deliveries=list(queryset))
        self.message_user(
            request, ngettext("%(n)d delivery queued.", "%(n)d deliveries queued.", n) % {"n": n}, messages.SUCCESS
        )

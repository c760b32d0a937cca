"""Paid membership in the admin: plans (edited here), memberships, plan orders with the
refund action, what each paid period gave, and the figures on the orders' list. Actions
call ``programme.services``; nothing here writes a membership, an order or the ledger."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from modeltranslation.admin import TranslationAdmin

from core.admin import ReadOnlyAdminMixin
from core.errors import LoyaltyError

from . import badges, partners, selectors, services, transfers
from .models import (
    Badge,
    Contribution,
    FanLevel,
    MemberBadge,
    Membership,
    Partner,
    PartnerBenefit,
    PartnerEarn,
    PartnerKey,
    PartnerOffer,
    PartnerVoucher,
    Plan,
    PlanGrant,
    PlanOrder,
    Transfer,
)


@admin.register(Plan)
class PlanAdmin(TranslationAdmin):
    list_display = ("name", "code", "rank", "price", "period", "trial_days", "earn_multiplier", "is_active")
    list_filter = ("is_active", "period")
    search_fields = ("name", "code")
    fieldsets = (
        (None, {"fields": ("code", "name", "description", "rank", "is_active")}),
        (_("Price"), {"fields": ("price", "period", "trial_days", "auto_renew")}),
        (
            _("Benefits"),
            {
                "fields": (
                    "earn_multiplier",
                    "monthly_coupon_count",
                    "monthly_coupon_kind",
                    "monthly_coupon_value",
                    "free_shipping",
                    "discount_percent",
                    "welcome_points",
                )
            },
        ),
    )


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("member", "plan", "status", "ends_at", "on_trial", "auto_renew", "cancelled_at")
    list_filter = ("status", "plan", "auto_renew", "on_trial")
    search_fields = ("member__phone", "member__member_number")
    list_select_related = ("member", "plan")
    raw_id_fields = ("member",)
    actions = ["cancel"]

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("programme.refund_planorder")

    @admin.action(description=_("Cancel automatic renewal"), permissions=["cancel"])
    def cancel(self, request, queryset):
        done = 0
        for membership in queryset.select_related("member"):
            try:
                services.membership_cancel(member=membership.member)
            except LoyaltyError as error:
                self.message_user(request, f"{membership.member}: {error.message}", messages.WARNING)
            else:
                done += 1
        if done:
            self.message_user(request, _("%(count)d memberships will not renew.") % {"count": done}, messages.SUCCESS)


class ReasonActionForm(ActionForm):
    """The reason the refund, reversal and revocation actions ask for (the service cleans it)."""

    reason = forms.CharField(label=_("Reason"), max_length=200, required=False)


def _with_reason(model_admin, request, queryset, act, done: str) -> None:
    """Run ``act(row, reason)`` (a service call) on each selected row, one message per row:
    the refusal's message, or ``done`` % {"row": row}."""
    reason = request.POST.get("reason", "")
    for row in queryset:
        try:
            act(row, reason)
        except LoyaltyError as error:
            model_admin.message_user(request, f"{row}: {error.message}", messages.ERROR)
        else:
            model_admin.message_user(request, done % {"row": row}, messages.SUCCESS)


@admin.register(PlanOrder)
class PlanOrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("number", "member", "plan", "kind", "amount", "status", "adapter", "paid_at", "refunded_at")
    list_filter = ("status", "kind", "plan", "adapter")
    search_fields = ("number", "payment_id", "member__phone", "member__member_number")
    list_select_related = ("member", "plan")
    date_hierarchy = "created_at"
    action_form = ReasonActionForm
    actions = ["refund"]
    change_list_template = "admin/programme/planorder/change_list.html"

    def has_refund_permission(self, request) -> bool:
        return request.user.has_perm("programme.refund_planorder")

    @admin.action(description=_("Refund (inside the cool-off period; give a reason)"), permissions=["refund"])
    def refund(self, request, queryset):
        def act(order, reason):
            services.plan_order_refund(order=order, actor=request.user, reason=reason)

        _with_reason(self, request, queryset, act, _("%(row)s refunded."))

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "figures": selectors.dashboard()})


@admin.register(PlanGrant)
class PlanGrantAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("member", "kind", "period", "points", "coupon", "order", "created_at")
    list_filter = ("kind",)
    search_fields = ("member__phone", "order__number")
    list_select_related = ("member", "coupon", "order")


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every transfer, for staff: filter by status and date, search either member."""

    list_display = ("created_at", "giver", "receiver", "points", "status", "decided_at", "reversed_by")
    list_filter = ("status",)
    date_hierarchy = "created_at"
    search_fields = ("giver__phone", "giver__member_number", "receiver__phone", "receiver__member_number")
    list_select_related = ("giver", "receiver", "reversed_by")
    action_form = ReasonActionForm
    actions = ["reverse"]

    def has_reverse_permission(self, request) -> bool:
        return request.user.has_perm("programme.reverse_transfer")

    @admin.action(description=_("Reverse (give a reason)"), permissions=["reverse"])
    def reverse(self, request, queryset):
        def act(transfer, reason):
            transfers.transfer_reverse(transfer=transfer, actor=request.user, reason=reason)

        _with_reason(self, request, queryset, act, _("%(row)s reversed."))


@admin.register(Badge)
class BadgeAdmin(TranslationAdmin):
    list_display = ("name", "code", "condition", "threshold", "window_days", "points", "is_active", "rank")
    list_filter = ("condition", "is_active")
    search_fields = ("name", "code")
    raw_id_fields = ("store",)


@admin.register(MemberBadge)
class MemberBadgeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Badges held; staff revoke with a reason here, and award on the member's page or the API."""

    list_display = ("member", "badge", "source", "awarded_at", "revoked_at", "revoked_by")
    list_filter = ("badge", "source")
    search_fields = ("member__phone", "member__member_number")
    list_select_related = ("member", "badge", "revoked_by")
    action_form = ReasonActionForm
    actions = ["revoke"]

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("programme.award_badge")

    @admin.action(description=_("Revoke (give a reason)"), permissions=["revoke"])
    def revoke(self, request, queryset):
        def act(held, reason):
            badges.badge_revoke(held=held, actor=request.user, reason=reason)

        _with_reason(self, request, queryset, act, _("%(row)s revoked."))


@admin.register(FanLevel)
class FanLevelAdmin(TranslationAdmin):
    list_display = ("name", "code", "threshold")


@admin.register(Contribution)
class ContributionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Contribution records (written by the services: check-ins, profiles, referrals, and
    staff's events and community actions through the API)."""

    list_display = ("created_at", "member", "kind", "amount", "reason", "actor")
    list_filter = ("kind",)
    date_hierarchy = "created_at"
    search_fields = ("member__phone", "member__member_number")
    list_select_related = ("member", "actor")


# --- partners ------------------------------------------------------------------------------


class PartnerKeyInline(admin.TabularInline):
    model = PartnerKey
    extra = 0
    fields = ("name", "prefix", "is_active", "created_at", "last_used_at")
    readonly_fields = ("name", "prefix", "created_at", "last_used_at")
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # keys are made by the action, which shows the key once


@admin.register(Partner)
class PartnerAdmin(TranslationAdmin):
    list_display = ("name", "code", "points_per_yuan", "issue_price", "redeem_price", "is_active", "settlement")
    list_filter = ("is_active",)
    search_fields = ("name", "code")
    inlines = [PartnerKeyInline]
    actions = ["create_key"]

    @admin.display(description=_("settlement"))
    def settlement(self, partner):
        url = reverse("admin:programme_partner_settlement", args=[partner.pk])
        return format_html('<a href="{}">{}</a>', url, _("Settlement"))

    @admin.action(description=_("Create an API key (shown once)"))
    def create_key(self, request, queryset):
        for partner in queryset:
            _key, raw = partners.partner_key_create(partner=partner, name=_("created in the admin"))
            self.message_user(
                request,
                _("Key for %(partner)s (copy it now, it is not shown again): %(key)s")
                % {"partner": partner, "key": raw},
                messages.WARNING,
            )

    def get_urls(self):
        urls = super().get_urls()
        own = [
            path(
                "<int:pk>/settlement/",
                self.admin_site.admin_view(self.settlement_view),
                name="programme_partner_settlement",
            )
        ]
        return own + urls

    def settlement_view(self, request, pk: int):
        if not request.user.has_perm("programme.view_settlement"):
            raise PermissionDenied
        partner = get_object_or_404(Partner, pk=pk)
        try:
            month = partners.parse_month(request.GET.get("month"))
        except LoyaltyError as error:
            self.message_user(request, error.message, messages.ERROR)
            month = partners.parse_month(None)
        settlement = partners.partner_settlement(partner=partner, month=month)
        if request.GET.get("export") == "csv":
            response = HttpResponse(partners.settlement_csv(settlement), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="settlement-{partner.code}-{month:%Y-%m}.csv"'
            return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Settlement: %(partner)s, %(month)s") % {"partner": partner, "month": f"{month:%Y-%m}"},
            "partner": partner,
            "settlement": settlement,
            "month": f"{month:%Y-%m}",
        }
        return TemplateResponse(request, "admin/programme/partner/settlement.html", context)


class PartnerOfferForm(forms.ModelForm):
    upload_codes = forms.CharField(
        label=_("Add codes"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("For a batch offer: the partner's codes, one a line or separated by commas."),
    )

    class Meta:
        model = PartnerOffer
        fields = [
            "partner",
            "name",
            "description",
            "points_cost",
            "code_source",
            "valid_days",
            "min_tier",
            "is_active",
            "sort_order",
        ]


@admin.register(PartnerOffer)
class PartnerOfferAdmin(TranslationAdmin):
    form = PartnerOfferForm
    list_display = ("name", "partner", "points_cost", "code_source", "left", "is_active")
    list_filter = ("partner", "is_active", "code_source")
    list_select_related = ("partner",)
    search_fields = ("name", "partner__name")

    @admin.display(description=_("codes left"))
    def left(self, offer):
        n = partners.codes_left(offer)
        return "∞" if n is None else n

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        codes = form.cleaned_data.get("upload_codes")
        if codes:
            try:
                added, there = partners.partner_codes_upload(offer=obj, codes=codes)
            except LoyaltyError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(
                    request,
                    _("%(added)d codes added, %(there)d already there.") % {"added": added, "there": there},
                    messages.SUCCESS,
                )


@admin.register(PartnerEarn)
class PartnerEarnAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("order_number", "partner", "member", "amount", "points", "issue_price", "owed", "occurred_at")
    list_filter = ("partner",)
    search_fields = ("order_number", "member__phone", "member__member_number")
    list_select_related = ("partner", "member")
    date_hierarchy = "occurred_at"


@admin.register(PartnerVoucher)
class PartnerVoucherAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("code", "partner", "offer", "member", "points", "owed", "status", "issued_at", "used_at")
    list_filter = ("partner", "status")
    search_fields = ("code", "member__phone", "member__member_number")
    list_select_related = ("partner", "offer", "member")
    date_hierarchy = "issued_at"
    action_form = ReasonActionForm
    actions = ["void"]

    def has_void_permission(self, request) -> bool:
        return request.user.has_perm("programme.void_partnervoucher")

    @admin.action(description=_("Void (unused only; give a reason): the points go back"), permissions=["void"])
    def void(self, request, queryset):
        def act(voucher, reason):
            partners.partner_voucher_void(voucher=voucher, actor=request.user, reason=reason)

        _with_reason(self, request, queryset, act, _("%(row)s voided."))


@admin.register(PartnerBenefit)
class PartnerBenefitAdmin(TranslationAdmin):
    list_display = ("title", "partner", "is_active")
    list_filter = ("partner", "is_active")
    filter_horizontal = ("tiers", "plans")

"""Admin for tiers, member tiers, tier changes and benefits (issue 3).

Tiers and their benefits are edited here. A member's tier is changed only by the tier
services: the member tier page is read-only except for the pin (tier + until + note),
which goes through ``operations.actions.member_tier_pin`` (``loyalty.tiers.tier_pin`` plus
the staff-action audit row) with the staff user as operator. Tier
changes are history: view only, never edited or deleted.
"""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from modeltranslation.admin import TranslationAdmin, TranslationTabularInline

from core.admin import ReadOnlyAdminMixin
from core.errors import LoyaltyError
from loyalty.models import Benefit, MemberTier, Tier, TierChange
from members.admin_mixins import PhoneSearchMixin

from .actions import member_tier_pin

MEMBER_SEARCH_FIELDS = ("member__phone", "member__member_number", "member__name")
MEMBER_SEARCH_HELP = _("Member's phone number, member number or name.")


# --- tiers and benefits -----------------------------------------------------------------


class BenefitInline(TranslationTabularInline):
    # Title and description per language (loyalty/translation.py): a column for each.
    model = Benefit
    extra = 0
    fields = ("kind", "title", "value", "coupon_kind", "coupon_valid_days", "description", "is_active")


@admin.register(Tier)
class TierAdmin(TranslationAdmin):
    # Name and description per language (loyalty/translation.py): a field for each.
    list_display = ("rank", "name", "code", "qualify_threshold", "retain_threshold", "is_default")
    list_display_links = ("rank", "name")
    ordering = ("rank",)
    search_fields = ("code", "name_zh_hans", "name_en")
    inlines = (BenefitInline,)
    fieldsets = (
        (None, {"fields": ("code", "name", "rank", "is_default", "description")}),
        (
            _("Growth thresholds"),
            {
                "fields": ("qualify_threshold", "retain_threshold"),
                "description": _(
                    "A member moves up as soon as their growth reaches a tier's threshold to qualify. "
                    "At their review date they keep the tier with its threshold to keep; otherwise "
                    "they move down (one tier at a time when soft landing is on)."
                ),
            },
        ),
    )


# --- member tiers -----------------------------------------------------------------------


class PinTierForm(forms.ModelForm):
    """The only change staff make to a member tier: pin a tier until a date, with a note."""

    note = forms.CharField(
        label=_("note"),
        max_length=200,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text=_("Why the tier is pinned; kept with the tier change."),
    )

    class Meta:
        model = MemberTier
        fields = ("tier", "pinned_until")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tier"].help_text = _("The tier the member keeps until the pin ends.")
        self.fields["pinned_until"].required = True
        self.fields["pinned_until"].help_text = _(
            "No upgrade or downgrade before this date; the member is reviewed when it ends."
        )

    def clean_pinned_until(self):
        until = self.cleaned_data["pinned_until"]
        if until is not None and until <= timezone.now():
            raise forms.ValidationError(_("The pin must end in the future."), code="pin_in_past")
        return until


@admin.register(MemberTier)
class MemberTierAdmin(PhoneSearchMixin, admin.ModelAdmin):
    form = PinTierForm
    phone_lookup = "member__phone"
    list_display = ("member", "tier", "started_at", "review_at", "pinned_until")
    list_filter = ("tier", "review_at", "pinned_until")
    list_select_related = ("member", "tier")
    search_fields = MEMBER_SEARCH_FIELDS
    search_help_text = MEMBER_SEARCH_HELP
    readonly_fields = ("member", "started_at", "review_at")
    fieldsets = (
        (None, {"fields": ("member", "started_at", "review_at")}),
        (
            _("Pin the tier"),
            {
                "fields": ("tier", "pinned_until", "note"),
                "description": _("Saving pins the chosen tier until the date; the change is recorded with your name."),
            },
        ),
    )
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            member_tier_pin(
                member=obj.member,
                tier=data["tier"],
                until=data["pinned_until"],
                actor=request.user,
                reason=data["note"],
            )
        except LoyaltyError as error:
            request._tier_pin_refused = True
            self.message_user(
                request, gettext("The tier was not pinned: %(message)s") % {"message": error.message}, messages.ERROR
            )

    def save_related(self, request, form, formsets, change):
        pass  # nothing related is edited here

    def log_change(self, request, obj, message):
        if not getattr(request, "_tier_pin_refused", False):
            super().log_change(request, obj, message)

    def response_change(self, request, obj):
        if getattr(request, "_tier_pin_refused", False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    phone_lookup = "member__phone"
    list_display = ("created_at", "member", "from_tier", "to_tier", "reason", "growth", "operator", "note")
    list_filter = ("reason", "to_tier", "created_at")
    list_select_related = ("member", "from_tier", "to_tier", "operator")
    search_fields = MEMBER_SEARCH_FIELDS
    search_help_text = MEMBER_SEARCH_HELP
    show_full_result_count = False

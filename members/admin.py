"""Staff admin for members and stores: find a member, see their points, adjust them with a reason.

Admin classes stay thin: adjustments go through ``loyalty.services.points_adjust`` and sign-up
through ``members.services.member_create``; nothing here writes ledger rows.
"""

import re
import uuid
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import BigIntegerField, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from import_export.admin import ImportExportMixin

from loyalty.errors import LoyaltyError
from loyalty.models import Account, Currency, LedgerEntry, Lot, Order
from loyalty.services import points_adjust

from .forms import AdjustPointsForm, MemberAddForm, MemberChangeForm
from .models import ConsentRecord, Member, StaffProfile, Store
from .phone import normalize_phone
from .resources import MEMBER_FORMATS, MemberExportResource, MemberResource
from .scoping import adjust_limit, staff_stores
from .services import member_create

# One request adjusts the members one by one, each in its own transaction; more than this
# belongs in an import or a job, not in a page that must answer in seconds.
MAX_MEMBERS_PER_ADJUSTMENT = 200

_PHONE_LIKE = re.compile(r"^\+?[\d\s\-()]{7,24}$")


# --- shared pieces (loyalty.admin uses them too) ----------------------------------------


def phone_from_search(term: str) -> str | None:
    """The E.164 form of a search term that is a phone number in any spelling, else None."""
    term = (term or "").strip()
    if not _PHONE_LIKE.match(term):
        return None
    try:
        return normalize_phone(term)
    except LoyaltyError:
        return None


class PhoneSearchMixin:
    """Also find the member whose phone is the search term in another spelling (138 0013 8000, 0086...).

    The plain ``icontains`` search already finds ``13800138000`` inside ``+8613800138000``;
    this adds an exact match on the normalised number, which the words-split search misses.
    """

    phone_lookup = "phone"

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        phone = phone_from_search(search_term)
        if phone is not None:
            results = results | queryset.filter(**{self.phone_lookup: phone})
        return results, may_have_duplicates


class ReadOnlyAdminMixin:
    """Records written by services only: staff may look (view permission), never add, edit or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LatestRowsFormSet(BaseInlineFormSet):
    """An inline formset showing only the first ``limit`` rows in the inline's order.

    Inline querysets cannot be sliced (the formset filters them by the parent afterwards),
    so the slice goes into a subquery: ``pk IN (SELECT pk ... ORDER BY ... LIMIT n)``.
    """

    limit = 50

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queryset = self.queryset.filter(pk__in=self.queryset.values("pk")[: self.limit])


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    formset = LatestRowsFormSet
    limit = 50
    extra = 0
    can_delete = False
    show_change_link = True

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.limit = self.limit
        return formset


# --- inlines on the member page ---------------------------------------------------------


class LedgerEntryInline(ReadOnlyInline):
    model = LedgerEntry
    fk_name = "member"
    verbose_name_plural = gettext_lazy("latest ledger entries")
    fields = (
        "created_at",
        "currency",
        "kind",
        "amount",
        "pending_amount",
        "balance_after",
        "pending_after",
        "reason",
        "operator",
        "store",
        "order",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("operator", "store", "order").order_by("-created_at", "-id")


class LotInline(ReadOnlyInline):
    model = Lot
    fk_name = "member"
    verbose_name_plural = gettext_lazy("open lots")
    fields = ("entry", "currency", "amount", "remaining", "pending", "available_at", "expires_at")
    readonly_fields = fields

    def get_queryset(self, request):
        # Open lots in the order they will be spent: soonest expiry first.
        return (
            super()
            .get_queryset(request)
            .filter(remaining__gt=0)
            .select_related("entry")
            .order_by(F("expires_at").asc(nulls_last=True), "id")
        )


class ConsentRecordInline(ReadOnlyInline):
    model = ConsentRecord
    verbose_name_plural = gettext_lazy("consent history")
    fields = ("recorded_at", "channel", "granted", "source")
    readonly_fields = fields
    show_change_link = False


# --- members ----------------------------------------------------------------------------


class LimitedAdjustPointsForm(AdjustPointsForm):
    """The adjustment form with the staff user's limit (``StaffProfile.adjust_limit``).

    ``limit`` None means no limit (superusers, brand admins, staff without a profile limit).
    """

    def __init__(self, *args, limit: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit = limit

    def clean_amount(self) -> int:
        amount = super().clean_amount()
        if self.limit is not None and abs(amount) > self.limit:
            raise forms.ValidationError(
                _("You may adjust by at most %(limit)d at a time; ask a brand admin for a larger adjustment.")
                % {"limit": self.limit},
                code="over_limit",
            )
        return amount


def _account_figure(currency: str, column: str) -> Coalesce:
    """The member's figure from one account, as a correlated subquery (0 without an account)."""
    figure = Account.objects.filter(member_id=OuterRef("pk"), currency=currency).values(column)[:1]
    return Coalesce(Subquery(figure, output_field=BigIntegerField()), Value(0))


@admin.register(Member)
class MemberAdmin(ImportExportMixin, PhoneSearchMixin, admin.ModelAdmin):
    form = MemberChangeForm
    # Import and export (members.resources, docs/import.md): a dry-run preview lists every
    # bad row, and nothing is written until the operator confirms a file without any.
    formats = MEMBER_FORMATS
    add_form = MemberAddForm
    list_display = (
        "member_number",
        "name",
        "phone",
        "status",
        "home_store",
        "points_balance",
        "points_pending",
        "growth_balance",
        "joined_at",
    )
    list_display_links = ("member_number", "name")
    list_filter = ("status", "home_store", "gender")
    list_select_related = ("home_store",)
    search_fields = ("phone", "name", "member_number")
    search_help_text = gettext_lazy("Phone number (with or without +86), name or member number.")
    # A full count of a large member table on every search costs more than it tells.
    show_full_result_count = False
    actions = ("adjust_points",)
    inlines = (LedgerEntryInline, LotInline, ConsentRecordInline)
    readonly_fields = (
        "member_number",
        "joined_at",
        # The sign-in link is made by the member signing in, never by staff.
        "user",
        "points_balance",
        "points_pending",
        "growth_balance",
        "growth_pending",
        "sms_consent_at",
        "email_consent_at",
        "wechat_consent_at",
    )
    fieldsets = (
        (None, {"fields": ("phone", "member_number", "name", "gender", "birthday", "email", "home_store")}),
        (gettext_lazy("Membership"), {"fields": ("status", "joined_at", "user")}),
        (
            gettext_lazy("Points and growth"),
            {"fields": (("points_balance", "points_pending"), ("growth_balance", "growth_pending"))},
        ),
        (
            gettext_lazy("Marketing consent"),
            {
                "fields": ("sms_consent_at", "email_consent_at", "wechat_consent_at"),
                "description": gettext_lazy("Changed only by the member or through the consent service, with history."),
            },
        ),
    )
    add_fieldsets = ((None, {"fields": ("phone", "name", "gender", "birthday", "email", "home_store")}),)

    # --- import and export ---

    def get_import_resource_classes(self, request):
        return [MemberResource]

    def get_export_resource_classes(self, request):
        return [MemberExportResource]

    def has_import_permission(self, request):
        # An import adds and changes members, so it takes both permissions.
        return request.user.has_perms(["members.add_member", "members.change_member"])

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
        )

    @admin.display(description=gettext_lazy("points balance"), ordering="points_balance")
    def points_balance(self, member):
        return getattr(member, "points_balance", None)

    @admin.display(description=gettext_lazy("points pending"), ordering="points_pending")
    def points_pending(self, member):
        return getattr(member, "points_pending", None)

    @admin.display(description=gettext_lazy("growth balance"), ordering="growth_balance")
    def growth_balance(self, member):
        return getattr(member, "growth_balance", None)

    @admin.display(description=gettext_lazy("growth pending"), ordering="growth_pending")
    def growth_pending(self, member):
        return getattr(member, "growth_pending", None)

    # --- sign-up through the service; edits of the plain fields as usual ---

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

    # --- the member page: links to the full history and to the adjustment form ---

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_adjust": self.has_adjust_permission(request),
            "history_links": self._history_links(request, unquote(object_id)),
            "inline_limit": LedgerEntryInline.limit,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _history_links(self, request, member_id: str) -> list[tuple[str, str]]:
        links = []
        for model, label in (
            (LedgerEntry, _("All ledger entries")),
            (Lot, _("All lots")),
            (Order, _("All orders")),
        ):
            try:
                model_admin = self.admin_site.get_model_admin(model)
            except NotRegistered:
                continue
            if model_admin.has_view_or_change_permission(request):
                opts = model._meta
                url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=self.admin_site.name)
                links.append((label, f"{url}?{urlencode({'member__id__exact': member_id})}"))
        return links

    # --- adjusting points: an action on the list and a page per member ---

    def has_adjust_permission(self, request) -> bool:
        # Adjusting writes a ledger entry, so it takes the permission to add one.
        return request.user.has_perm("loyalty.adjust_points")

    def get_urls(self):
        opts = self.opts
        return [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name=f"{opts.app_label}_{opts.model_name}_adjust",
            ),
            *super().get_urls(),
        ]

    @admin.action(description=gettext_lazy("Adjust points"), permissions=["adjust"])
    def adjust_points(self, request, queryset):
        members = list(queryset.order_by("pk")[: MAX_MEMBERS_PER_ADJUSTMENT + 1])
        if len(members) > MAX_MEMBERS_PER_ADJUSTMENT:
            self.message_user(
                request,
                _("Adjust at most %(max)d members at a time.") % {"max": MAX_MEMBERS_PER_ADJUSTMENT},
                messages.ERROR,
            )
            return None
        if "apply" in request.POST:
            form = self._adjust_form(request, request.POST)
            if form.is_valid() and self._apply_adjustment(request, members, form.cleaned_data):
                return None  # back to the list, with the messages
        else:
            form = self._adjust_form(request)
        return self._adjust_form_response(request, form, members, from_action=True)

    def adjust_view(self, request, object_id):
        member = self.get_object(request, unquote(object_id))
        if member is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not (self.has_view_or_change_permission(request, member) and self.has_adjust_permission(request)):
            raise PermissionDenied
        if request.method == "POST":
            form = self._adjust_form(request, request.POST)
            if form.is_valid() and self._apply_adjustment(request, [member], form.cleaned_data):
                opts = self.opts
                return HttpResponseRedirect(
                    reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_change",
                        args=[member.pk],
                        current_app=self.admin_site.name,
                    )
                )
        else:
            form = self._adjust_form(request)
        return self._adjust_form_response(request, form, [member], from_action=False)

    def _adjust_form(self, request, data=None) -> LimitedAdjustPointsForm:
        """The adjustment form, limited to what this staff user may adjust at once."""
        limit = adjust_limit(request.user)
        if data is None:
            return LimitedAdjustPointsForm(initial={"token": uuid.uuid4()}, limit=limit)
        form = LimitedAdjustPointsForm(data, limit=limit)
        if not form.is_valid() and form.has_error("amount", "over_limit"):
            # Said on the form and as a message, so it cannot be missed; nothing was written.
            self.message_user(request, form.errors["amount"][0], messages.ERROR)
        return form

    def _apply_adjustment(self, request, members: list[Member], data: dict) -> bool:
        """Adjust each member in its own transaction; say per member what was refused.

        Returns whether the adjustment now stands for anyone (applied now, or by an
        earlier submission of the same form), so the caller can leave the form.
        """
        currency, amount, reason = data["currency"], data["amount"], data["reason"]
        currency_label = Currency(currency).label
        applied = replayed = 0
        for member in members:
            try:
                entry = points_adjust(
                    member=member,
                    currency=currency,
                    amount=amount,
                    reason=reason,
                    operator=request.user,
                    idempotency_key=f"admin-adjust:{data['token']}:{member.pk}",
                )
            except LoyaltyError as error:
                self.message_user(
                    request,
                    _("%(member)s was not adjusted: %(message)s") % {"member": member, "message": error.message},
                    messages.ERROR,
                )
                continue
            if entry.replayed:
                replayed += 1
                continue
            applied += 1
            self.log_change(
                request,
                member,
                _("Adjusted %(currency)s by %(amount)s (ledger entry %(entry)s). Reason: %(reason)s")
                % {"currency": currency_label, "amount": f"{amount:+d}", "entry": entry.pk, "reason": reason},
            )
        if applied:
            self.message_user(
                request,
                ngettext(
                    "Adjusted %(currency)s by %(amount)s for %(count)d member.",
                    "Adjusted %(currency)s by %(amount)s for %(count)d members.",
                    applied,
                )
                % {"currency": currency_label, "amount": f"{amount:+d}", "count": applied},
                messages.SUCCESS,
            )
        if replayed:
            self.message_user(
                request,
                ngettext(
                    "This form was already submitted for %(count)d member; nothing was changed again.",
                    "This form was already submitted for %(count)d members; nothing was changed again.",
                    replayed,
                )
                % {"count": replayed},
                messages.WARNING,
            )
        return applied + replayed > 0

    def _adjust_form_response(self, request, form, members: list[Member], *, from_action: bool):
        context = {
            **self.admin_site.each_context(request),
            "title": _("Adjust points"),
            "opts": self.opts,
            "form": form,
            "members": members,
            "original": None if from_action else members[0],
            "action_name": "adjust_points" if from_action else None,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/member/adjust_points.html", context)


# --- staff: their stores and adjustment limit, on the user page -------------------------


class StaffProfileInline(admin.StackedInline):
    model = StaffProfile
    can_delete = False
    max_num = 1
    fields = ("stores", "adjust_limit")
    filter_horizontal = ("stores",)
    verbose_name_plural = gettext_lazy("staff scope (stores and adjustment limit)")


User = get_user_model()
try:
    _user_admin_class = type(admin.site.get_model_admin(User))
    admin.site.unregister(User)
except NotRegistered:
    _user_admin_class = UserAdmin


@admin.register(User)
class StaffUserAdmin(_user_admin_class):
    inlines = (*_user_admin_class.inlines, StaffProfileInline)


# --- stores and consent -----------------------------------------------------------------


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "city", "is_active", "created_at")
    list_filter = ("is_active", "city")
    search_fields = ("code", "name", "city")


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    phone_lookup = "member__phone"
    list_display = ("recorded_at", "member", "channel", "granted", "source")
    list_filter = ("channel", "granted", "source", "recorded_at")
    list_select_related = ("member",)
    search_fields = ("member__phone", "member__member_number")
    search_help_text = gettext_lazy("Member's phone number or member number.")
    show_full_result_count = False

"""Staff admin for members and stores: find a member, see their points, act on them with a reason.

Admin classes stay thin: every staff action on a member (adjust points, pin a tier, add or
remove tags, freeze, unfreeze, close) is one ``members.services`` function that makes the
change and writes its ``StaffAction`` audit row in one transaction; sign-up goes through
``operations.actions.member_create``. Nothing here writes ledger rows. docs/member-admin.md.
"""

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
from django.db.models import BigIntegerField, Count, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from import_export.admin import ImportExportMixin

from core.admin import ReadOnlyAdminMixin, ReadOnlyInline
from core.errors import LoyaltyError
from loyalty.models import Account, Currency, LedgerEntry, Lot, MemberTier, Order, Tier, TierChange
from loyalty.selectors import member_debts
from members.admin_mixins import PhoneSearchMixin
from members.models import ConsentRecord, Member, StaffAction, StaffProfile, StageChange, Store, Tag
from members.scoping import adjust_limit, sees_everything, staff_stores
from members.services import (
    member_close,
    member_freeze,
    member_tags_add,
    member_tags_remove,
    member_unfreeze,
)

from .actions import member_create, member_points_adjust, member_tier_pin
from .forms import (
    AdjustPointsForm,
    MemberAddForm,
    MemberChangeForm,
    StaffActionForm,
    TagsAddForm,
    TagsRemoveForm,
    TierPinForm,
)
from .resources import MEMBER_FORMATS, MemberExportResource, MemberResource

# One request adjusts the members one by one, each in its own transaction; more than this
# belongs in an import or a job, not in a page that must answer in seconds.
MAX_MEMBERS_PER_ADJUSTMENT = 200

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


class MemberHistoryInline(ReadOnlyInline):
    """History of the member that whoever may see the member may see, whatever their
    permissions on the history model itself (store managers see the tier and stage
    history and the staff actions of their stores' members)."""

    show_change_link = False

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("members.view_member") or request.user.has_perm("members.change_member")


class TierChangeInline(MemberHistoryInline):
    model = TierChange
    fk_name = "member"
    verbose_name_plural = gettext_lazy("tier history")
    fields = ("created_at", "from_tier", "to_tier", "reason", "growth", "note", "operator")
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("from_tier", "to_tier", "operator")
            .order_by("-created_at", "-id")
        )


class StageChangeInline(MemberHistoryInline):
    model = StageChange
    verbose_name_plural = gettext_lazy("lifecycle stage changes")
    fields = ("changed_at", "from_stage", "to_stage")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-changed_at", "-id")


class StaffActionInline(MemberHistoryInline):
    model = StaffAction
    verbose_name_plural = gettext_lazy("staff actions")
    fields = ("created_at", "actor_name", "action", "reason", "detail")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-created_at", "-id")


# --- member list filters ------------------------------------------------------------------


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
    # Import and export (operations.resources, docs/import.md): a dry-run preview lists every
    # bad row, and nothing is written until the operator confirms a file without any.
    formats = MEMBER_FORMATS
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
    )
    list_select_related = ("home_store",)
    # "=": the openid only as a whole (it is an identifier, not words to search in).
    search_fields = ("phone", "name", "member_number", "=wechat_openid")
    search_help_text = gettext_lazy("Phone number (with or without +86), name, member number or mini-program openid.")
    # A full count of a large member table on every search costs more than it tells.
    show_full_result_count = False
    actions = ("adjust_points", "pin_tier", "add_tags", "remove_tags", "freeze", "unfreeze", "close")
    inlines = (
        LedgerEntryInline,
        LotInline,
        TierChangeInline,
        StageChangeInline,
        StaffActionInline,
        ConsentRecordInline,
    )
    readonly_fields = (
        "member_number",
        "joined_at",
        # Changed by the actions on the member list, each with a reason and an audit row.
        "status",
        "current_tier",
        "tag_list",
        # The sign-in link is made by the member signing in, never by staff.
        "user",
        "wechat_openid",
        "points_balance",
        "points_pending",
        "growth_balance",
        "growth_pending",
        "points_owed",
        "stage",
        "stage_since",
        "rfm_segment",
        "rfm_scores",
        "profile_refreshed_at",
        "order_count",
        "spend_total",
        "first_order_at",
        "last_order_at",
        "sms_consent_at",
        "email_consent_at",
        "wechat_consent_at",
    )
    fieldsets = (
        (None, {"fields": ("phone", "member_number", "name", "gender", "birthday", "email", "home_store")}),
        (
            gettext_lazy("Membership"),
            {
                "fields": ("status", "current_tier", "tag_list", "joined_at", "user", "wechat_openid"),
                "description": gettext_lazy(
                    "Status, tier pin and tags change through the actions on the member list "
                    "(select the member, choose the action, say why); each is kept in the staff actions below."
                ),
            },
        ),
        (
            gettext_lazy("Points and growth"),
            {"fields": (("points_balance", "points_pending"), ("growth_balance", "growth_pending"), "points_owed")},
        ),
        (
            gettext_lazy("Lifecycle and RFM"),
            {"fields": (("stage", "stage_since"), ("rfm_segment", "rfm_scores"), "profile_refreshed_at")},
        ),
        (
            gettext_lazy("Orders"),
            {"fields": (("order_count", "spend_total"), ("first_order_at", "last_order_at"))},
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

    @admin.display(description=gettext_lazy("tier"))
    def current_tier(self, member):
        state = MemberTier.objects.select_related("tier").filter(member=member).first()
        if state is None:
            return "-"
        if state.pinned_until:
            return _("%(tier)s (pinned until %(until)s)") % {
                "tier": state.tier.name,
                "until": date_format(timezone.localtime(state.pinned_until), "SHORT_DATE_FORMAT"),
            }
        return state.tier.name

    @admin.display(description=gettext_lazy("tags"))
    def tag_list(self, member):
        return ", ".join(member.tags.order_by("name").values_list("name", flat=True)) or "-"

    @admin.display(description=gettext_lazy("RFM scores (R, F, M)"))
    def rfm_scores(self, member):
        if member.rfm_recency is None:
            return "-"
        return f"{member.rfm_recency} / {member.rfm_frequency} / {member.rfm_monetary}"

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

    @admin.display(description=gettext_lazy("owed from refunds"))
    def points_owed(self, member):
        """Open refund shortfalls, with the refunds they come from (what comes back pays them first)."""
        debts = member_debts(member)
        if not debts:
            return "-"
        return "; ".join(
            _("%(currency)s: %(amount)s, from refund %(refund)s of order %(order)s")
            % {
                "currency": Currency(currency).label,
                "amount": d.amount,
                "refund": d.refund_number,
                "order": d.order_number,
            }
            for currency, rows in debts.items()
            for d in rows
        )

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
            (TierChange, _("All tier changes")),
            (StaffAction, _("All staff actions")),
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
                entry = member_points_adjust(
                    member=member,
                    currency=currency,
                    amount=amount,
                    reason=reason,
                    actor=request.user,
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

    # --- the other staff actions: tier pin, tags, status; each asks why -----------------
    #
    # Each action shows a form on its own page (like adjusting), then calls one service
    # that makes the change and writes the StaffAction row. The queryset is the admin's own
    # (scoped to the staff user's stores) and the services check the scope again.

    def has_pin_permission(self, request) -> bool:
        # Pinning changes the member (change_member) and their tier row (tier_pin checks it).
        return request.user.has_perms(["members.change_member", "loyalty.change_membertier"])

    @admin.action(description=gettext_lazy("Pin a tier until a date"), permissions=["pin"])
    def pin_tier(self, request, queryset):
        def apply(members, form):
            data = form.cleaned_data
            self._apply_each(
                request,
                members,
                lambda member: member_tier_pin(
                    member=member, tier=data["tier"], until=data["until"], actor=request.user, reason=data["reason"]
                ),
                lambda count: (
                    ngettext("Pinned %(tier)s for %(count)d member.", "Pinned %(tier)s for %(count)d members.", count)
                    % {"tier": data["tier"].name, "count": count}
                ),
            )

        return self._member_action(
            request,
            queryset,
            name="pin_tier",
            form_class=TierPinForm,
            title=_("Pin a tier until a date"),
            intro=_("The tier is kept until the end of the chosen day: no upgrade or downgrade before."),
            apply=apply,
        )

    @admin.action(description=gettext_lazy("Add tags"), permissions=["change"])
    def add_tags(self, request, queryset):
        def apply(members, form):
            changed = member_tags_add(
                members=members, tags=form.tag_values(), actor=request.user, reason=form.cleaned_data["reason"]
            )
            self._tags_done(request, members, changed, adding=True)

        return self._member_action(
            request,
            queryset,
            name="add_tags",
            form_class=TagsAddForm,
            title=_("Add tags"),
            intro=_("Choose existing tags or type new names; members who already have them are left alone."),
            apply=apply,
        )

    @admin.action(description=gettext_lazy("Remove tags"), permissions=["change"])
    def remove_tags(self, request, queryset):
        def apply(members, form):
            changed = member_tags_remove(
                members=members, tags=form.cleaned_data["tags"], actor=request.user, reason=form.cleaned_data["reason"]
            )
            self._tags_done(request, members, changed, adding=False)

        return self._member_action(
            request,
            queryset,
            name="remove_tags",
            form_class=TagsRemoveForm,
            title=_("Remove tags"),
            intro=_("Members who do not have the tags are left alone."),
            apply=apply,
        )

    @admin.action(description=gettext_lazy("Freeze"), permissions=["change"])
    def freeze(self, request, queryset):
        return self._status_action(
            request,
            queryset,
            name="freeze",
            service=member_freeze,
            title=_("Freeze members"),
            intro=_("A frozen member can sign in and look, but cannot earn or spend points until unfrozen."),
            done=lambda count: ngettext("Froze %(count)d member.", "Froze %(count)d members.", count),
        )

    @admin.action(description=gettext_lazy("Unfreeze or reopen"), permissions=["change"])
    def unfreeze(self, request, queryset):
        return self._status_action(
            request,
            queryset,
            name="unfreeze",
            service=member_unfreeze,
            title=_("Unfreeze or reopen members"),
            intro=_("Frozen and closed members become active again; erased members cannot be reopened."),
            done=lambda count: ngettext(
                "Made %(count)d member active again.", "Made %(count)d members active again.", count
            ),
        )

    @admin.action(description=gettext_lazy("Close membership"), permissions=["change"])
    def close(self, request, queryset):
        return self._status_action(
            request,
            queryset,
            name="close",
            service=member_close,
            title=_("Close memberships"),
            intro=_("A closed member can no longer sign in; their points history is kept."),
            done=lambda count: ngettext("Closed %(count)d membership.", "Closed %(count)d memberships.", count),
        )

    def _status_action(self, request, queryset, *, name, service, title, intro, done):
        def apply(members, form):
            reason = form.cleaned_data["reason"]
            self._apply_each(
                request,
                members,
                lambda member: service(member=member, actor=request.user, reason=reason),
                lambda count: done(count) % {"count": count},
            )

        return self._member_action(
            request, queryset, name=name, form_class=StaffActionForm, title=title, intro=intro, apply=apply
        )

    def _member_action(self, request, queryset, *, name, form_class, title, intro, apply):
        """Show ``form_class`` for the selected members; on a valid submit ``apply`` it and
        go back to the list. A refusal of the whole action shows the form again."""
        members = list(queryset.order_by("pk")[: MAX_MEMBERS_PER_ADJUSTMENT + 1])
        if len(members) > MAX_MEMBERS_PER_ADJUSTMENT:
            self.message_user(
                request,
                _("Act on at most %(max)d members at a time.") % {"max": MAX_MEMBERS_PER_ADJUSTMENT},
                messages.ERROR,
            )
            return None
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                apply(members, form)
            except LoyaltyError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                return None  # back to the list, with the messages
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "submit_label": title,
            "opts": self.opts,
            "form": form,
            "members": self._members_with_tier_and_tags(members),
            "action_name": name,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/member/member_action.html", context)

    @staticmethod
    def _members_with_tier_and_tags(members: list[Member]) -> list[Member]:
        """The selected members again with their tier and tags, in two queries."""
        return list(
            Member.objects.filter(pk__in=[member.pk for member in members])
            .annotate(tier_name=F("tier_state__tier__name"))
            .prefetch_related("tags")
            .order_by("pk")
        )

    def _apply_each(self, request, members, act, done_message) -> int:
        """``act`` on each member in its own transaction; say per member what was refused."""
        done = 0
        for member in members:
            try:
                act(member)
            except LoyaltyError as error:
                self.message_user(
                    request,
                    _("%(member)s: nothing changed. %(message)s") % {"member": member, "message": error.message},
                    messages.ERROR,
                )
                continue
            done += 1
        if done:
            self.message_user(request, done_message(done), messages.SUCCESS)
        return done

    def _tags_done(self, request, members, changed: int, *, adding: bool) -> None:
        unchanged = len(members) - changed
        if changed:
            message = (
                ngettext("Added the tags to %(count)d member.", "Added the tags to %(count)d members.", changed)
                if adding
                else ngettext(
                    "Removed the tags from %(count)d member.", "Removed the tags from %(count)d members.", changed
                )
            )
            self.message_user(request, message % {"count": changed}, messages.SUCCESS)
        if unchanged:
            message = (
                ngettext(
                    "%(count)d member already had these tags.", "%(count)d members already had these tags.", unchanged
                )
                if adding
                else ngettext(
                    "%(count)d member had none of these tags.", "%(count)d members had none of these tags.", unchanged
                )
            )
            self.message_user(request, message % {"count": unchanged}, messages.INFO)


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

    def get_queryset(self, request):
        return _scoped_to_members(request, super().get_queryset(request))


def _scoped_to_members(request, queryset, lookup: str = "member__home_store"):
    """Rows of the staff user's stores' members only (members.scoping)."""
    stores = staff_stores(request.user)
    return queryset if stores is None else queryset.filter(**{f"{lookup}__in": stores})


# --- the audit of staff actions, lifecycle stage changes and tags ------------------------


@admin.register(StaffAction)
class StaffActionAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    """Who did what to which member, when and why: written by the services only."""

    phone_lookup = "member__phone"
    list_display = ("created_at", "actor_name", "action", "member", "reason")
    list_display_links = ("created_at", "action")
    list_filter = ("action", ("actor", admin.RelatedOnlyFieldListFilter), "created_at")
    list_select_related = ("member",)
    search_fields = ("member__phone", "member__member_number", "actor_name")
    search_help_text = gettext_lazy("Member's phone number or member number, or the staff user's name.")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ("created_at", "actor", "actor_name", "action", "member", "reason", "detail")
    readonly_fields = fields

    def get_queryset(self, request):
        # Scoped staff see actions on their stores' members, not brand-wide ones (imports).
        return _scoped_to_members(request, super().get_queryset(request))


@admin.register(StageChange)
class StageChangeAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    phone_lookup = "member__phone"
    list_display = ("changed_at", "member", "from_stage", "to_stage")
    list_filter = ("to_stage", "from_stage", "changed_at")
    list_select_related = ("member",)
    search_fields = ("member__phone", "member__member_number")
    search_help_text = gettext_lazy("Member's phone number or member number.")
    show_full_result_count = False

    def get_queryset(self, request):
        return _scoped_to_members(request, super().get_queryset(request))


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    """Tags are created here or by the "Add tags" action, and put on members by the actions
    (with an audit row). A tag still on members cannot be deleted: remove it from them first."""

    list_display = ("name", "member_count", "created_at")
    search_fields = ("name",)
    fields = ("name",)
    # No bulk delete: deleting takes tags off members, which only the audited actions do.
    actions = None

    def get_queryset(self, request):
        stores = staff_stores(request.user)
        in_scope = Q() if stores is None else Q(members__home_store__in=stores)
        return super().get_queryset(request).annotate(member_count=Count("members", filter=in_scope))

    @admin.display(description=gettext_lazy("members"), ordering="member_count")
    def member_count(self, tag):
        url = reverse("admin:members_member_changelist", current_app=self.admin_site.name)
        return format_html('<a href="{}?tags__id__exact={}">{}</a>', url, tag.pk, tag.member_count)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.members.exists():
            return False
        return super().has_delete_permission(request, obj)


# The other admins of this layer register themselves with the admin site: segments,
# journeys and their run log (engagement's models), tiers and benefits with the staff pin
# action, and member files imported in the background.
from . import admin_journeys, admin_segments, admin_tiers  # noqa: E402, F401
from .admin_imports import ImportJobAdmin  # noqa: E402, F401

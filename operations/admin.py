"""Staff admin for members and stores: find a member, see their points, act on them with a reason.

Admin classes stay thin: every staff action on a member (adjust points, pin a tier, add or
remove tags, freeze, unfreeze, close) is one ``members.services`` function that makes the
change and writes its ``StaffAction`` audit row in one transaction; sign-up goes through
``operations.actions.member_create``. Nothing here writes ledger rows. docs/member-admin.md.

This module holds the small admins (staff scope on the user page, stores, consent, the audit
of staff actions, stage changes, tags) and imports the others so they register:
``MemberAdmin`` is in ``admin_members`` (the list and sign-up), ``admin_member_page`` (the
change page) and ``admin_member_actions`` (the audited actions).
"""

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy
from modeltranslation.admin import TranslationAdmin

from core.admin import ReadOnlyAdminMixin
from members.admin_mixins import PhoneSearchMixin
from members.models import ConsentRecord, StaffAction, StaffProfile, StageChange, Store, Tag
from members.scoping import staff_stores

from .admin_members import MemberAdmin  # noqa: F401  (registers the member admin)

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
class StoreAdmin(TranslationAdmin):
    # The name per language (members/translation.py): a field for each.
    list_display = ("code", "name", "city", "is_active", "created_at")
    list_filter = ("is_active", "city")
    search_fields = ("code", "name_zh_hans", "name_en", "city")


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
from . import admin_journeys, admin_schedules, admin_segments, admin_tiers  # noqa: E402, F401
from .admin_imports import ImportJobAdmin  # noqa: E402, F401
from .admin_merge import MemberMergeAdmin  # noqa: E402, F401

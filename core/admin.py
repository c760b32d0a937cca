"""Admin pieces every app's admin uses: read-only admins and inlines.

They sit below the apps (loyalty, rewards, engagement and operations register admins with
them), so no app's admin imports another app's admin. The phone search, which needs
``members.phone``, is ``members.admin_mixins.PhoneSearchMixin``.
"""

from django.contrib import admin
from django.forms.models import BaseInlineFormSet


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

"""Admin for member merges (``MemberMerge``, operations.merge, docs/merge.md).

*Add* is a two-step form: name the record to keep and the one to merge into it (member
number or phone; ``?keep=<member id>`` fills in the first), with a reason; the preview
shows what will move and the balances after, and the merge happens only on confirm. The
list shows every merge of the staff user's stores with an *Undo* link while the undo
window is open. The admin stays thin: the service checks the permission, the stores and
every refusal, and writes the audit rows.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.errors import LoyaltyError
from members.models import Member, MemberMerge
from members.phone import normalize_phone
from members.scoping import staff_stores

from .merge import PERMISSION, member_merge, member_merge_undo, merge_preview, merge_undo_refusal, undo_deadline


def find_member(raw: str) -> Member | None:
    """The record with this member number or phone, as it is (a merged record is not followed)."""
    text = (raw or "").strip()
    if not text:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    member = Member.objects.filter(member_number=digits).first() if digits else None
    if member is None:
        try:
            member = Member.objects.filter(phone=normalize_phone(text)).first()
        except LoyaltyError:
            member = None
    return member


class MergeForm(forms.Form):
    keep = forms.CharField(
        label=gettext_lazy("Record to keep"),
        max_length=40,
        help_text=gettext_lazy("Member number or phone of the record that stays."),
    )
    merged = forms.CharField(
        label=gettext_lazy("Record to merge into it"),
        max_length=40,
        help_text=gettext_lazy("Member number or phone of the second record: it is closed and points to the first."),
    )
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=200, widget=forms.TextInput(attrs={"size": 60}))

    def clean(self):
        data = super().clean()
        for name in ("keep", "merged"):
            if name in data:
                member = find_member(data[name])
                if member is None:
                    self.add_error(name, _("No member has this number or phone."))
                else:
                    data[f"{name}_member"] = member
        return data


class UndoForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=200, widget=forms.TextInput(attrs={"size": 60}))


@admin.register(MemberMerge)
class MemberMergeAdmin(admin.ModelAdmin):
    list_display = ("created_at", "keep", "merged", "reason", "actor", "state", "undo_link")
    list_select_related = ("keep", "merged", "actor")
    list_filter = (("undone_at", admin.EmptyFieldListFilter),)
    search_fields = ("keep__member_number", "merged__member_number", "keep__phone", "merged__phone", "reason")
    ordering = ("-created_at", "-id")
    readonly_fields = (
        "keep",
        "merged",
        "reason",
        "actor",
        "created_at",
        "undone_at",
        "undone_by",
        "undo_reason",
        "moved",
    )
    add_template = "admin/members/membermerge/merge.html"
    undo_template = "admin/members/membermerge/undo.html"

    # --- who may: merging needs members.merge_members; seeing, that or the view permission ---

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm(PERMISSION)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(PERMISSION) or request.user.has_perm("members.view_membermerge")

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        stores = staff_stores(request.user)
        if stores is not None:
            rows = rows.filter(Q(keep__home_store__in=stores) | Q(merged__home_store__in=stores))
        return rows

    # --- the list's columns ---

    @admin.display(description=gettext_lazy("state"))
    def state(self, merge: MemberMerge) -> str:
        if merge.undone_at:
            return _("undone on %(date)s") % {"date": timezone.localdate(merge.undone_at)}
        return _("merged; undo until %(date)s") % {"date": timezone.localdate(undo_deadline(merge))}

    @admin.display(description=gettext_lazy("undo"))
    def undo_link(self, merge: MemberMerge) -> str:
        if merge.undone_at is not None or timezone.now() > undo_deadline(merge):
            return "-"
        url = reverse("admin:members_membermerge_undo", args=[merge.pk])
        return format_html('<a class="button" href="{}">{}</a>', url, _("Undo"))

    # --- the pages ---

    def get_urls(self):
        return [
            path(
                "<path:object_id>/undo/",
                self.admin_site.admin_view(self.undo_view),
                name="members_membermerge_undo",
            ),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {}
        keep_id = request.GET.get("keep", "")
        if keep_id.isdigit():
            keep = Member.objects.filter(pk=int(keep_id)).first()
            if keep is not None:
                initial["keep"] = keep.member_number
        form = MergeForm(request.POST or None, initial=initial)
        preview = None
        if request.method == "POST" and form.is_valid():
            keep, merged = form.cleaned_data["keep_member"], form.cleaned_data["merged_member"]
            if "confirm" in request.POST:
                try:
                    merge = member_merge(
                        keep=keep, merged=merged, reason=form.cleaned_data["reason"], actor=request.user
                    )
                except LoyaltyError as error:
                    messages.error(request, error.message)
                else:
                    messages.success(
                        request,
                        _("Member %(merged)s was merged into %(keep)s.")
                        % {"merged": merged.member_number, "keep": keep.member_number},
                    )
                    return HttpResponseRedirect(reverse("admin:members_membermerge_change", args=[merge.pk]))
            preview = merge_preview(keep=keep, merged=merged, actor=request.user)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Merge two member records"),
            "form": form,
            "preview": preview,
            "rows": _preview_rows(preview) if preview else [],
            "balance_rows": _balance_rows(preview) if preview else [],
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.add_template, context)

    def undo_view(self, request, object_id):
        merge = get_object_or_404(self.get_queryset(request).select_related("keep", "merged"), pk=unquote(object_id))
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        form = UndoForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                member_merge_undo(merge=merge, reason=form.cleaned_data["reason"], actor=request.user)
            except LoyaltyError as error:
                messages.error(request, error.message)
            else:
                messages.success(
                    request,
                    _("The merge of %(merged)s into %(keep)s was undone.")
                    % {"merged": merge.merged.member_number, "keep": merge.keep.member_number},
                )
                return HttpResponseRedirect(reverse("admin:members_membermerge_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Undo a member merge"),
            "merge": merge,
            "form": form,
            "refusal": merge_undo_refusal(merge),
            "deadline": undo_deadline(merge),
        }
        return TemplateResponse(request, self.undo_template, context)


ROW_LABELS = {
    "orders": gettext_lazy("orders"),
    "coupons": gettext_lazy("coupons"),
    "redemptions": gettext_lazy("redemptions"),
    "check_ins": gettext_lazy("check-ins"),
    "referrals_made": gettext_lazy("referrals made"),
    "referral": gettext_lazy("the referral that brought them"),
    "journey_runs": gettext_lazy("journey entries"),
    "plan_orders": gettext_lazy("paid membership orders"),
    "plan_grants": gettext_lazy("paid membership grants"),
    "badges": gettext_lazy("badges"),
    "contributions": gettext_lazy("contribution records"),
    "partner_earns": gettext_lazy("partner earns"),
    "partner_vouchers": gettext_lazy("partner vouchers"),
    "membership": gettext_lazy("paid membership"),
}


def _preview_rows(preview) -> list[tuple[str, int]]:
    return [(str(ROW_LABELS.get(name, name)), count) for name, count in preview.counts.items()]


def _balance_rows(preview) -> list[dict]:
    labels = {"points": _("points"), "growth": _("growth")}
    return [
        {"currency": labels[currency], **{side: figures[side] for side in ("keep", "merged", "after")}}
        for currency, figures in preview.balances.items()
    ]

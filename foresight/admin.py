"""Foresight in the admin: the leakage queue with its resolve actions, the tier-policy
simulations and the liability forecasts (each run computed on save, shown on its page),
and a member's point provenance. Actions call ``foresight`` services; nothing here writes
the ledger."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.admin import ReadOnlyAdminMixin
from core.errors import LoyaltyError
from members.models import Member
from members.scoping import sees_everything, staff_stores

from . import forecast, leakage, provenance, selectors, simulator
from .models import ForecastRun, LeakageCase, SimulationRun


class ResolveForm(ActionForm):
    reason = forms.CharField(label=_("Reason"), max_length=200, required=False)


@admin.register(LeakageCase)
class LeakageCaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The staff queue: open cases first; resolve selected ones as confirmed or dismissed."""

    list_display = ("kind", "member", "store", "points", "status", "outcome", "first_seen_at", "last_seen_at")
    list_filter = ("status", "kind", "outcome")
    search_fields = ("key", "member__phone", "member__member_number")
    list_select_related = ("member", "store", "resolved_by")
    readonly_fields = (
        "kind",
        "key",
        "member",
        "store",
        "points",
        "detail",
        "status",
        "first_seen_at",
        "last_seen_at",
        "outcome",
        "resolution",
        "resolved_by",
        "resolved_at",
    )
    action_form = ResolveForm
    actions = ["confirm", "dismiss"]

    def get_queryset(self, request):
        return selectors.cases_for(request.user).select_related("member", "store", "resolved_by")

    def has_resolve_permission(self, request) -> bool:
        return request.user.has_perm("foresight.resolve_leakagecase")

    def _resolve(self, request, queryset, outcome: str) -> None:
        reason = request.POST.get("reason", "")
        done = 0
        for case in queryset:
            try:
                leakage.case_resolve(case=case, actor=request.user, outcome=outcome, reason=reason)
            except LoyaltyError as error:
                self.message_user(request, f"{case}: {error.message}", messages.ERROR)
            else:
                done += 1
        if done:
            text = ngettext("%(n)s case resolved.", "%(n)s cases resolved.", done) % {"n": f"{done:,}"}
            self.message_user(request, text, messages.SUCCESS)

    @admin.action(description=_("Resolve: confirmed, action taken (give a reason)"), permissions=["resolve"])
    def confirm(self, request, queryset):
        self._resolve(request, queryset, LeakageCase.Outcome.CONFIRMED)

    @admin.action(description=_("Resolve: dismissed, nothing wrong (give a reason)"), permissions=["resolve"])
    def dismiss(self, request, queryset):
        self._resolve(request, queryset, LeakageCase.Outcome.DISMISSED)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("provenance/", view(self.provenance_view), name="foresight_provenance"),
            path("channels/", view(self.channels_view), name="foresight_channels"),
            *super().get_urls(),
        ]

    def channels_view(self, request):
        """Orders, revenue and average order value per month and channel, the staff's stores only."""
        if not request.user.has_perm("loyalty.view_order"):
            raise PermissionDenied
        rows = selectors.orders_by_channel(stores=staff_stores(request.user))
        context = {**self.admin_site.each_context(request), "title": _("Orders by channel"), "rows": rows}
        return TemplateResponse(request, "foresight/channels_admin.html", context)

    def provenance_view(self, request):
        """A member's points, lot by lot: where each came from and what took it."""
        if not request.user.has_perm("loyalty.view_lot"):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "title": _("Point provenance"), "query": ""}
        query = (request.GET.get("member") or "").strip()
        if query:
            context["query"] = query
            members = Member.objects.filter(member_number=query) | Member.objects.filter(phone=query)
            stores = staff_stores(request.user)
            if stores is not None:
                members = members.filter(home_store__in=stores)
            member = members.first()
            if member is None:
                context["not_found"] = True
            else:
                context["member"] = member
                context["report"] = provenance.member_provenance(member)
        return TemplateResponse(request, "foresight/provenance_admin.html", context)


def _own_runs(request, queryset):
    """Brand admins see every run; other staff the runs they made (computed on their stores)."""
    return queryset if sees_everything(request.user) else queryset.filter(created_by=request.user)


class ProposalForm(forms.ModelForm):
    """The proposal: each tier's thresholds, and the review, window and soft-landing rules."""

    review_months = forms.IntegerField(label=_("Review period (months)"), min_value=1, max_value=36)
    window_months = forms.IntegerField(label=_("Growth window (months)"), min_value=1, max_value=36)
    soft_landing = forms.BooleanField(label=_("Soft landing (at most one step down)"), required=False)
    thresholds = forms.CharField(
        label=_("Thresholds"),
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("One tier a line: code qualify retain, e.g. 'gold 5000 4000'. Tiers not named keep theirs."),
        required=False,
    )

    class Meta:
        model = SimulationRun
        fields = ("name",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = simulator.current_policy()
        self.fields["review_months"].initial = current.review_months
        self.fields["window_months"].initial = min(current.window_months, 36)
        self.fields["soft_landing"].initial = current.soft_landing
        self.fields["thresholds"].initial = "\n".join(
            f"{tier.code} {tier.qualify} {tier.retain}" for tier in current.tiers
        )

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            selectors.postgresql_required()
            self.policy = simulator.policy_from_form(
                thresholds=data.get("thresholds", ""),
                review_months=data["review_months"],
                window_months=data["window_months"],
                soft_landing=data.get("soft_landing", False),
            )
        except LoyaltyError as error:
            raise forms.ValidationError(error.message) from error
        return data


@admin.register(SimulationRun)
class SimulationRunAdmin(admin.ModelAdmin):
    """Propose a tier policy; saving runs the replay and keeps its figures, changes no tier."""

    list_display = ("name", "created_at", "created_by", "seconds")
    form = ProposalForm
    change_form_template = "foresight/simulation_change_form.html"

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def get_queryset(self, request):
        return _own_runs(request, super().get_queryset(request))

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:
            kwargs["form"] = forms.modelform_factory(SimulationRun, fields=("name",))
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            return
        run = simulator.simulation_record(
            name=obj.name, policy=form.policy, actor=request.user, stores=staff_stores(request.user)
        )
        obj.pk, obj.result, obj.proposal = run.pk, run.result, run.proposal

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = get_object_or_404(self.get_queryset(request), pk=object_id)
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "run": run})


class ForecastForm(forms.ModelForm):
    class Meta:
        model = ForecastRun
        fields = ("name", "alternative_policy")

    def clean(self):
        data = super().clean()
        try:
            selectors.postgresql_required()
        except LoyaltyError as error:
            raise forms.ValidationError(error.message) from error
        return data

    def clean_alternative_policy(self):
        text = self.cleaned_data["alternative_policy"].strip()
        if text:
            try:
                forecast.parse_policy(text)
            except LoyaltyError as error:
                raise forms.ValidationError(error.message) from error
        return text


@admin.register(ForecastRun)
class ForecastRunAdmin(admin.ModelAdmin):
    """Fit the curves and project 12 months on save; the page shows both."""

    list_display = ("name", "alternative_policy", "created_at", "created_by", "seconds")
    form = ForecastForm
    change_form_template = "foresight/forecast_change_form.html"

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def get_queryset(self, request):
        return _own_runs(request, super().get_queryset(request))

    def save_model(self, request, obj, form, change):
        if change:
            return
        run = forecast.forecast_record(
            name=obj.name,
            alternative=obj.alternative_policy or None,
            actor=request.user,
            stores=staff_stores(request.user),
        )
        obj.pk, obj.result = run.pk, run.result

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = get_object_or_404(self.get_queryset(request), pk=object_id)
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "run": run})

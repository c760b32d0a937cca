"""Admin for consumer operations: journeys and broadcasts (what fires, the steps, the report),
their run log and the rule-based tags.

The run log (JourneyRun, JourneyStepRun) is written by ``operations.journeys`` only: staff
read it, never edit it. Store-scoped staff (members.scoping) see the runs of their stores'
members. A journey's steps are an ordered inline list, one row per step, with the fields of
each kind of step; :class:`JourneyStepFormSet` refuses a list that does not make a journey.
"""

import datetime as dt
from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.admin import ReadOnlyAdminMixin
from engagement.models import AutoTag, Broadcast, Journey, JourneyPosition, JourneyRun, JourneyStep, JourneyStepRun
from loyalty.models import CouponKind
from members.admin_mixins import PhoneSearchMixin
from members.scoping import staff_stores

from .journey_report import journey_report
from .journeys import contact_cap as marketing_contact_cap
from .segments import auto_tags_refresh
from .tasks import run_journey

RECENT_DAYS = 30

# What each action needs filled in, and the triggers that need a number of days.
ACTION_FIELDS = {
    Journey.Action.AWARD_POINTS: ("points",),
    Journey.Action.ISSUE_COUPON: ("coupon_title", "coupon_kind", "coupon_valid_days"),
    Journey.Action.ADD_TAG: ("tag",),
    Journey.Action.NOTIFY: ("message_title",),
}
DAYS_TRIGGERS = (Journey.Trigger.NO_ORDER, Journey.Trigger.POINTS_EXPIRING)
JOURNEY_FIELDS = (
    "name", "description", "is_active", "trigger", "trigger_days", "audience", "send_at", "holdout_percent",
    "is_marketing", "cap_count", "cap_days", "quiet_start", "quiet_end",
)  # fmt: skip


class JourneyForm(forms.ModelForm):
    class Meta:
        model = Journey
        fields = JOURNEY_FIELDS
        help_texts = {
            "trigger": _(
                "What starts the journey for a member. Events older than three days are not acted on, "
                "so a new journey does not reach back into history. Broadcast: every member of the audience, "
                "once, at the time below."
            ),
            "trigger_days": _(
                "No order for N days: N (required). Points about to expire: how many days ahead (required). "
                "First order: wait this many days and act only if no second order came; empty: at once."
            ),
            "audience": _("Only members in this segment; empty: every member."),
            "holdout_percent": _(
                "This share of the members who enter (0-90) gets nothing and is recorded as held out: the "
                "control group the report below compares with. Fixed per member and journey."
            ),
            "is_marketing": _(
                "Promotions are marketing and reach only members who consented on some channel (PIPL article 24). "
                "Earned benefits and service messages (points about to expire) are not."
            ),
            "cap_count": _("How many times one member may enter this journey ..."),
            "cap_days": _("... within this many days."),
            "quiet_start": _("No actions between these times (local time, e.g. 21:00); they wait for a later run."),
            "quiet_end": _("End of the quiet hours (e.g. 09:00); may be earlier than the start (overnight)."),
        }

    def clean(self):
        data = super().clean()
        trigger = data.get("trigger")
        if trigger in DAYS_TRIGGERS and not data.get("trigger_days"):
            self.add_error(
                "trigger_days",
                _("Required for the trigger “%(trigger)s”.") % {"trigger": Journey.Trigger(trigger).label},
            )
        if (data.get("quiet_start") is None) != (data.get("quiet_end") is None):
            self.add_error("quiet_end", _("Give both ends of the quiet hours, or neither."))
        if data.get("cap_count") == 0:
            self.add_error("cap_count", _("At least 1."))
        if data.get("cap_days") == 0:
            self.add_error("cap_days", _("At least 1."))
        if (data.get("holdout_percent") or 0) > 90:
            self.add_error("holdout_percent", _("Hold out at most 90 percent."))
        return data


class BroadcastForm(JourneyForm):
    class Meta(JourneyForm.Meta):
        model = Broadcast
        fields = tuple(name for name in JOURNEY_FIELDS if name not in ("trigger", "trigger_days"))
        help_texts = {
            **JourneyForm.Meta.help_texts,
            "audience": _("The segment to send to; empty: every member."),
            "cap_count": _("Sent once per member; leave at 1."),
        }

    def clean(self):
        data = super().clean()
        self.instance.trigger = Journey.Trigger.BROADCAST
        return data


class JourneyStepForm(forms.ModelForm):
    class Meta:
        model = JourneyStep
        fields = (
            "position", "variant", "kind", "action", "points", "coupon_title", "coupon_kind", "coupon_value",
            "coupon_valid_days", "tag", "message_title", "message_body", "wait_days", "wait_until", "condition",
            "segment", "channel", "else_step",
        )  # fmt: skip
        widgets = {"message_body": forms.Textarea(attrs={"rows": 2})}
        help_texts = {
            "kind": _("Do: an action. Wait: some days, or until an order. Branch: go on only if a condition holds."),
            "points": _("Award points: how many points (required)."),
            "coupon_value": _(
                "Percent off (10 = 10 percent) or yuan off (required for these kinds); 0 or empty for a gift or "
                "free shipping."
            ),
            "coupon_valid_days": _("Issue a coupon: days it stays valid, counting today (required)."),
            "message_title": _(
                "Send a notification: the title (required). For the other actions, fill it in to tell the member "
                "too. {name}, {points}, {coupon}, {code} and {date} are filled in."
            ),
            "wait_days": _("Wait: how many days (required); with “an order”, the longest wait."),
            "segment": _("Branch on “is in the segment”: the segment (required)."),
            "channel": _("Branch on “has marketing consent”: the channel (required)."),
        }

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        if kind == JourneyStep.Kind.ACTION:
            self._clean_action(data)
        elif kind == JourneyStep.Kind.WAIT:
            if not data.get("wait_days"):
                self.add_error("wait_days", _("A wait needs a number of days (1 or more)."))
        elif kind == JourneyStep.Kind.BRANCH:
            condition = data.get("condition")
            if not condition:
                self.add_error("condition", _("A branch needs a condition."))
            if condition == JourneyStep.Condition.IN_SEGMENT and not data.get("segment"):
                self.add_error("segment", _("Choose the segment the member must be in."))
            if condition == JourneyStep.Condition.CONSENT and not data.get("channel"):
                self.add_error("channel", _("Choose the consent channel."))
            position, other = data.get("position"), data.get("else_step")
            if position and other is not None and other <= position:
                self.add_error("else_step", _("Go on at a later step (a journey only moves forward)."))
        if kind != JourneyStep.Kind.ACTION and data.get("variant"):
            self.add_error("variant", _("Only a “do” step can have variants."))
        return data

    def _clean_action(self, data):
        action = data.get("action")
        if not action:
            self.add_error("action", _("Choose what this step does."))
            return
        for name in ACTION_FIELDS.get(action, ()):
            if data.get(name) in (None, ""):
                self.add_error(
                    name, _("Required for the action “%(action)s”.") % {"action": Journey.Action(action).label}
                )
        if action == Journey.Action.AWARD_POINTS and data.get("points") == 0:
            self.add_error("points", _("Award at least 1 point."))
        if action == Journey.Action.ISSUE_COUPON:
            kind, value = data.get("coupon_kind"), data.get("coupon_value")
            if kind in (CouponKind.DISCOUNT_PERCENT, CouponKind.AMOUNT_OFF) and not value:
                self.add_error("coupon_value", _("Give the percent or the yuan this coupon takes off."))
            if kind == CouponKind.DISCOUNT_PERCENT and value is not None and value > 100:
                self.add_error("coupon_value", _("A percent-off coupon cannot take more than 100 percent off."))
            if data.get("coupon_valid_days") == 0:
                self.add_error("coupon_valid_days", _("A coupon must be valid for at least 1 day."))
        if data.get("message_body") and not data.get("message_title"):
            self.add_error("message_title", _("A message needs a title."))


class JourneyStepFormSet(forms.BaseInlineFormSet):
    """The list as a whole: steps 1, 2, 3 ... without gaps, variants of one step all lettered,
    branches that jump to a step that exists."""

    def clean(self):
        # Ours first: they say more than the unique check's "duplicate data" would.
        if not any(form.errors for form in self.forms if not (self.can_delete and self._should_delete_form(form))):
            self._clean_list()
        super().clean()

    def _clean_list(self):
        steps = [
            form.cleaned_data
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE") and form.cleaned_data.get("position")
        ]
        if not steps:
            raise forms.ValidationError(_("A journey needs at least one step."))
        positions = sorted({step["position"] for step in steps})
        if positions != list(range(1, len(positions) + 1)):
            raise forms.ValidationError(
                _("Number the steps 1, 2, 3 ... without gaps (now: %(numbers)s).")
                % {"numbers": ", ".join(map(str, positions))}
            )
        per_position = Counter(step["position"] for step in steps)
        for position, count in per_position.items():
            variants = [step.get("variant", "") for step in steps if step["position"] == position]
            if count > 1 and "" in variants:
                raise forms.ValidationError(
                    _("Step %(step)s appears more than once: give each copy a variant letter (A, B ...).")
                    % {"step": position}
                )
        for step in steps:
            if step.get("else_step") and step["else_step"] not in per_position:
                raise forms.ValidationError(
                    _("Step %(step)s goes on at step %(other)s, which does not exist.")
                    % {"step": step["position"], "other": step["else_step"]}
                )


class JourneyStepInline(admin.StackedInline):
    model = JourneyStep
    form = JourneyStepForm
    formset = JourneyStepFormSet
    extra = 0
    min_num = 1
    ordering = ("position", "variant")
    autocomplete_fields = ()
    fieldsets = (
        (None, {"fields": (("position", "variant", "kind"),)}),
        (
            _("Do"),
            {
                "fields": (
                    ("action", "points"),
                    ("coupon_title", "coupon_kind"),
                    ("coupon_value", "coupon_valid_days"),
                    "tag",
                    "message_title",
                    "message_body",
                )
            },
        ),
        (_("Wait"), {"fields": (("wait_days", "wait_until"),)}),
        (_("Branch"), {"fields": (("condition", "segment", "channel"), "else_step")}),
    )


def flow_texts() -> dict:
    """The flow editor's words (static/admin/journeys/flow.js), in the page's language."""
    return {
        "help": _(
            "The steps in order. Add a step with the buttons, move it with ↑ and ↓ (the numbers follow), "
            "remove it with ✕. Saving checks the whole list; nothing is saved while it has an error."
        ),
        "map": _("The journey's steps"),
        "add": _("Add a step:"),
        "add_action": _("do something"),
        "add_wait": _("wait"),
        "add_branch": _("branch"),
        "up": _("Move up"),
        "down": _("Move down"),
        "remove": _("Remove this step (again: undo)"),
        "step": _("Step {step}"),
        "wait_days": _("Wait {days} days"),
        "wait_order": _("Wait for an order, at most {days} days"),
        "branch": _("If {condition}: go on;"),
        "no_condition": _("(no condition yet)"),
        "no_action": _("(no action yet)"),
        "else_step": _("otherwise go to step {step}"),
        "else_end": _("otherwise the journey ends"),
        "else_label": _("Otherwise go to"),
        "else_end_option": _("the journey ends"),
        "else_option": _("step {step}"),
        "else_invalid": _("step {step} (not a later step)"),
        "points": _("{points} points"),
        "empty": _("No steps: a journey needs at least one."),
    }


class _JourneyAdminBase(admin.ModelAdmin):
    inlines = (JourneyStepInline,)
    actions = ("run_now",)
    readonly_fields = ("created_at", "contact_cap")
    search_fields = ("name",)
    change_form_template = "admin/engagement/journey/change_form.html"

    class Media:
        css = {"all": ("admin/journeys/flow.css",)}
        js = ("admin/journeys/flow.js",)

    def get_queryset(self, request):
        # Two counts per journey in the one changelist query, over the last 30 days only.
        since = timezone.now() - dt.timedelta(days=RECENT_DAYS)
        recent = Q(runs__created_at__gte=since)
        return (
            super()
            .get_queryset(request)
            .annotate(
                done_recent=Count("runs", filter=recent & Q(runs__status=JourneyRun.Status.DONE)),
                skipped_recent=Count("runs", filter=recent & Q(runs__status=JourneyRun.Status.SKIPPED)),
            )
        )

    @admin.display(description=_("done (30 days)"), ordering="done_recent")
    def done_recently(self, journey):
        return journey.done_recent

    @admin.display(description=_("skipped (30 days)"), ordering="skipped_recent")
    def skipped_recently(self, journey):
        return journey.skipped_recent

    @admin.display(description=_("marketing contact cap"))
    def contact_cap(self, journey):
        """The deployment's cap across journeys and broadcasts, and what it held back here."""
        try:
            cap = marketing_contact_cap()
        except ImproperlyConfigured as error:
            return str(error)
        if cap is None:
            text = _("Off (MARKETING_CONTACT_CAP): marketing journeys and broadcasts are capped only by their own cap.")
        else:
            text = _(
                "At most %(count)s marketing contacts per member within %(days)s days, across every journey and "
                "broadcast (MARKETING_CONTACT_CAP); a member at the cap is skipped. Not marketing: not capped."
            ) % {"count": cap[0], "days": cap[1]}
        if journey is not None and journey.pk:
            since = timezone.now() - dt.timedelta(days=RECENT_DAYS)
            held = JourneyRun.objects.filter(journey=journey, created_at__gte=since, detail__skip="contact_cap").count()
            held_text = ngettext(
                "Skipped by it in the last 30 days: %(count)d member.",
                "Skipped by it in the last 30 days: %(count)d members.",
                held,
            ) % {"count": held}
            text = f"{text} {held_text}"
        return text

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "flow_texts": flow_texts()}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        journey = self.get_object(request, object_id)
        if journey is not None:
            extra_context["report"] = journey_report(journey, stores=_scope(request))
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description=_("Run selected journeys now"), permissions=["change"])
    def run_now(self, request, queryset):
        """Queue one task per journey: a journey walks every member, which is a worker's job,
        not a web request's. The run log shows the outcome."""
        ids = list(queryset.order_by("id").values_list("id", flat=True))
        for journey_id in ids:
            transaction.on_commit(lambda journey_id=journey_id: run_journey.delay(journey_id))
        self.message_user(
            request,
            ngettext(
                "%(count)d journey queued; its runs appear under Journey runs in a minute.",
                "%(count)d journeys queued; their runs appear under Journey runs in a minute.",
                len(ids),
            )
            % {"count": len(ids)},
            messages.SUCCESS,
        )


def _scope(request):
    """The store ids whose members a scoped staff user's report counts; None: every member."""
    stores = staff_stores(request.user)
    return None if stores is None else list(stores.values_list("pk", flat=True))


@admin.register(Journey)
class JourneyAdmin(_JourneyAdminBase):
    form = JourneyForm
    list_display = (
        "name",
        "is_active",
        "trigger",
        "holdout_percent",
        "is_marketing",
        "done_recently",
        "skipped_recently",
    )
    list_filter = ("is_active", "trigger", "is_marketing")
    fieldsets = (
        (None, {"fields": ("name", "description", "is_active")}),
        (_("When"), {"fields": ("trigger", "trigger_days", "audience", "send_at")}),
        (_("Control group"), {"fields": ("holdout_percent",)}),
        (
            _("Consent, caps and quiet hours"),
            {
                "fields": (
                    "is_marketing",
                    ("cap_count", "cap_days"),
                    "contact_cap",
                    ("quiet_start", "quiet_end"),
                    "created_at",
                )
            },
        ),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(trigger=Journey.Trigger.BROADCAST)


@admin.register(Broadcast)
class BroadcastAdmin(_JourneyAdminBase):
    """A one-off send to a segment: a journey with the broadcast trigger, edited on its own page."""

    form = BroadcastForm
    list_display = ("name", "is_active", "send_at", "audience", "holdout_percent", "sent", "not_sent")
    list_filter = ("is_active", "is_marketing")
    fieldsets = (
        (None, {"fields": ("name", "description", "is_active")}),
        (_("To whom and when"), {"fields": ("audience", "send_at")}),
        (_("Control group"), {"fields": ("holdout_percent",)}),
        (
            _("Consent, caps and quiet hours"),
            {"fields": ("is_marketing", "contact_cap", ("quiet_start", "quiet_end"), "created_at")},
        ),
    )

    def get_queryset(self, request):
        return (
            super(_JourneyAdminBase, self)
            .get_queryset(request)
            .filter(trigger=Journey.Trigger.BROADCAST)
            .annotate(
                done_recent=Count("runs", filter=Q(runs__status=JourneyRun.Status.DONE)),
                skipped_recent=Count("runs", filter=Q(runs__status=JourneyRun.Status.SKIPPED)),
            )
        )

    # A broadcast goes once: its counts are of all its runs, not of the last 30 days.
    @admin.display(description=_("done"), ordering="done_recent")
    def sent(self, broadcast):
        return broadcast.done_recent

    @admin.display(description=_("skipped"), ordering="skipped_recent")
    def not_sent(self, broadcast):
        return broadcast.skipped_recent

    def save_model(self, request, obj, form, change):
        obj.trigger = Journey.Trigger.BROADCAST
        super().save_model(request, obj, form, change)


class _ScopedLogAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    search_fields = ("member__phone", "member__member_number")
    search_help_text = _("Member's phone number or member number.")
    phone_lookup = "member__phone"
    # The log grows without end: skip the unfiltered count on every search.
    show_full_result_count = False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        stores = staff_stores(request.user)
        if stores is not None:
            queryset = queryset.filter(member__home_store__in=stores)
        return queryset


@admin.register(JourneyRun)
class JourneyRunAdmin(_ScopedLogAdmin):
    """The run log: who entered which journey (or was held out, or skipped), and why."""

    list_display = ("created_at", "journey", "member", "status", "event_key", "reason", "contacted_at")
    list_filter = ("journey", "status", "created_at")
    list_select_related = ("journey", "member")


@admin.register(JourneyStepRun)
class JourneyStepRunAdmin(_ScopedLogAdmin):
    """Each step done for each entry: the action, the wait that ended, the branch taken."""

    list_display = ("created_at", "journey", "member", "position", "variant", "status", "reason")
    list_filter = ("journey", "status", "variant", "created_at")
    list_select_related = ("journey", "member")


@admin.register(JourneyPosition)
class JourneyPositionAdmin(_ScopedLogAdmin):
    """Where each member stands in each journey: the step, whether they wait, when they are due."""

    list_display = ("journey", "member", "step", "waiting", "due_at", "state", "entered_at")
    list_filter = ("journey", "state", "waiting")
    list_select_related = ("journey", "member")


class AutoTagForm(forms.ModelForm):
    class Meta:
        model = AutoTag
        fields = ("tag", "segment", "is_active")
        help_texts = {
            "tag": _("The tag whose members the rule decides: the nightly refresh adds and removes it."),
            "segment": _("Members in this segment get the tag; members who leave it lose it."),
        }


@admin.register(AutoTag)
class AutoTagAdmin(admin.ModelAdmin):
    form = AutoTagForm
    list_display = ("tag", "segment", "is_active", "member_count", "refreshed_at")
    list_select_related = ("tag", "segment")
    readonly_fields = ("refreshed_at", "member_count")
    actions = ("refresh_now",)

    @admin.action(description=_("Refresh the selected tags now"), permissions=["change"])
    def refresh_now(self, request, queryset):
        results = auto_tags_refresh(auto_tags=queryset)
        self.message_user(
            request,
            _("Refreshed: %(added)d tags added, %(removed)d removed.")
            % {
                "added": sum(r["added"] for r in results.values()),
                "removed": sum(r["removed"] for r in results.values()),
            },
            messages.SUCCESS,
        )

"""Admin for consumer operations: journeys (what fires, what it does) and their run log.

The run log (JourneyRun) is written by ``operations.journeys`` only: staff read it, never
edit it. Store-scoped staff (members.scoping) see the runs of their stores' members.
"""

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.admin import ReadOnlyAdminMixin
from engagement.models import Journey, JourneyRun
from loyalty.models import CouponKind
from members.admin_mixins import PhoneSearchMixin
from members.scoping import staff_stores

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


class JourneyForm(forms.ModelForm):
    class Meta:
        model = Journey
        fields = (
            "name", "description", "is_active", "trigger", "trigger_days", "audience", "action", "points",
            "coupon_title", "coupon_kind", "coupon_value", "coupon_valid_days", "tag", "message_title",
            "message_body", "is_marketing", "cap_count", "cap_days", "quiet_start", "quiet_end",
        )  # fmt: skip
        help_texts = {
            "trigger": _(
                "What starts the journey for a member. Events older than three days are not acted on, "
                "so a new journey does not reach back into history."
            ),
            "trigger_days": _(
                "No order for N days: N (required). Points about to expire: how many days ahead (required). "
                "First order: wait this many days and act only if no second order came; empty: at once."
            ),
            "audience": _("Only members in this segment; empty: every member."),
            "action": _("What the journey does for the member: one action per journey."),
            "points": _("Award points: how many points (required)."),
            "coupon_title": _("Issue a coupon: what the member sees on the coupon (required)."),
            "coupon_kind": _("Issue a coupon: what it gives (required)."),
            "coupon_value": _(
                "Percent off (10 = 10 percent) or yuan off (required for these kinds); 0 or empty for a gift or "
                "free shipping."
            ),
            "coupon_valid_days": _("Issue a coupon: days it stays valid, counting today (required)."),
            "tag": _("Add a tag: the tag the member gets (required)."),
            "message_title": _(
                "Send a notification: the title (required). For the other actions, fill it in to tell the member "
                "too. {name}, {points}, {coupon}, {code} and {date} are filled in."
            ),
            "message_body": _("The message; the same placeholders work."),
            "is_marketing": _(
                "Promotions are marketing and reach only members who consented on some channel (PIPL article 24). "
                "Earned benefits and service messages (points about to expire) are not."
            ),
            "cap_count": _("How many times one member may get this journey ..."),
            "cap_days": _("... within this many days."),
            "quiet_start": _("No actions between these times (local time, e.g. 21:00); they wait for a later run."),
            "quiet_end": _("End of the quiet hours (e.g. 09:00); may be earlier than the start (overnight)."),
        }

    def clean(self):
        data = super().clean()
        action, trigger = data.get("action"), data.get("trigger")
        for name in ACTION_FIELDS.get(action, ()):
            if data.get(name) in (None, ""):
                self.add_error(
                    name,
                    _("Required for the action “%(action)s”.") % {"action": Journey.Action(action).label},
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
        if trigger in DAYS_TRIGGERS and not data.get("trigger_days"):
            self.add_error(
                "trigger_days",
                _("Required for the trigger “%(trigger)s”.") % {"trigger": Journey.Trigger(trigger).label},
            )
        if data.get("message_body") and not data.get("message_title"):
            self.add_error("message_title", _("A message needs a title."))
        if (data.get("quiet_start") is None) != (data.get("quiet_end") is None):
            self.add_error("quiet_end", _("Give both ends of the quiet hours, or neither."))
        if data.get("cap_count") == 0:
            self.add_error("cap_count", _("At least 1."))
        if data.get("cap_days") == 0:
            self.add_error("cap_days", _("At least 1."))
        return data


@admin.register(Journey)
class JourneyAdmin(admin.ModelAdmin):
    form = JourneyForm
    list_display = ("name", "is_active", "trigger", "action", "is_marketing", "done_recently", "skipped_recently")
    list_filter = ("is_active", "trigger", "action", "is_marketing")
    search_fields = ("name",)
    actions = ("run_now",)
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("name", "description", "is_active")}),
        (_("When"), {"fields": ("trigger", "trigger_days", "audience")}),
        (
            _("What"),
            {
                "fields": (
                    "action",
                    "points",
                    ("coupon_title", "coupon_kind"),
                    ("coupon_value", "coupon_valid_days"),
                    "tag",
                )
            },
        ),
        (_("Message to the member"), {"fields": ("message_title", "message_body")}),
        (
            _("Consent, caps and quiet hours"),
            {"fields": ("is_marketing", ("cap_count", "cap_days"), ("quiet_start", "quiet_end"), "created_at")},
        ),
    )

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


@admin.register(JourneyRun)
class JourneyRunAdmin(ReadOnlyAdminMixin, PhoneSearchMixin, admin.ModelAdmin):
    """The run log: who got what from which journey, and why (or why not)."""

    list_display = ("created_at", "journey", "member", "status", "event_key", "reason")
    list_filter = ("journey", "status", "created_at")
    list_select_related = ("journey", "member")
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

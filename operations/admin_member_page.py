"""The member change page: what staff read about one member.

Read-only sections (membership, points and growth, what is owed from refunds, lifecycle and
RFM, orders, consent), the history inlines, and links to the full history lists. Mixed into
``operations.admin_members.MemberAdmin``; the page links to the adjustment form of
``operations.admin_member_actions``. docs/member-admin.md.
"""

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.utils import unquote
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.admin import ReadOnlyInline
from loyalty.models import Currency, LedgerEntry, Lot, MemberTier, Order, TierChange
from loyalty.selectors import member_balances, member_debts
from loyalty.tiers import tier_progress
from members.models import ConsentRecord, Member, StaffAction, StageChange

from .member_timeline import member_coupons, member_timeline

# --- inlines on the member page ---------------------------------------------------------


# Each history inline shows this many rows; the full lists are a link away. Rendering a
# read-only row costs the page far more than reading it, so the page stays short and fast.
MEMBER_PAGE_ROWS = 10


class NewestFirstInline(ReadOnlyInline):
    """A history inline: newest rows first, with the related rows its columns show."""

    limit = MEMBER_PAGE_ROWS
    tab = True  # unfold: each history list is a tab under the form, not one long page
    hide_title = True  # unfold: no row title (the model's English __str__) above each row
    newest_first: tuple[str, ...] = ("-created_at", "-id")
    related: tuple[str, ...] = ()

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.related:
            queryset = queryset.select_related(*self.related)
        return queryset.order_by(*self.newest_first)


class LedgerEntryInline(NewestFirstInline):
    model = LedgerEntry
    fk_name = "member"
    verbose_name_plural = gettext_lazy("latest ledger entries")
    # Seven columns, so none squeezes to a character a line; the whole row is a click away.
    fields = ("created_at", "currency", "kind", "amount", "pending_amount", "balance_after", "reason")
    readonly_fields = fields


class LotInline(ReadOnlyInline):
    model = Lot
    limit = MEMBER_PAGE_ROWS
    tab = True
    hide_title = True
    show_change_link = False
    fk_name = "member"
    verbose_name_plural = gettext_lazy("open lots")
    fields = ("earned_at", "currency", "amount", "remaining", "pending", "available_at", "expires_at")
    readonly_fields = fields

    @admin.display(description=gettext_lazy("earned at"))
    def earned_at(self, lot):
        return date_format(timezone.localtime(lot.entry.created_at), "SHORT_DATETIME_FORMAT")

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
    limit = MEMBER_PAGE_ROWS
    tab = True
    hide_title = True
    verbose_name_plural = gettext_lazy("consent history")
    fields = ("recorded_at", "channel", "granted", "source")
    readonly_fields = fields
    show_change_link = False


class MemberHistoryInline(NewestFirstInline):
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
    related = ("from_tier", "to_tier", "operator")


class StageChangeInline(MemberHistoryInline):
    model = StageChange
    verbose_name_plural = gettext_lazy("lifecycle stage changes")
    fields = ("changed_at", "from_stage", "to_stage")
    readonly_fields = fields
    newest_first = ("-changed_at", "-id")


class StaffActionInline(MemberHistoryInline):
    model = StaffAction
    verbose_name_plural = gettext_lazy("staff actions")
    fields = ("created_at", "actor_name", "action", "reason", "detail")
    readonly_fields = fields


# --- the page ---------------------------------------------------------------------------


class MemberPageMixin:
    """The change page of ``MemberAdmin``: its sections, inlines and history links.

    ``change_view`` asks ``has_adjust_permission`` (``MemberActionsMixin``) whether to offer
    the adjustment form.
    """

    # Ledger entries, tier and stage changes and staff actions are in the one timeline
    # (operations.member_timeline), drawn by our template: rendering them again as read-only
    # inline rows cost the page most of its time (2 s of 2.5 on the demo under load).
    inlines = (LotInline, ConsentRecordInline)
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
        "spend",
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
                "fields": ("status", "current_tier", "tag_list", "points_owed", "joined_at", "user", "wechat_openid"),
                "description": gettext_lazy(
                    "Status, tier pin and tags change through the buttons above the timeline (each asks why); "
                    "each change is kept in the staff actions."
                ),
            },
        ),
        (
            gettext_lazy("Lifecycle and RFM"),
            {"fields": (("stage", "stage_since"), ("rfm_segment", "rfm_scores"), "profile_refreshed_at")},
        ),
        (
            gettext_lazy("Orders"),
            {"fields": (("order_count", "spend"), ("first_order_at", "last_order_at"))},
        ),
        (
            gettext_lazy("Marketing consent"),
            {
                "fields": ("sms_consent_at", "email_consent_at", "wechat_consent_at"),
                "description": gettext_lazy("Changed only by the member or through the consent service, with history."),
            },
        ),
    )

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

    @admin.display(description=gettext_lazy("spend"))
    def spend(self, member):
        return f"¥{member.spend_total:,.2f}"

    @admin.display(description=gettext_lazy("tags"))
    def tag_list(self, member):
        return ", ".join(member.tags.order_by("name").values_list("name", flat=True)) or "-"

    @admin.display(description=gettext_lazy("RFM scores (R, F, M)"))
    def rfm_scores(self, member):
        if member.rfm_recency is None:
            return "-"
        return f"{member.rfm_recency} / {member.rfm_frequency} / {member.rfm_monetary}"

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

    # --- the member page: links to the full history and to the adjustment form ---

    def member_card(self, member: Member) -> dict:
        """The header card of the member page: who, tier and progress, points, stage, segment,
        tags, consent and status. A fixed handful of queries whatever the history."""
        balances = member_balances(member)
        progress = tier_progress(member)
        start = progress.tier.qualify_threshold if progress.tier else 0
        span = (progress.next_tier.qualify_threshold - start) if progress.next_tier else 0
        percent = 100 if span <= 0 else max(0, min(100, int((progress.growth - start) * 100 / span)))
        consent = [
            (label, moment is not None)
            for label, moment in (
                (_("SMS"), member.sms_consent_at),
                (_("Email"), member.email_consent_at),
                (_("WeChat"), member.wechat_consent_at),
            )
        ]
        phone = member.phone or ""
        return {
            "member": member,
            "masked_phone": f"{phone[:-8]}****{phone[-4:]}" if len(phone) > 8 else phone,
            "points": balances[Currency.POINTS],
            "growth": balances[Currency.GROWTH],
            "progress": progress,
            "progress_percent": percent,
            "tags": list(member.tags.order_by("name").values_list("name", flat=True)),
            "consent": consent,
        }

    def change_view(self, request, object_id, form_url="", extra_context=None):
        member = self.get_object(request, unquote(object_id))
        try:
            page = int(request.GET.get("timeline", "1"))
        except ValueError:
            page = 1
        extra_context = {
            **(extra_context or {}),
            "member_card": self.member_card(member) if member is not None else None,
            "timeline": member_timeline(member, page=page) if member is not None else None,
            "coupons": member_coupons(member) if member is not None else [],
            "member_buttons": self.member_buttons(request, member) if member is not None else [],
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

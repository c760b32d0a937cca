"""The member 360 page: what staff read about one member, on one compact page.

``/admin/members/member/<id>/change/`` shows a header card (who, tier and progress, points,
stage, segment, tags, consent, status), the actions as buttons, one timeline of everything
that happened (``operations.member_timeline``), the open lots with their expiry, the
coupons, and the profile as a read-only card. The stock change form, trimmed to the
profile, is at ``?edit=1`` (and takes every POST). No inlines: the page reads a fixed
handful of rows per section, so it costs the same queries whatever the history.

Mixed into ``operations.admin_members.MemberAdmin``; the buttons lead to the forms of
``operations.admin_member_actions``. docs/member-admin.md.
"""

from decimal import Decimal
from urllib.parse import urlencode

from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from loyalty.models import Currency, LedgerEntry, Lot, Order, TierChange
from loyalty.selectors import Balance, member_balances
from loyalty.tiers import TierProgress, tier_progress
from members.models import ConsentRecord, Member, StaffAction
from rewards.models import Coupon

from .member_timeline import KINDS, member_coupons, member_open_lots, member_timeline

# Rows each side section shows (lots, coupons, consent history); the full lists are a link away.
MEMBER_PAGE_ROWS = 10
CONSENT_ROWS = 5
# ``?edit=1``: the stock change form (the profile fields) instead of the 360 page.
EDIT_PARAM = "edit"
# The member-merge admin (another module); its button shows only when the URL exists.
MERGE_URL_NAME = "admin:members_membermerge_add"


def mask_phone(phone: str) -> str:
    """``+8613800138000`` → ``+86138****8000``: enough to recognise, not to call."""
    return f"{phone[:-8]}****{phone[-4:]}" if len(phone) > 8 else phone


def _yuan(value: Decimal | None) -> str:
    return f"¥{value or 0:,.2f}"


def _day(moment) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d}" if moment else "–"


class MemberPageMixin:
    """The change page of ``MemberAdmin``: the 360 view, and the profile form at ``?edit=1``.

    ``member_buttons`` and ``has_adjust_permission`` come from ``MemberActionsMixin``.
    """

    # The history is on the 360 page (timeline, lots, coupons), read a page at a time; the
    # read-only inlines it replaces made the page ~10,000 px tall and most of its time.
    inlines = ()
    readonly_fields = ("member_number", "joined_at")
    # The edit form is the profile only: status, tier pin and tags change through the
    # buttons (each asks why and leaves a staff action); the figures are on the 360 page.
    profile_fields = ("phone", "member_number", "name", "gender", "birthday", "email", "home_store", "joined_at")
    fieldsets = ((None, {"fields": profile_fields}),)

    # --- the header card ---

    def member_card(self, member: Member, *, balances: dict[str, Balance] | None = None) -> dict:
        """The header card: who, tier and progress, points, stage, segment, tags, consent and
        status. A fixed handful of queries whatever the history (accounts, open-lot totals,
        tiers, tier row, growth, tags)."""
        balances = balances if balances is not None else member_balances(member)
        progress = tier_progress(member)
        return {
            "member": member,
            "masked_phone": mask_phone(member.phone or ""),
            "points": balances[Currency.POINTS],
            "growth": balances[Currency.GROWTH],
            "progress": progress,
            "progress_percent": self._progress_percent(progress),
            "tags": list(member.tags.order_by("name").values_list("name", flat=True)),
            "consent": [
                (label, moment is not None)
                for label, moment in (
                    (_("SMS"), member.sms_consent_at),
                    (_("Email"), member.email_consent_at),
                    (_("WeChat"), member.wechat_consent_at),
                )
            ],
        }

    @staticmethod
    def _progress_percent(progress: TierProgress) -> int:
        """How far from the current tier's threshold to the next one's (100 at the top)."""
        start = progress.tier.qualify_threshold if progress.tier else 0
        span = (progress.next_tier.qualify_threshold - start) if progress.next_tier else 0
        if span <= 0:
            return 100
        return max(0, min(100, int((progress.growth - start) * 100 / span)))

    # --- the profile card (read-only; the form is at ?edit=1) ---

    @staticmethod
    def profile_rows(member: Member, balances: dict[str, Balance]) -> list[tuple[str, str]]:
        """(label, value) of the profile card, in the staff user's language; no query."""

        def label(field: str) -> str:
            return capfirst(Member._meta.get_field(field).verbose_name)

        rows = [
            (label("phone"), mask_phone(member.phone or "")),
            (label("name"), member.name or "–"),
            (label("gender"), member.get_gender_display()),
            (label("birthday"), f"{member.birthday:%Y-%m-%d}" if member.birthday else "–"),
            (label("email"), member.email or "–"),
            (label("home_store"), member.home_store.name if member.home_store else "–"),
            (label("member_number"), member.member_number),
            (label("joined_at"), _day(member.joined_at)),
            (_("Mini-program"), _("bound") if member.wechat_openid else _("not bound")),
            (label("order_count"), f"{member.order_count:,}"),
            (capfirst(_("spend")), _yuan(member.spend_total)),
            (label("first_order_at"), _day(member.first_order_at)),
            (label("last_order_at"), _day(member.last_order_at)),
            (label("stage_since"), _day(member.stage_since)),
            (
                capfirst(_("RFM scores (R, F, M)")),
                "–"
                if member.rfm_recency is None
                else f"{member.rfm_recency} / {member.rfm_frequency} / {member.rfm_monetary}",
            ),
            (label("profile_refreshed_at"), _day(member.profile_refreshed_at)),
        ]
        for currency, balance in balances.items():
            for debt in balance.owed_from:
                rows.append(
                    (
                        capfirst(_("owed from refunds")),
                        _("%(currency)s: %(amount)s, from refund %(refund)s of order %(order)s")
                        % {
                            "currency": Currency(currency).label,
                            "amount": f"{debt.amount:,}",
                            "refund": debt.refund_number,
                            "order": debt.order_number,
                        },
                    )
                )
        return rows

    # --- the page ---

    def change_view(self, request, object_id, form_url="", extra_context=None):
        editing = request.method != "GET" or EDIT_PARAM in request.GET or IS_POPUP_VAR in request.GET
        if editing:
            extra_context = {**(extra_context or {}), "member_page_url": request.path}
            return super().change_view(request, object_id, form_url, extra_context)
        return self.member_page_view(request, object_id)

    def response_change(self, request, obj):
        # Saved from the profile form: back to the 360 page (or the form again with
        # "save and continue"), not to the member list.
        response = super().response_change(request, obj)
        if IS_POPUP_VAR in request.POST or "_addanother" in request.POST or "_saveasnew" in request.POST:
            return response
        opts, site = self.opts, self.admin_site.name
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk], current_app=site)
        return HttpResponseRedirect(f"{url}?{EDIT_PARAM}=1" if "_continue" in request.POST else url)

    def _page_member(self, request, object_id: str) -> Member | None:
        """The member, scoped to the staff user's stores, with what the page shows beside it."""
        queryset = self.get_queryset(request).select_related("home_store")
        try:
            return queryset.get(pk=self.opts.pk.to_python(unquote(object_id)))
        except (Member.DoesNotExist, ValidationError, ValueError):
            return None

    def member_page_view(self, request, object_id):
        """The 360 page. A fixed number of queries: the member, the card (accounts, open-lot
        totals, tiers, tier row, growth, tags), one per timeline source, lots, coupons and
        consent history, plus the admin's own (session, user, permissions)."""
        member = self._page_member(request, object_id)
        if member is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, member):
            raise PermissionDenied
        try:
            page = int(request.GET.get("timeline", "1"))
        except ValueError:
            page = 1
        kind = request.GET.get("kind", "")
        kinds = {code for code, _label, _source in KINDS}
        kind = kind if kind in kinds else ""
        timeline = member_timeline(member, page=page, kinds=(kind,) if kind else None)
        balances = member_balances(member)
        lots = member_open_lots(member, limit=MEMBER_PAGE_ROWS)
        coupons = member_coupons(member, limit=MEMBER_PAGE_ROWS + 1)
        links = self._history_links(request, member.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": str(member),
            "opts": self.opts,
            "original": member,
            "change": True,
            "has_view_permission": True,
            "has_change_permission": self.has_change_permission(request, member),
            "member_card": self.member_card(member, balances=balances),
            "profile_rows": self.profile_rows(member, balances),
            "consents": list(member.consent_records.order_by("-recorded_at", "-id")[:CONSENT_ROWS]),
            "timeline": timeline,
            "timeline_rows": self._timeline_rows(request, timeline.events),
            "timeline_kind": kind,
            "timeline_kinds": [(code, label) for code, label, _source in KINDS],
            "lots": lots[:MEMBER_PAGE_ROWS],
            "more_lots": len(lots) > MEMBER_PAGE_ROWS,
            "coupons": coupons[:MEMBER_PAGE_ROWS],
            "more_coupons": len(coupons) > MEMBER_PAGE_ROWS,
            "member_buttons": self.member_buttons(request, member),
            "can_adjust": self.has_adjust_permission(request),
            "edit_url": f"?{EDIT_PARAM}=1",
            "merge_url": self._merge_url(request, member),
            "history_links": links,
            "history_link": {model: url for model, _label, url in links},
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/member/member_360.html", context)

    def _timeline_rows(self, request, events) -> list[tuple]:
        """(event, link to the row's admin page or "") for the rows the staff user may open."""
        targets = {"order": Order, "ledger": LedgerEntry, "coupon": Coupon}
        names = {}
        for kind, model in targets.items():
            try:
                model_admin = self.admin_site.get_model_admin(model)
            except NotRegistered:
                continue
            if model_admin.has_view_or_change_permission(request):
                names[kind] = f"admin:{model._meta.app_label}_{model._meta.model_name}_change"
        rows = []
        for event in events:
            name = names.get(event.kind)
            url = reverse(name, args=[event.tiebreak], current_app=self.admin_site.name) if name else ""
            rows.append((event, url))
        return rows

    def _merge_url(self, request, member: Member) -> str:
        """The member-merge form keeping this member, when that admin exists and the user may use it."""
        try:
            url = reverse(MERGE_URL_NAME, current_app=self.admin_site.name)
        except NoReverseMatch:
            return ""
        for model, model_admin in self.admin_site._registry.items():
            if model._meta.label_lower == "members.membermerge" and not model_admin.has_add_permission(request):
                return ""
        return f"{url}?{urlencode({'keep': member.pk})}"

    def _history_links(self, request, member_id) -> list[tuple[str, str, str]]:
        """(model name, label, url) of the full history lists the staff user may open."""
        links = []
        for model, label in (
            (LedgerEntry, _("All ledger entries")),
            (Lot, _("All lots")),
            (Order, _("All orders")),
            (Coupon, _("All coupons")),
            (TierChange, _("All tier changes")),
            (StaffAction, _("All staff actions")),
            (ConsentRecord, _("All consent records")),
        ):
            try:
                model_admin = self.admin_site.get_model_admin(model)
            except NotRegistered:
                continue
            if model_admin.has_view_or_change_permission(request):
                opts = model._meta
                url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=self.admin_site.name)
                links.append((opts.model_name, label, f"{url}?{urlencode({'member__id__exact': member_id})}"))
        return links

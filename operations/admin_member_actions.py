"""The audited staff actions on members: adjust points, pin a tier, add or remove tags,
freeze, unfreeze, close.

Each is an action on the member list (adjusting also has a page per member), shows a form
that asks why, and calls one service that makes the change and writes its ``StaffAction``
audit row in one transaction. Mixed into ``operations.admin_members.MemberAdmin``.
docs/member-admin.md.
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from core.errors import LoyaltyError
from loyalty.models import Currency
from members.models import Member
from members.scoping import adjust_limit
from members.services import (
    member_close,
    member_freeze,
    member_tags_add,
    member_tags_remove,
    member_unfreeze,
)

from .actions import member_points_adjust, member_tier_pin
from .forms import AdjustPointsForm, StaffActionForm, TagsAddForm, TagsRemoveForm, TierPinForm

# One request adjusts the members one by one, each in its own transaction; more than this
# belongs in an import or a job, not in a page that must answer in seconds.
MAX_MEMBERS_PER_ADJUSTMENT = 200


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


class MemberActionsMixin:
    """The staff actions of ``MemberAdmin`` and the adjustment page's URL.

    The queryset each action gets is the admin's own (scoped to the staff user's stores), and
    the services check the scope again.
    """

    actions = ("adjust_points", "pin_tier", "add_tags", "remove_tags", "freeze", "unfreeze", "close")

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
            path(
                "<path:object_id>/act/<str:action>/",
                self.admin_site.admin_view(self.member_action_view),
                name=f"{opts.app_label}_{opts.model_name}_act",
            ),
            *super().get_urls(),
        ]

    def _selected(self, request, queryset, too_many: str) -> list[Member] | None:
        """The selected members in id order, or None (with ``too_many`` said) past the cap."""
        members = list(queryset.order_by("pk")[: MAX_MEMBERS_PER_ADJUSTMENT + 1])
        if len(members) > MAX_MEMBERS_PER_ADJUSTMENT:
            self.message_user(request, too_many % {"max": MAX_MEMBERS_PER_ADJUSTMENT}, messages.ERROR)
            return None
        return members

    @admin.action(description=gettext_lazy("Adjust points"), permissions=["adjust"])
    def adjust_points(self, request, queryset):
        members = self._selected(request, queryset, _("Adjust at most %(max)d members at a time."))
        if members is None:
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

    # --- the same actions as buttons on one member's page ---

    # Which statuses each status action applies to (the services refuse the others).
    BUTTON_STATUSES = {
        "freeze": {Member.Status.ACTIVE},
        "unfreeze": {Member.Status.FROZEN, Member.Status.CLOSED},
        "close": {Member.Status.ACTIVE, Member.Status.FROZEN},
    }
    BUTTON_ICONS = {
        "pin_tier": "push_pin",
        "add_tags": "sell",
        "remove_tags": "label_off",
        "freeze": "ac_unit",
        "unfreeze": "lock_open",
        "close": "block",
    }

    def member_buttons(self, request, member: Member) -> list[tuple[str, str, str]]:
        """(label, url, icon) of the actions this user may take on this member now."""
        opts = self.opts
        buttons = []
        if self.has_adjust_permission(request) and self.has_view_or_change_permission(request, member):
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_adjust", args=[member.pk])
            buttons.append((str(_("Adjust points")), url, "exposure"))
        actions = self.get_actions(request) if member.erased_at is None else {}
        for name, icon in self.BUTTON_ICONS.items():
            if name not in actions or member.status not in self.BUTTON_STATUSES.get(name, {member.status}):
                continue
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_act", args=[member.pk, name])
            buttons.append((str(actions[name][2]), url, icon))
        if request.user.has_perm("members.merge_members") and member.is_active and member.erased_at is None:
            url = reverse("admin:members_membermerge_add", current_app=self.admin_site.name)
            buttons.append((str(_("Merge another record into this one")), f"{url}?keep={member.pk}", "merge"))
        return buttons

    def member_action_view(self, request, object_id, action):
        """One member's action page: the list action's form for this member alone; done, back
        to the member's page."""
        member = self.get_object(request, unquote(object_id))
        if member is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        actions = self.get_actions(request)
        if action not in self.BUTTON_ICONS or action not in actions:
            raise PermissionDenied
        queryset = self.get_queryset(request).filter(pk=member.pk)
        response = actions[action][0](self, request, queryset)
        if response is None:
            opts = self.opts
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[member.pk]))
        return response

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
            "preview_words": {
                "points": _("After this adjustment: {n} points available."),
                "growth": _("After this adjustment: {n} growth."),
            },
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
        return self._tags_action(request, queryset, adding=True)

    @admin.action(description=gettext_lazy("Remove tags"), permissions=["change"])
    def remove_tags(self, request, queryset):
        return self._tags_action(request, queryset, adding=False)

    def _tags_action(self, request, queryset, *, adding: bool):
        """Add or remove tags: the same form page and messages, one service each way."""
        if adding:
            name, service, form_class, title = "add_tags", member_tags_add, TagsAddForm, _("Add tags")
            intro = _("Choose existing tags or type new names; members who already have them are left alone.")
        else:
            name, service, form_class, title = "remove_tags", member_tags_remove, TagsRemoveForm, _("Remove tags")
            intro = _("Members who do not have the tags are left alone.")

        def apply(members, form):
            tags = form.tag_values() if adding else form.cleaned_data["tags"]
            changed = service(members=members, tags=tags, actor=request.user, reason=form.cleaned_data["reason"])
            self._tags_done(request, members, changed, adding=adding)

        return self._member_action(
            request, queryset, name=name, form_class=form_class, title=title, intro=intro, apply=apply
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
        members = self._selected(request, queryset, _("Act on at most %(max)d members at a time."))
        if members is None:
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

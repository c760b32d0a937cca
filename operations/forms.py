"""Forms of the staff admin: member sign-up and edits, and the points adjustment."""

import datetime as dt

from django import forms
from django.contrib.admin.widgets import AdminDateWidget, FilteredSelectMultiple
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from core.errors import LoyaltyError
from loyalty.models import Currency, LedgerEntry, Tier
from members.models import Member, Tag
from members.phone import normalize_phone

# The service refuses more than this in one adjustment; saying so in the form keeps the
# operator on the page with a field error instead of a message after the fact.
MAX_ADJUSTMENT = 10**12


class MemberPhoneMixin:
    """Store the phone in its one E.164 spelling, whatever the staff member typed."""

    def clean_phone(self) -> str:
        try:
            return normalize_phone(self.cleaned_data["phone"])
        except LoyaltyError as error:
            raise forms.ValidationError(error.message, code=error.code) from None


class MemberAddForm(MemberPhoneMixin, forms.ModelForm):
    """Sign-up at the admin: the card number and consent history are the service's business."""

    class Meta:
        model = Member
        fields = ["phone", "name", "gender", "birthday", "email", "home_store"]


class MemberChangeForm(MemberPhoneMixin, forms.ModelForm):
    # No status here: freezing, unfreezing and closing are actions with a reason and an
    # audit row (members.services.member_freeze and friends), not a field edit.
    class Meta:
        model = Member
        fields = ["phone", "name", "gender", "birthday", "email", "home_store"]


def _label(field_name: str) -> str:
    return capfirst(LedgerEntry._meta.get_field(field_name).verbose_name)


class AdjustPointsForm(forms.Form):
    """A staff correction of points or growth for one or more members.

    ``token`` is generated when the form is first shown and goes into each member's
    idempotency key, so submitting the same form twice adjusts once.
    """

    currency = forms.ChoiceField(label=_label("currency"), choices=Currency.choices, initial=Currency.POINTS)
    amount = forms.IntegerField(
        label=_label("amount"),
        min_value=-MAX_ADJUSTMENT,
        max_value=MAX_ADJUSTMENT,
        help_text=_("A whole number: positive to add, negative (e.g. -50) to remove."),
    )
    reason = forms.CharField(
        label=_label("reason"),
        max_length=200,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text=_("Shown to the member in their history and kept with the entry."),
    )
    token = forms.UUIDField(widget=forms.HiddenInput)

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError(_("Enter a number other than zero."), code="zero")
        return amount


# --- staff actions on selected members: each asks why (members.services, docs/member-admin.md) ---


class StaffActionForm(forms.Form):
    """The reason every staff action asks for; it goes into the action's audit row."""

    reason = forms.CharField(
        label=_("reason"),
        max_length=200,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text=_("Kept in the staff action log with your name and the time."),
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(_("Say why: a reason is required."), code="required")
        return reason


class TagsRemoveForm(StaffActionForm):
    tags = forms.ModelMultipleChoiceField(
        label=_("tags"),
        queryset=Tag.objects.all(),
        widget=FilteredSelectMultiple(_("tags"), is_stacked=False),
    )

    field_order = ["tags", "reason"]


class TagsAddForm(StaffActionForm):
    tags = forms.ModelMultipleChoiceField(
        label=_("tags"),
        queryset=Tag.objects.all(),
        required=False,
        widget=FilteredSelectMultiple(_("tags"), is_stacked=False),
    )
    new_tags = forms.CharField(
        label=_("new tags"),
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text=_("Names of tags that do not exist yet, separated by commas."),
    )

    field_order = ["tags", "new_tags", "reason"]

    def clean_new_tags(self) -> list[str]:
        raw = self.cleaned_data["new_tags"].replace("，", ",")
        names = [" ".join(part.split()) for part in raw.split(",")]
        names = [name for name in names if name]
        max_length = Tag._meta.get_field("name").max_length
        too_long = [name for name in names if len(name) > max_length]
        if too_long:
            raise forms.ValidationError(
                _("A tag name has at most %(max)d characters: “%(name)s”.") % {"max": max_length, "name": too_long[0]},
                code="max_length",
            )
        return names

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not cleaned.get("tags") and not cleaned.get("new_tags"):
            raise forms.ValidationError(_("Choose or name at least one tag."), code="required")
        return cleaned

    def tag_values(self) -> list:
        """Tag rows and new names, as ``member_tags_add`` takes them."""
        return [*self.cleaned_data["tags"], *self.cleaned_data["new_tags"]]


class TierPinForm(StaffActionForm):
    tier = forms.ModelChoiceField(label=_("tier"), queryset=Tier.objects.order_by("rank"))
    until = forms.DateField(
        label=_("pinned until"),
        widget=AdminDateWidget,
        help_text=_("The member keeps the tier to the end of this day; no upgrade or downgrade before."),
    )

    field_order = ["tier", "until", "reason"]

    def clean_until(self) -> dt.datetime:
        day = self.cleaned_data["until"]
        if day < timezone.localdate():
            raise forms.ValidationError(_("The pin must end in the future."), code="pin_in_past")
        return timezone.make_aware(dt.datetime.combine(day, dt.time(23, 59, 59)))

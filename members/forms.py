"""Forms of the staff admin: member sign-up and edits, and the points adjustment."""

from django import forms
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from loyalty.errors import LoyaltyError
from loyalty.models import Currency, LedgerEntry

from .models import Member
from .phone import normalize_phone

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
    class Meta:
        model = Member
        fields = ["phone", "name", "gender", "birthday", "email", "home_store", "status"]


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

"""Forms of the member center. They check input; the services decide."""

from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.errors import LoyaltyError
from loyalty.models import Currency
from members.models import ConsentRecord, Member
from members.phone import normalize_phone
from rewards.models import RewardCategory

from .history import kind_choices


class PhoneField(forms.CharField):
    """A phone number in any spelling people type, cleaned to E.164."""

    def __init__(self, **kwargs):
        kwargs.setdefault("label", _("Mobile number"))
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)
        self.widget.attrs.update(
            {"autocomplete": "tel", "inputmode": "tel", "placeholder": _("e.g. 138 0013 8000"), "type": "tel"}
        )

    def clean(self, value):
        value = super().clean(value)
        try:
            return normalize_phone(value)
        except LoyaltyError as error:
            raise forms.ValidationError(error.message, code=error.code) from None


class PhoneForm(forms.Form):
    phone = PhoneField()
    # A new member may join with a friend's code; a code that cannot be used never stops
    # the sign-in (engagement.referrals.referral_on_join says why afterwards).
    referral_code = forms.CharField(
        label=_("Friend's referral code (optional)"),
        required=False,
        max_length=20,
        help_text=_("New here? Enter a friend's code and you both get points after your first order."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}),
    )

    def clean_referral_code(self) -> str:
        from engagement.referrals import normalize_referral_code

        return normalize_referral_code(self.cleaned_data.get("referral_code"))


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Verification code"),
        min_length=4,
        max_length=8,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9]*", "autofocus": True}
        ),
    )

    def clean_code(self) -> str:
        code = "".join(self.cleaned_data["code"].split())
        if not code.isdigit():
            raise forms.ValidationError(_("The code is the digits from the text message."), code="invalid")
        return code


class PasswordSignInForm(forms.Form):
    phone = PhoneField()
    password = forms.CharField(
        label=_("Password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class HistoryFilterForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), required=False, choices=[("", _("All kinds")), *kind_choices()])
    currency = forms.ChoiceField(
        label=_("Currency"),
        required=False,
        choices=[("", _("Points and growth")), (Currency.POINTS, _("Points")), (Currency.GROWTH, _("Growth"))],
    )


class RewardsFilterForm(forms.Form):
    """The mall's shelf, order and "I can afford" filter (GET; a bad value is ignored)."""

    SORTS = {"": None, "cost": "points_cost", "-cost": "-points_cost"}

    PARTNER = "partner"  # the partners' vouchers, a shelf of their own
    category = forms.ChoiceField(
        label=_("Category"),
        required=False,
        choices=[("", _("All")), *RewardCategory.choices, (PARTNER, _("Partner rewards"))],
    )
    sort = forms.ChoiceField(
        label=_("Sort by"),
        required=False,
        choices=[("", _("Recommended")), ("cost", _("Points: low to high")), ("-cost", _("Points: high to low"))],
    )
    afford = forms.BooleanField(label=_("I can afford"), required=False)


class RedeemForm(forms.Form):
    # Generated into the confirmation form; a double submit carries the same key and
    # the service redeems once.
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)


CONSENT_CHANNELS = [
    (ConsentRecord.Channel.SMS, "sms_consent_at", _("Offers by text message")),
    (ConsentRecord.Channel.EMAIL, "email_consent_at", _("Offers by email")),
    (ConsentRecord.Channel.WECHAT, "wechat_consent_at", _("Offers on WeChat")),
]


class ProfileForm(forms.Form):
    name = forms.CharField(label=_("Your name"), max_length=100, required=False)
    birthday = forms.DateField(
        label=_("Birthday"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text=_("You can set it once; birthday gifts arrive in your birthday month."),
    )
    email = forms.EmailField(label=_("Email"), required=False)
    consent_sms = forms.BooleanField(label=CONSENT_CHANNELS[0][2], required=False)
    consent_email = forms.BooleanField(label=CONSENT_CHANNELS[1][2], required=False)
    consent_wechat = forms.BooleanField(label=CONSENT_CHANNELS[2][2], required=False)

    def __init__(self, *args, member: Member, **kwargs):
        initial = {
            "name": member.name,
            "birthday": member.birthday,
            "email": member.email,
            **{f"consent_{channel}": bool(getattr(member, field)) for channel, field, _label in CONSENT_CHANNELS},
        }
        super().__init__(*args, initial=initial, **kwargs)
        self.member = member
        if member.birthday is not None:
            field = self.fields["birthday"]
            field.disabled = True
            field.help_text = _("Your birthday is set. To correct it, ask our staff in a store.")

    def changed_profile_fields(self) -> dict:
        """The profile fields that differ from the member's, for member_update_profile."""
        fields = {}
        for name in ("name", "email", "birthday"):
            value = self.cleaned_data.get(name)
            if self.fields[name].disabled:
                continue
            if value != getattr(self.member, name) and not (value in (None, "") and not getattr(self.member, name)):
                fields[name] = value if value is not None else None
        return fields

    def changed_consents(self) -> list[tuple[str, bool]]:
        """(channel, granted) for each channel whose box changed."""
        return [
            (channel, self.cleaned_data[f"consent_{channel}"])
            for channel, field, _label in CONSENT_CHANNELS
            if self.cleaned_data[f"consent_{channel}"] != bool(getattr(self.member, field))
        ]


def erase_word() -> str:
    """The word a member types to confirm erasure, in their language."""
    return gettext("ERASE")


class EraseForm(forms.Form):
    confirm = forms.CharField(label=_("Type the word to confirm"), max_length=20)

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip()
        if value.casefold() != erase_word().casefold():
            raise forms.ValidationError(
                _("Type %(word)s exactly to confirm."), code="mismatch", params={"word": erase_word()}
            )
        return value

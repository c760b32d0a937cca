"""Store API keys in the admin: the key is shown once, when it is made; only its hash is kept."""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .models import ApiToken, StoreApiKey
from .services import store_key_create


class StoreApiKeyForm(forms.ModelForm):
    actions = forms.MultipleChoiceField(
        label=gettext_lazy("allowed actions"),
        choices=StoreApiKey.Action.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    class Meta:
        model = StoreApiKey
        fields = ["store", "name", "actions", "acting_user", "is_active"]


@admin.register(StoreApiKey)
class StoreApiKeyAdmin(admin.ModelAdmin):
    form = StoreApiKeyForm
    list_display = ["name", "store", "prefix", "actions", "is_active", "last_used_at", "created_at"]
    list_filter = ["is_active", "store"]
    search_fields = ["name", "prefix", "store__code"]
    readonly_fields = ["prefix", "last_used_at", "created_at"]
    raw_id_fields = ["acting_user"]

    def get_readonly_fields(self, request, obj=None):
        # A key's store is fixed once made: a key that moved stores would act where it was not meant to.
        return [*self.readonly_fields, "store"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = store_key_create(
            store=obj.store,
            name=obj.name,
            actions=form.cleaned_data["actions"],
            acting_user=obj.acting_user,
        )
        obj.pk = key.pk
        obj.refresh_from_db()
        messages.warning(
            request,
            _("The key is %(key)s. Copy it now: it is shown only this once and cannot be recovered.") % {"key": raw},
        )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["kind", "member", "user", "created_at", "expires_at", "revoked_at"]
    list_filter = ["kind"]
    raw_id_fields = ["member", "user"]
    readonly_fields = ["kind", "member", "user", "family", "created_at", "expires_at"]
    fields = ["kind", "member", "user", "family", "created_at", "expires_at", "revoked_at"]

    def has_add_permission(self, request):
        return False

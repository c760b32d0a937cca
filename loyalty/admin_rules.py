"""Admin for earning rules and campaigns, with a preview of what an order would earn.

Saving goes through ``loyalty.rules.rule_revise``: a rule that has earned points already is
never edited in place; the change closes it and starts a new version. The preview
(``preview/``) runs ``loyalty.rules.evaluate`` and writes nothing.
"""

import contextlib
from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from modeltranslation.admin import TranslationAdmin

from core.errors import LoyaltyError
from members.models import Member, Store
from members.phone import normalize_phone

from . import rules
from .models import Currency, EarnRule

MAX_PREVIEW_LINES = 200


class CommaListField(forms.CharField):
    """A list of words typed as ``a, b, c``; stored as a JSON list."""

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value):
        if isinstance(value, list | tuple):
            return [str(item).strip() for item in value if str(item).strip()]
        text = super().to_python(value) or ""
        return [item.strip() for item in text.replace("，", ",").split(",") if item.strip()]


WEEKDAYS = [
    ("1", _("Monday")),
    ("2", _("Tuesday")),
    ("3", _("Wednesday")),
    ("4", _("Thursday")),
    ("5", _("Friday")),
    ("6", _("Saturday")),
    ("7", _("Sunday")),
]


class WeekdaysField(forms.MultipleChoiceField):
    """The days a rule runs on as tick boxes; stored as ISO digits ("67" for weekends)."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs):
        super().__init__(choices=WEEKDAYS, **kwargs)

    def prepare_value(self, value):
        if isinstance(value, str):
            return list(value)
        return value

    def to_python(self, value):
        if isinstance(value, str):
            value = list(value)
        return super().to_python(value)

    def clean(self, value):
        return "".join(sorted(set(super().clean(value))))


class EarnRuleForm(forms.ModelForm):
    weekdays = WeekdaysField(
        label=_("weekdays"), required=False, help_text=_("Tick the days it runs on; none ticked: every day.")
    )
    include_categories = CommaListField(
        label=_("only these categories"),
        required=False,
        help_text=_(
            "Comma-separated product categories; empty: every category. Order lines of other categories do not count."
        ),
    )
    exclude_categories = CommaListField(
        label=_("not these categories"),
        required=False,
        help_text=_("Comma-separated categories whose order lines never count for this rule."),
    )
    include_skus = CommaListField(
        label=_("only these SKUs"),
        required=False,
        help_text=_("Comma-separated SKUs; with categories above, a line counts if it matches either."),
    )
    exclude_skus = CommaListField(
        label=_("not these SKUs"), required=False, help_text=_("Comma-separated SKUs that never count.")
    )

    class Meta:
        model = EarnRule
        fields = (
            "name",
            "kind",
            "applies_to",
            "value",
            "priority",
            "is_active",
            "valid_from",
            "valid_until",
            "weekdays",
            "birthday_month_only",
            "first_purchase_only",
            "stores",
            "include_categories",
            "exclude_categories",
            "include_skus",
            "exclude_skus",
            "cap_per_order",
            "cap_per_day",
        )
        help_texts = {
            "kind": _(
                "Base rate: points per yuan, the first matching base rule per order line (others earn the default "
                "rate). Multiplier: extra points on the base of matching lines (2 = double). Bonus: a fixed number "
                "of points once per order. Signup bonus: points once when a member joins."
            ),
            "applies_to": _("Which balance the rule earns: points, growth (tier qualification) or both."),
            "valid_from": _("Orders that happened from this moment on use the rule."),
            "valid_until": _("Orders that happened from this moment on no longer use it; empty: open-ended."),
            "birthday_month_only": _("Only orders in the member's birthday month."),
            "first_purchase_only": _("Only the member's first recorded order."),
            "cap_per_order": _("At most this many points from this rule per order; empty: no cap."),
            "cap_per_day": _("At most this many points from this rule per member per day (local time); empty: no cap."),
            "is_active": _(
                "Inactive rules never apply. To end a rule that has been used, set “valid until” instead: "
                "deactivating also stops it for orders recorded late."
            ),
        }

    def clean_weekdays(self):
        weekdays = self.cleaned_data.get("weekdays") or ""
        if any(char not in "1234567" for char in weekdays) or len(set(weekdays)) != len(weekdays):
            raise ValidationError(_("Use the digits 1 (Monday) to 7 (Sunday), each at most once, e.g. 67."))
        return "".join(sorted(weekdays))

    def clean(self):
        """Refuse, field by field, what the rules would read wrongly, in words an operator
        understands: a window that ends before it starts, a bonus in fractions of a point,
        a category or SKU both included and excluded."""
        data = super().clean()
        valid_from, valid_until = data.get("valid_from"), data.get("valid_until")
        if valid_from and valid_until and valid_until <= valid_from:
            self.add_error("valid_until", _("The end must come after the start (%(start)s).") % {"start": valid_from})
        kind, value = data.get("kind"), data.get("value")
        if value is not None and kind in (EarnRule.Kind.BONUS, EarnRule.Kind.SIGNUP) and value != value.to_integral():
            self.add_error("value", _("A bonus is a whole number of points, such as 200."))
        if value is not None and kind == EarnRule.Kind.MULTIPLIER and value <= 0:
            self.add_error("value", _("A multiplier must be more than 0, such as 2 for double points."))
        for include, exclude in (("include_categories", "exclude_categories"), ("include_skus", "exclude_skus")):
            both = {item.casefold() for item in data.get(include) or []} & {
                item.casefold() for item in data.get(exclude) or []
            }
            if both:
                self.add_error(
                    exclude,
                    _("Included and excluded at once: %(items)s. Keep each in one list.")
                    % {"items": ", ".join(sorted(both))},
                )
        return data


@admin.register(EarnRule)
class EarnRuleAdmin(TranslationAdmin):
    # The name per language (loyalty/translation.py), shown in the members' breakdowns.
    form = EarnRuleForm
    list_display = (
        "name",
        "kind",
        "applies_to",
        "value",
        "priority",
        "valid_from",
        "valid_until",
        "is_active",
    )
    list_filter = ("kind", "is_active", "applies_to")
    search_fields = ("name_zh_hans", "name_en")
    filter_horizontal = ("stores",)
    ordering = ("priority", "id")
    readonly_fields = ("created_at",)
    fieldsets = (
        (
            None,
            {
                "fields": ("name", "kind", "applies_to", "value", "priority", "is_active"),
                "description": _(
                    "A rule that has earned points already is never changed in place: saving a change closes it "
                    "now and starts a new version, so earlier orders keep the points they earned."
                ),
            },
        ),
        (
            _("When"),
            {"fields": ("valid_from", "valid_until", "weekdays", "birthday_month_only", "first_purchase_only")},
        ),
        (
            _("Where and what"),
            {"fields": ("stores", "include_categories", "exclude_categories", "include_skus", "exclude_skus")},
        ),
        (_("Caps"), {"fields": ("cap_per_order", "cap_per_day", "created_at")}),
    )

    def get_urls(self):
        opts = self.opts
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name=f"{opts.app_label}_{opts.model_name}_preview",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_preview")
        link = format_html('<a href="{}">{}</a>', url, _("Preview what an order would earn"))
        return super().changelist_view(request, {"subtitle": link, **(extra_context or {})})

    # --- saving: never rewrite a used rule ------------------------------------------------

    def save_model(self, request, obj, form, change):
        if not change:
            obj.save()
            return
        if not form.has_changed():
            # The form round-trips times without microseconds: not a change worth a new version.
            request._earn_rule_skip_m2m = True
            return
        original_pk = obj.pk
        saved = rules.rule_revise(rule=obj, stores=form.cleaned_data.get("stores"), now=timezone.now())
        if saved is not obj:
            # The edit only ended a used rule (or changed nothing): keep the stores as they were.
            request._earn_rule_skip_m2m = True
        if obj.pk != original_pk:
            messages.info(
                request,
                _("This rule had earned points already: it now ends, and your changes start as a new rule."),
            )
        elif saved is not obj and form.has_changed():
            messages.info(request, _("This rule had earned points already: it has been closed, not changed."))

    def save_related(self, request, form, formsets, change):
        if getattr(request, "_earn_rule_skip_m2m", False):
            return
        super().save_related(request, form, formsets, change)

    def has_delete_permission(self, request, obj=None):
        # Entries name the rules they earned by; a used rule stays for the record.
        if obj is not None and rules.rule_is_used(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # --- preview ----------------------------------------------------------------------------

    def preview_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = RulePreviewForm(request.GET if "store" in request.GET else None)
        results = None
        if form.is_valid():
            data = form.cleaned_data
            now = timezone.now()
            breakdown = rules.evaluate(
                member=data["member"],
                store=data["store"],
                occurred_at=data["occurred_at"] or now,
                lines=data["lines"],
                earnable_amount=data["amount"] - data["points_paid_amount"],
                now=now,
            )
            results = [
                {"currency": Currency(currency).label, "lines": lines, "total": rules.total(lines)}
                for currency, lines in breakdown.items()
            ]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Preview earning"),
            "opts": self.opts,
            "form": form,
            "results": results,
        }
        return TemplateResponse(request, engines["django"].from_string(PREVIEW_TEMPLATE), context)


class PreviewLine:
    def __init__(self, sku: str, category: str, amount: Decimal):
        self.sku, self.category, self.amount = sku, category, amount


class RulePreviewForm(forms.Form):
    store = forms.ModelChoiceField(label=_("store"), queryset=Store.objects.order_by("code"))
    amount = forms.DecimalField(
        label=_("amount"),
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=2,
        help_text=_("Order total in yuan; may stay empty when lines are given."),
    )
    points_paid_amount = forms.DecimalField(
        label=_("paid with points"), required=False, min_value=0, max_digits=12, decimal_places=2
    )
    lines = forms.CharField(
        label=_("order lines"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 60}),
        help_text=_("One order line per row: SKU, category, amount. For example: A100, drinks, 25.00"),
    )
    occurred_at = forms.DateTimeField(
        label=_("occurred at"), required=False, help_text=_("Local time, e.g. 2026-11-23 14:30; empty: now.")
    )
    member = forms.CharField(
        label=_("member"),
        required=False,
        help_text=_("Phone number or member number, for tier, birthday, first purchase and daily caps; optional."),
    )

    def clean_lines(self):
        rows = [row.strip() for row in self.cleaned_data.get("lines", "").splitlines() if row.strip()]
        if len(rows) > MAX_PREVIEW_LINES:
            raise ValidationError(_("At most %(max)s order lines.") % {"max": MAX_PREVIEW_LINES})
        lines = []
        for number, row in enumerate(rows, start=1):
            cells = [cell.strip() for cell in row.replace("，", ",").split(",")]
            try:
                if len(cells) != 3 or not cells[0]:
                    raise InvalidOperation
                amount = Decimal(cells[2])
                if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
                    raise InvalidOperation
            except InvalidOperation:
                raise ValidationError(
                    _("Row %(number)s should read “SKU, category, amount”, e.g. A100, drinks, 25.00.")
                    % {"number": number}
                ) from None
            lines.append(PreviewLine(cells[0], cells[1], amount))
        return lines

    def clean_member(self):
        term = self.cleaned_data.get("member", "").strip()
        if not term:
            return None
        query = Q(member_number=term)
        with contextlib.suppress(LoyaltyError):  # not a phone number: the member number alone
            query |= Q(phone=normalize_phone(term))
        member = Member.objects.filter(query).first()
        if member is None:
            raise ValidationError(_("No member with this phone number or member number."))
        return member

    def clean(self):
        data = super().clean()
        lines = data.get("lines") or []
        amount = data.get("amount")
        if lines:
            lines_total = sum(line.amount for line in lines)
            if amount is None:
                amount = lines_total
            elif amount != lines_total:
                raise ValidationError(
                    _("The order lines add up to %(lines)s but the amount is %(amount)s.")
                    % {"lines": lines_total, "amount": amount}
                )
        if amount is None and "amount" not in self.errors and "lines" not in self.errors:
            raise ValidationError(_("Enter the amount, the order lines, or both."))
        paid = data.get("points_paid_amount") or Decimal(0)
        if amount is not None and paid > amount:
            raise ValidationError(_("The part paid with points cannot exceed the amount."))
        data["amount"], data["points_paid_amount"] = amount, paid
        return data


PREVIEW_TEMPLATE = """{% extends "admin/base_site.html" %}
{% load i18n admin_urls %}
{% block bodyclass %}{{ block.super }} app-{{ opts.app_label }} model-{{ opts.model_name }} earn-preview{% endblock %}
{% block breadcrumbs %}
<div class="breadcrumbs">
  <a href="{% url 'admin:index' %}">{% translate 'Home' %}</a>
  &rsaquo; <a href="{% url 'admin:app_list' app_label=opts.app_label %}">{{ opts.app_config.verbose_name }}</a>
  &rsaquo; <a href="{% url opts|admin_urlname:'changelist' %}">{{ opts.verbose_name_plural|capfirst }}</a>
  &rsaquo; {{ title }}
</div>
{% endblock %}
{% block content %}
<div id="content-main">
  <p>{% translate "What an order would earn under the rules in force when it happens. Nothing is recorded." %}</p>
  <form method="get" novalidate>
    {% if form.errors %}<p class="errornote">{% translate "Please correct the errors below." %}</p>
      {{ form.non_field_errors }}{% endif %}
    <fieldset class="module aligned">
      {% for field in form.visible_fields %}
        <div class="form-row{% if field.errors %} errors{% endif %} field-{{ field.name }}">
          {{ field.errors }}
          <div class="flex-container">{{ field.label_tag }} {{ field }}</div>
          {% if field.help_text %}<div class="help">{{ field.help_text }}</div>{% endif %}
        </div>
      {% endfor %}
    </fieldset>
    <div class="submit-row"><input type="submit" value="{% translate 'Preview' %}" class="default"></div>
  </form>
  {% if results is not None %}
    {% for result in results %}
      <h2>{{ result.currency|capfirst }}: {{ result.total }}</h2>
      <table class="earn-breakdown">
        <thead><tr>
          <th scope="col">{% translate "rule" %}</th><th scope="col">{% translate "name" %}</th>
          <th scope="col">{% translate "kind" %}</th><th scope="col">{% translate "points" %}</th>
        </tr></thead>
        <tbody>
          {% for line in result.lines %}
            <tr><td>{{ line.rule }}</td><td>{{ line.name }}</td><td>{{ line.kind }}</td><td>{{ line.points }}</td></tr>
          {% empty %}
            <tr><td colspan="4">{% translate "Nothing earned." %}</td></tr>
          {% endfor %}
        </tbody>
      </table>
    {% endfor %}
  {% endif %}
</div>
{% endblock %}
"""

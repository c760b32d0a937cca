"""Number formatting for the staff screens (any app's admin templates): thousands separators,
yuan with two decimals. In core because the console, the programme's and the members' admin
pages all load it."""

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


@register.filter
def thousands(value) -> str:
    """12345 -> "12,345"; anything not a number is shown as it is."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "" if value is None else str(value)


@register.filter
def yuan(value) -> str:
    """6171.4 -> "¥6,171.40"."""
    try:
        return f"¥{Decimal(value):,.2f}"
    except (TypeError, ValueError, InvalidOperation):
        return "" if value is None else str(value)


@register.filter
def signed_thousands(value) -> str:
    """128 -> "+128", -1500 -> "-1,500"."""
    try:
        return f"{int(value):+,}"
    except (TypeError, ValueError):
        return "" if value is None else str(value)

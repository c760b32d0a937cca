"""Template helpers of the member center: numbers, member numbers, coupon QR codes."""

import segno
from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def points(value) -> str:
    """1234567 -> "1,234,567" (the grouping is the same in Chinese and English)."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return ""


@register.filter
def signed(value) -> str:
    """+1,200 / −300, with a real minus sign."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return ""
    return f"+{number:,}" if number > 0 else f"−{-number:,}" if number < 0 else "0"


@register.filter
def grouped(value, size: int = 4) -> str:
    """A card or coupon code in groups people can read aloud: "8123 4567 89"."""
    text = str(value or "")
    size = int(size)
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


@register.simple_tag
def coupon_qr(code: str, scale: int = 5):
    """The coupon code as a QR code, inline SVG made on the server (staff scan it at the till)."""
    qr = segno.make(code, error="m", micro=False)
    svg = qr.svg_inline(scale=scale, border=2, dark="#111827", light="#ffffff", omitsize=True)
    label = _("QR code of coupon %(code)s") % {"code": code}
    return format_html('<div class="qr" role="img" aria-label="{}">{}</div>', label, mark_safe(svg))


@register.filter
def widget(field):
    """The field's widget with aria-invalid and aria-describedby pointing at its error and help."""
    described = []
    attrs = {}
    if field.errors:
        described.append(f"{field.auto_id}-error")
        attrs["aria-invalid"] = "true"
    if field.help_text:
        described.append(f"{field.auto_id}_helptext")
    if described:
        attrs["aria-describedby"] = " ".join(described)
    return field.as_widget(attrs=attrs)


@register.simple_tag
def coupon_headline(coupon) -> str:
    """What the coupon gives, in words a shopper reads at a glance: "¥50 off", "10% off"
    (in Chinese the discount as 折: 10 percent off is 9 折), "Free shipping", or for a gift
    the gift's own title."""
    from decimal import Decimal

    from django.utils.translation import get_language

    value = Decimal(coupon.value or 0)
    if coupon.kind == "amount_off":
        return _("¥%(value)s off") % {"value": f"{value.normalize():f}"}
    if coupon.kind == "discount_percent":
        if (get_language() or "").startswith("zh"):
            return f"{((Decimal(100) - value) / 10).normalize():f} 折"
        return _("%(value)s%% off") % {"value": f"{value.normalize():f}"}
    if coupon.kind == "free_shipping":
        return _("Free shipping")
    return coupon.title


@register.simple_tag
def coupon_kind_label(coupon) -> str:
    labels = {
        "amount_off": _("Cash coupon"),
        "discount_percent": _("Discount coupon"),
        "free_shipping": _("Shipping coupon"),
        "gift": _("Gift coupon"),
    }
    return labels.get(coupon.kind, "")

"""Refuse to start with a malformed loyalty setting, naming the variable to fix."""

from django.conf import settings
from django.core.checks import Error, register

from .policies import ExpiryPolicy


@register()
def check_loyalty_settings(app_configs, **kwargs):
    errors = []
    for name in ("LOYALTY_POINTS_EXPIRY", "LOYALTY_GROWTH_EXPIRY"):
        try:
            ExpiryPolicy.parse(getattr(settings, name))
        except ValueError as exc:
            errors.append(
                Error(f"{name}: {exc}", hint=f"Set {name}=rolling:12, calendar:1 or never.", id="loyalty.E001")
            )
    for name in ("LOYALTY_PENDING_DAYS", "LOYALTY_POINTS_PER_YUAN", "LOYALTY_GROWTH_PER_YUAN"):
        if getattr(settings, name) < 0:
            errors.append(Error(f"{name} must not be negative.", id="loyalty.E002"))
    return errors

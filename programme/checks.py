"""System checks of the programme's settings."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def payment_settings(app_configs, **kwargs):
    problems = []
    if settings.PROGRAMME_PAYMENT_ADAPTER not in settings.PROGRAMME_PAYMENT_ADAPTERS:
        problems.append(
            Error(
                f"PROGRAMME_PAYMENT_ADAPTER is {settings.PROGRAMME_PAYMENT_ADAPTER!r}, not one of "
                f"{', '.join(settings.PROGRAMME_PAYMENT_ADAPTERS)}.",
                id="programme.E001",
            )
        )
    if getattr(settings, "PRODUCTION", False) and settings.PROGRAMME_PAYMENT_ADAPTER == "fake":
        problems.append(
            Warning(
                "The fake payment adapter is on in production: members can pay with the test button.",
                hint="Set PROGRAMME_PAYMENT_ADAPTER=wechat and the PROGRAMME_WECHAT_* settings.",
                id="programme.W001",
            )
        )
    return problems

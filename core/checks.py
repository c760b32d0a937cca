"""System checks for settings that are each fine alone but wrong together."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def proxy_settings(app_configs, **kwargs):
    behind_proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None) is not None
    proxies_named = bool(settings.LOYALTY_TRUSTED_PROXIES or settings.LOYALTY_TRUSTED_PROXY_COUNT)
    if behind_proxy and not proxies_named:
        return [
            Warning(
                "DJANGO_BEHIND_PROXY is on but no proxy is named, so every request counts as the proxy's "
                "address: one client's failed sign-ins throttle everyone.",
                hint="Set LOYALTY_TRUSTED_PROXIES to the proxy's addresses (or LOYALTY_TRUSTED_PROXY_COUNT).",
                id="core.W001",
            )
        ]
    return []

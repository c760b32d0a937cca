from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CoreConfig(AppConfig):
    default = True
    name = "core"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)


class LoyaltyAdminConfig(admin_apps.AdminConfig):
    """Django's admin with ``core.admin_site.LoyaltyAdminSite`` as ``admin.site``."""

    default = False
    default_site = "core.admin_site.LoyaltyAdminSite"

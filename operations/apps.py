from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OperationsConfig(AppConfig):
    """What combines apps (segments, lifecycle, imports, journeys, the member admin); no models."""

    name = "operations"
    verbose_name = _("Operations")

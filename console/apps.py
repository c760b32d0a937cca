from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsoleConfig(AppConfig):
    """Staff screens that are not model admins: the till and the dashboard."""

    name = "console"
    verbose_name = _("Staff console")

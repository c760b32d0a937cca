from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CenterConfig(AppConfig):
    """The member center (会员中心): server-rendered self-service pages under /me/."""

    name = "center"
    verbose_name = _("member center")

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ProgrammeConfig(AppConfig):
    name = "programme"
    verbose_name = _("Paid membership")

    def ready(self) -> None:
        # The paid plan's earn multiplier joins the tier's through loyalty's hook
        # (loyalty.multipliers): loyalty never imports this app.
        from loyalty.checkout import checkout_benefit_adjuster_register
        from loyalty.multipliers import earn_multiplier_adjuster_register

        from . import checks, signals  # noqa: F401 - checks registers itself
        from .benefits import paid_checkout_benefits, paid_earn_multiplier

        earn_multiplier_adjuster_register(paid_earn_multiplier)
        checkout_benefit_adjuster_register(paid_checkout_benefits)
        signals.connect()

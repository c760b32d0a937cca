from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ProgrammeConfig(AppConfig):
    name = "programme"
    verbose_name = _("Paid membership")

    def ready(self) -> None:
        # The paid plan's earn multiplier joins the tier's through loyalty's hook
        # (loyalty.multipliers): loyalty never imports this app.
        from loyalty.checkout import checkout_benefit_adjuster_register
        from loyalty.configuration import configuration_loader_register
        from loyalty.multipliers import earn_multiplier_adjuster_register

        from . import checks, signals  # noqa: F401 - checks registers itself
        from .benefits import (
            BADGES_ACTIVE,
            PLANS_MULTIPLY,
            badges_active,
            paid_checkout_benefits,
            paid_earn_multiplier,
            plans_multiply,
        )

        # Read with the programme's cached configuration, under its version (the trigger of
        # migration 0010 on plans and badges): the earn then pays no query for either.
        configuration_loader_register(PLANS_MULTIPLY, plans_multiply)
        configuration_loader_register(BADGES_ACTIVE, badges_active)
        earn_multiplier_adjuster_register(paid_earn_multiplier)
        checkout_benefit_adjuster_register(paid_checkout_benefits)
        signals.connect()

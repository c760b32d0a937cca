"""``manage.py seed_foresight_demo``: foresight's demo (foresight.demo), after seed_demo."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from foresight.demo import foresight_demo_seed


class Command(BaseCommand):
    help = (
        "Scan for leakage, run a tier-policy simulation and a liability forecast (after seed_demo). Development only."
    )

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("seed_foresight_demo writes made-up data; it refuses to run when DJANGO_ENV=production.")
        self.stdout.write(str(foresight_demo_seed()))

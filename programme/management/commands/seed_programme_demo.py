"""``manage.py seed_programme_demo``: the programme's demo (programme.demo), after seed_demo."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from programme.demo import programme_demo_seed


class Command(BaseCommand):
    help = "Seed a PLUS plan with a paying member, a transfer, badges and a fan (after seed_demo). Development only."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("seed_programme_demo writes made-up data; it refuses to run when DJANGO_ENV=production.")
        self.stdout.write(str(programme_demo_seed()))

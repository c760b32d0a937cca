"""``manage.py seed_demo``: the demo data set (operations.demo), development only."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from operations.demo.rewards import DEMO_REDEMPTIONS, MALL
from operations.demo.run import SEED
from operations.demo.seed import demo_present, demo_seed
from operations.demo.stores import DEMO_STAFF_USERNAME, DEMO_STORE_CODES

# The demo's names that tests read from the command.
__all__ = ["DEMO_REDEMPTIONS", "DEMO_STAFF_USERNAME", "DEMO_STORE_CODES", "MALL", "Command"]


class Command(BaseCommand):
    help = (
        "Seed demo stores, members and 18 months of orders, refunds, spends and adjustments through the "
        "services, dated in the past. Does nothing when the demo is already there. Development only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=200, help="How many members to seed (at least 3).")
        parser.add_argument("--seed", type=int, default=SEED, help="Random seed (the default is fixed).")

    def handle(self, *args, members: int, seed: int, **options):
        if settings.PRODUCTION:
            raise CommandError(
                "seed_demo writes made-up members and orders; it refuses to run when DJANGO_ENV=production."
            )
        if members < 3:
            raise CommandError("--members must be at least 3 to show pending, expiring and expired points.")
        if demo_present():
            self.stdout.write("demo data already present; nothing to do.")
            return
        demo_seed(members=members, seed=seed, out=self.stdout, style=self.style)

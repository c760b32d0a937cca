"""Collect events and deliver them now, in this process: for the demo and for operators
(the scheduled task ``webhooks.collect_and_dispatch`` does the same through workers)."""

import time

from django.core.management.base import BaseCommand

from webhooks.services import endpoint_deliver_due, endpoints_due
from webhooks.tasks import collect_for_a_while


class Command(BaseCommand):
    help = "Collect new webhook events and deliver what is due (--watch: every few seconds until Ctrl-C)."

    def add_arguments(self, parser):
        parser.add_argument("--watch", action="store_true", help="Keep going every --every seconds.")
        parser.add_argument("--every", type=float, default=5.0)

    def handle(self, *args, watch: bool, every: float, **options):
        while True:
            new = collect_for_a_while()
            for endpoint_id in endpoints_due():
                counts = endpoint_deliver_due(endpoint_id)
                self.stdout.write(f"endpoint {endpoint_id}: {counts}")
            if new:
                self.stdout.write(f"{new} new events")
            if not watch:
                return
            time.sleep(every)

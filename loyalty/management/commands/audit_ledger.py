from django.core.management.base import BaseCommand, CommandError

from loyalty.models import Account
from loyalty.selectors import ledger_violations


class Command(BaseCommand):
    help = (
        "Check every account's ledger invariants: balance == sum of entries == sum of available lots, "
        "pending == sum of pending entries == sum of pending lots, "
        "each lot's remainder == amount - what allocations consumed + what reversals gave back. "
        "Exits with status 1 naming each account that fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", type=int, action="append", dest="accounts", help="Check only this account id.")

    def handle(self, *args, accounts=None, **options):
        violations = ledger_violations(accounts)
        checked = Account.objects.filter(pk__in=accounts).count() if accounts else Account.objects.count()
        for violation in violations:
            self.stderr.write(str(violation))
        if violations:
            raise CommandError(f"{len(violations)} of {checked} accounts fail the ledger invariants.")
        self.stdout.write(self.style.SUCCESS(f"ledger ok: {checked} accounts checked, all invariants hold."))

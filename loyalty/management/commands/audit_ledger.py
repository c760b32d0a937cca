from django.core.management.base import BaseCommand, CommandError

from loyalty.models import Account
from loyalty.selectors import AUDIT_CHUNK, ledger_violations


class Command(BaseCommand):
    help = (
        "Check every account's ledger invariants: balance == sum of entries == sum of available lots, "
        "pending == sum of pending entries == sum of pending lots, "
        "each lot's remainder == amount - what allocations consumed + what reversals gave back, "
        "owed == the refunds' open shortfalls, each refund's settled part == its settle entries, "
        "and the value invariant: balance + pending <= what the lots brought in - expired - what refunds claimed. "
        "Reads the accounts a chunk at a time with a few grouped queries per chunk. "
        "Exits with status 1 naming each account that fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", type=int, action="append", dest="accounts", help="Check only this account id.")
        parser.add_argument(
            "--chunk", type=int, default=AUDIT_CHUNK, help=f"Accounts per round of queries (default {AUDIT_CHUNK})."
        )

    def handle(self, *args, accounts=None, chunk=AUDIT_CHUNK, **options):
        if chunk < 1:
            raise CommandError("--chunk must be at least 1.")
        violations = ledger_violations(accounts, chunk=chunk)
        checked = Account.objects.filter(pk__in=accounts).count() if accounts else Account.objects.count()
        for violation in violations:
            self.stderr.write(str(violation))
        if violations:
            raise CommandError(f"{len(violations)} of {checked} accounts fail the ledger invariants.")
        self.stdout.write(self.style.SUCCESS(f"ledger ok: {checked} accounts checked, all invariants hold."))

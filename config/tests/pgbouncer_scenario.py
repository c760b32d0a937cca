"""Run by test_pgbouncer.py in a process of its own, with DATABASE_URL through pgbouncer in
transaction mode (DATABASE_POOLER=transaction, persistent client connections). Four
threads drive members through the API flow at once while pgbouncer has two server
connections: every transaction may land on a different server session. Prints JSON.
"""

import json
import os
import sys
import threading

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.db import connection, connections  # noqa: E402
from django.test import Client  # noqa: E402

from config.tests.member_flow import flow_member, flow_setup  # noqa: E402
from loyalty.models import LedgerEntry  # noqa: E402
from loyalty.selectors import ledger_violations  # noqa: E402

THREADS, PER_THREAD = 4, 3
key, numbers = flow_setup(THREADS * PER_THREAD)
results: list[dict] = []
errors: list[str] = []


def run(index: int) -> None:
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")

    def post(path: str, body: dict) -> tuple[int, dict]:
        response = client.post(path, body, content_type="application/json")
        return response.status_code, response.json()

    try:
        for n in range(PER_THREAD):
            number = numbers[index * PER_THREAD + n]
            results.append(flow_member(post, number, f"{index}-{n}"))
    except Exception as error:  # reported, not swallowed
        errors.append(f"{type(error).__name__}: {error}")
    finally:
        connections.close_all()


threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(timeout=60)

# A server-side cursor would be named and live across statements; with the setting it is not.
iterated = sum(1 for _ in LedgerEntry.objects.all().iterator(chunk_size=2))
with connection.cursor() as cursor:
    cursor.execute("SHOW server_version")
    cursor.fetchone()
out = {
    "errors": errors,
    "flows": results,
    "violations": [str(v) for v in ledger_violations()],
    "entries": LedgerEntry.objects.count(),
    "iterated": iterated,
    "server_side_cursors_disabled": connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"],
}
json.dump(out, sys.stdout)

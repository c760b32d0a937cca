"""How fast is a bulk award (bulk.services, a points award: ``points_award_bulk`` per chunk)?

Creates ``--members`` members (phones ``+86134…``, once; reused by later runs), prepares a
bulk award to all of them by member number (the preview), confirms it, and runs its
chunk tasks in ``--processes`` processes side by side, the way that many workers on the
``contact`` queue would (each process started once, taking every P-th chunk). Prints the
preview time, the award's wall time, members per second, and ``ledger_violations()`` (must be 0).

Usage: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench .venv/bin/python
bench/bulk_award.py [--members N] [--processes P]``.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ensure_database, setup_django  # noqa: E402

PREFIX = "+86134"


def members(n: int) -> list[str]:
    from loyalty.tests.factories import _member_number
    from members.models import Member, Store

    store, _ = Store.objects.get_or_create(code="bench-bulk", defaults={"name": "bench bulk"})
    have = Member.objects.filter(phone__startswith=PREFIX).count()
    if have < n:
        Member.objects.bulk_create(
            [
                Member(phone=f"{PREFIX}{i:08d}", member_number=_member_number(900_000 + i), home_store=store)
                for i in range(have, n)
            ],
            batch_size=5000,
        )
    return list(
        Member.objects.filter(phone__startswith=PREFIX).order_by("pk").values_list("member_number", flat=True)[:n]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--chunks", nargs="+", type=int, help=argparse.SUPPRESS)  # a worker: job (first last)...
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/loyalty_bench")
    if os.environ.get("DJANGO_ENV") == "production":
        sys.exit("refusing to run with DJANGO_ENV=production")
    if args.chunks:
        setup_django()
        from bulk.services import job_run_chunk

        job_id, bounds = args.chunks[0], args.chunks[1:]
        for first, last in zip(bounds[::2], bounds[1::2], strict=True):
            job_run_chunk(job_id=job_id, first=first, last=last)
        return
    ensure_database(os.environ["DATABASE_URL"])
    setup_django()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bulk.services import award_job_confirm, award_job_preview
    from loyalty.selectors import ledger_violations

    numbers = members(args.members)
    user, _ = get_user_model().objects.get_or_create(
        username="bench-bulk", defaults={"is_superuser": True, "is_staff": True}
    )
    started = time.perf_counter()
    job = award_job_preview(actor=user, currency="points", amount=10, reason="bench", identifiers=numbers)
    preview_s = time.perf_counter() - started
    chunks: list[tuple[int, int, int]] = []
    award_job_confirm(job=job, actor=user, enqueue=lambda *chunk: chunks.append(chunk))
    started = time.perf_counter()
    # One long-lived process per worker, taking every P-th chunk (a celery worker does not
    # start Django again for each task; a process per chunk measured start-up, ~1.5 s each).
    running = [
        subprocess.Popen(
            [sys.executable, __file__, "--chunks", str(job.pk)]
            + [str(bound) for _job, first, last in chunks[worker :: args.processes] for bound in (first, last)]
        )
        for worker in range(min(args.processes, len(chunks)))
    ]
    for process in running:
        process.wait()
    award_s = time.perf_counter() - started
    job.refresh_from_db()
    print(f"members {len(numbers)}, processes {args.processes}")
    print(
        f"preview {preview_s:.1f} s; award {award_s:.1f} s = {len(numbers) / award_s:.0f} members/s; job {job.status}"
    )
    started = time.perf_counter()
    violations = len(ledger_violations())
    print(f"ledger violations: {violations} (checked in {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()

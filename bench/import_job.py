"""How fast and how lean is the background member import (operations.imports)?

Writes a CSV of ``--rows`` members (default 100 000, each with an opening balance; one
phone in a thousand already a member, so those rows are updates), then times the two passes of an
ImportJob on PostgreSQL:

- check: ``import_job_check`` (streams the file, checks every row, writes no member), with
  its peak Python memory (tracemalloc) and the process's peak RSS during the pass;
- run: ``import_job_run`` (chunks of 1000 rows, one transaction each).

Prints rows per second for each, the peak memory, and ``ledger_violations()`` (must be 0).
Usage: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench .venv/bin/python
bench/import_job.py [--rows N] [--profile]``. It deletes the members it created before
(phones ``+86135…``) at the start, so runs can be repeated.
"""

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ensure_database  # noqa: E402

PREFIX = "135"


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    # Linux: writing 5 resets VmHWM to the current RSS, so the next reading is this pass's peak.
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def write_file(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("phone,name,gender,birthday,email,home_store,opening_points\n")
        for i in range(rows):
            handle.write(f"{PREFIX}{i:08d},Bench Member {i},female,1990-01-{i % 28 + 1:02d},,bench-i,{i % 500 + 1}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the run pass")
    args = parser.parse_args()

    url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/loyalty_bench")
    ensure_database(url)
    media = tempfile.mkdtemp(prefix="import-bench-")
    os.environ["LOYALTY_IMPORT_ROOT"] = media  # the uploaded file and the generated one
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "0")
    if os.environ.get("DJANGO_ENV") == "production":
        sys.exit("refusing to run against DJANGO_ENV=production")

    import django

    django.setup()
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from django.db import connection

    from loyalty.models import Account, Allocation, LedgerEntry, Lot, MemberTier, Tier, TierChange
    from loyalty.selectors import ledger_violations
    from members.models import ImportJob, Member, Store
    from operations.actions import member_create
    from operations.imports import import_job_check, import_job_confirm, import_job_create, import_job_run

    call_command("migrate", verbosity=0)
    # No broker here: the bench calls the services itself.
    from operations import tasks

    tasks.check_import.delay = tasks.run_import.delay = lambda job_id: None
    # Start clean: the members of earlier runs and what hangs off them.
    old = Member.objects.filter(phone__startswith=f"+86{PREFIX}")
    for model in (Allocation,):
        model.objects.filter(entry__member__in=old).delete()
    for model in (Lot, LedgerEntry, Account, TierChange, MemberTier):
        model.objects.filter(member__in=old).delete()
    old.delete()
    ImportJob.objects.all().delete()
    Store.objects.get_or_create(code="bench-i", defaults={"name": "Import bench"})
    Tier.objects.get_or_create(
        code="bench-base",
        defaults={"name": "Base", "rank": 0, "qualify_threshold": 0, "retain_threshold": 0, "is_default": True},
    )
    if not Tier.objects.filter(is_default=True).exists():
        Tier.objects.filter(code="bench-base").update(is_default=True)
    for i in range(0, args.rows, 1000):
        member_create(phone=f"{PREFIX}{i:08d}", name="Before")
    existing = Member.objects.filter(phone__startswith=f"+86{PREFIX}").count()

    path = Path(media) / "bench.csv"
    write_file(path, args.rows)
    size_mb = path.stat().st_size / 2**20

    def new_job() -> ImportJob:
        return import_job_create(file=SimpleUploadedFile("bench.csv", path.read_bytes()), user=None)

    # Memory first, on a job of its own: tracemalloc slows Python down several times.
    job = new_job()
    connection.close()
    reset_peak_rss()
    rss_before = peak_rss_mb()
    tracemalloc.start()
    import_job_check(job.pk)
    _current, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = peak_rss_mb()

    job = new_job()
    started = time.perf_counter()
    job = import_job_check(job.pk)
    check_s = time.perf_counter() - started
    assert job.status == ImportJob.Status.CHECKED, (job.status, job.message, job.errors[:3])

    import_job_confirm(job_id=job.pk, user=None)
    reset_peak_rss()
    started = time.perf_counter()
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        job = profiler.runcall(import_job_run, job.pk)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    else:
        job = import_job_run(job.pk)
    run_s = time.perf_counter() - started
    run_rss = peak_rss_mb()
    assert job.status == ImportJob.Status.DONE, job.message

    violations = len(ledger_violations())
    print(f"rows: {args.rows} ({size_mb:.1f} MB CSV), existing members matched: {existing}")
    print(f"check: {check_s:.1f} s, {args.rows / check_s:,.0f} rows/s")
    print(
        f"check memory: tracemalloc peak {traced_peak / 2**20:.1f} MB; "
        f"process RSS {rss_before:.0f} MB before, peak {rss_peak:.0f} MB during"
    )
    print(f"run: {run_s:.1f} s, {args.rows / run_s:,.0f} rows/s; peak RSS {run_rss:.0f} MB; summary {job.summary}")
    print(f"ledger violations: {violations}")
    if violations:
        sys.exit(1)


if __name__ == "__main__":
    main()

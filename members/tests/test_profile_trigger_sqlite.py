"""The embedded default (SQLite) keeps the trigger that stamps Member.updated_at after the
migrations that rebuild members_member (members/profile_trigger.py)."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_migrated_sqlite_database_stamps_updated_at_on_a_profile_change(tmp_path):
    db = tmp_path / "embedded.sqlite3"
    env = {**os.environ, "DJANGO_ENV": "development", "DATABASE_URL": f"sqlite:///{db}"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=600)
    with sqlite3.connect(db) as conn:
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    assert triggers == [("members_member_profile_changed",)]
    # A profile change through the ORM (a QuerySet.update, which auto_now would miss) is stamped.
    script = (
        "from members.models import Member\n"
        "m = Member.objects.create(phone='+8613800000001', name='A')\n"
        "m.refresh_from_db(); print(m.updated_at is None)\n"
        "Member.objects.filter(pk=m.pk).update(name='B')\n"
        "m.refresh_from_db(); print(m.updated_at is not None)\n"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[-2:] == ["True", "True"]

"""A quicker clean slate after each transactional test (``django_db(transaction=True)``, ``live_server``).

Django ends such a test with ``flush``: one ``TRUNCATE`` of every table, then the
``post_migrate`` signal to write the content types and permissions again. On PostgreSQL a
TRUNCATE makes new files for each of the ~60 tables and their indexes, 1-3 s on this shared
machine and much more when its disk is busy, although a test writes to a handful of tables.

Here the test database's state after ``migrate`` is copied once per session into the
schema ``pytest_baseline`` (content types, permissions and the rows of data migrations
such as the default journeys). After each transactional test, in one transaction, the
tables that hold rows are emptied with ``DELETE`` and the copied rows are put back. The
next test starts from the migrated state, as after Django's flush (which moreover loses
the rows of data migrations); sequences go on, as after Django's flush without
``reset_sequences``. Tests that ask for ``reset_sequences``, ``serialized_rollback`` or
``available_apps`` keep Django's own flush. A test that broke its connection gets the reset
on a new one.
"""

import contextlib

from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, connections
from django.test import TransactionTestCase

BASELINE = "pytest_baseline"
# Database alias -> the tables copied into the baseline schema. Kept here, not on the
# connection object: code run under Playwright's event loop sees other connection objects
# (Django keeps them per context), and their tests must be reset the same way.
_copied: dict[str, list[str]] = {}


def _tables(connection) -> list[str]:
    # The tables Django's flush empties (django_migrations is not among them).
    return sorted(connection.introspection.django_table_names(only_existing=True, include_views=False))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _with_rows(cursor, tables: list[str]) -> list[str]:
    """The tables among ``tables`` that hold at least one row: one query, a few ms."""
    if not tables:
        return []
    cursor.execute(
        " UNION ALL ".join(f"SELECT %s WHERE EXISTS (SELECT 1 FROM public.{_quote(table)})" for table in tables),
        tables,
    )
    return [row[0] for row in cursor.fetchall()]


def baseline_take(alias: str = "default") -> None:
    """Copy the rows every table holds now (right after migrate) into the baseline schema."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {BASELINE} CASCADE")
        cursor.execute(f"CREATE SCHEMA {BASELINE}")
        copied = _with_rows(cursor, _tables(connection))
        for table in copied:
            cursor.execute(f"CREATE TABLE {BASELINE}.{_quote(table)} AS TABLE public.{_quote(table)}")
    _copied[alias] = copied


def baseline_restore(alias: str = "default") -> None:
    """Empty the tables that hold rows and put the baseline's rows back, in one transaction."""
    connection = connections[alias]
    baseline = _copied[alias]
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            # Foreign keys are not checked while the rows go and come back (they all hold
            # again at the end: the baseline is the migrated database). Needs a superuser,
            # as in development and CI; otherwise the deferred constraints are checked at
            # COMMIT, slower for a test that wrote many rows but as exact.
            cursor.execute("SELECT current_setting('is_superuser') = 'on'")
            if cursor.fetchone()[0]:
                cursor.execute("SET LOCAL session_replication_role = replica")
            dirty = sorted(set(_with_rows(cursor, _tables(connection))) | set(baseline))
            statements = [f"DELETE FROM public.{_quote(table)}" for table in dirty]
            statements += [
                f"INSERT INTO public.{_quote(table)} SELECT * FROM {BASELINE}.{_quote(table)}" for table in baseline
            ]
            cursor.execute(";\n".join(statements))
            cursor.execute("COMMIT")
        except BaseException:
            # If the connection is gone the caller falls back to Django's flush.
            with contextlib.suppress(DatabaseError):
                cursor.execute("ROLLBACK")
            raise


_django_fixture_teardown = TransactionTestCase._fixture_teardown


def _fixture_teardown(self) -> None:
    if self.reset_sequences or self.serialized_rollback or self.available_apps is not None:
        return _django_fixture_teardown(self)
    for alias in self._databases_names(include_mirrors=False):
        connection = connections[alias]
        if alias not in _copied or connection.in_atomic_block:
            return _django_fixture_teardown(self)
    for alias in self._databases_names(include_mirrors=False):
        try:
            baseline_restore(alias)
        except DatabaseError:
            # The test broke its connection (killed it, pointed it elsewhere): a new one.
            connections[alias].close()
            baseline_restore(alias)
    ContentType.objects.clear_cache()


def install() -> None:
    """Transactional tests end with the quick reset (see the module's docstring)."""
    TransactionTestCase._fixture_teardown = _fixture_teardown


def uninstall() -> None:
    TransactionTestCase._fixture_teardown = _django_fixture_teardown

"""Which database engine the code runs on, asked in one place.

PostgreSQL is the production engine; SQLite is the embedded default for a first run on
one machine. A set-based SQL path stays beside its ORM twin only where a bench figure
justifies it (bench/README.md), and a test checks that both write the same rows.
"""

from django.conf import settings
from django.db import connection


def is_postgresql() -> bool:
    """Whether the default connection is PostgreSQL (advisory locks, ``unnest``, ``FOR UPDATE`` in CTEs)."""
    return connection.vendor == "postgresql"


def _prepared_cursor_class():
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparedCursor(ServerBindingCursor):
        """Server-side binding, each statement prepared on its connection at its first run."""

        logged = False  # set where Django logs queries (DEBUG, tests): the log needs the text

        def execute(self, query, params=None, *, prepare=True, binary=None):
            result = super().execute(query, params, prepare=prepare, binary=binary)
            if self.logged and self._query is None:
                # psycopg keeps no query of a prepared run; Django's log reads it from here.
                self._query = self._convert_query(query, params)
            return result

    return PreparedCursor


_PREPARED: list = []


def prepared_cursor():
    """A cursor whose statements PostgreSQL plans once per connection (a named prepared
    statement, psycopg keeps them per connection) instead of at every run: for the few hot
    statements whose text never changes (the earn's lock and write), where planning was
    about half of PostgreSQL's time per statement (bench/README.md).

    Django's own cursor wraps it (statements logged and counted, errors Django's), so the
    statement-count tests see these statements as any other. Anywhere the prepared
    statement could not be reused (not PostgreSQL, or pgbouncer in transaction mode, where
    the next transaction may land on another server connection that never prepared it):
    the plain cursor, client-side binding, same text and parameters
    (``DATABASE_PREPARED_STATEMENTS``, config/settings.py).
    """
    if not settings.DATABASE_PREPARED_STATEMENTS or connection.vendor != "postgresql":
        return connection.cursor()
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.pq import Format

    if not _PREPARED:
        _PREPARED.append(_prepared_cursor_class())
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = _PREPARED[0](connection.connection)
        raw.logged = connection.queries_logged
        # What Django's create_cursor does: timestamps read in the connection's time zone.
        loader = connection.connection.adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)
        if connection.timezone != loader.timezone:
            register_tzloader(connection.timezone, raw)
        return connection._prepare_cursor(raw)


_TIMESTAMPTZ_OID = 1184

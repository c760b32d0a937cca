"""Which database engine the code runs on, asked in one place.

PostgreSQL is the production engine; SQLite is the embedded default for a first run on
one machine. A set-based SQL path stays beside its ORM twin only where a bench figure
justifies it (bench/README.md), and a test checks that both write the same rows.
"""

import functools

from django.conf import settings
from django.db import connection


def is_postgresql() -> bool:
    """Whether the default connection is PostgreSQL (advisory locks, ``unnest``, ``FOR UPDATE`` in CTEs)."""
    return connection.vendor == "postgresql"


@functools.cache
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
    from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.pq import Format

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = _prepared_cursor_class()(connection.connection)
        raw.logged = connection.queries_logged
        # What Django's create_cursor does: timestamps read in the connection's time zone.
        loader = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        if connection.timezone != loader.timezone:
            register_tzloader(connection.timezone, raw)
        return connection._prepare_cursor(raw)


def select_list(model, alias: str) -> tuple[list[str], list[str]]:
    """``model``'s concrete columns as ``alias."column"`` and their attnames, in the same
    order: for a hand-written SELECT whose rows become instances with :func:`from_row`."""
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    return [f"{alias}.{quote(f.column)}" for f in fields], [f.attname for f in fields]


_CONVERTERS: dict = {}


def from_row(model, names: list[str], values):
    """``model.from_db`` for the values of :func:`select_list`'s columns, through each field's
    ``from_db_value`` first, as the ORM's compiler does (a JSON column arrives as text)."""
    if model not in _CONVERTERS:
        _CONVERTERS[model] = [(n, f) for n, f in enumerate(model._meta.concrete_fields) if hasattr(f, "from_db_value")]
    converters = _CONVERTERS[model]
    if converters:
        values = list(values)
        for n, field in converters:
            values[n] = field.from_db_value(values[n], None, connection)
    return model.from_db("default", names, values)


_FIRST_SQL: dict[tuple, tuple[str, list]] = {}


def prepared_first(model, *, related: tuple[str, ...] = (), **filters):
    """``model.objects.select_related(*related).filter(**filters).first()`` for the reads every
    API request makes (its token or store key, the member it names), where building and
    compiling the queryset cost more than the query: on PostgreSQL one prepared statement,
    its text worked out once per process, the same instances either way. ``filters`` are
    equalities on concrete fields (``field=value``, or ``field__in=[...]``); elsewhere the
    ORM query itself runs."""
    if not is_postgresql():
        return model.objects.select_related(*related).filter(**filters).first()
    key = (model, tuple(sorted(filters)), related)
    if key not in _FIRST_SQL:
        quote = connection.ops.quote_name
        where = []
        for name in sorted(filters):
            field, _sep, lookup = name.partition("__")
            column = f"t.{quote(model._meta.get_field(field).column)}"
            where.append(f"{column} = ANY(%({name})s)" if lookup == "in" else f"{column} = %({name})s")
        columns, parts, joins = [], [], []
        for alias, part, join in [("t", model, None)] + [
            (f"r{n}", model._meta.get_field(name).related_model, model._meta.get_field(name))
            for n, name in enumerate(related)
        ]:
            cols, names = select_list(part, alias)
            columns += cols
            parts.append((part, names, join.name if join else None))
            if join is not None:
                joins.append(f"LEFT JOIN {quote(part._meta.db_table)} {alias} ON {alias}.id = t.{quote(join.column)}")
        sql = (
            f"SELECT {', '.join(columns)} FROM {quote(model._meta.db_table)} t {' '.join(joins)} "
            f"WHERE {' AND '.join(where)} LIMIT 1"
        )
        _FIRST_SQL[key] = (sql, parts)
    sql, parts = _FIRST_SQL[key]
    params = {name: list(value) if name.endswith("__in") else value for name, value in filters.items()}
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    instance, start = None, 0
    for part, names, name in parts:
        values = row[start : start + len(names)]
        start += len(names)
        if name is None:
            instance = from_row(part, names, values)
        else:
            instance._state.fields_cache[name] = from_row(part, names, values) if values[0] is not None else None
    return instance

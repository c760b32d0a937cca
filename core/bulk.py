"""Inserting and updating many rows in one statement, for the set-based writers.

Each function has a PostgreSQL statement and the ORM call other databases (the SQLite first
run) use, side by side; core/tests/test_bulk.py checks that both write the same rows. The
statements stay for their figures: Django's ``bulk_create`` prepares every value of every
field in Python (for 1000 members of 35 columns that cost more than the rest of an import
chunk), and ``bulk_update`` builds a CASE with one branch per row for each column (the
tier review with it took 88 s for 100 000 members, with ``UPDATE ... FROM unnest`` 21 s:
bench/README.md).
"""

import datetime as dt
import json

from django.db import connection

from .db import is_postgresql


def _json_value(value):
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)  # Decimal, UUID


def insert_rows(
    model, rows: list[dict], *, same: dict | None = None, returning: tuple[str, ...] = ("id",)
) -> list[tuple]:
    """Insert ``rows`` ({attname: value}, the same keys in each) in one statement, with the
    values of ``same`` in every row; return the ``returning`` columns of the new rows.

    PostgreSQL: ``INSERT ... SELECT ... FROM json_to_recordset(%s)``, the rows sent as one
    JSON document, and the model's default for every column not given. Django's
    ``bulk_create`` prepares every value of every field in Python (for 1000 members of 35
    columns that cost more than the rest of a chunk), and even arrays per column are dumped
    value by value; ``json.dumps`` is one C call. Other databases (the SQLite first run):
    ``bulk_create``.
    """
    if not rows:
        return []
    same = same or {}
    if not is_postgresql():
        objects = model.objects.bulk_create([model(**row, **same) for row in rows])
        return [tuple(getattr(obj, name) for name in returning) for obj in objects]
    given = rows[0].keys()
    columns, selects, record, params = [], [], [], []
    for model_field in model._meta.concrete_fields:
        if model_field.primary_key:
            continue
        db_type = model_field.db_type(connection)
        columns.append(connection.ops.quote_name(model_field.column))
        if model_field.attname in given:
            name = connection.ops.quote_name(model_field.attname)
            record.append(f"{name} {db_type}")
            selects.append(f"v.{name}")
        else:
            value = same[model_field.attname] if model_field.attname in same else model_field.get_default()
            selects.append(f"%s::{db_type}")
            params.append(model_field.get_db_prep_save(value, connection))
    params.append(json.dumps(rows, default=_json_value))
    table = connection.ops.quote_name(model._meta.db_table)
    back = ", ".join(connection.ops.quote_name(model._meta.get_field(name).column) for name in returning)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(selects)} "
            f"FROM json_to_recordset(%s::json) AS v({', '.join(record)}) RETURNING {back}",
            params,
        )
        return cursor.fetchall()


def update_rows(model, objects: list, fields: list[str]) -> None:
    """Write ``fields`` (field names) of ``objects`` (saved instances of ``model``) back in
    one statement: what ``model.objects.bulk_update(objects, fields)`` does.

    PostgreSQL: ``UPDATE ... FROM unnest(%s::type[], ...)``, one array per column. Other
    databases: ``bulk_update``.
    """
    if not objects:
        return
    if not is_postgresql():
        model.objects.bulk_update(objects, fields)
        return
    quote = connection.ops.quote_name
    key = model._meta.pk
    columns = [key] + [model._meta.get_field(name) for name in fields]
    names = [f"v{i}" for i in range(len(columns))]
    arrays = ", ".join(f"%s::{column.db_type(connection)}[]" for column in columns)
    assignments = ", ".join(
        f"{quote(column.column)} = v.{name}" for column, name in zip(columns[1:], names[1:], strict=True)
    )
    params = [
        [column.get_db_prep_save(getattr(obj, column.attname), connection) for obj in objects] for column in columns
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} AS t SET {assignments} "
            f"FROM unnest({arrays}) AS v({', '.join(names)}) WHERE t.{quote(key.column)} = v.v0",
            params,
        )

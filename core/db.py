"""Which database engine the code runs on, asked in one place.

PostgreSQL is the production engine; SQLite is the embedded default for a first run on
one machine. A set-based SQL path stays beside its ORM twin only where a bench figure
justifies it (bench/README.md), and a test checks that both write the same rows.
"""

from django.db import connection


def is_postgresql() -> bool:
    """Whether the default connection is PostgreSQL (advisory locks, ``unnest``, ``FOR UPDATE`` in CTEs)."""
    return connection.vendor == "postgresql"

"""Helpers the benchmarks share."""

import sys
from urllib.parse import urlparse


def ensure_database(url: str) -> str:
    """Create the bench database if it does not exist; return its name."""
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        sys.exit(f"DATABASE_URL={url} is not PostgreSQL; the bench measures PostgreSQL only.")
    name = parsed.path.lstrip("/")
    maintenance = parsed._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}")
    except psycopg.OperationalError as exc:
        sys.exit(f"PostgreSQL at {parsed.hostname}:{parsed.port or 5432} is unreachable: {str(exc).strip()}")
    return name

"""Stop with a clear message when the test database or Redis is unreachable."""

import os
import sys
from urllib.parse import urlparse

import psycopg
import redis

database_url = os.environ["DATABASE_URL"]
redis_url = os.environ["REDIS_URL"]
redis_address = f"{urlparse(redis_url).hostname}:{urlparse(redis_url).port or 6379}"  # never print a password
failures = []

url = urlparse(database_url)
if url.scheme not in ("postgres", "postgresql", "pgsql"):
    failures.append(
        f"DATABASE_URL ({url.scheme}://...) is not PostgreSQL; the suite runs on PostgreSQL only.\n"
        "  Unset it to use the local server (postgres://postgres@127.0.0.1:5432/loyalty)."
    )
else:
    try:
        # The maintenance database: the test runner creates test_<name> from there.
        dsn = url._replace(path="/postgres").geturl()
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        failures.append(
            f"PostgreSQL at {url.hostname}:{url.port or 5432} is unreachable: {str(exc).strip()}\n"
            "  Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"
            "  or point DATABASE_URL at a running server (postgres://USER:PASSWORD@HOST:5432/NAME)."
        )

try:
    redis.Redis.from_url(redis_url, socket_connect_timeout=5).ping()
except redis.RedisError as exc:
    failures.append(
        f"Redis at {redis_address} is unreachable: {exc}\n"
        "  Start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no\n"
        "  or point REDIS_URL at a running server (redis://HOST:6379/0)."
    )

if failures:
    print("Cannot run the tests:\n" + "\n".join(failures), file=sys.stderr)
    sys.exit(2)
print(f"==> services ok: PostgreSQL {url.hostname}:{url.port or 5432}, Redis {redis_address}")

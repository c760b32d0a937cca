#!/usr/bin/env bash
# The TypeScript SDK (clients/typescript, docs/sdk.md).
#   bash scripts/sdk_check.sh            the check in `make test`: the committed SDK matches the
#                                        API's schema, it type-checks, and the contract tests pass
#                                        against a live server (gunicorn) on PostgreSQL
#   bash scripts/sdk_check.sh generate   `make sdk`: regenerate the SDK from the schema
# npm packages come from clients/typescript/package-lock.json (`npm ci`, again only when
# the lock file changed). The server's database is <DATABASE_URL's name>_sdk_contract, a
# fresh copy per run of a migrated template (<name>_sdk_template, migrated again only when
# a migration changed); it listens on the first free port of SDK_TEST_PORTS (8500-8509).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SDK=$ROOT/clients/typescript
PY=${PYTHON_BIN:-$ROOT/.venv/bin/python}
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/loyalty}"
export DJANGO_ENV=development
WORK=$(mktemp -d)
SERVER_PID=""
STATIC_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$STATIC_PID" ] && kill "$STATIC_PID" 2>/dev/null && wait "$STATIC_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null; then
  echo "The SDK check needs node 20 or later and npm (found node major version: $node_major)." >&2
  exit 1
fi

# npm packages, from the lock file
lock_sum=$(sha256sum "$SDK/package-lock.json" | cut -c1-16)
if [ "$(cat "$SDK/node_modules/.lock-sum" 2>/dev/null)" != "$lock_sum" ]; then
  echo "==> npm ci (clients/typescript)"
  (cd "$SDK" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$SDK/node_modules/.lock-sum"
fi

# The schema as the server makes it, offline.
schema() {
  # In English whatever DJANGO_LANGUAGE_CODE says, so the SDK does not change with it.
  "$PY" manage.py spectacular --format openapi-json --lang en --file "$WORK/openapi.json"
}

if [ "${1:-}" = "generate" ]; then
  schema
  (cd "$SDK" && node scripts/sdk.mjs generate "$WORK/openapi.json")
  exit 0
fi

# Meanwhile (it needs no server): the committed SDK matches the API's schema, and the SDK
# with its tests type-checks (tsc; the tests are JavaScript checked against the SDK's types).
(
  set -e
  schema
  cd "$SDK"
  node scripts/sdk.mjs check "$WORK/openapi.json"
  node_modules/.bin/tsc -p .
  echo "the SDK and its tests type-check"
) >"$WORK/static.log" 2>&1 &
STATIC_PID=$!

# The contract tests' database: a fresh copy of a migrated template.
db_base=$("$PY" -c 'import os, dj_database_url; print(dj_database_url.parse(os.environ["DATABASE_URL"])["NAME"])')
CONTRACT_DB="${db_base}_sdk_contract"
TEMPLATE_DB="${db_base}_sdk_template"
migrations_sum=$(find . -path ./.venv -prune -o -path ./clients -prune -o -path '*/migrations/*.py' -print \
  | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
db_url() { "$PY" -c 'import os, sys, urllib.parse as u; p = u.urlsplit(os.environ["DATABASE_URL"]); print(u.urlunsplit(p._replace(path="/" + sys.argv[1])))' "$1"; }
# shellcheck disable=SC2016
pg() { "$PY" - "$@" <<'PYEOF'
import os, sys, psycopg, dj_database_url
cfg = dj_database_url.parse(os.environ["DATABASE_URL"])
conn = psycopg.connect(host=cfg["HOST"] or None, port=cfg["PORT"] or None, user=cfg["USER"] or None,
                       password=cfg["PASSWORD"] or None, dbname="postgres", autocommit=True)
action, *args = sys.argv[1:]
if action == "comment":  # the template's migrations fingerprint, or nothing
    row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", args).fetchone()
    print(row[0] if row and row[0] else "")
else:
    for statement in args:
        conn.execute(statement)
PYEOF
}
if [ "$(pg comment "$TEMPLATE_DB")" != "$migrations_sum" ]; then
  echo "==> migrating the SDK tests' template database $TEMPLATE_DB"
  pg exec "DROP DATABASE IF EXISTS \"$TEMPLATE_DB\" WITH (FORCE)" "CREATE DATABASE \"$TEMPLATE_DB\""
  DATABASE_URL=$(db_url "$TEMPLATE_DB") "$PY" manage.py migrate --verbosity 0
  pg exec "COMMENT ON DATABASE \"$TEMPLATE_DB\" IS '$migrations_sum'"
fi
pg exec "DROP DATABASE IF EXISTS \"$CONTRACT_DB\" WITH (FORCE)" "CREATE DATABASE \"$CONTRACT_DB\" TEMPLATE \"$TEMPLATE_DB\""

# The server's environment: its own database, queue folder and limits loose enough for the tests.
export DATABASE_URL=$(db_url "$CONTRACT_DB")
export LOYALTY_VAR_DIR="$WORK/var" CELERY_BROKER_URL="filesystem://" CACHE_URL=""
export LOYALTY_MINIPROGRAM_ADAPTER="members.miniprogram.FakeAdapter"
export API_THROTTLE_SIGN_IN="1000/minute" API_THROTTLE_OTP_SEND="1000/minute" API_THROTTLE_REDEEM="1000/minute"
"$PY" clients/typescript/test/seed.py >"$WORK/seed.json"

port=""
for candidate in ${SDK_TEST_PORTS:-8500 8501 8502 8503 8504 8505 8506 8507 8508 8509}; do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then port=$candidate; break; fi
done
[ -n "$port" ] || { echo "no free port among ${SDK_TEST_PORTS:-8500-8509} for the SDK tests' server" >&2; exit 1; }
"$ROOT/.venv/bin/gunicorn" config.wsgi --bind "127.0.0.1:$port" --workers 1 --threads 8 --worker-class gthread \
  --log-level warning >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

(cd "$SDK" && node scripts/sdk.mjs build)

up=""
for _ in $(seq 1 600); do # up to a minute on a busy machine
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$up" ] || { echo "the SDK tests' server did not start on port $port:" >&2; cat "$WORK/server.log" >&2; exit 1; }

echo "==> contract tests against the live server on port $port (node --test)"
status=0
(cd "$SDK" && LOYALTY_API_URL="http://127.0.0.1:$port" SDK_SEED="$WORK/seed.json" \
  node --test --test-reporter=dot test/*.test.mjs) || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log" >&2
  tail -n 50 "$WORK/server.log" >&2
fi
pg exec "DROP DATABASE IF EXISTS \"$CONTRACT_DB\" WITH (FORCE)" || true
echo "==> the committed SDK matches the schema; the SDK type-checks"
if wait "$STATIC_PID"; then cat "$WORK/static.log"; else cat "$WORK/static.log" >&2; status=1; fi
echo "==> SDK check: ${SECONDS} s"
exit "$status"

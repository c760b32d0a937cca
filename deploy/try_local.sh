#!/usr/bin/env bash
# The many-machine setup of docs/deploy.md, on one machine, with the production settings:
# a PostgreSQL primary and its streaming replica (clusters of their own), pgbouncer
# (transaction mode for the web, session mode for workers and beat), Redis, gunicorn,
# two celery workers (ledger + default; contact + bulk) and beat. It then checks what a
# deployer checks: /readyz, the admin's CSS, a member flow over the API, JSON logs with
# request ids, /metrics. `--keep` leaves everything running until Ctrl-C.
#
#   bash deploy/try_local.sh [--keep]
#
# Needs: PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin), pgbouncer
# (apt-get install pgbouncer), a Redis at REDIS_URL (default redis://127.0.0.1:6379/0).
# Ports (override in the environment): PRIMARY_PORT 55436, REPLICA_PORT 55437,
# PGBOUNCER_PORT 6434, WEB_PORT 8102. Everything lives in a temporary folder, removed at
# the end.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP="${1:-}"
PG=/usr/lib/postgresql/15/bin
PRIMARY_PORT="${PRIMARY_PORT:-55436}"
REPLICA_PORT="${REPLICA_PORT:-55437}"
PGBOUNCER_PORT="${PGBOUNCER_PORT:-6434}"
WEB_PORT="${WEB_PORT:-8102}"
REDIS="${REDIS_URL:-redis://127.0.0.1:6379/0}"
PY="$PWD/.venv/bin/python"
BIN="$PWD/.venv/bin"
DIR="$(mktemp -d /tmp/loyalty-try-XXXXXX)"
AS=()
[ "$(id -u)" -eq 0 ] && { chown postgres:postgres "$DIR"; AS=(runuser -u postgres --); }  # servers refuse root

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -f "$DIR/pgbouncer.pid" ] && kill -TERM "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null || true
  for data in "$DIR/replica" "$DIR/primary"; do
    [ -f "$data/postmaster.pid" ] && "${AS[@]}" "$PG/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
  done
  rm -rf "$DIR"
}
trap cleanup INT TERM EXIT

echo "==> PostgreSQL primary on $PRIMARY_PORT, streaming replica on $REPLICA_PORT ($DIR)"
"${AS[@]}" "$PG/initdb" -D "$DIR/primary" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
# initdb --auth=trust allows local replication connections; a real primary needs
# "host replication replicator 10.0.0.21/32 scram-sha-256" in pg_hba.conf.
"${AS[@]}" "$PG/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w \
  -o "-p $PRIMARY_PORT -k $DIR -c listen_addresses=127.0.0.1 -c wal_level=replica" start >/dev/null
"$PG/psql" -X -q -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -c "CREATE DATABASE loyalty"
"${AS[@]}" "$PG/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$DIR/replica" -R -X stream --checkpoint=fast
"${AS[@]}" "$PG/pg_ctl" -D "$DIR/replica" -l "$DIR/replica.log" -w \
  -o "-p $REPLICA_PORT -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null

echo "==> pgbouncer on $PGBOUNCER_PORT (loyalty: transaction mode; loyalty_session: session mode)"
cat > "$DIR/pgbouncer.ini" <<EOF
[databases]
loyalty = host=127.0.0.1 port=$PRIMARY_PORT dbname=loyalty user=postgres pool_mode=transaction
loyalty_session = host=127.0.0.1 port=$PRIMARY_PORT dbname=loyalty user=postgres pool_mode=session
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = any
default_pool_size = 10
ignore_startup_parameters = extra_float_digits,options
logfile = $DIR/pgbouncer.log
pidfile = $DIR/pgbouncer.pid
EOF
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DIR/pgbouncer.ini"
"${AS[@]}" pgbouncer -d "$DIR/pgbouncer.ini"
sleep 0.5

# The environment every process reads (deploy/loyalty.env.example). No TLS on this
# machine: the https redirect is off, which check --deploy rightly warns about.
export DJANGO_ENV=production
export DJANGO_SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(64))')"
export DJANGO_ALLOWED_HOSTS=localhost,127.0.0.1
export DJANGO_SECURE_SSL_REDIRECT=false
export DJANGO_STATIC_ROOT="$DIR/static" DJANGO_MEDIA_ROOT="$DIR/media" LOYALTY_IMPORT_ROOT="$DIR/imports"
export LOYALTY_VAR_DIR="$DIR/var"
export DATABASE_URL="postgres://postgres@127.0.0.1:$PGBOUNCER_PORT/loyalty" DATABASE_POOLER=transaction
export DATABASE_CONN_MAX_AGE=60
export DATABASE_REPLICA_URL="postgres://postgres@127.0.0.1:$REPLICA_PORT/loyalty"
export CELERY_BROKER_URL="$REDIS" CACHE_URL="$REDIS"
export METRICS_TOKEN="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
export GUNICORN_BIND="127.0.0.1:$WEB_PORT" GUNICORN_WORKERS=2 GUNICORN_THREADS=1 PROMETHEUS_MULTIPROC_DIR="$DIR/metrics"
WORKER_ENV=(env "DATABASE_URL=postgres://postgres@127.0.0.1:$PGBOUNCER_PORT/loyalty_session" DATABASE_POOLER=session)

echo "==> collectstatic, manage.py deploy (session-mode pool, as the release step)"
"$PY" manage.py collectstatic --noinput -v0
"${WORKER_ENV[@]}" "$PY" manage.py deploy --fail-level ERROR | grep -E "^==>|done|WARN|security" || true

echo "==> gunicorn on $WEB_PORT, two workers, beat (logs in $DIR/*.log)"
setsid "$BIN/gunicorn" -c config/gunicorn.py config.wsgi >"$DIR/web.log" 2>&1 & pids+=($!)
setsid "${WORKER_ENV[@]}" "$BIN/celery" -A config worker --queues=ledger,celery --hostname=ledger@%h \
  --concurrency=1 >"$DIR/worker-ledger.log" 2>&1 & pids+=($!)
setsid "${WORKER_ENV[@]}" "$BIN/celery" -A config worker --queues=contact,bulk --hostname=contact@%h \
  --concurrency=1 >"$DIR/worker-contact.log" 2>&1 & pids+=($!)
setsid "${WORKER_ENV[@]}" "$BIN/celery" -A config beat --pidfile= \
  --scheduler django_celery_beat.schedulers:DatabaseScheduler >"$DIR/beat.log" 2>&1 & pids+=($!)

BASE="http://127.0.0.1:$WEB_PORT"
for _ in $(seq 1 100); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.3; done
for _ in $(seq 1 60); do curl -fs "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.5; done

ok=0
check() { if [ "$2" = "$3" ]; then echo "  ok   $1"; else echo "  FAIL $1: got $2, expected $3"; ok=1; fi; }
echo "==> checks"
echo "  /readyz: $(curl -s "$BASE/readyz")"
check "/readyz is 200" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" 200
# The admin's stylesheets (django-unfold's), by their hashed names: whitenoise serves them.
CSS="$(curl -s "$BASE/admin/login/" | grep -o '/static/[^"]*\.[0-9a-f]\{12\}\.css' | head -1 || true)"
check "the admin's CSS is linked by its hashed name" "$([ -n "$CSS" ] && echo yes)" yes
check "the admin's CSS ($CSS)" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE$CSS")" 200
KEY="$("$PY" manage.py shell -c "
from api.services import store_key_create
from members.models import Store
from operations.actions import member_create
store = Store.objects.create(code='try', name='Try', city='Shanghai')
member = member_create(phone='+8613800138000', home_store=store, source='try')
print(member.member_number, store_key_create(store=store, name='try', actions=['earn', 'refund'])[1])" | tail -1)"
read -r NUMBER RAW <<<"$KEY"
EARN="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/api/v1/pos/orders/" -H "Authorization: Api-Key $RAW" \
  -H 'Content-Type: application/json' -H 'X-Request-ID: try-earn-1' \
  -d "{\"member_number\": \"$NUMBER\", \"number\": \"A-1\", \"amount\": \"128.00\"}")"
check "earn over the API (through pgbouncer)" "$EARN" 201
REFUND="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/api/v1/pos/refunds/" -H "Authorization: Api-Key $RAW" \
  -H 'Content-Type: application/json' -d '{"order_number": "A-1", "number": "R-1", "amount": "28.00"}')"
check "refund over the API" "$REFUND" 201
sleep 1
check "a JSON access line with the request id" \
  "$(grep -c '"request_id": "try-earn-1"' "$DIR/web.log" | tr -d ' ')" 1
METRICS="$(curl -s -H "Authorization: Bearer $METRICS_TOKEN" "$BASE/metrics")"
check "/metrics counts the earn" \
  "$(grep -c '^loyalty_ledger_entries_total{currency="points",kind="earn"} 1.0' <<<"$METRICS" | tr -d ' ')" 1
check "/metrics without the token" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/metrics")" 404
check "the ledger audit" "$("${WORKER_ENV[@]}" "$PY" manage.py audit_ledger >/dev/null 2>&1 && echo clean)" clean

if [ "$KEY" != "" ] && [ "$KEEP" = "--keep" ]; then
  echo "==> running: $BASE (Ctrl-C stops everything); logs in $DIR"
  wait -n
fi
exit $ok

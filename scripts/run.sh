#!/usr/bin/env bash
# `make run`: install, set up the database (`manage.py deploy`: migrate, schedules, roles,
# checks; the same command a production deploy runs), seed the demo once, print the staff login, then run web,
# celery worker and celery beat together until Ctrl-C.
# Embedded defaults: SQLite in var/db.sqlite3 and kombu's filesystem broker in var/.
# Set DATABASE_URL and CELERY_BROKER_URL to run the same processes on PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh requirements.txt
mkdir -p var/celery-queue var/celery-processed

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"

python manage.py deploy
python manage.py seed_demo
python manage.py seed_programme_demo >/dev/null
python manage.py seed_foresight_demo >/dev/null
python manage.py demo_staff_login --url "http://$HOST:$PORT/admin/"
python manage.py demo_member_login --url "http://$HOST:$PORT/me/"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "==> stopping web, worker and beat"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# SQLite takes one writer at a time, so the embedded worker runs tasks one by one.
pool_args=()
case "${DATABASE_URL:-sqlite}" in sqlite*) pool_args=(--pool=solo) ;; esac

python manage.py runserver --noreload "$HOST:$PORT" & pids+=($!)
# One worker on every queue (CELERY_TASK_ROUTES: ledger, contact, bulk; celery, the default).
celery -A config worker --loglevel=INFO -Q "ledger,contact,bulk,${CELERY_TASK_DEFAULT_QUEUE:-celery}" "${pool_args[@]}" & pids+=($!)
celery -A config beat --loglevel=INFO --scheduler django_celery_beat.schedulers:DatabaseScheduler \
  --pidfile= & pids+=($!)
echo "==> running: web http://$HOST:$PORT/admin/ (staff), http://$HOST:$PORT/me/ (members), http://$HOST:$PORT/api/docs/ (API); celery worker, celery beat (Ctrl-C stops all three)"
# If any of the three dies, stop the others instead of limping on.
wait -n

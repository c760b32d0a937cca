#!/usr/bin/env bash
# `make thorough`: the ledger state machine at 1000 examples (HYPOTHESIS_PROFILE=thorough)
# and the tests marked `thorough` (the 100 000-row import job), against the same PostgreSQL
# and Redis as `make test`. CI runs it after `make test`, as its own step, so the suite
# developers run before every commit stays short. Prints the example count (the state
# machine prints the examples it ran, with -s) and how long the step took.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh requirements-dev.txt

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/loyalty}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-$REDIS_URL}"
export DJANGO_ENV=development
export HYPOTHESIS_PROFILE=thorough
python scripts/check_services.py

examples="${LEDGER_MACHINE_EXAMPLES:-$(python -c 'import conftest
from hypothesis import settings
print(settings.get_profile("thorough").max_examples)')}"
echo "==> ledger state machine, thorough profile: $examples examples"
started=$(date +%s)
status=0
python -m pytest -q -s -p no:cacheprovider "$@" \
  "loyalty/tests/test_ledger_stateful.py::test_ledger_state_machine" \
  "operations/tests/test_import_job.py::test_a_big_import_job_completes[100000]" || status=$?
echo "==> thorough profile: $examples examples in $(($(date +%s) - started)) s (exit $status)"
exit "$status"

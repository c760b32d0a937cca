#!/usr/bin/env bash
# `make test`: the whole suite against PostgreSQL (DATABASE_URL) and Redis (REDIS_URL).
# It never falls back to SQLite: if a server is unreachable it says how to start it and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh requirements-dev.txt

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/loyalty}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-$REDIS_URL}"
export DJANGO_ENV=development
python scripts/check_services.py

# The member center's browser tests (pytest -m browser) drive Debian's Chromium through
# Playwright and need a CJK font for the Chinese pages. CI runs as root.
if [ ! -x /usr/bin/chromium ] || [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
  echo "==> installing chromium and a CJK font (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei
fi
# The pgbouncer test (config/tests/test_pgbouncer.py) starts Debian's pgbouncer.
if [ ! -x /usr/sbin/pgbouncer ]; then
  echo "==> installing pgbouncer (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer
fi
# Compiled modules and pytest's rewritten test modules are kept between runs under var/
# (git-ignored), even where PYTHONDONTWRITEBYTECODE is set: without them every worker
# recompiles the suite and its plugins, ~7 s of CPU per process.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$PWD/var/pycache}"
# Screenshots of the browser tests land here (git-ignored under var/).
export ARTIFACTS_DIR="${ARTIFACTS_DIR:-$PWD/var/artifacts}"
mkdir -p "$ARTIFACTS_DIR"

echo "==> ruff"
ruff check --quiet .
echo "==> apps import one way (import-linter, pyproject.toml)"
lint-imports --no-cache >/dev/null || lint-imports --no-cache
echo "==> migrations are up to date"
python manage.py makemigrations --check --dry-run >/dev/null
# Parallel: one pytest-xdist worker per core (PYTEST_WORKERS=0 runs in one process); each
# worker gets its own test database, test_<name>_gw0, test_<name>_gw1, ... The slowest tests
# are collected first (conftest.py, SLOW_FIRST) and a worker that runs out of tests takes
# half of what another has left (--dist worksteal), so both end together. Extra arguments
# come after, so `-n 0` among them wins. The ledger state machine's 1000-example run is
# `make thorough` (scripts/thorough.sh), CI's next step.
echo "==> the TypeScript SDK matches the schema and passes its contract tests (scripts/sdk_check.sh)"
bash scripts/sdk_check.sh
echo "==> pytest (${PYTEST_WORKERS:-auto} workers)"
exec python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist worksteal "$@"

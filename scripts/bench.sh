#!/usr/bin/env bash
# `make bench`: earn throughput through loyalty.services.order_earn on PostgreSQL; see bench/README.md.
# Arguments go to the bench, e.g. `bash scripts/bench.sh --orders-per-process 200`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh requirements-dev.txt

# A database of its own: the bench creates it if missing and refuses one holding other members.
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/loyalty_bench}"
exec python bench/earn_throughput.py "$@"

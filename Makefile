.PHONY: run test lint bench
# Start the whole system on the embedded defaults (SQLite + filesystem broker).
run:
	bash scripts/run.sh
# The whole test suite against PostgreSQL and Redis.
test:
	bash scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
bench:
	bash scripts/bench.sh

.PHONY: run test thorough lint bench messages
# Start the whole system on the embedded defaults (SQLite + filesystem broker).
run:
	bash scripts/run.sh
# The whole test suite against PostgreSQL and Redis, one worker per core.
test:
	bash scripts/test.sh
# The ledger state machine at 1000 examples (CI's step after `make test`).
thorough:
	bash scripts/thorough.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
bench:
	bash scripts/bench.sh
# Refresh the Chinese catalogue after changing strings; translate the new entries, then compile.
messages:
	.venv/bin/python manage.py makemessages -l zh_Hans --no-obsolete -i ".venv/*" -i "bench/*" -i "*/tests/*" -i "var/*"
	.venv/bin/python manage.py compilemessages -l zh_Hans -i .venv
# Regenerate the TypeScript SDK (clients/typescript) and the mini-program's copy from the API's schema.
.PHONY: sdk
sdk:
	bash scripts/sdk_check.sh generate

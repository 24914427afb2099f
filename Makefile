VENV := .venv
BIN := $(VENV)/bin
PY_DIRS := runner tests benchmarks chaos
# PostgreSQL SQL only; db/clickhouse is linted with its own dialect when present.
PG_SQL_DIRS := $(wildcard db/migrations db/functions db/views db/post)

.PHONY: demo test lint fmt bench bootstrap bootstrap-demo chaos chaos-short

bootstrap:
	scripts/bootstrap.sh dev

bootstrap-demo:
	scripts/bootstrap.sh demo

demo: bootstrap-demo
	$(BIN)/tickagg demo

lint: bootstrap
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/sqlfluff lint $(PG_SQL_DIRS)
	if [ -n "$$(ls db/clickhouse/*.sql 2>/dev/null)" ]; then $(BIN)/sqlfluff lint --dialect clickhouse db/clickhouse; fi

# Rewrite Python sources so `lint` passes (SQL is left to its authors: sqlfluff fix db/...).
fmt: bootstrap
	$(BIN)/ruff check --fix $(PY_DIRS)
	$(BIN)/ruff format $(PY_DIRS)

test: lint
	$(BIN)/pytest

bench: bootstrap
	set -e; for f in $(sort $(wildcard benchmarks/bench_*.py)); do echo "== $$f"; $(BIN)/python "$$f"; done

# The chaos suite (chaos/run_chaos.py): crashes, outages, bad input, hostile names,
# secrets, privileges and scale against a throwaway cluster. CHAOS_ARGS="--seed N"
# replays a run; CI runs the short form through tests/test_chaos.py.
chaos: bootstrap
	$(BIN)/python chaos/run_chaos.py $(CHAOS_ARGS)

chaos-short: bootstrap
	$(BIN)/python chaos/run_chaos.py --short $(CHAOS_ARGS)

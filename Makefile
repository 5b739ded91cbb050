# investment-jobs — see README.md. Everything runs from the project's own virtualenv (.venv),
# installed from the committed constraints.txt.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat constraints.txt requirements.txt requirements-dev.txt pyproject.toml dev/pyproject.toml | sha1sum | cut -c1-12)
DEVENV := $(PY) -m investment_jobs_dev.cli
DEVENV_STACK := $(PY) -m investment_jobs_dev.stack

.PHONY: venv chromium stack test test-unit lint demo job jobs-on jobs-off migrate bench soak soak-load lock clean

venv: $(STAMP)

$(STAMP): constraints.txt requirements.txt requirements-dev.txt pyproject.toml dev/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

test: venv chromium  ## the whole suite: unit, DAG integrity, integration (real PostgreSQL + stand-ins), the UI in Chromium
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# Debian's Chromium for the browser test. CI runs only `make test`, so this installs it when it is
# missing and this is root with apt-get; otherwise (or with NO_CHROMIUM=1) that test is skipped
# with its reason.
chromium:
	@if [ -n "$(NO_CHROMIUM)" ] || command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser test"; \
		{ apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } >/dev/null 2>&1 \
			|| echo "could not install chromium: the browser test will be skipped"; \
	else echo "chromium is not installed: the browser test will be skipped"; fi

test-unit: venv
	$(PY) -m pytest tests/unit tests/dags

lint: venv
	$(PY) -m ruff check .

migrate: venv  ## apply the schema migrations to investment_db (env) or the embedded default
	$(DEVENV) migrate

# DAG and DATE reach the recipe as environment variables holding their text unexpanded (neither make
# nor the shell reads them as code), never pasted into the shell line. make's own exit status is 2 for
# any failure; `$(DEVENV) job` itself exits 1 for a failed run, 2 for a usage error, 3 when the run
# could not be prepared, and its last line says which.
unexport DAG DATE
export JOB_DAG := $(value DAG)
export JOB_DATE := $(value DATE)
job: venv  ## make job DAG=daily_performance DATE=2026-01-05
	@if [ -z "$${JOB_DAG}" ] || [ -z "$${JOB_DATE}" ]; then echo "usage: make job DAG=<dag id> DATE=<YYYY-MM-DD>" >&2; exit 2; fi
	@exec $(DEVENV) job --dag "$${JOB_DAG}" --date "$${JOB_DATE}"

jobs-on: venv  ## unpause all five DAGs (the Airflow of AIRFLOW_HOME, else the demo's)
	$(DEVENV) jobs on

jobs-off: venv  ## pause all five DAGs: no new runs start; running ones finish
	$(DEVENV) jobs off

stack: venv  ## Airflow with CeleryExecutor on Redis + PostgreSQL metadata: scheduler, DAG processor, API server, 2 workers
	$(DEVENV_STACK)

demo: venv  ## seed a book, backfill last month, serve the UI on http://localhost:8080
	$(DEVENV) demo

bench: venv  ## measure every job (daily 10k/100k vs baseline and floor, monthly, cleanup, 1,000 payouts)
	$(PY) -m bench.run

# SOAK_DAYS simulated business days (default 60) under faults drawn from SOAK_SEED (default 1), on
# the soak's own PostgreSQL cluster; the figures go into RELIABILITY.md.
SOAK_DAYS ?= 60
SOAK_SEED ?= 1
soak: venv  ## months of operation under seeded faults on a real deployment; invariants; RELIABILITY.md
	$(PY) -m investment_jobs_dev.soak --profile long --days "$(SOAK_DAYS)" --seed "$(SOAK_SEED)" --report RELIABILITY.md

# SOAK_LOAD approved withdrawals (default 10,000) worked by two overlapping runs under Stripe's rate
# limit (SOAK_RATE_LIMIT per second, default 25 as Stripe's test mode) and bursts of 429s.
SOAK_LOAD ?= 10000
SOAK_RATE_LIMIT ?= 25
soak-load: venv  ## a withdrawal backlog, two overlapping runs, Stripe's rate limit and 429 bursts; RELIABILITY.md
	$(PY) -m investment_jobs_dev.soak.load --requests "$(SOAK_LOAD)" --rate-limit "$(SOAK_RATE_LIMIT)" --report RELIABILITY.md

lock:  ## re-freeze constraints.txt from the current virtualenv
	$(PY) -m pip freeze --exclude-editable | grep -v '^investment-jobs' > constraints.txt

clean:
	rm -rf .local .pytest_cache .ruff_cache

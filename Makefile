# investment-jobs — see README.md. Everything runs from the project's own virtualenv (.venv),
# installed from the committed constraints.txt.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat constraints.txt requirements.txt requirements-dev.txt pyproject.toml | sha1sum | cut -c1-12)
DEVENV := $(PY) -m investment_jobs.devenv

.PHONY: venv test test-unit lint demo job jobs-on jobs-off migrate bench lock clean

venv: $(STAMP)

$(STAMP): constraints.txt requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

test: venv  ## the whole suite: unit, DAG integrity, integration (real PostgreSQL + stand-ins)
	$(PY) -m ruff check .
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest tests/unit tests/dags

lint: venv
	$(PY) -m ruff check .

migrate: venv  ## apply the schema migrations to investment_db (env) or the embedded default
	$(DEVENV) migrate

job: venv  ## make job DAG=daily_performance DATE=2026-01-05
	@if [ -z "$(DAG)" ] || [ -z "$(DATE)" ]; then echo "usage: make job DAG=<dag id> DATE=<YYYY-MM-DD>" >&2; exit 2; fi
	$(DEVENV) job --dag "$(DAG)" --date "$(DATE)"

jobs-on: venv  ## unpause all five DAGs (the Airflow of AIRFLOW_HOME, else the demo's)
	$(DEVENV) jobs on

jobs-off: venv  ## pause all five DAGs: no new runs start; running ones finish
	$(DEVENV) jobs off

demo: venv  ## seed a book, backfill last month, serve the UI on http://localhost:8080
	$(DEVENV) demo

bench: venv  ## measure every job (daily 10k/100k vs baseline and floor, monthly, cleanup, 1,000 payouts)
	$(PY) -m bench.run

lock:  ## re-freeze constraints.txt from the current virtualenv
	$(PY) -m pip freeze --exclude-editable | grep -v '^investment-jobs' > constraints.txt

clean:
	rm -rf .local .pytest_cache .ruff_cache

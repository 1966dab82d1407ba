# Room Desk: the two commands a newcomer needs.
#   make run    start the staff dashboard (sandbox payments/calendar/mail, data in ./data)
#   make test   set up everything the tests need, then lint, type-check and run the whole suite
#   make serve  production layout: dashboard, API and worker together, each restarted when it stops
# Extra flags: make run ARGS="--server.port 8600"   make test PYTEST_ARGS="tests/unit -x"
# The longer shell logic lives in scripts/ (bootstrap-venv, ensure-chromium, check-postgres).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
ARGS ?=
PYTEST_ARGS ?=
TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
export TEST_POSTGRES_URL

.PHONY: help run serve test lint clean-data

help:
	@echo "make run         start the dashboard (creates .venv, installs requirements.txt when it changed)"
	@echo "make serve       dashboard + API + worker under supervisord (restarted on failure; see README)"
	@echo "make test        chromium + .venv (requirements-dev.txt) + PostgreSQL check, then ruff, mypy, lint-imports, pytest"
	@echo "make lint        ruff check + mypy + lint-imports (the layers)"
	@echo "make clean-data  delete ./data (local database and sandbox files)"

run:
	@bash scripts/bootstrap-venv requirements.txt
	exec $(VENV)/bin/streamlit run app.py $(ARGS)

serve:
	@bash scripts/bootstrap-venv requirements.txt
	exec bash scripts/serve

test:
	@bash scripts/ensure-chromium
	@bash scripts/bootstrap-venv requirements-dev.txt
	@bash scripts/check-postgres
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint:
	@bash scripts/bootstrap-venv requirements-dev.txt
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean-data:
	rm -rf data/

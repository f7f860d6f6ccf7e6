# reftag: `make run` starts the whole stack from a fresh clone; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The install is redone only when pyproject.toml or this Makefile changes (or the stamp is removed).
STAMP := $(VENV)/.reftag-installed

PORT ?= 8000
REDIS_PORT ?= 6379
REDIS_URL ?= redis://127.0.0.1:$(REDIS_PORT)/0
export PORT REDIS_PORT REDIS_URL

.PHONY: run test test-slow install migrate clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

migrate: install
	mkdir -p var
	$(BIN)/python -c 'from store.migrate import upgrade; upgrade()'

run: migrate
	@$(BIN)/flask --app api reftag bootstrap
	@echo
	@echo "reftag is starting on http://127.0.0.1:$(PORT)  (Ctrl-C stops everything)"
	@echo
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $(PORT)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf var/*.db var/*.db-* var/celerybeat-schedule*

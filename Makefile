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

# `make run FLOWER=1` also starts Flower (Procfile.flower) on FLOWER_PORT; it is installed then.
FLOWER ?=
FLOWER_PORT ?= 5555
PROCFILE := $(if $(FLOWER),var/Procfile.flower,Procfile)

.PHONY: run test test-fast lint install migrate clean flower

# The multilingual base is converted once into a cache outside the repository
# (REFTAG_MODEL_CACHE, else ~/.cache/reftag/models); later runs only check its manifest.
install: $(STAMP)
	$(BIN)/python -m reft_core.multilingual

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# The dashboard's words are gettext catalogs (api/ui/translations/<locale>/LC_MESSAGES/messages.po,
# which translators edit); they are compiled here into the .mo files Flask-Babel reads, never committed.
CATALOGS := $(wildcard api/ui/translations/*/LC_MESSAGES/messages.po)
install: $(CATALOGS:.po=.mo)

%.mo: %.po | $(STAMP)
	$(BIN)/pybabel compile --statistics -i $< -o $@

# After the dashboard's words change: new strings go into every catalog, to be translated there
# (tests/api/test_dashboard_catalogs.py fails until they are), and strings no longer used leave.
.PHONY: messages
messages: install
	mkdir -p var
	$(BIN)/pybabel extract -F api/ui/babel.cfg -c TRANSLATORS: --add-location=file -w 100 \
	  --project=reftag --version=1 --copyright-holder='the reftag authors' -o var/messages.pot api/ui
	$(BIN)/pybabel update -i var/messages.pot -d api/ui/translations -w 100 --ignore-obsolete

migrate: install
	mkdir -p var
	$(BIN)/python -c 'from store.migrate import upgrade; upgrade()'

# Logs are plain text here, for the person at the terminal (LOG_FORMAT=json to see what a
# deployment writes); the processes' own default is JSON.
run: export LOG_FORMAT ?= text
run: migrate $(if $(FLOWER),flower)
	@$(BIN)/flask --app api reftag bootstrap
	@echo
	@echo "reftag is starting on http://127.0.0.1:$(PORT)  (Ctrl-C stops everything)"
	@echo
	FLOWER_PORT=$(FLOWER_PORT) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $(PORT) -f $(PROCFILE)

flower: install
	$(BIN)/python -c 'import flower' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[flower]'
	mkdir -p var
	cat Procfile Procfile.flower > var/Procfile.flower

# The dashboard test (tests/e2e/test_dashboard.py) drives Debian's chromium, with CJK fonts so
# that Chinese renders. As root they are installed here; anyone else is told what to install.
BROWSER_PACKAGES := chromium fonts-noto-cjk
.PHONY: browser
browser:
	@dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); \
	  else echo "make: apt-get install $(BROWSER_PACKAGES) for the dashboard's browser test" >&2; fi; }

# Every test, the slow ones included (CI runs this through .ci/run), after the linter and the
# type checker (strict on reft_core/, store/ and service/; see [tool.mypy] in pyproject.toml).
test: install browser lint
	$(BIN)/python -m pytest

# While working: the same without the tests marked slow (killed workers waiting out leases).
test-fast: install browser lint
	$(BIN)/python -m pytest -m 'not slow'

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf var/*.db var/*.db-* var/celerybeat-schedule*

# Siteline — the two commands: `make demo` and `make test`. Needs only Python 3.11.
PYTHON ?= python3.11
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
BIN    := $(VENV)/bin
# Superset has its own environment: its pins (SQLAlchemy<2, pandas<2.2) conflict with ours.
SUPERSET_VENV := .superset-venv
SERVE  ?= 1
PYTEST_ARGS ?=

.PHONY: install system-packages demo test unit integration lint format cases up doctor clean-data help

help:
	@echo "make demo       install, start the warehouse, run the pipeline on demo traffic, serve (SERVE=0: run once and exit)"
	@echo "make test       install and run every test (own embedded Postgres, or TEST_WAREHOUSE_URL)"
	@echo "make system-packages  install the Debian packages the tests need (as root), or say which"
	@echo "make lint       ruff + sqlfluff + import-linter (the layers)"
	@echo "make cases      write the dbt unit tests of tests/cases/visit_rules.yml"
	@echo "make up         start all services on the existing data"
	@echo "make doctor     check every component"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

# The lock file makes installs reproducible; --frozen refuses to install anything else.
$(BIN)/siteline: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra dev --python $(PYTHON) --quiet --compile-bytecode
	@touch $@

# The lock pins every package; `uv pip sync` installs exactly it and removes anything else.
$(SUPERSET_VENV)/bin/superset: $(UV) superset_config/requirements.lock
	test -x $(SUPERSET_VENV)/bin/python || $(UV) venv $(SUPERSET_VENV) --python $(PYTHON) --quiet
	$(UV) pip sync --python $(SUPERSET_VENV)/bin/python superset_config/requirements.lock --quiet \
		--compile-bytecode
	@touch $@

install: $(BIN)/siteline $(SUPERSET_VENV)/bin/superset

# Debian packages the integration tests need: chromium (Playwright drives the Debian build; it
# never downloads a browser of its own) and redis-server (the event bus and shared-store
# tests). The demo needs neither. Installed only when missing (the program is not on PATH and
# dpkg knows no such package: each package's program has its name), as root through apt;
# anyone else gets the command to run. make itself and Python 3.11 must be there before make
# runs, so they are the two things to install by hand.
SYSTEM_PACKAGES := chromium redis-server

system-packages:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do \
		command -v $$pkg >/dev/null 2>&1 || dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if ! command -v apt-get >/dev/null 2>&1; then \
			echo "the tests need$$missing (Debian package names; /usr/bin/chromium and redis-server on PATH), and this machine has no apt-get: install them with its package manager" >&2; \
			exit 1; \
		elif [ "$$(id -u)" != 0 ]; then \
			echo "the tests need the Debian packages$$missing; install them as root, then run make again:" >&2; \
			echo "  sudo apt-get update && sudo apt-get install -y$$missing" >&2; \
			exit 1; \
		fi; \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; \
	fi

demo: install
ifeq ($(SERVE),0)
	$(BIN)/siteline demo --no-serve
else
	$(BIN)/siteline demo
endif

# Two workers: each has its own data directory, embedded warehouse and databases
# (tests/conftest.py); a test file runs whole on one worker (--dist loadfile).
TEST_WORKERS ?= 2

test: system-packages install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: system-packages install
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint dbt_project/models dbt_project/macros
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The visit rules' table of cases -> dbt_project/models/intermediate/_visit_rules__unit_tests.yml
# (tests/unit/test_visit_rule_cases.py fails while that file is stale).
cases: install
	$(BIN)/python tests/cases/generate.py

up: install
	$(BIN)/siteline up

doctor: install
	$(BIN)/siteline doctor

clean-data:
	-$(BIN)/siteline warehouse stop
	rm -rf .siteline

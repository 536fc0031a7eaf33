#!/usr/bin/env bash
# The prepared GPU check of issue 12 (see gpu_check.py). One short script, each part time-boxed;
# results in $OUT/gpu_check.jsonl. Its train part ran on an H200 in session 10: bench/results/gpu_check.md.
#   bash bench/gpu/run.sh            # needs the project installed with torch (CUDA), diffusers, peft, vllm
set -u
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD}"; export OUT
PY="${PYTHON:-python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
"$PY" -c "import torch, diffusers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda)" > "$OUT/env.txt" 2>&1 || true
timeout 240 "$PY" bench/gpu/gpu_check.py train --steps 6 || echo '{"part": "train", "ok": false, "error": "timeout or crash"}' >> "$OUT/gpu_check.jsonl"
timeout 180 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 bench/gpu/gpu_check.py train --steps 6 \
  || echo '{"part": "train", "torchrun": true, "ok": false, "error": "timeout or crash"}' >> "$OUT/gpu_check.jsonl"
timeout 240 "$PY" bench/gpu/gpu_check.py vllm --requests 250 || echo '{"part": "vllm", "ok": false, "error": "timeout or crash"}' >> "$OUT/gpu_check.jsonl"
cat "$OUT/gpu_check.jsonl"

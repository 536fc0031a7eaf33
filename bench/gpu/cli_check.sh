#!/usr/bin/env bash
# The user's train path on a GPU, through the CLI (session 36). The demo's `partition` and `encode`
# folders are made on a CPU (`make demo`) and travel with the tree; on the GPU machine:
#   A  `direct-data train ... --device cuda` (the demo's flags, 40 steps, a checkpoint every 20)
#   B  the same stopped at 20 steps, then resumed to 40 (the resume path on CUDA)
#   C  A again (run-to-run repeatability on CUDA)
#   D  gpu_check.py train (the 1.3B architecture, LoRA r16, 480p x 81 frames), the python launcher
# Results in $OUT: the three logs, A's last checkpoint as a tar (sampled back on a CPU), cli_check.txt.
#   bash bench/gpu/cli_check.sh     # needs torch with CUDA, diffusers, datasets (carried as wheels in .whl/)
set -u
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/out/gpu_check}"; mkdir -p "$OUT"; export OUT
PY="${PYTHON:-python3}"
if [ -d .whl ] && [ "${NO_WHL:-0}" != 1 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
exec > >(tee -a "$OUT/cli_check.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch, diffusers, pyarrow, datasets, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'pyarrow', pyarrow.__version__, 'transformers', transformers.__version__)"
dd() { "$PY" -c "import sys; sys.argv[0] = 'direct-data'; from direct_data.cli import app; app()" "$@"; }
W=/tmp/cli_check; rm -rf $W; mkdir -p $W
FLAGS=(out/demo/partition out/demo/encode --objective direct --lora-rank 0 --batch-size 8 --lr 1e-3 --device "${DEVICE:-cuda}" --set ckpt_every=20)
SECONDS=0
dd train "${FLAGS[@]}" --max-steps 40 --out $W/a; echo "A rc=$? ${SECONDS} s"
SECONDS=0
dd train "${FLAGS[@]}" --max-steps 20 --out $W/b; echo "B1 rc=$?"
dd train "${FLAGS[@]}" --max-steps 40 --out $W/b; echo "B2 (resumed) rc=$? ${SECONDS} s"
dd train "${FLAGS[@]}" --max-steps 40 --out $W/c; echo "C rc=$?"
dd train "${FLAGS[@]}" --max-steps 40 --out $W/a; echo "A again (up to date?) rc=$?"
for r in a b c; do cp $W/$r/log.jsonl "$OUT/log_$r.jsonl"; done
tar -C $W/a -cf "$OUT/a_checkpoint.tar" checkpoints config.json
[ "${SKIP_D:-0}" = 1 ] || timeout 300 "$PY" bench/gpu/gpu_check.py train --steps 4 --objectives sft,direct \
  || echo '{"part": "train", "ok": false, "error": "timeout or crash"}' >> "$OUT/gpu_check.jsonl"

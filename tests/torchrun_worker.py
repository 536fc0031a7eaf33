"""Run by `tests/test_torchrun.py` under `torchrun --nproc_per_node 2` (gloo, CPU): the same
`training.loop.train` entry point, three times in one process group (a full run, a run stopped
after 2 steps, its resume). Rank 0 writes the three runs' records to OUT/records.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from direct_data.training.loop import train
from tests.test_train import _cfg, structured_data


def main() -> None:
    out, objective, lora_rank = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # once for the three runs (train() uses a group it finds)
    data = structured_data()
    kw = dict(max_steps=4, ckpt_every=1, keep_checkpoints=10, lora_rank=lora_rank, device="cpu",
              lr=1e-3 if lora_rank == 0 else 3e-3)
    full = train(_cfg(objective, out_dir=str(out / "full"), **kw), data)
    part = train(_cfg(objective, out_dir=str(out / "resumed"), **kw), data, stop_after=2)
    res = train(_cfg(objective, out_dir=str(out / "resumed"), **kw), data)
    if dist.get_rank() == 0:
        (out / "records.json").write_text(json.dumps({"full": full.records, "part": part.records, "resumed": res.records,
                                                      "world": dist.get_world_size()}))
    # every rank tears the group down together: a rank that destroys it while rank 0 is still writing
    # can abort in gloo's teardown ("terminate called without an active exception", seen once in
    # session 38 under a loaded `make test`, after all three runs had finished)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

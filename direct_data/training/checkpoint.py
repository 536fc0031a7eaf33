"""Checkpoints: safetensors + JSON, written atomically, loaded back bit-exactly.

A checkpoint folder ``OUT/checkpoints/step-NNNNNNNN`` holds the trained weights (LoRA:
``pytorch_lora_weights.safetensors`` in the diffusers Wan format; full fine-tuning:
``transformer/`` via ``save_pretrained``), ``optimizer.safetensors`` (the AdamW state, flattened),
``rng.safetensors`` (the noise / negative / dropout generators) and ``trainer_state.json`` (step,
sampler position, scheduler, optimizer scalars, the run's config).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from direct_data.core.errors import ConfigError, InputError, first_line
from direct_data.training import wan
from direct_data.training.config import TrainConfig
from direct_data.training.data import PartitionBatchSampler

__all__ = [
    "LORA_WEIGHT_NAME",
    "TRAINER_STATE",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "resolve_checkpoint",
    "read_trainer_state",
    "check_resumable",
    "json_safe",
]

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
TRAINER_STATE = "trainer_state.json"


# =============================================================================================
# the optimizer state as tensors + JSON
# =============================================================================================


def _flatten_optimizer(opt: torch.optim.Optimizer | dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimizer (or its state dict: keyed by parameter index, or by name under FSDP2) as
    tensors + JSON scalars."""
    sd = opt if isinstance(opt, dict) else opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"state.{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    def pid_of(x: str) -> int | str:  # an index, or a parameter name (FSDP2 full state dicts)
        return int(x) if x.isdigit() else x

    for key, v in tensors.items():
        pid, k = key.removeprefix("state.").rsplit(".", 1)
        state.setdefault(pid_of(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.rsplit(".", 1)
        state.setdefault(pid_of(pid), {})[k] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


# =============================================================================================
# writing and reading a checkpoint folder
# =============================================================================================


def _fsync_dir(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def save_checkpoint(path: Path, *, model, optimizer, scheduler, sampler: PartitionBatchSampler,
                    gens: dict[str, torch.Generator], state: dict[str, Any], cfg: TrainConfig,
                    full_state: tuple[dict[str, Tensor], dict[str, Any]] | None = None) -> Path:
    """Write a checkpoint folder atomically (``path.tmp`` then rename).

    LoRA: ``pytorch_lora_weights.safetensors`` in the diffusers Wan format (keys
    ``transformer.blocks.N....lora_A.weight``, LoraConfig in the metadata), loadable with
    ``WanPipeline.load_lora_weights(path)``. Full fine-tuning: ``transformer/`` via ``save_pretrained``.
    Plus ``optimizer.safetensors``, ``rng.safetensors`` and ``trainer_state.json``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if wan.has_lora(model):
        from diffusers import WanPipeline

        layers = {k: v.detach().contiguous().cpu() for k, v in wan.lora_state_dict(model).items()}
        WanPipeline.save_lora_weights(tmp, transformer_lora_layers=layers, weight_name=LORA_WEIGHT_NAME,
                                      transformer_lora_adapter_metadata=wan.lora_metadata(model))
    elif full_state is not None:  # FSDP2: the gathered full state dict, laid out as save_pretrained does
        from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

        (tmp / "transformer").mkdir()
        model.save_config(tmp / "transformer")
        save_file({k: v.contiguous() for k, v in full_state[0].items()}, str(tmp / "transformer" / SAFETENSORS_WEIGHTS_NAME),
                  metadata={"format": "pt"})
    else:
        model.save_pretrained(tmp / "transformer", safe_serialization=True)
    opt_tensors, opt_meta = _flatten_optimizer(full_state[1] if full_state is not None else optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    save_file({k: g.get_state() for k, g in gens.items()}, str(tmp / "rng.safetensors"))
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    meta = {"state": state, "sampler": sampler.state_dict(), "optimizer": opt_meta, "scheduler": sched,
            "config": cfg.to_json()}
    (tmp / TRAINER_STATE).write_text(json.dumps(json_safe(meta), indent=1, sort_keys=True))
    _fsync_dir(tmp)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``out_dir/checkpoints`` (None if none)."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
            and (p / TRAINER_STATE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def load_checkpoint(path: Path, *, model, optimizer, scheduler, sampler: PartitionBatchSampler,
                    gens: dict[str, torch.Generator], fsdp: bool = False) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote; returns the trainer state dict. ``fsdp``: the
    model is sharded with FSDP2 (every rank reads the full state and keeps its shard)."""

    path = Path(path)
    meta = read_trainer_state(path)
    try:
        return _load_checkpoint(path, meta, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, gens=gens, fsdp=fsdp)
    except Exception as e:  # a truncated, deleted or mismatched file: torch and safetensors raise their own types
        raise InputError(f"checkpoint {path}: cannot load it ({first_line(e)}); delete it to resume from an earlier one, "
                         f"or start anew (`--no-resume`, or another output folder)") from None


def _load_checkpoint(path: Path, meta: dict[str, Any], *, model, optimizer, scheduler, sampler: PartitionBatchSampler,
                     gens: dict[str, torch.Generator], fsdp: bool) -> dict[str, Any]:
    from safetensors.torch import load_file

    if wan.has_lora(model):
        from peft.utils import set_peft_model_state_dict

        sd = load_file(str(path / LORA_WEIGHT_NAME))
        sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
        res = set_peft_model_state_dict(model, sd)
        unexpected = getattr(res, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"checkpoint {path} has LoRA keys the model lacks: {unexpected[:5]}")
    else:
        sd = {}
        for f in sorted((path / "transformer").glob("*.safetensors")):
            sd.update(load_file(str(f)))
        if not fsdp:
            model.load_state_dict(sd, strict=True)
    # loaded on the CPU: AdamW keeps `step` there; load_state_dict moves the moments to the params' device
    opt_state = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), meta["optimizer"])
    if fsdp:
        from direct_data.training.distributed import load_full_state_dicts

        load_full_state_dicts(model, optimizer, sd, opt_state)
    else:
        optimizer.load_state_dict(opt_state)
    sched = dict(meta["scheduler"])
    sched["lr_lambdas"] = [None] * len(sched["base_lrs"])  # the schedule function is rebuilt from the config
    scheduler.load_state_dict(sched)
    sampler.load_state_dict(meta["sampler"])
    rng = load_file(str(path / "rng.safetensors"))
    for k, g in gens.items():
        g.set_state(rng[k])
    return meta["state"]


def read_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint folder: state (step, text_len, latent_shape,
    text_dim), sampler, optimizer scalars, scheduler, and the run's config."""
    path = Path(checkpoint) / TRAINER_STATE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read it ({first_line(e)}); a checkpoint written by `direct-data train` has a JSON object there") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or not isinstance(meta.get("state"), dict):
        raise InputError(f"{path}: not a trainer state (a JSON object with `config` and `state` objects)")
    return meta


# =============================================================================================
# finding a checkpoint, checking a resume
# =============================================================================================


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a user's path: the folder itself when it holds ``trainer_state.json``,
    else, for a run folder (``checkpoints/``), its latest complete checkpoint. Anything else is an
    `InputError` that says what the path holds."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such folder (give a run folder of `direct-data train` or one of its checkpoints)")
    if not p.is_dir():
        raise InputError(f"{p}: is a file; give a run folder of `direct-data train` (with checkpoints/) or a checkpoint "
                         f"folder (with {TRAINER_STATE})")
    if (p / TRAINER_STATE).is_file():
        if not ((p / "transformer").is_dir() or (p / LORA_WEIGHT_NAME).is_file()):
            raise InputError(f"{p}: a checkpoint without weights (neither transformer/ nor {LORA_WEIGHT_NAME})")
        return p
    if (p / "checkpoints").is_dir():
        ckpt = latest_checkpoint(p)
        if ckpt is None:
            found = sorted(q.name for q in (p / "checkpoints").iterdir())
            what = f"only {', '.join(found[:5])}{' ...' if len(found) > 5 else ''} (incomplete)" if found else "nothing"
            raise InputError(f"{p}: a run folder without a complete checkpoint (checkpoints/ holds {what}); "
                             f"let the run reach a checkpoint (ckpt_every, or its end)")
        return ckpt
    found = sorted(q.name for q in p.iterdir())
    holds = f"it holds {', '.join(found[:8])}{' ...' if len(found) > 8 else ''}" if found else "it is empty"
    raise InputError(f"{p}: neither a checkpoint folder ({TRAINER_STATE}) nor a run folder (checkpoints/): {holds}")


def check_resumable(checkpoint: Path, cfg: TrainConfig, *, model_from_config: bool = True) -> None:
    """A `ConfigError` when ``cfg`` differs from the checkpoint's run in a field its state depends
    on: the sampler position (seed, batch size) and the layout of weights and optimizer (LoRA rank
    and targets; the named config and its overrides when the model is built from them)."""
    old = read_trainer_state(checkpoint).get("config", {})
    new = cfg.to_json()
    keys = ["seed", "batch_size", "lora_rank"]
    if new["lora_rank"] > 0:
        keys.append("lora_targets")
    if model_from_config and not new["pretrained"] and not old.get("pretrained"):
        keys += ["model_config", "model_overrides"]
    diff = [k for k in keys if k in old and old[k] != new[k]]
    if diff:
        was = ", ".join(f"{k}={json.dumps(old[k])}" for k in diff)
        now = ", ".join(f"{k}={json.dumps(new[k])}" for k in diff)
        raise ConfigError(f"{checkpoint} was trained with {was}, this run asks for {now}: resume with the same values, "
                          f"or start anew (resume off: `--no-resume`, or another output folder)")


#: what a run folder holds (`training.loop.train` writes these and nothing else)
RUN_FILES = ("log.jsonl", "log.jsonl.tmp", "config.json", "checkpoints", "tb")


def check_run_folder(out_dir: str | Path, inputs: Sequence[str | Path] = ()) -> None:
    """A run folder is empty or holds a run (`RUN_FILES`); it is never an input nor holds one.
    Anything else is an `OutputError` before any work: training never writes among foreign files."""
    from direct_data.core.errors import OutputError

    p = Path(out_dir)
    if p.exists() and not p.is_dir():
        raise OutputError(f"--out {p}: is a file; give a run folder (empty, or an earlier run to resume)")
    rp = p.resolve()
    for inp in inputs:
        ri = Path(inp).resolve()
        if ri == rp or rp in ri.parents or ri in rp.parents:
            raise OutputError(f"--out {p}: overlaps the input {inp}; give a separate run folder")
    if p.is_dir():
        foreign = sorted(x.name for x in p.iterdir() if x.name not in RUN_FILES)
        ck = p / "checkpoints"
        if ck.is_dir():  # rotation deletes old checkpoint folders: every one there must be a checkpoint
            foreign += sorted(f"checkpoints/{x.name}" for x in ck.iterdir() if not is_checkpoint_folder(x))
        if foreign:
            raise OutputError(f"--out {p}: holds files a training run did not write ({', '.join(foreign[:5])}); "
                              f"give an empty folder or an earlier run folder")


#: what `save_checkpoint` writes into a checkpoint folder
CHECKPOINT_FILES = frozenset({"transformer", LORA_WEIGHT_NAME, "optimizer.safetensors", "rng.safetensors", TRAINER_STATE})
_CHECKPOINT_NAME = re.compile(r"step-\d{8}(\.tmp)?")


def is_checkpoint_folder(path: Path) -> bool:
    """A folder `save_checkpoint` wrote (or was writing: ``.tmp``): named ``step-NNNNNNNN`` and
    holding nothing else than what it writes. Rotation and overwrites delete only these."""
    return (path.is_dir() and not path.is_symlink() and _CHECKPOINT_NAME.fullmatch(path.name) is not None
            and all(x.name in CHECKPOINT_FILES for x in path.iterdir()))

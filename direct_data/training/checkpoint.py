"""Checkpoints: safetensors + JSON, written atomically, loaded back bit-exactly.

A checkpoint folder ``OUT/checkpoints/step-NNNNNNNN`` holds the trained weights (LoRA:
``pytorch_lora_weights.safetensors`` in the diffusers Wan format; full fine-tuning:
``transformer/`` via ``save_pretrained``), ``optimizer.safetensors`` (the AdamW state, flattened),
``rng.safetensors`` (the noise / negative / dropout generators) and ``trainer_state.json`` (step,
sampler position, scheduler, optimizer scalars, the run's config, and the sha256 of every other file,
which a resume and `sample` verify before they load anything).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from direct_data.core.errors import ConfigError, InputError, OutputError, first_line
from direct_data.core.shards import hold_lock, sha256_file
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
    "verify_checkpoint_files",
    "check_resumable",
    "json_safe",
    "rotate_checkpoints",
    "lock_run_folder",
]

log = logging.getLogger(__name__)

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
    for q in (tmp, path):  # an earlier (interrupted) write of this step is ours to replace; anything else is not
        if (q.exists() or q.is_symlink()) and not is_checkpoint_folder(q):
            what = ", ".join(foreign_files(q)[:5]) if q.is_dir() and not q.is_symlink() else "not a folder of ours"
            raise OutputError(f"{q}: holds files `direct-data train` did not write ({what}); move them out of the run folder")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if wan.has_lora(model):
        from diffusers import WanPipeline

        layers = {k: v.detach().contiguous().cpu() for k, v in wan.lora_state_dict(model).items()}
        WanPipeline.save_lora_weights(tmp, transformer_lora_layers=layers, weight_name=LORA_WEIGHT_NAME,
                                      transformer_lora_adapter_metadata=wan.lora_metadata(model))
        _canonical_header(tmp / LORA_WEIGHT_NAME)  # safetensors writes its metadata keys in hash order
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
            "config": cfg.to_json(), FILES_KEY: _file_digests(tmp)}
    (tmp / TRAINER_STATE).write_text(json.dumps(json_safe(meta), indent=1, sort_keys=True))
    _fsync_dir(tmp)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


#: the key of `trainer_state.json` that records the sha256 of every other file of the checkpoint
FILES_KEY = "files"


def _file_digests(folder: Path) -> dict[str, str]:
    """{path relative to ``folder``: sha256} of every file under it except the trainer state."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != TRAINER_STATE}


def verify_checkpoint_files(path: str | Path, meta: dict[str, Any], *, remedy: str = "use another checkpoint, or train again") -> None:
    """An `InputError` unless the files of checkpoint ``path`` that a load reads are the ones
    `save_checkpoint` wrote: each file its trainer state (``meta``) records is there with the recorded
    sha256, and no unrecorded weight file sits beside them. A checkpoint of a version that recorded
    no digests is loaded with a warning."""
    path = Path(path)
    rec = meta.get(FILES_KEY)
    if rec is None:
        log.warning("%s records no sha256 of its files (written by an earlier direct-data): its weights are not verified", path)
        return
    if not (isinstance(rec, dict) and rec and all(isinstance(k, str) and _read_by_load(k) and isinstance(v, str)
                                                  and re.fullmatch(r"[0-9a-f]{64}", v) for k, v in rec.items())):
        raise InputError(f"{path / TRAINER_STATE}: corrupt trainer state ({FILES_KEY} is not a table of checkpoint file -> sha256); "
                         f"use a checkpoint written by `direct-data train`")
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name != TRAINER_STATE}
    missing = sorted(k for k in rec if k not in present)
    unrecorded = sorted(k for k in present - set(rec) if _read_by_load(k))
    changed = sorted(k for k in rec if k in present and sha256_file(path / k) != rec[k])
    problems = [f"{what} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                for what, names in (("changed:", changed), ("missing:", missing), ("not written by train:", unrecorded)) if names]
    if problems:
        raise InputError(f"checkpoint {path}: its files are not the ones `direct-data train` wrote ({'; '.join(problems)}; "
                         f"sha256 recorded in {TRAINER_STATE}); {remedy}")


def _read_by_load(rel: str) -> bool:
    """Whether a load reads the checkpoint file at ``rel``: the top-level files `save_checkpoint`
    writes, and the JSON and safetensors files of ``transformer/``."""
    parts = rel.split("/")
    if len(parts) == 1:
        return rel in CHECKPOINT_FILES
    return len(parts) == 2 and parts[0] == "transformer" and parts[1].endswith((".safetensors", ".json"))


def _canonical_header(path: Path) -> None:
    """Rewrite the header of safetensors file ``path`` with its metadata keys sorted and its tensors
    in file order, so that the same tensors and metadata give the same bytes in every process (the
    safetensors writer orders the metadata by a per-process hash). The tensor data is unchanged."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    out: dict[str, Any] = {}
    if meta is not None:
        out["__metadata__"] = {k: meta[k] for k in sorted(meta)}
    for k in sorted(header, key=lambda k: (header[k]["data_offsets"][0], k)):
        out[k] = header[k]
    text = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-(8 + len(text)) % 8)  # safetensors pads the header so the data starts 8-byte aligned
    tmp = path.with_name(path.name + ".canon")
    tmp.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    os.replace(tmp, path)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``out_dir/checkpoints`` (None if none)."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
            and (p / TRAINER_STATE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


#: what a user does about a checkpoint a resume cannot load
RESUME_REMEDY = "delete it to resume from an earlier one, or start anew (`--no-resume`, or another output folder)"


def load_checkpoint(path: Path, *, model, optimizer, scheduler, sampler: PartitionBatchSampler,
                    gens: dict[str, torch.Generator], fsdp: bool = False) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote; returns the trainer state dict. ``fsdp``: the
    model is sharded with FSDP2 (every rank reads the full state and keeps its shard)."""

    path = Path(path)
    meta = read_trainer_state(path)
    verify_checkpoint_files(path, meta, remedy=RESUME_REMEDY)
    try:
        return _load_checkpoint(path, meta, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, gens=gens, fsdp=fsdp)
    except Exception as e:  # a truncated, deleted or mismatched file: torch and safetensors raise their own types
        raise InputError(f"checkpoint {path}: cannot load it ({first_line(e)}); {RESUME_REMEDY}") from None


def _load_checkpoint(path: Path, meta: dict[str, Any], *, model, optimizer, scheduler, sampler: PartitionBatchSampler,
                     gens: dict[str, torch.Generator], fsdp: bool) -> dict[str, Any]:
    from safetensors.torch import load_file

    if wan.has_lora(model):
        from peft.utils import set_peft_model_state_dict

        sd = load_file(str(path / LORA_WEIGHT_NAME))
        sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
        res = set_peft_model_state_dict(model, sd)
        check_lora_keys(res, path / LORA_WEIGHT_NAME)
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
        _check_optimizer_state(opt_state, optimizer)
        optimizer.load_state_dict(opt_state)
    sched = dict(meta["scheduler"])
    sched["lr_lambdas"] = [None] * len(sched["base_lrs"])  # the schedule function is rebuilt from the config
    scheduler.load_state_dict(sched)
    sampler.load_state_dict(meta["sampler"])
    rng = load_file(str(path / "rng.safetensors"))
    for k, g in gens.items():
        g.set_state(rng[k])
    return meta["state"]


def check_lora_keys(res: Any, lora: Path) -> None:
    """A `ValueError` when loading adapter file ``lora`` left LoRA weights of the model unset
    (missing tensors) or brought ones the model lacks (``res``: what `set_peft_model_state_dict`
    returned)."""
    unexpected = list(getattr(res, "unexpected_keys", None) or [])
    if unexpected:
        raise ValueError(f"{lora} has LoRA keys the model lacks: {unexpected[:5]}")
    missing = [k for k in (getattr(res, "missing_keys", None) or []) if "lora_" in k]
    if missing:
        raise ValueError(f"{lora} lacks LoRA weights of the model: {missing[:5]}")


def _check_optimizer_state(opt_state: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """A `ValueError` unless ``opt_state`` (unflattened) is an AdamW state of ``optimizer``'s
    parameters: one saved group per group, each with as many parameters, and every parameter's state
    complete (step, exp_avg, exp_avg_sq[, max_exp_avg_sq]) with moments of the parameter's shape."""
    groups, cur = opt_state["param_groups"], optimizer.param_groups
    if not isinstance(groups, list) or len(groups) != len(cur):
        raise ValueError(f"optimizer state has {len(groups) if isinstance(groups, list) else 'no'} parameter groups, "
                         f"the model {len(cur)}")
    params: dict[Any, Tensor] = {}
    for g, c in zip(groups, cur):
        ids = g.get("params") if isinstance(g, dict) else None
        if not isinstance(ids, list) or len(ids) != len(c["params"]):
            raise ValueError("optimizer state's parameter groups do not match the model's trainable parameters")
        params.update(zip(ids, c["params"]))
    amsgrad = any(c.get("amsgrad") for c in cur)
    need = ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
    for pid, st in opt_state["state"].items():
        if pid not in params:
            raise ValueError(f"optimizer state for parameter {pid}, which the model does not have")
        missing = [k for k in need if k not in st]
        if missing:
            raise ValueError(f"optimizer state of parameter {pid} lacks {', '.join(missing)}")
        p = params[pid]
        for k in need[1:]:
            v = st[k]
            if not isinstance(v, Tensor) or tuple(v.shape) != tuple(p.shape) or not v.is_floating_point():
                got = list(v.shape) if isinstance(v, Tensor) else type(v).__name__
                raise ValueError(f"optimizer state {pid}.{k} is {got}, the parameter is {list(p.shape)}")
        step = st["step"]
        if not (isinstance(step, Tensor) and step.numel() == 1 or isinstance(step, (int, float)) and not isinstance(step, bool)):
            raise ValueError(f"optimizer state {pid}.step is not a number")


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
    problem = _state_problem(meta["state"])
    if problem is None:
        try:  # the run's config, as `train` wrote it: every value of the type and range its declaration allows
            TrainConfig(**{k: v for k, v in meta["config"].items() if k in TrainConfig.keys()})
        except ConfigError as e:
            problem = f"config: {e}"
    if problem is not None:
        raise InputError(f"{path}: corrupt trainer state ({problem}); use a checkpoint written by `direct-data train`, "
                         f"or delete this one to resume from an earlier one")
    return meta


#: the largest latent a checkpoint may record (as `sample`'s latent_shape: values per clip)
MAX_LATENT_VALUES = 2**31


def _state_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with a trainer state's ``state`` object (step, nan_skips, text_len,
    latent_shape, text_dim), or None."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    from direct_data.training.config import MAX_STEPS, MAX_TEXT_LEN

    for k, lo, hi in (("step", 0, MAX_STEPS), ("nan_skips", 0, MAX_STEPS), ("text_len", 1, MAX_TEXT_LEN),
                      ("text_dim", 1, 2**20)):
        if k in state and state[k] is not None and not (is_int(state[k]) and lo <= state[k] <= hi):
            return f"state.{k} = {json.dumps(state[k])[:40]}, expected an integer in {lo}..{hi}"
    if "step" not in state:
        return "no state.step"
    shape = state.get("latent_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 4 and all(is_int(x) and x >= 1 for x in shape)
                                  and math.prod(shape) <= MAX_LATENT_VALUES):
        return (f"state.latent_shape = {json.dumps(shape)[:60]}, expected four positive integers C, F, H, W "
                f"(at most {MAX_LATENT_VALUES:,} values)")
    return None


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


#: output-affecting fields that a resume may change: how long to train (the schedule is rebuilt from
#: the config, and every step before the checkpoint is done), and where the pretrained base lives
#: (a moved folder; the weights themselves come from the checkpoint or are checked by loading it)
RESUME_MAY_CHANGE = frozenset({"max_steps", "pretrained"})


def check_resumable(checkpoint: Path, cfg: TrainConfig, *, model_from_config: bool = True) -> None:
    """A `ConfigError` when ``cfg`` differs from the checkpoint's run in a field that changes the
    trained result (`output=True` in `TrainConfig`: the objective and its terms, the optimiser, the
    seed and batch size, the LoRA layout, the model when it is built from the named config), other
    than `RESUME_MAY_CHANGE`: a resumed run continues the same run, or is refused."""
    old = read_trainer_state(checkpoint).get("config", {})
    new = cfg.to_json()
    keys = [f.name for f in TrainConfig.declared() if f.metadata.get("output", True) and f.name not in RESUME_MAY_CHANGE]
    if new["lora_rank"] == 0 and old.get("lora_rank") == 0:  # full fine-tuning: no adapter to lay out
        keys = [k for k in keys if k not in ("lora_targets", "lora_alpha")]
    if not (model_from_config and not new["pretrained"] and not old.get("pretrained")):  # the model is not built from them
        keys = [k for k in keys if k not in ("model_config", "model_overrides")]
    diff = [k for k in keys if k in old and old[k] != new[k]]
    if diff:
        was = ", ".join(f"{k}={json.dumps(old[k])}" for k in diff)
        now = ", ".join(f"{k}={json.dumps(new[k])}" for k in diff)
        raise ConfigError(f"{checkpoint} was trained with {was}, this run asks for {now}: resume with the same values, "
                          f"or start anew (resume off: `--no-resume`, or another output folder)")


#: what a run folder holds (`training.loop.train` writes these and nothing else)
RUN_FILES = ("log.jsonl", "log.jsonl.tmp", "config.json", "checkpoints", "tb", ".direct-data-train.lock")


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
        # files named as ours are ours only in a recognisable run: its config.json is a run config
        # (a user's own config.json or log.jsonl is never overwritten)
        names = {x.name for x in p.iterdir()} - {LOCK_FILE}
        if names and not (names <= {"checkpoints"} or _is_run_config(p / "config.json")):
            mine = sorted(names - {"checkpoints"})
            raise OutputError(f"--out {p}: holds {', '.join(mine)} but is not a run folder of `direct-data train` "
                              f"(no config.json of a run); give an empty folder or an earlier run folder")


def _is_run_config(path: Path) -> bool:
    """``path`` is the config.json a training run writes (`TrainConfig.to_json`): a JSON object of
    known `TrainConfig` fields, with the ones every run records."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(cfg, dict) and set(cfg) <= set(TrainConfig.keys())
            and {"objective", "seed", "batch_size", "lora_rank", "lr", "max_steps"} <= set(cfg))


#: what `save_checkpoint` writes into a checkpoint folder
CHECKPOINT_FILES = frozenset({"transformer", LORA_WEIGHT_NAME, "optimizer.safetensors", "rng.safetensors", TRAINER_STATE})
#: what `save_pretrained` (or the FSDP2 writer) puts into ``transformer/``: the config and the
#: weights, one file or shards with their index
_TRANSFORMER_FILE = re.compile(r"config\.json|diffusion_pytorch_model(-\d{5}-of-\d{5})?\.safetensors"
                               r"|diffusion_pytorch_model\.safetensors\.index\.json")
_CHECKPOINT_NAME = re.compile(r"step-\d{8}(\.tmp)?")


def foreign_files(path: Path) -> list[str]:
    """The entries of checkpoint folder ``path``, recursively, that `save_checkpoint` does not write
    (paths relative to it; symbolic links and unexpected folders count as foreign)."""
    out: list[str] = []
    for x in sorted(path.iterdir()):
        if x.is_symlink() or x.name not in CHECKPOINT_FILES:
            out.append(x.name)
        elif x.name == "transformer":
            if not x.is_dir():
                out.append(x.name)
                continue
            out += [f"transformer/{y.name}" for y in sorted(x.iterdir())
                    if y.is_symlink() or not y.is_file() or not _TRANSFORMER_FILE.fullmatch(y.name)]
        elif not x.is_file():
            out.append(f"{x.name}/")
    return out


def is_checkpoint_folder(path: Path) -> bool:
    """A folder `save_checkpoint` wrote (or was writing: ``.tmp``): named ``step-NNNNNNNN`` and
    holding, recursively, nothing else than the files it writes. Rotation and overwrites delete
    only these."""
    return (path.is_dir() and not path.is_symlink() and _CHECKPOINT_NAME.fullmatch(path.name) is not None
            and not foreign_files(path))


def rotate_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints under ``root`` (``OUT/checkpoints``).
    A checkpoint folder holding anything `save_checkpoint` did not write (a user's file dropped into
    it) is left as it is, with a warning: rotation never deletes files it did not write."""
    done = sorted((q for q in root.glob("step-*") if _CHECKPOINT_NAME.fullmatch(q.name) and not q.name.endswith(".tmp")
                   and q.is_dir() and not q.is_symlink()), key=lambda q: int(q.name.split("-")[1]))
    for q in done[: max(0, len(done) - keep)]:
        foreign = foreign_files(q)
        if foreign:
            log.warning("keeping old checkpoint %s: it holds files `direct-data train` did not write (%s)", q,
                        ", ".join(foreign[:5]))
            continue
        shutil.rmtree(q)


#: the lock file of a run folder: held (flock) by the one process writing the run
LOCK_FILE = ".direct-data-train.lock"


@contextlib.contextmanager
def lock_run_folder(out_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on run folder ``out_dir`` (created if needed) for the
    block: a second process writing the same run folder is an `OutputError`, never two writers."""
    p = Path(out_dir)
    created = not p.exists()
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {p}: cannot create it ({first_line(e)})") from None
    lock = p / LOCK_FILE
    new_lock = not lock.exists()
    fd = hold_lock(lock, p)
    ok = False
    try:
        yield
        ok = True
    finally:
        if not ok and created and new_lock:  # a run that failed before writing anything leaves no folder behind
            with contextlib.suppress(OSError):
                if [x.name for x in p.iterdir()] == [LOCK_FILE]:
                    lock.unlink()
                    p.rmdir()
        os.close(fd)

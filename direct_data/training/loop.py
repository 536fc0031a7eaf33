"""The DiReCT training run for Wan 2.1 (docs/METHOD.md), top to bottom.

    config -> data fits the model? -> model (+ LoRA, + frozen reference) -> optimizer, scheduler,
    sampler, generators -> resume -> loop:
        batch -> caption dropout -> `step.train_step` (noise, one forward, loss terms)
        -> backward -> skip if non-finite -> clip -> step -> log -> checkpoint

Config: `direct_data.training.config`; data and batches: `.data`; the step: `.step`; checkpoint
I/O: `.checkpoint`. Everything stochastic draws from seeded generators (noise, negatives, caption
dropout) whose states are checkpointed with model, optimizer, scheduler and sampler position, so a
stopped and resumed run reproduces the uninterrupted loss curve bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from direct_data.core.errors import ConfigError, InputError, UserError, first_line
from direct_data.core.progress import progress_bar
from direct_data.training import distributed as ddist
from direct_data.training import wan
from direct_data.training.checkpoint import (
    check_resumable,
    json_safe,
    latest_checkpoint,
    load_checkpoint,
    lock_run_folder,
    rotate_checkpoints,
    save_checkpoint,
)
from direct_data.training.config import TrainConfig
from direct_data.training.data import PartitionBatchSampler, TrainData, ValBatch, collate, drop_captions
from direct_data.training.step import evaluate_fm, train_step

__all__ = ["train", "TrainResult", "NonFiniteLossError", "check_model_fits"]

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError, RuntimeError):
    """Raised when more than `max_nan_skips` steps had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    model: Any
    records: list[dict[str, Any]]  # one per logged step (also in out_dir/log.jsonl)
    step: int
    nan_skips: int
    checkpoint: Path | None
    val_fm: list[tuple[int, float]]  # (step, validation FM loss)
    stopped: bool  # True when stop_after ended the run before max_steps


def train(cfg: TrainConfig, data: TrainData, *, model=None, val: ValBatch | None = None, resume: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Train ``model`` (or a new one from ``cfg.model_config`` / ``cfg.pretrained``) on ``data``.

    ``resume``: continue from the latest checkpoint in ``cfg.out_dir`` when one exists.
    ``stop_after``: stop (and checkpoint) once this many steps are done in total, as an interrupted
    run would; a later call with ``resume=True`` continues it. Raises `NonFiniteLossError` once more
    than ``cfg.max_nan_skips`` steps were skipped for a non-finite loss or gradient; data that cannot
    fit the model is an `InputError` / `ConfigError` before any work.
    """
    dist_, dist_device = ddist.from_env(cfg.device)  # torchrun: this rank's place and device
    # one writer per run folder, for the whole run (rank 0 writes; a second process is refused)
    lock = lock_run_folder(cfg.out_dir) if (cfg.out_dir and dist_.is_main) else contextlib.nullcontext()
    try:
        with lock:
            return _train(cfg, data, model=model, val=val, resume=resume, stop_after=stop_after, d=dist_,
                          device=dist_device or _resolve_device(cfg.device))
    finally:
        dist_.close()


def _train(cfg: TrainConfig, data: TrainData, *, model, val: ValBatch | None, resume: bool, stop_after: int | None,
           d: ddist.Dist, device: torch.device) -> TrainResult:
    if d.enabled:
        ddist.check_batch(cfg.batch_size, d)
    main = d.is_main  # rank 0 logs and writes; every rank computes
    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    text_len = cfg.text_len or data.max_text_len
    if text_len < data.max_text_len:
        raise ConfigError(f"text_len={text_len} is shorter than the longest text states of the data "
                          f"({data.max_text_len} tokens): raise text_len, or leave it unset (the data's longest)")
    ckpt = latest_checkpoint(out_dir) if (out_dir and resume) else None
    if ckpt is not None:  # before building anything: a resume under other values cannot load
        check_resumable(ckpt, cfg, model_from_config=model is None)

    # --- model ---------------------------------------------------------------------------------
    model_from_config = model is None
    if model is None:
        if cfg.pretrained is None:  # check the named config before building it (wan2.1-1.3b is large)
            kwargs = wan.transformer_config(cfg.model_config, **wan.latent_overrides(cfg.model_overrides,
                                                                                     data.latent_shape[0]))
            check_model_fits(kwargs, data, source=f"model_config {cfg.model_config!r}", configurable=True)
        model = wan.build_for_latents(cfg.model_config, pretrained=cfg.pretrained, seed=cfg.seed,
                                      overrides=cfg.model_overrides, latent_channels=data.latent_shape[0])
    source = (f"model_config {cfg.model_config!r}" if model_from_config and cfg.pretrained is None
              else f"the pretrained model {cfg.pretrained}" if model_from_config else "the given model")
    check_model_fits(model.config, data, source=source, configurable=model_from_config and cfg.pretrained is None)
    needs_ref = cfg.reg in ("moments", "mmd", "l2") and cfg.lam_reg > 0
    ref_model = None
    if cfg.lora_rank > 0:
        if not wan.has_lora(model):
            wan.add_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=cfg.lora_targets,
                         seed=cfg.seed)
    else:
        model.requires_grad_(True)
        if needs_ref:  # full fine-tuning: a frozen copy of the starting weights is the reference
            ref_model = copy.deepcopy(model).requires_grad_(False).eval().to(device)
    model.to(device).train()
    if device.type == "cuda" and cfg.grad_checkpointing:
        model.enable_gradient_checkpointing()
    fsdp = d.enabled and cfg.lora_rank == 0
    model = ddist.wrap_model(model, full=cfg.lora_rank == 0, d=d, device=device)  # DDP / FSDP2 under torchrun
    params = [p for p in model.parameters() if p.requires_grad]

    # --- optimisation ----------------------------------------------------------------------------
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    sampler = PartitionBatchSampler(data.partition, cfg.batch_size, cfg.seed, shards=d.world_size)
    gens = {"noise": torch.Generator().manual_seed(cfg.seed), "neg": torch.Generator().manual_seed(cfg.seed + 1),
            "drop": torch.Generator().manual_seed(cfg.seed + 2)}
    step, nan_skips = 0, 0

    # --- resume ----------------------------------------------------------------------------------
    log_path = out_dir / "log.jsonl" if out_dir else None
    records: list[dict[str, Any]] = []
    if ckpt is not None:
        st = load_checkpoint(ckpt, model=ddist.unwrap(model), optimizer=optimizer, scheduler=scheduler, sampler=sampler,
                             gens=gens, fsdp=fsdp)
        step, nan_skips = int(st["step"]), int(st["nan_skips"])
        records = _read_log(log_path, step)
        log.info("resumed from %s at step %d", ckpt, step)
    d.barrier()  # every rank has read the log before rank 0 rewrites it
    if out_dir and main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_json(), indent=1, sort_keys=True))
        tmp = log_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(json_safe(r), sort_keys=True) + "\n" for r in records))
        os.replace(tmp, log_path)
    log_file = open(log_path, "a") if (log_path and main) else None
    tb = _tensorboard(out_dir) if (cfg.tensorboard and out_dir and main) else None

    def checkpoint() -> Path | None:
        if out_dir is None:
            return None
        state = {"step": step, "nan_skips": nan_skips, "text_len": text_len, "latent_shape": list(data.latent_shape),
                 "text_dim": data.text_dim}
        full = ddist.full_state_dicts(model, optimizer) if fsdp else None  # a collective: every rank
        p = out_dir / "checkpoints" / f"step-{step:08d}"
        if main:
            save_checkpoint(p, model=ddist.unwrap(model), optimizer=optimizer, scheduler=scheduler, sampler=sampler,
                            gens=gens, state=state, cfg=cfg, full_state=full)
            rotate_checkpoints(p.parent, cfg.keep_checkpoints)
        d.barrier()
        return p

    val_fm: list[tuple[int, float]] = [(r["step"], r["val_fm"]) for r in records if r.get("val_fm") is not None]

    def validate() -> None:
        if val is not None:
            model.eval()
            val_fm.append((step, evaluate_fm(model, val, device, cfg.bf16, cfg.prediction, cfg.x0_min_level)))
            model.train()

    def write(rec: dict[str, Any]) -> None:
        records.append(rec)
        if log_file:
            log_file.write(json.dumps(json_safe(rec), sort_keys=True) + "\n")
            log_file.flush()
        if tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    tb.add_scalar(k, v, rec["step"])

    if step == 0 and val is not None:
        validate()
        records.append({"step": 0, "val_fm": val_fm[-1][1]})
        if log_file:
            log_file.write(json.dumps(records[-1], sort_keys=True) + "\n")
    end = cfg.max_steps if stop_after is None else min(cfg.max_steps, stop_after)
    last_ckpt = None

    # --- the loop --------------------------------------------------------------------------------
    try:
        with progress_bar(f"train[{cfg.objective}]", total=cfg.max_steps, enabled=cfg.progress and main, initial=step) as pbar:
            while step < end:
                t0, c0 = time.perf_counter(), time.process_time()
                epoch, rows = sampler.next_batch()
                batch = collate(data, rows, text_len=text_len, micro_fraction=cfg.micro_fraction,
                                use_micro=cfg.lam_micro > 0, gen=gens["neg"])
                batch = drop_captions(batch, cfg.cond_dropout, gens["drop"])
                loss, stats = train_step(model, batch, data, cfg, gen_noise=gens["noise"], gen_neg=gens["neg"],
                                         device=device, ref_model=ref_model,
                                         shard=ddist.shard_slice(len(rows), d) if d.enabled else None)
                stats = ddist.mean_stats(stats, d)  # the global batch's means (a non-finite loss anywhere skips everywhere)
                optimizer.zero_grad(set_to_none=True)
                skipped = not math.isfinite(stats["loss"])
                grad_norm = math.nan
                if not skipped:
                    loss.backward()
                    if cfg.grad_clip > 0:
                        grad_norm = _scalar(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
                    else:
                        grad_norm = _scalar(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
                    skipped = not math.isfinite(grad_norm)
                if skipped:
                    optimizer.zero_grad(set_to_none=True)
                    nan_skips += 1
                else:
                    optimizer.step()
                    scheduler.step()
                step += 1

                rec = {"step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "grad_norm": grad_norm,
                       "skipped": skipped, "nan_skips": nan_skips, "time_s": time.perf_counter() - t0,
                       "cpu_s": time.process_time() - c0, **stats}
                if cfg.val_every and step % cfg.val_every == 0 and step < cfg.max_steps:
                    validate()
                    rec["val_fm"] = val_fm[-1][1]
                if step == cfg.max_steps:
                    validate()
                    if val is not None:
                        rec["val_fm"] = val_fm[-1][1]
                if step % cfg.log_every == 0 or skipped or "val_fm" in rec:
                    write(rec)
                pbar.update(1, info=" ".join(f"{k} {stats[k]:.4g}" for k in ("loss", "fm", "macro", "micro", "reg") if k in stats))

                if nan_skips > cfg.max_nan_skips:
                    last_ckpt = checkpoint()
                    raise NonFiniteLossError(
                        f"stopping at step {step}: {nan_skips} steps had a non-finite loss or gradient "
                        f"(limit max_nan_skips={cfg.max_nan_skips}); last batch rows "
                        f"{[data.row_ids[i] for i in rows]}. Lower the learning rate or check those rows."
                    )
                if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < end:
                    last_ckpt = checkpoint()
            last_ckpt = checkpoint() or last_ckpt
    finally:
        if log_file:
            log_file.close()
        if tb is not None:
            tb.close()
    return TrainResult(model=ddist.unwrap(model), records=records, step=step, nan_skips=nan_skips, checkpoint=last_ckpt,
                       val_fm=val_fm, stopped=step < cfg.max_steps)


# =============================================================================================
# helpers
# =============================================================================================


def check_model_fits(config: Any, data: TrainData, *, source: str, configurable: bool) -> None:
    """Before any work: the data's latents and text states fit the model (``config``: its
    ``model.config`` or the kwargs of a named config). ``configurable``: the model is built from a
    named config, so the fix is a `model_overrides` value (`ConfigError`); else the data must match
    the model (`InputError`)."""
    get = (lambda k: config[k]) if isinstance(config, dict) else (lambda k: getattr(config, k))  # noqa: E731
    c, dim = int(data.latent_shape[0]), int(data.text_dim)
    if int(get("text_dim")) != dim:
        if configurable:
            raise ConfigError(f"the data's text states are {dim} wide but {source} has text_dim={get('text_dim')}: "
                              f"set model_overrides = {{text_dim = {dim}}} in [train], or encode the captions with "
                              f"the text encoder that model expects")
        raise InputError(f"{source} expects text states {get('text_dim')} wide (text_dim) but the data's are {dim} "
                         f"wide: encode the captions with the text encoder that model was trained with")
    if int(get("in_channels")) != c or int(get("out_channels")) != c:
        if configurable:
            raise ConfigError(f"model_overrides sets in_channels={get('in_channels')}, out_channels="
                              f"{get('out_channels')} but the latents have {c} channels: drop them (a named config "
                              f"follows the data's channels)")
        raise InputError(f"{source} takes {get('in_channels')}-channel latents (in_channels) but the data's have {c} "
                         f"channels: encode the clips with that model's VAE (--vae WAN_FOLDER), or train a named "
                         f"config from scratch (no pretrained)")
    wan.check_patch(config, data.latent_shape, source=source)


def _scalar(norm: torch.Tensor) -> float:
    """A gradient norm as a float (FSDP2 returns it as a DTensor)."""
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: CUDA is not available on this machine; use device=cpu (or auto)")
    return device


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            t = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
        return 1.0
    return f


def _read_log(path: Path, upto_step: int) -> list[dict[str, Any]]:
    """The records of ``log.jsonl`` up to ``upto_step`` (the resumed checkpoint's). A partial last
    line (what a kill mid-write leaves) is dropped with a warning; anything else that is not a log
    record is an `InputError`."""
    if not path.exists() and not path.is_symlink():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the run's log ({first_line(e)}); move it away to resume without "
                         f"the earlier records, or start anew (`--no-resume`, or another output folder)") from None
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            if i == last:  # the last write was cut short
                log.warning("%s: dropping its partial last line (%d characters)", path, len(line))
                continue
            raise InputError(f"{path}: line {i + 1} is not JSON ({first_line(e)}); a run's log holds one JSON object "
                             f"per line: move it away to resume without the earlier records") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("step", 0), int) or isinstance(rec.get("step"), bool):
            raise InputError(f"{path}: line {i + 1} is not a log record (a JSON object with an integer step); move "
                             f"the log away to resume without the earlier records")
        if rec.get("step", 0) <= upto_step:
            out.append(rec)
    return out


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard requested but not installed (pip install tensorboard); logging JSONL only")
        return None
    return SummaryWriter(str(out_dir / "tb"))

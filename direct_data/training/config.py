"""The trainer's configuration: `TrainConfig` (one declared option per knob), the objective presets,
and the constants the config names (loss variants, model configs, LoRA targets).

This module is light on purpose (no torch): the CLI and the TOML checker import it to build
`--help` and to check a `[train]` table before anything heavy loads.

Objectives are presets over the loss terms of `direct_data.training.losses`:

* ``sft``: flow matching only;
* ``deltafm``: flow matching + random in-batch negatives (lam 0.05), Contrastive Flow Matching;
* ``direct``: flow matching + macro (other-partition negatives) + micro (hard physics negatives,
  one extra forward for the rows that carry one, batched with the main forward) + regulariser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from direct_data.core.config import StageConfig, option, register
from direct_data.core.errors import ConfigError

__all__ = [
    "TrainConfig",
    "PRESETS",
    "preset",
    "PREDICTIONS",
    "MICRO_VARIANTS",
    "REG_VARIANTS",
    "NOISE_DISTS",
    "LR_SCHEDULES",
    "MACRO_SOURCES",
    "MODEL_CONFIGS",
    "DEFAULT_LORA_TARGETS",
]

# ---------------------------------------------------------------------------------------------
# names the config refers to
# ---------------------------------------------------------------------------------------------

MICRO_VARIANTS = ("triplet", "push", "repel")
REG_VARIANTS = ("none", "moments", "moments-target", "mmd", "l2")
PREDICTIONS = ("v", "x0")
NOISE_DISTS = ("logit-normal", "uniform")
LR_SCHEDULES = ("constant", "cosine")
#: the declared bounds of step counts (steps, warmup, every-N intervals) and of a batch: generous,
#: but an absurd value (`--max-steps 100000000000000000000`) is a one-line error, not a run that never ends
MAX_STEPS = 10**9
MAX_BATCH = 10**6
#: the largest LoRA rank (Wan 2.1 14B is 5120 wide; a rank at the width is full rank already)
MAX_LORA_RANK = 4096
#: the longest text-state padding (Wan pads umT5 states to 512 tokens)
MAX_TEXT_LEN = 2**16
#: the largest learning rate (AdamW's updates are ~lr per step: above this every run diverges)
MAX_LR = 10.0
#: the largest size in `model_overrides` (layers, heads, widths; Wan 2.1 14B's largest is 13824)
MAX_MODEL_SIZE = 2**16
MACRO_SOURCES = ("batch", "dataset")

#: Attention projections of self- and cross-attention (attn1 / attn2) in every Wan block.
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")

_WAN_COMMON: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "in_channels": 16,
    "out_channels": 16,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}

#: `WanTransformer3DModel` kwargs of the named configs (random init; see `wan.build_transformer`).
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    # CPU tests: 2 layers, 2 heads of 16 (rope splits a head into t/h/w parts), 16 latent channels
    # (a run on other latents, e.g. 3-channel pixels, follows the data's channels).
    "tiny": {**_WAN_COMMON, "num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64,
             "num_layers": 2, "text_dim": 384, "freq_dim": 32},
    # CPU benchmark size.
    "mid": {**_WAN_COMMON, "num_attention_heads": 4, "attention_head_dim": 32, "ffn_dim": 512,
            "num_layers": 4, "text_dim": 384, "freq_dim": 64},
    # Wan2.1-T2V-1.3B (Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json).
    "wan2.1-1.3b": {**_WAN_COMMON, "num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960,
                    "num_layers": 30, "text_dim": 4096},
}

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

# ---------------------------------------------------------------------------------------------
# the presets
# ---------------------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "sft": {},
    "deltafm": {"lam_naive": 0.05},
    "direct": {"lam_macro": 0.05, "lam_micro": 0.05, "micro_variant": "triplet", "reg": "moments", "lam_reg": 1.0},
}


# ---------------------------------------------------------------------------------------------
# the config
# ---------------------------------------------------------------------------------------------

_LAM = "(0 = off; must stay below 1: the contrastive optimum is u + lam/(1-lam) (u - u_neg))"


@register
@dataclass
class TrainConfig(StageConfig):
    """Every knob of a run. Presets (`preset`) set the objective terms; everything else is shared.

    `output=False` marks the knobs that do not change the trained weights (where the run runs,
    what it logs, how often it checkpoints): they are left out of `hashed()`. The flags of
    `direct-data train` are the `cli=True` fields; every other one is a `[train]` TOML key or
    `--set key=value`."""

    SECTION = "train"

    objective: str = option("sft", choices=tuple(PRESETS), cli=False,
                            help="The preset the loss terms came from (sft | deltafm | direct); set by `preset`, logged.")
    # --- loss terms (weights 0 switch a term off) ---
    lam_naive: float = option(0.0, min=0.0, cli=False, help=f"Weight of random in-batch negatives (deltaFM / CFM) {_LAM}.")
    lam_macro: float = option(0.0, min=0.0, cli=False, help=f"Weight of negatives from other semantic partitions {_LAM}.")
    macro_source: str = option("batch", choices=MACRO_SOURCES, cli=False,
                               help="Where macro negatives come from: an eligible row of the batch, or any eligible row of the data set.")
    exclude_nearest: int = option(0, min=0, cli=False,
                                  help="Also exclude the M partitions nearest to the row's own (partition graph; ignored with explicit macro lists).")
    lam_micro: float = option(0.0, min=0.0, cli=False, help=f"Weight of hard physics negatives {_LAM}.")
    micro_variant: str = option("triplet", choices=MICRO_VARIANTS, cli=False, help="Form of the micro term.")
    micro_margin: float = option(0.1, min=0.0, cli=False, help="Triplet margin, in per-element squared-error units.")
    micro_fraction: float = option(0.25, min=0.0, max=1.0, cli=False,
                                   help="Fraction of batch rows that run their hard negative (one extra forward each); > 0.")
    reg: str = option("none", choices=REG_VARIANTS, cli=False, help="Velocity-space regulariser against forgetting.")
    lam_reg: float = option(1.0, min=0.0, cli=False, help="Weight of the regulariser.")
    # --- noise levels (Wan) ---
    noise_dist: str = option("logit-normal", choices=NOISE_DISTS, cli=False, help="Distribution of the unshifted noise level.")
    shift: float = option(5.0, min=0.0, cli=False, help="Noise-level shift k (s = k s0 / (1 + (k-1) s0)); > 0.")
    logit_loc: float = option(0.0, cli=False, help="Mean of the logit-normal noise level.")
    logit_scale: float = option(1.0, min=0.0, cli=False, help="Scale of the logit-normal noise level; > 0.")
    # --- what the network outputs ---
    prediction: str = option("v", choices=PREDICTIONS, cli=False,
                             help="v: the velocity eps - x0 (Wan); x0: the clean latent, turned into "
                                  "v = (x_s - x0_hat) / max(s, x0_min_level) before every loss (pixel-space models).")
    x0_min_level: float = option(0.05, min=0.0, max=1.0, cli=False, help="Floor of s in the x0 -> v conversion; in (0, 1).")
    cond_dropout: float = option(0.0, min=0.0, max=1.0, cli=False,
                                 help="Fraction of rows trained on the null caption (enables classifier-free guidance); in [0, 1).")
    # --- model ---
    model_config: str = option("tiny", choices=tuple(MODEL_CONFIGS),
                               help="Named Wan architecture, random init (ignored with --pretrained).")
    pretrained: str | None = option(None, help="A local diffusers Wan checkpoint folder (or its transformer/).",
                                    default_help="random init from --model-config")
    model_overrides: dict[str, Any] = option({}, cli=False,
                                             help="WanTransformer3DModel options over the named config, e.g. {num_layers = 4}; "
                                                  "in/out_channels follow the data unless set here.")
    lora_rank: int = option(16, min=0, max=MAX_LORA_RANK, help="LoRA rank; 0 = full fine-tuning (at most 4096).")
    lora_alpha: float | None = option(None, min=0.0, cli=False, help="LoRA alpha; > 0.", default_help="the rank")
    lora_targets: tuple[str, ...] = option(DEFAULT_LORA_TARGETS, cli=False, help="Module names that get LoRA adapters.")
    # --- optimisation ---
    batch_size: int = option(4, min=2, max=MAX_BATCH, help="Rows per batch (every batch spans >= 2 partitions).")
    max_steps: int = option(1000, min=1, max=MAX_STEPS, help="Optimiser steps.")
    lr: float = option(1e-4, min=0.0, max=MAX_LR, help="AdamW learning rate (at most 10).")
    weight_decay: float = option(0.0, min=0.0, cli=False, help="AdamW weight decay.")
    betas: tuple[float, float] = option((0.9, 0.999), min=0.0, max=1.0, cli=False, help="AdamW betas (two values in [0, 1)).")
    adam_eps: float = option(1e-8, min=0.0, cli=False, help="AdamW epsilon; > 0.")
    warmup_steps: int = option(0, min=0, max=MAX_STEPS, cli=False, help="Linear learning-rate warmup steps (at most 10**9).")
    lr_schedule: str = option("constant", choices=LR_SCHEDULES, cli=False, help="Learning-rate schedule after the warmup.")
    grad_clip: float = option(1.0, min=0.0, cli=False, help="Gradient-norm clip; 0 = none (the norm is still logged).")
    seed: int = option(0, min=0, max=2**63 - 1, help="Seed of init, LoRA, sampler, noise and negatives.")
    text_len: int | None = option(None, min=1, max=MAX_TEXT_LEN, cli=False,
                                  help="Pad text states to this many tokens (Wan: 512; at most 65536).",
                                  default_help="the data's longest")
    # --- numerics ---
    device: str = option("auto", output=False, help="auto | cpu | cuda | cuda:N.")
    bf16: bool = option(True, cli=False, help="bf16 autocast (CUDA only).")
    grad_checkpointing: bool = option(True, output=False, cli=False, help="Gradient checkpointing (CUDA only).")
    max_nan_skips: int = option(10, min=0, max=MAX_STEPS, output=False, cli=False,
                                help="Stop once more than this many steps had a non-finite loss or gradient.")
    # --- output ---
    out_dir: str | None = option(None, output=False, cli=False,
                                 help="Run folder: log.jsonl, config.json, checkpoints/.", default_help="nothing written")
    log_every: int = option(1, min=1, max=MAX_STEPS, output=False, cli=False, help="Log every N steps (skipped steps and validations always).")
    val_every: int = option(0, min=0, max=MAX_STEPS, output=False, cli=False,
                            help="Validation FM loss every N steps; 0 = at the start and the end only.")
    ckpt_every: int = option(0, min=0, max=MAX_STEPS, output=False, cli=False, help="Checkpoint every N steps; 0 = at the end (and when stopped).")
    keep_checkpoints: int = option(2, min=1, max=MAX_STEPS, output=False, cli=False, help="Newest checkpoints kept.")
    diagnostics: bool = option(True, output=False, cli=False, help="Log gradient-conflict cosines per negative type.")
    progress: bool = option(True, output=False, cli=False, help="Progress bar.")
    tensorboard: bool = option(False, output=False, cli=False, help="Also log scalars to out_dir/tb (needs tensorboard).")

    def check(self) -> None:
        for name in ("lam_naive", "lam_macro", "lam_micro"):
            lam = getattr(self, name)
            if not lam < 1.0:
                raise ConfigError(f"{name} must be in [0, 1) (the contrastive optimum needs lam < 1), got {lam}")
        for name, lo, hi in (("micro_fraction", "(", "]"), ("x0_min_level", "(", ")"), ("cond_dropout", "[", ")")):
            v = getattr(self, name)
            if (lo == "(" and v <= 0.0) or (hi == ")" and v >= 1.0):
                raise ConfigError(f"{name} must be in {lo}0, 1{hi}, got {v}")
        for name in ("shift", "logit_scale", "adam_eps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.lora_alpha is not None and self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha must be > 0 (or unset: the rank), got {self.lora_alpha}")
        if len(self.betas) != 2 or not all(b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must be two values in [0, 1) (e.g. betas = [0.9, 0.999], --set betas=0.9,0.999), "
                              f"got {list(self.betas)}")
        if not self.lora_targets or not all(self.lora_targets):
            raise ConfigError("lora_targets must name at least one module (e.g. to_q, to_k, to_v, to_out.0)")
        if not _DEVICE.match(self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        known = MODEL_CONFIGS[self.model_config]
        unknown = sorted(set(self.model_overrides) - set(known))
        if unknown:
            raise ConfigError(f"model_overrides: unknown WanTransformer3DModel option{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(unknown)} (known: {', '.join(sorted(known))})")
        for k, v in self.model_overrides.items():  # sizes are positive integers: a 0 or -1 layer count would only fail deep in peft
            if type(known[k]) is int and (type(v) is not int or not 1 <= v <= MAX_MODEL_SIZE):
                raise ConfigError(f"model_overrides: {k} must be an integer in 1..{MAX_MODEL_SIZE}, got {v!r}")
        io = {k: self.model_overrides[k] for k in ("in_channels", "out_channels") if k in self.model_overrides}
        if len(io) == 2 and io["in_channels"] != io["out_channels"]:
            raise ConfigError(f"model_overrides: out_channels={io['out_channels']} must equal in_channels="
                              f"{io['in_channels']} (the model predicts a velocity of the latent's shape)")

    def to_json(self) -> dict[str, Any]:
        """Every field, JSON-ready (tuples as lists): the run's `config.json` and the checkpoint's."""
        return self.to_dict()


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A `TrainConfig` for objective ``sft`` / ``deltafm`` / ``direct`` with overrides (each a
    `TrainConfig` field). An unknown objective or key, or a bad value, is a `ConfigError`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown objective {name!r}: one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(TrainConfig.keys()))
    if unknown:
        raise ConfigError(f"unknown train option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                          f"(known: {', '.join(TrainConfig.keys())})")
    if overrides.get("objective", name) != name:
        raise ConfigError(f"objective given twice: {name!r} and {overrides['objective']!r}")
    return TrainConfig(**{"objective": name, **PRESETS[name], **overrides})

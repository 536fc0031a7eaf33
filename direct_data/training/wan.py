"""Builders for the diffusers Wan 2.1 transformer (`WanTransformer3DModel`) and its LoRA adapters.

Three sources, one function (`build_transformer`):

* ``tiny``: a 2-layer, 32-wide model for CPU tests (random init; ``text_dim`` follows the encoder,
  e.g. 384 for MiniLM token states);
* ``mid``: a CPU benchmark size (4 layers, 128 wide);
* ``wan2.1-1.3b``: the real architecture of Wan2.1-T2V-1.3B (30 layers, 1536 wide, 12 heads,
  FFN 8960, umT5-XXL text states 4096 wide), random init: smoke tests and throughput;
* ``pretrained=PATH``: a local diffusers checkpoint folder (``PATH/transformer`` or the transformer
  folder itself); never the hub, never pickles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = [
    "MODEL_CONFIGS",
    "DEFAULT_LORA_TARGETS",
    "transformer_config",
    "build_transformer",
    "add_lora",
    "lora_state_dict",
    "lora_metadata",
    "has_lora",
    "adapters_disabled",
]

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

MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    # CPU tests: 2 layers, 2 heads of 16 (rope splits a head into t/h/w parts), 16 latent channels.
    "tiny": {**_WAN_COMMON, "num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64,
             "num_layers": 2, "text_dim": 384, "freq_dim": 32},
    # CPU benchmark size.
    "mid": {**_WAN_COMMON, "num_attention_heads": 4, "attention_head_dim": 32, "ffn_dim": 512,
            "num_layers": 4, "text_dim": 384, "freq_dim": 64},
    # Wan2.1-T2V-1.3B (Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json).
    "wan2.1-1.3b": {**_WAN_COMMON, "num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960,
                    "num_layers": 30, "text_dim": 4096},
}

# Attention projections of self- and cross-attention (attn1 / attn2) in every block.
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")


def transformer_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The `WanTransformer3DModel` kwargs of a named config, with overrides (e.g. ``text_dim=384``)."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {name!r}: one of {sorted(MODEL_CONFIGS)}")
    cfg = dict(MODEL_CONFIGS[name])
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown WanTransformer3DModel options {sorted(unknown)}")
    cfg.update(overrides)
    return cfg


def build_transformer(
    config: str | None = "tiny",
    *,
    pretrained: str | Path | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **overrides: Any,
):
    """A `WanTransformer3DModel`: from a named config with random init (seeded, deterministic) or
    from a local diffusers checkpoint folder (``pretrained``; safetensors only)."""
    from diffusers import WanTransformer3DModel

    if pretrained is not None:
        root = Path(pretrained)
        folder = root / "transformer" if (root / "transformer" / "config.json").is_file() else root
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{root} is not a diffusers Wan checkpoint: expected {root}/transformer/config.json or {root}/config.json"
            )
        return WanTransformer3DModel.from_pretrained(
            folder, torch_dtype=dtype, use_safetensors=True, local_files_only=True
        )
    if config is None:
        raise ValueError("give a model config name or a pretrained path")
    kwargs = transformer_config(config, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanTransformer3DModel(**kwargs)
    if dtype != torch.float32:  # training keeps fp32 master weights; other dtypes are for inference
        model = model.to(dtype)
    return model


def add_lora(
    model,
    *,
    rank: int = 16,
    alpha: float | None = None,
    target_modules: Sequence[str] = DEFAULT_LORA_TARGETS,
    dropout: float = 0.0,
    seed: int = 0,
    adapter_name: str = "default",
):
    """Inject a peft LoRA adapter (``lora_A`` random, ``lora_B`` zero: the model is unchanged at
    step 0), freeze the base weights, keep only the adapter trainable. ``alpha`` defaults to ``rank``.
    Returns the model (modified in place)."""
    from peft import LoraConfig

    if rank <= 0:
        raise ValueError(f"LoRA rank must be > 0, got {rank}")
    cfg = LoraConfig(
        r=rank,
        lora_alpha=float(alpha if alpha is not None else rank),
        target_modules=list(target_modules),
        lora_dropout=dropout,
        init_lora_weights=True,
    )
    model.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.add_adapter(cfg, adapter_name=adapter_name)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n == 0:
        raise ValueError(f"LoRA target modules {list(target_modules)} matched nothing in the model")
    return model


def has_lora(model) -> bool:
    return bool(getattr(model, "_hf_peft_config_loaded", False))


def lora_state_dict(model, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter weights with peft's names (``blocks.0.attn1.to_q.lora_A.weight`` ...), as
    `WanPipeline.save_lora_weights(transformer_lora_layers=...)` expects them."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model, adapter_name=adapter_name)


def lora_metadata(model, adapter_name: str = "default") -> dict[str, Any]:
    """The adapter's LoraConfig as a dict (rank, alpha, targets): saved with the weights so the
    diffusers loader rebuilds the same scaling."""
    return model.peft_config[adapter_name].to_dict()


class adapters_disabled:
    """Context manager: run the model with its LoRA adapters off (the frozen reference)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.model.disable_adapters()
        return self.model

    def __exit__(self, *exc):
        self.model.enable_adapters()
        return False

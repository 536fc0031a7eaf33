"""Builders for the diffusers Wan 2.1 transformer (`WanTransformer3DModel`) and its LoRA adapters.

Three sources, one function (`build_transformer`):

* ``tiny``: a 2-layer, 32-wide model for CPU tests (random init; ``text_dim`` 384 for MiniLM token
  states; a run's in/out channels follow its latents, e.g. 3 for pixels: `build_for_latents`);
* ``mid``: a CPU benchmark size (4 layers, 128 wide);
* ``wan2.1-1.3b``: the real architecture of Wan2.1-T2V-1.3B (30 layers, 1536 wide, 12 heads,
  FFN 8960, umT5-XXL text states 4096 wide), random init: smoke tests and throughput;
* ``pretrained=PATH``: a local diffusers checkpoint folder (``PATH/transformer`` or the transformer
  folder itself); never the hub, never pickles.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from direct_data.core.errors import ConfigError, InputError
from direct_data.training.config import DEFAULT_LORA_TARGETS, MODEL_CONFIGS

__all__ = [
    "MODEL_CONFIGS",
    "DEFAULT_LORA_TARGETS",
    "transformer_config",
    "build_transformer",
    "build_for_latents",
    "latent_overrides",
    "check_patch",
    "add_lora",
    "lora_state_dict",
    "lora_metadata",
    "has_lora",
    "adapters_disabled",
]

# The named configs and the default LoRA targets live in the (torch-free) training config module.


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
            raise InputError(
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


def latent_overrides(overrides: dict[str, Any] | None, latent_channels: int | None) -> dict[str, Any]:
    """``overrides`` with ``in_channels`` / ``out_channels`` following the latents' channel count
    (e.g. 3 for pixel latents) unless ``overrides`` sets them."""
    kwargs = dict(overrides or {})
    if latent_channels:
        kwargs.setdefault("in_channels", int(latent_channels))
        kwargs.setdefault("out_channels", kwargs["in_channels"])
    return kwargs


def build_for_latents(
    config: str | None,
    *,
    pretrained: str | Path | None,
    seed: int,
    overrides: dict[str, Any] | None,
    latent_channels: int | None,
):
    """The run's transformer, as `train` builds it and `sample` rebuilds it: a `pretrained` folder
    as it is, or the named config (random init, seeded) with `latent_overrides`."""
    if pretrained is not None:
        return build_transformer(pretrained=pretrained)
    return build_transformer(config, seed=seed, **latent_overrides(overrides, latent_channels))


def check_patch(config: Any, latent_shape: Sequence[int], *, source: str) -> None:
    """A `ConfigError` naming the dimension when the model's ``patch_size`` does not divide the
    latent (C, F, H, W). ``config``: the model's config (or the kwargs of a named config)."""
    patch = tuple(int(p) for p in _get(config, "patch_size"))
    for name, size, p in zip(("frames (F)", "height (H)", "width (W)"), latent_shape[1:], patch):
        if int(size) % p:
            raise ConfigError(
                f"latent {name} = {size} is not a multiple of the patch size {p} of {source} "
                f"(patch_size={list(patch)}, latent shape {list(latent_shape)}): make the clips' {name.split()[0]} a "
                f"multiple of {p}, or set another patch_size in model_overrides (random init only)")


def _get(config: Any, key: str) -> Any:
    return config[key] if isinstance(config, dict) else getattr(config, key)


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
    from peft.utils.error import NoMatchingPeftModuleError

    model.requires_grad_(False)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.add_adapter(cfg, adapter_name=adapter_name)
    except NoMatchingPeftModuleError:
        n = 0
    else:
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n == 0:
        raise ConfigError(f"lora_targets {', '.join(target_modules)} matched no module of the model: name linear layers "
                          f"of its blocks, e.g. {', '.join(lora_target_names(model))}")
    return model


def lora_target_names(model) -> list[str]:
    """The names `lora_targets` can give: the linear layers of the model's blocks, by their last
    name (``to_q``), or their last two when the last is an index (``to_out.0``, ``ffn.net.2``)."""
    names = set()
    for full, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and full.startswith("blocks."):
            parts = full.split(".")
            names.add(".".join(parts[-2:]) if parts[-1].isdigit() else parts[-1])
    return sorted(names)


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
    return _sorted_sets(model.peft_config[adapter_name].to_dict())


def _sorted_sets(x: Any) -> Any:
    """``x`` with every set a sorted list and every dict's keys sorted (recursively): the metadata
    written with the adapter is then the same bytes in every process, whatever PYTHONHASHSEED."""
    if isinstance(x, (set, frozenset)):
        return sorted((_sorted_sets(v) for v in x), key=str)
    if isinstance(x, dict):
        return {k: _sorted_sets(x[k]) for k in sorted(x, key=str)}
    if isinstance(x, (list, tuple)):
        return type(x)(_sorted_sets(v) for v in x)
    return x


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

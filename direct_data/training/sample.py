"""`direct-data sample`: clips from a trained checkpoint, with a diffusers flow-matching scheduler.

checkpoint (LoRA or full) + prompts -> text states (the same encoder as `encode`) -> Euler
flow-matching sampling from pure noise (Wan's convention: x_s = (1-s) x0 + s eps, the model
predicts v = eps - x0, timestep 1000*s, shifted noise levels) -> latents -> VAE decode (or the
latents themselves when they are pixels) -> `samples.safetensors` + one GIF or MP4 per prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from direct_data.core.shards import atomic_write_bytes


def load_checkpoint_model(checkpoint: str | Path, *, device: str = "cpu"):
    """The transformer of a `direct-data train` checkpoint folder, ready for inference.

    LoRA checkpoints rebuild the base from the run's config (named config + seed, or its
    `pretrained` folder) and load the adapter; full checkpoints load `transformer/`.
    Returns (model, trainer config dict with the run's `text_len` and `latent_shape` added)."""
    from safetensors.torch import load_file

    from direct_data.training import wan
    from direct_data.training.train import LORA_WEIGHT_NAME

    ckpt = Path(checkpoint)
    meta = json.loads((ckpt / "trainer_state.json").read_text())
    cfg = dict(meta["config"])
    cfg["text_len"] = meta["state"].get("text_len") or cfg.get("text_len")  # the padding the run trained with
    cfg["latent_shape"] = meta["state"].get("latent_shape")
    if (ckpt / "transformer").is_dir():
        model = wan.build_transformer(pretrained=ckpt / "transformer")
    else:
        model = wan.build_transformer(cfg["model_config"], pretrained=cfg.get("pretrained"), seed=cfg["seed"], **(cfg.get("model_overrides") or {}))
        lora = ckpt / LORA_WEIGHT_NAME
        if not lora.exists():
            raise FileNotFoundError(f"{ckpt}: neither transformer/ nor {LORA_WEIGHT_NAME}")
        from peft.utils import set_peft_model_state_dict

        wan.add_lora(model, rank=cfg["lora_rank"], alpha=cfg.get("lora_alpha"), target_modules=cfg["lora_targets"], seed=cfg["seed"])
        sd = {k.removeprefix("transformer."): v for k, v in load_file(str(lora)).items()}
        res = set_peft_model_state_dict(model, sd)
        if getattr(res, "unexpected_keys", None):
            raise ValueError(f"{lora}: keys the model lacks: {res.unexpected_keys[:5]}")
    return model.eval().to(device), cfg


def _pad(states: Sequence[torch.Tensor], length: int | None = None) -> torch.Tensor:
    length = length or max(s.shape[0] for s in states)
    out = torch.zeros(len(states), length, states[0].shape[-1])
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s[:length].float()
    return out


@torch.inference_mode()
def sample_latents(
    model,
    text_states: Sequence[torch.Tensor],
    latent_shape: Sequence[int],
    *,
    steps: int = 20,
    shift: float = 5.0,
    seed: int = 0,
    batch_size: int = 8,
    text_len: int | None = None,
    device: str = "cpu",
    prediction: str = "v",
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """Euler flow-matching sampling with `FlowMatchEulerDiscreteScheduler`, one seeded noise per
    prompt (prompt i always gets the same noise, whatever the batch). ``prediction="x0"``: the
    model outputs the clean latent, turned into the exact velocity ``(x_s - x0_hat) / s`` (the
    scheduler never evaluates s = 0, so no floor is needed: an Euler step from s to s' is then
    ``x_s' = (s'/s) x_s + (1 - s'/s) x0_hat``, and the last step lands on ``x0_hat``).
    ``guidance_scale`` > 1: classifier-free guidance ``v = v_null + g (v_text - v_null)`` with the
    null caption of training (`train.drop_captions`: all-zero states; train with
    ``cond_dropout`` > 0). Returns (N, C, F, H, W)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from direct_data.training.losses import x0_to_velocity

    if prediction not in ("v", "x0"):
        raise ValueError(f"prediction must be 'v' or 'x0', got {prediction!r}")
    if guidance_scale < 1.0:
        raise ValueError(f"guidance_scale must be >= 1 (1 = no guidance), got {guidance_scale}")
    guided = guidance_scale > 1.0

    n = len(text_states)
    out = torch.empty(n, *latent_shape)
    text = _pad(text_states, text_len)
    for b in range(0, n, batch_size):
        idx = list(range(b, min(b + batch_size, n)))
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        sched.set_timesteps(steps, device=device)
        x = torch.stack([torch.randn(*latent_shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + i)) for i in idx]).to(device)
        c = text[idx].to(device)
        cin = torch.cat([c, torch.zeros_like(c)]) if guided else c  # text rows, then null-caption rows
        k = cin.shape[0]
        for t in sched.timesteps:
            xin = torch.cat([x, x]) if guided else x
            v = model(xin, t.expand(k).to(x.dtype), cin, return_dict=False)[0].float()
            if prediction == "x0":
                v = x0_to_velocity(v, xin.float(), (t / 1000.0).expand(k).float(), 1e-6)
            if guided:
                v_text, v_null = v.chunk(2)
                v = v_null + guidance_scale * (v_text - v_null)
            x = sched.step(v, t, x, return_dict=False)[0]
        out[idx] = x.cpu()
    return out


def to_frames(latents: torch.Tensor, *, vae_path: str | None = None) -> np.ndarray:
    """Latents (N, C, F, H, W) -> uint8 clips (N, T, H, W, 3). Without a VAE, 3-channel latents
    are taken as pixels in [-1, 1] (the pixel-space setting of the physics world)."""
    if vae_path:
        from direct_data.stages.encode import VideoEncoder

        enc = VideoEncoder(vae_path)
        z = latents * enc.std + enc.mean
        with torch.inference_mode():
            x = enc.vae.decode(z).sample  # (N, 3, T, H, W) in [-1, 1]
    else:
        if latents.shape[1] != 3:
            raise ValueError(f"latents have {latents.shape[1]} channels: give --vae to decode them")
        x = latents
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).numpy()


def save_clips(clips: np.ndarray, latents: torch.Tensor, prompts: list[str], out_dir: str | Path, *, fmt: str = "gif", fps: int = 8) -> list[str]:
    """`samples.safetensors` (latents and frames), `prompts.json`, and one GIF/MP4 per clip."""
    import imageio.v3 as iio
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "samples.safetensors", save({"latents": latents.contiguous(), "frames": torch.from_numpy(np.ascontiguousarray(clips))}, metadata={"format": "direct-data/samples/v1"}))
    atomic_write_bytes(out / "prompts.json", json.dumps(prompts, indent=1).encode())
    names = []
    for i, clip in enumerate(clips):
        name = f"{i:04d}.{fmt}"
        if fmt == "gif":
            iio.imwrite(out / name, clip, loop=0, duration=1000 // fps)
        else:
            iio.imwrite(out / name, clip, fps=fps, codec="libx264", plugin="pyav")
        names.append(name)
    return names


def run_sample(
    checkpoint: str | Path,
    prompts: list[str],
    out_dir: str | Path,
    *,
    latent_shape: Sequence[int] | None = None,
    text_encoder: str | None = None,
    max_text_tokens: int | None = None,
    vae: str | None = None,
    steps: int = 20,
    shift: float | None = None,
    seed: int = 0,
    fmt: str = "gif",
    guidance_scale: float = 1.0,
) -> dict[str, Any]:
    from direct_data.stages.encode import TextEncoder

    model, cfg = load_checkpoint_model(checkpoint)
    enc = TextEncoder(text_encoder, max_tokens=max_text_tokens, dtype="float32")
    states = enc.encode(prompts)
    latent_shape = latent_shape or cfg.get("latent_shape")
    if not latent_shape:
        raise ValueError("give --latent-shape (the checkpoint does not record one)")
    if cfg.get("text_len") and max(s.shape[0] for s in states) > cfg["text_len"]:
        states = [s[: cfg["text_len"]] for s in states]  # as long as the run's longest caption, as in training
    lat = sample_latents(model, states, latent_shape, steps=steps, shift=shift if shift is not None else cfg.get("shift", 5.0), seed=seed, text_len=cfg.get("text_len"), prediction=cfg.get("prediction", "v"),
                         guidance_scale=guidance_scale)
    clips = to_frames(lat, vae_path=vae)
    files = save_clips(clips, lat, prompts, out_dir, fmt=fmt)
    return {"clips": len(files), "frames_shape": list(clips.shape[1:]), "files": files, "encoder": enc.identity}

"""`direct-data sample`: clips from a trained checkpoint, with a diffusers flow-matching scheduler.

checkpoint (LoRA or full; or a run folder: its latest complete checkpoint) + prompts -> text states
(the same encoder as `encode`) -> Euler flow-matching sampling from pure noise (Wan's convention:
x_s = (1-s) x0 + s eps, the model predicts v = eps - x0, timestep 1000*s, shifted noise levels) ->
latents -> VAE decode (or the latents themselves when they are 3-channel pixels in [-1, 1]) ->
`samples.safetensors` + one GIF or MP4 per prompt.

`run_sample` checks every argument and loads everything it needs (checkpoint, model, VAE, text
encoder, the output folder's writability, the video writer) before the first sampling step: an
argument the user can fix is a `ConfigError` / `InputError` / `OutputError` before any compute, never
a failure after it. This module does not import torch at load time (the TOML checker imports it for
`SampleConfig`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from direct_data.core.config import StageConfig, check_model_path, option, register
from direct_data.core.errors import ConfigError, InputError, OutputError, cannot_load, first_line

__all__ = ["SampleConfig", "run_sample", "load_checkpoint_model", "sample_latents", "to_frames", "save_clips", "FORMATS"]

log = logging.getLogger(__name__)

FORMATS = ("gif", "mp4")
PIXELS = "pixels"  # `--vae pixels`, as in `encode`: the latents are the clip's pixels


@register
@dataclass
class SampleConfig(StageConfig):
    """Every knob of `direct-data sample`: CLI flags, `[sample]` TOML keys."""

    SECTION = "sample"

    steps: int = option(20, min=1, max=100_000, help="Sampling steps (Euler, flow matching).")
    shift: float | None = option(None, min=0.0, help="Noise-level shift; > 0.", default_help="the run's")
    seed: int = option(0, min=0, max=2**63 - 1, help="Noise seed (prompt i always gets the same noise, whatever the batch).")
    guidance: float = option(1.0, min=1.0, help="Classifier-free guidance scale; 1 = none (the run needs cond_dropout > 0).")
    format: str = option("gif", choices=FORMATS, help="Clip file format.")
    fps: int = option(8, min=1, max=1000, help="Frames per second of the written clips.")
    latent_shape: tuple[int, ...] | None = option(None, min=1, help="The latents' C, F, H, W (4 values; e.g. 16 21 60 104 for 480p x 81 "
                                                 "frames; TOML [16, 21, 60, 104], --set latent_shape=16,21,60,104).",
                                                 default_help="the run's")
    text_encoder: str | None = option(None, help="The text encoder `encode` used (a Wan checkpoint folder or a transformers encoder).",
                                      default_help="packaged MiniLM")
    max_text_tokens: int | None = option(None, min=1, help="Max tokens, as in `encode`.", default_help="512 for umT5, 128 otherwise")
    vae: str | None = option(None, help="Wan checkpoint or AutoencoderKLWan folder to decode the latents; needed unless they are "
                                        "3-channel pixels (`pixels` or none).", default_help="none: pixel latents")
    batch_size: int = option(8, min=1, max=10**6, output=False, help="Prompts sampled at a time.")
    device: str = option("auto", output=False, help="auto | cpu | cuda | cuda:N.")

    def __post_init__(self) -> None:
        if isinstance(self.latent_shape, str):  # "C,F,H,W" from --set or a TOML string
            try:
                self.latent_shape = tuple(int(x) for x in self.latent_shape.replace("x", ",").split(",") if x.strip())
            except ValueError:
                raise ConfigError(f"latent_shape: expected C,F,H,W (four integers), got {self.latent_shape!r}") from None
        super().__post_init__()

    def check(self) -> None:
        if self.vae != PIXELS:
            check_model_path("vae", self.vae)  # a missing folder is found before any work (`run`: before partition)
        if self.latent_shape is not None and len(self.latent_shape) != 4:
            raise ConfigError(f"latent_shape: expected C,F,H,W (four integers), got {list(self.latent_shape)}")
        if self.latent_shape is not None and math.prod(self.latent_shape) > 2**31:
            raise ConfigError(f"latent_shape: {list(self.latent_shape)} is {math.prod(self.latent_shape):,} values per clip, "
                              f"over 2**31 (Wan 2.1 at 720p x 81 frames is 16 x 21 x 90 x 160 = 4,838,400)")
        if self.shift is not None and self.shift <= 0:
            raise ConfigError(f"shift must be > 0, got {self.shift}")
        if self.device not in ("auto", "cpu", "mps") and not (self.device == "cuda" or self.device.startswith("cuda:")
                                                             and self.device[5:].isdigit()):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


# =============================================================================================
# the model of a checkpoint
# =============================================================================================


def load_checkpoint_model(checkpoint: str | Path, *, device: str = "cpu"):
    """`_load_checkpoint_model`; a checkpoint that cannot be loaded (weights that do not match
    their config, a trainer state edited by hand) is an `InputError` naming it, not a traceback."""
    from direct_data.core.errors import UserError

    try:
        return _load_checkpoint_model(checkpoint, device=device)
    except UserError:
        raise
    except Exception as e:  # torch, diffusers, peft and safetensors raise their own error types
        raise InputError(f"checkpoint {checkpoint}: cannot load it ({first_line(e)})") from None


def _load_checkpoint_model(checkpoint: str | Path, *, device: str = "cpu"):
    """The transformer of a `direct-data train` checkpoint folder (or a run folder: its latest
    complete checkpoint), ready for inference.

    LoRA checkpoints rebuild the base as the run built it (named config + seed, channels following
    the run's latents, or its `pretrained` folder) and load the adapter; full checkpoints load
    `transformer/`. Returns (model, trainer config dict with the run's `text_len` and `latent_shape`
    added)."""
    from safetensors.torch import load_file

    from direct_data.training import wan
    from direct_data.training.checkpoint import LORA_WEIGHT_NAME, check_lora_keys, read_trainer_state, resolve_checkpoint, verify_checkpoint_files

    ckpt = resolve_checkpoint(checkpoint)
    meta = read_trainer_state(ckpt)
    verify_checkpoint_files(ckpt, meta)
    cfg = dict(meta["config"])
    cfg["text_len"] = meta["state"].get("text_len") or cfg.get("text_len")  # the padding the run trained with
    cfg["latent_shape"] = meta["state"].get("latent_shape")
    if (ckpt / "transformer").is_dir():
        with cannot_load(f"{ckpt / 'transformer'} (the checkpoint's transformer)"):
            _check_full_weights(ckpt / "transformer")  # strict, as a resume loads them: no tensor missing or extra
            model = wan.build_transformer(pretrained=ckpt / "transformer")
    else:
        lora = ckpt / LORA_WEIGHT_NAME
        channels = cfg["latent_shape"][0] if cfg.get("latent_shape") else None
        model = wan.build_for_latents(cfg["model_config"], pretrained=cfg.get("pretrained"), seed=cfg["seed"],
                                      overrides=cfg.get("model_overrides"), latent_channels=channels)
        from peft.utils import set_peft_model_state_dict

        wan.add_lora(model, rank=cfg["lora_rank"], alpha=cfg.get("lora_alpha"), target_modules=cfg["lora_targets"], seed=cfg["seed"])
        try:
            sd = {k.removeprefix("transformer."): v for k, v in load_file(str(lora)).items()}
        except Exception as e:  # safetensors raises its own error type for a corrupt file
            raise InputError(f"{lora}: cannot read the checkpoint's adapter ({first_line(e)})") from None
        res = set_peft_model_state_dict(model, sd)
        check_lora_keys(res, lora)
    return model.eval().to(device), cfg


def _check_full_weights(folder: Path) -> None:
    """A `ValueError` unless the safetensors files of a checkpoint's ``transformer/`` hold exactly the
    tensors (names and shapes) of the model its config.json describes (read from the headers; the
    model is built on the meta device, no weights allocated)."""
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors import safe_open

    config = WanTransformer3DModel.load_config(folder)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in WanTransformer3DModel.from_config(config).state_dict().items()}
    got: dict[str, tuple[int, ...]] = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            for k in sf.keys():
                got[k] = tuple(sf.get_slice(k).get_shape())
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing:
        raise ValueError(f"the weights lack {len(missing)} tensor{'s' if len(missing) > 1 else ''} of the model: {missing[:3]}")
    if extra:
        raise ValueError(f"the weights hold {len(extra)} tensor{'s' if len(extra) > 1 else ''} the model lacks: {extra[:3]}")
    bad = [k for k in expected if expected[k] != got[k]]
    if bad:
        raise ValueError(f"tensor {bad[0]} is {list(got[bad[0]])}, the model's is {list(expected[bad[0]])}")


# =============================================================================================
# sampling
# =============================================================================================


def _pad(states: Sequence[Any], length: int | None = None):
    import torch

    length = length or max(s.shape[0] for s in states)
    out = torch.zeros(len(states), length, states[0].shape[-1])
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s[:length].float()
    return out


def sample_latents(
    model,
    text_states: Sequence[Any],
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
):
    """Euler flow-matching sampling with `FlowMatchEulerDiscreteScheduler`, one seeded noise per
    prompt (prompt i always gets the same noise, whatever the batch). ``prediction="x0"``: the
    model outputs the clean latent, turned into the exact velocity ``(x_s - x0_hat) / s`` (the
    scheduler never evaluates s = 0, so no floor is needed: an Euler step from s to s' is then
    ``x_s' = (s'/s) x_s + (1 - s'/s) x0_hat``, and the last step lands on ``x0_hat``).
    ``guidance_scale`` > 1: classifier-free guidance ``v = v_null + g (v_text - v_null)`` with the
    null caption of training (`data.drop_captions`: all-zero states; train with
    ``cond_dropout`` > 0). Returns (N, C, F, H, W)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from direct_data.training.data import mix_seed
    from direct_data.training.losses import x0_to_velocity

    if prediction not in ("v", "x0"):
        raise ValueError(f"prediction must be 'v' or 'x0', got {prediction!r}")
    if guidance_scale < 1.0:
        raise ValueError(f"guidance_scale must be >= 1 (1 = no guidance), got {guidance_scale}")
    guided = guidance_scale > 1.0

    n = len(text_states)
    with torch.inference_mode():
        out = torch.empty(n, *latent_shape)
        text = _pad(text_states, text_len)
        for b in range(0, n, batch_size):
            idx = list(range(b, min(b + batch_size, n)))
            sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
            sched.set_timesteps(steps, device=device)
            x = torch.stack([torch.randn(*latent_shape, generator=torch.Generator().manual_seed(mix_seed(seed, i)))
                             for i in idx]).to(device)
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


def to_frames(latents, *, vae_path: str | None = None, vae=None):
    """Latents (N, C, F, H, W) -> uint8 clips (N, T, H, W, 3). ``vae``: a loaded
    `encode.VideoEncoder` (or ``vae_path`` to load one). Without a VAE, 3-channel latents are taken
    as pixels in [-1, 1] (the pixel-space setting of the physics world)."""
    import torch

    if vae is None and vae_path and vae_path != PIXELS:
        from direct_data.stages.encode import VideoEncoder

        vae = VideoEncoder(vae_path)
    if vae is not None:
        z = latents * vae.std + vae.mean
        with torch.inference_mode():
            x = vae.vae.decode(z.to(vae.device)).sample.float().cpu()  # (N, 3, T, H, W) in [-1, 1]
    else:
        if latents.shape[1] != 3:
            raise ValueError(f"latents have {latents.shape[1]} channels: give --vae to decode them")
        x = latents
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).numpy()


def save_clips(clips, latents, prompts: list[str], out_dir: str | Path, *, fmt: str = "gif", fps: int = 8) -> list[str]:
    """`samples.safetensors` (latents and frames), `prompts.json`, and one GIF/MP4 per clip."""
    import imageio.v3 as iio
    import numpy as np
    import torch
    from safetensors.torch import save

    from direct_data.core.shards import atomic_write_bytes

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


# =============================================================================================
# the command: check everything, then sample
# =============================================================================================


def run_sample(checkpoint: str | Path, prompts: Sequence[str], out_dir: str | Path, cfg: SampleConfig | None = None,
               **values: Any) -> dict[str, Any]:
    """Sample one clip per prompt from ``checkpoint`` (a checkpoint folder, or a run folder: its
    latest complete checkpoint) into ``out_dir``. ``cfg``: a `SampleConfig` (or its fields as
    ``values``). Every argument is checked, and the model, VAE and text encoder loaded, before
    sampling starts."""
    import torch

    from direct_data.training.checkpoint import read_trainer_state, resolve_checkpoint

    if cfg is None:
        cfg = SampleConfig.build(**values)
    elif values:
        cfg = SampleConfig.build(toml=cfg.to_dict(), **values)

    # --- the arguments (no loading yet) --------------------------------------------------------
    prompts = list(prompts)
    if not prompts:
        raise ConfigError("no prompts: give at least one")
    empty = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if empty:
        raise InputError(f"prompt{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty[:5]))} {'are' if len(empty) > 1 else 'is'} empty")
    bad = [i for i, p in enumerate(prompts) if not _is_utf8(p)]
    if bad:
        raise InputError(f"prompt{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad[:5]))} "
                         f"{'are' if len(bad) > 1 else 'is'} not valid UTF-8 text (undecodable bytes); give prompts as UTF-8")
    ckpt = resolve_checkpoint(checkpoint)
    meta = read_trainer_state(ckpt)
    run, state = meta.get("config", {}), meta.get("state", {})
    latent_shape = [int(x) for x in (cfg.latent_shape or state.get("latent_shape") or [])]
    if not latent_shape:
        raise ConfigError(f"{ckpt} does not record its latent shape: give latent_shape (C,F,H,W)")
    c = latent_shape[0]
    vae_path = cfg.vae if cfg.vae not in (None, PIXELS) else None
    if vae_path is None and c != 3:
        raise ConfigError(f"the latents have {c} channels ({'latent_shape' if cfg.latent_shape else 'the run'}: "
                          f"{latent_shape}), and only 3-channel latents are pixels written without a VAE: give vae "
                          f"(a Wan checkpoint folder or an AutoencoderKLWan folder) to decode them")
    if vae_path is not None and not Path(vae_path).is_dir():
        raise InputError(f"vae {vae_path}: no such folder (a Wan checkpoint folder with vae/, or an AutoencoderKLWan folder)")
    out = _check_out_dir(Path(out_dir), ckpt)
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else ("cpu" if cfg.device == "auto" else cfg.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device}: CUDA is not available on this machine; use device=cpu (or auto)")
    try:
        shift = cfg.shift if cfg.shift is not None else float(run.get("shift", 5.0))
    except (TypeError, ValueError):
        raise InputError(f"{ckpt}: its trainer state records shift {run.get('shift')!r}, not a number; give --shift") from None
    if cfg.guidance > 1.0 and not run.get("cond_dropout"):
        log.warning("guidance %.3g with a run trained without cond_dropout: the null caption was never trained", cfg.guidance)

    # --- load what sampling needs (each may still refuse, all before sampling) -------------------
    from direct_data.training import wan

    model, run = load_checkpoint_model(ckpt, device=device)
    if int(model.config.in_channels) != c or int(model.config.out_channels) != c:
        raise ConfigError(f"latent_shape {latent_shape} has {c} channels but the checkpoint's model takes "
                          f"{model.config.in_channels}: give latent_shape with {model.config.in_channels} channels "
                          f"(or leave it unset: the run's)")
    wan.check_patch(model.config, latent_shape, source="the checkpoint's model")
    vae = _load_vae(vae_path, c, device) if vae_path else None
    frames = _frame_shape(latent_shape, vae)
    if cfg.format == "mp4":
        _check_mp4(frames)
    enc = _load_text_encoder(cfg)
    states = [s.float() for s in enc.encode(prompts)]
    if int(states[0].shape[-1]) != int(model.config.text_dim):
        raise InputError(f"the text encoder gives states {states[0].shape[-1]} wide but the model expects "
                         f"{model.config.text_dim} (text_dim): give text_encoder, the encoder `encode` used for the run")
    text_len = run.get("text_len")
    if text_len and max(s.shape[0] for s in states) > text_len:
        states = [s[:text_len] for s in states]  # as long as the run's longest caption, as in training

    # --- sample, decode, write --------------------------------------------------------------------
    lat = sample_latents(model, states, latent_shape, steps=cfg.steps, shift=shift, seed=cfg.seed,
                         batch_size=cfg.batch_size, text_len=text_len, device=device,
                         prediction=run.get("prediction", "v"), guidance_scale=cfg.guidance)
    clips = to_frames(lat, vae=vae)
    files = save_clips(clips, lat, prompts, out, fmt=cfg.format, fps=cfg.fps)
    # clips of an earlier, larger sampling into this folder (its own: `_check_out_dir`) would sit next
    # to a prompts.json that no longer lists them
    for stale in sorted(x for x in out.iterdir() if _CLIP_FILE.fullmatch(x.name) and x.name not in files):
        stale.unlink()
    return {"clips": len(files), "frames_shape": list(clips.shape[1:]), "files": files, "checkpoint": str(ckpt),
            "encoder": enc.identity}


def _is_utf8(text: str) -> bool:
    """``text`` encodes as UTF-8 (an argv with invalid bytes holds lone surrogates, which do not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CLIP_FILE = re.compile(r"\d{4,}\.(gif|mp4)")

#: what `run_sample` writes into its folder (and its atomic writes' temp files)
_SAMPLE_FILE = re.compile(rf"(samples\.safetensors|prompts\.json|{_CLIP_FILE.pattern}|\.(samples\.safetensors|prompts\.json)\..+\.tmp)")


def _is_samples_file(path: Path) -> bool:
    """`path` is a samples.safetensors that `run_sample` wrote (its format in the metadata)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == "direct-data/samples/v1"
    except Exception:  # missing, not safetensors: safetensors raises its own error types
        return False


def _check_out_dir(out: Path, ckpt: Path) -> Path:
    """The output folder can be written, and is not the checkpoint or its run."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file; give a folder for the samples")
    r, c = out.resolve(), ckpt.resolve()
    run = c.parent.parent if c.parent.name == "checkpoints" else None
    if r == c or c in r.parents or r == run or (run is not None and r == run / "checkpoints"):
        raise OutputError(f"{out}: is the checkpoint or its run folder; write the samples elsewhere")
    if out.is_dir() and any(out.iterdir()):  # only its own earlier samples are overwritten; anything else is the user's
        foreign = sorted(x.name for x in out.iterdir() if not _SAMPLE_FILE.fullmatch(x.name))
        if foreign or not _is_samples_file(out / "samples.safetensors"):
            raise OutputError(f"{out}: holds files `sample` did not write ({', '.join(foreign[:5]) or 'no samples.safetensors of its own'}); "
                              f"give an empty folder or an earlier samples folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: cannot be written ({parent} is not a writable folder)")
    return out


def _load_vae(path: str, channels: int, device: str):
    from direct_data.stages.encode import VideoEncoder

    with cannot_load(f"vae {path} (an AutoencoderKLWan)"):
        vae = VideoEncoder(path, device=device)
    z = int(vae.vae.config.z_dim)
    if z != channels:
        raise ConfigError(f"vae {path} decodes {z}-channel latents but these have {channels}")
    return vae


def _frame_shape(latent_shape: Sequence[int], vae) -> tuple[int, int, int]:
    """(T, H, W) of the decoded clips."""
    _, f, h, w = latent_shape
    if vae is None:
        return f, h, w
    st = int(getattr(vae.vae.config, "scale_factor_temporal", 4))
    ss = int(getattr(vae.vae.config, "scale_factor_spatial", 8))
    return 1 + (f - 1) * st, h * ss, w * ss


def _check_mp4(frames: tuple[int, int, int]) -> None:
    _, h, w = frames
    if h % 2 or w % 2:
        raise ConfigError(f"format mp4 (H.264) needs an even frame height and width, the clips are {h} x {w}: use format gif")
    try:
        import av

        av.codec.Codec("libx264", "w")
    except Exception as e:  # noqa: BLE001  (no PyAV, or an FFmpeg without an H.264 encoder)
        raise ConfigError(f"format mp4 needs PyAV with an H.264 encoder (libx264): {type(e).__name__}: {e}; use format gif") from None


def _load_text_encoder(cfg: SampleConfig):
    from direct_data.stages.encode import TextEncoder

    with cannot_load(f"text_encoder {cfg.text_encoder or '(packaged MiniLM)'}"):
        return TextEncoder(cfg.text_encoder, max_tokens=cfg.max_text_tokens, dtype="float32")

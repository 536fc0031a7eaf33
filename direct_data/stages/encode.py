"""`direct-data encode`: text-encoder states and video latents, so the trainer never loads an encoder.

read (a partition output, optionally a perturb output) -> text states of every caption and every
accepted hard negative -> video latents (a Wan VAE over a video-path column, or arrays the caller
provides) -> shards + manifest.

Text states are stored unpadded, ``[length, dim]``, with the length, dtype and encoder identity;
the trainer zero-pads them to the longest in the batch (Wan's own convention). Latents are stored
with their shape and dtype, normalised the way Wan trains: ``(mode(q(z|x)) - latents_mean) /
latents_std`` per channel. Tensors are raw little-endian bytes in Arrow binary columns: no pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Features, List, Value

from direct_data.core.config import StageConfig, check_model_path, option, register
from direct_data.core.errors import ConfigError, InputError, cannot_load, first_line
from direct_data.core.manifest import StageOutput, open_output
from direct_data.core.runner import FinalWriter, Inputs, Stage, Unit, UnitWriter, unit_name
from direct_data.core.schema import register as register_table

log = logging.getLogger(__name__)

STAGE = "encode"

TEXT_STATES = Features(
    {
        "key": Value("string"),  # prompt_id for a caption, "<prompt_id>:<axis>" for a hard negative
        "prompt_id": Value("string"),
        "kind": Value("string"),  # caption | negative
        "axis": Value("string"),  # "" for captions
        "text": Value("string"),
        "length": Value("int32"),  # tokens kept (rows of `states`)
        "dim": Value("int32"),
        "dtype": Value("string"),  # float16 | bfloat16 | float32
        "encoder": Value("string"),  # encoder identity
        "states": Value("large_binary"),  # little-endian [length, dim] array
    }
)
LATENTS = Features(
    {
        "prompt_id": Value("string"),
        "shape": List(Value("int32")),  # (C, F, H, W)
        "dtype": Value("string"),
        "source": Value("string"),  # video path, or "provided:<file>"
        "vae": Value("string"),  # VAE identity, "" for provided arrays
        "data": Value("large_binary"),
    }
)
register_table("text_states", TEXT_STATES)
register_table("latents", LATENTS)

_DTYPES = {"float16": np.float16, "float32": np.float32}


def to_bytes(t) -> tuple[bytes, str]:
    """A torch tensor or numpy array as raw bytes plus its dtype name (bfloat16 kept as raw uint16)."""
    import torch

    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return t.view(torch.uint16).numpy().astype("<u2").tobytes(), "bfloat16"
        t = t.numpy()
    name = str(t.dtype)
    return np.ascontiguousarray(t).astype(t.dtype.newbyteorder("<")).tobytes(), name


def from_bytes(data: bytes, dtype: str, shape: tuple[int, ...]):
    """Inverse of `to_bytes`, as a torch tensor."""
    import torch

    if dtype == "bfloat16":
        return torch.from_numpy(np.frombuffer(data, dtype="<u2").astype(np.int16).reshape(shape).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype))


PIXELS = "pixels"


@register
@dataclass
class EncodeConfig(StageConfig):
    """Every knob of the stage; the CLI flags, the `[encode]` TOML keys and the hash come from here."""

    SECTION = "encode"

    text_encoder: str | None = option(None, help="Wan 2.1 diffusers checkpoint folder (its umT5) or any transformers encoder folder.",
                                      default_help="packaged MiniLM")
    max_text_tokens: int | None = option(None, min=1, help="Max tokens.", default_help="512 for umT5, 128 otherwise")
    text_dtype: str = option("float16", choices=("float16", "bfloat16", "float32"), help="dtype of the stored text states.")
    vae: str | None = option(None, help="Wan 2.1 diffusers checkpoint folder (vae/) or an AutoencoderKLWan folder; `pixels`: the clip "
                             "itself as 3-channel latents in [-1, 1] (tiny CPU models, no weights).", default_help="no latents")
    video_column: str | None = option(None, help="Column of the input rows holding each clip's video path (needs --vae).")
    latents: str | None = option(None, help="safetensors file of precomputed latents, one tensor per prompt_id.")
    latent_dtype: str = option("float32", choices=("float32", "bfloat16", "float16"), help="dtype of the stored latents.")
    batch_size: int = option(16, min=1, help="Texts per encoder batch.")
    chunk_rows: int = option(512, min=1, help="Rows per committed chunk (the resume unit).")
    shard_rows: int = option(4096, min=1, help="Rows per output shard.")

    def check(self) -> None:
        if self.vae and self.latents:
            raise ConfigError("give either --vae (with --video-column) or --latents, not both")
        if self.vae and not self.video_column:
            raise ConfigError(f"--vae {self.vae} needs --video-column (the column of the input rows with each clip's path)")
        if self.video_column and not self.vae:
            raise ConfigError("--video-column needs --vae: a Wan checkpoint folder, or `pixels` for 3-channel pixel latents")
        check_model_path("--text-encoder", self.text_encoder)
        if self.vae != PIXELS:
            check_model_path("--vae", self.vae)


# --------------------------------------------------------------------------- text encoders


class TextEncoder:
    """Token states from umT5 (a Wan checkpoint) or any transformers encoder. Loaded offline,
    never with remote code."""

    def __init__(self, name_or_path: str | None, *, max_tokens: int | None, dtype: str = "float16", device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from direct_data.backends.models import check_hub_reachable, model_identity, resolve_embedder, usable_positions

        path = Path(resolve_embedder(name_or_path))
        check_hub_reachable(path, "text encoder")
        self.dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
        self.device = device
        if (path / "text_encoder").is_dir():  # a Wan diffusers checkpoint: umT5-XXL + its tokenizer
            from transformers import UMT5EncoderModel

            self.tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer", trust_remote_code=False)
            self.model = UMT5EncoderModel.from_pretrained(path / "text_encoder", trust_remote_code=False)
            self.max_tokens = max_tokens or 512
            ident = model_identity(str(path / "text_encoder"))
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            self.model = AutoModel.from_pretrained(path, trust_remote_code=False)
            self.max_tokens = max_tokens or 128
            ident = model_identity(str(path))
        limit = usable_positions(getattr(self.model.config, "max_position_embeddings", None), getattr(self.model.config, "model_type", None))
        if limit is not None and limit < self.max_tokens:
            raise ConfigError(f"--max-text-tokens {self.max_tokens}: the text encoder {path} reads at most {limit} tokens; give {limit} or less")
        self.model.eval().to(device)
        self.identity = f"{ident}/L{self.max_tokens}"
        self.dim = int(self.model.config.d_model if hasattr(self.model.config, "d_model") else self.model.config.hidden_size)

    def encode(self, texts: list[str]) -> list[Any]:
        """One [length_i, dim] tensor per text (padding removed)."""
        import torch

        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        with torch.inference_mode():
            h = self.model(input_ids=tok.input_ids.to(self.device), attention_mask=tok.attention_mask.to(self.device)).last_hidden_state
        lengths = tok.attention_mask.sum(1).tolist()
        return [h[i, :n].to(self.dtype).cpu() for i, n in enumerate(lengths)]


# --------------------------------------------------------------------------- video


def read_video(path: str | Path) -> np.ndarray:
    """Frames of a video file as uint8 (T, H, W, 3), read with imageio (GIF/PNG via Pillow,
    MP4/WebM/MOV via PyAV)."""
    import imageio.v3 as iio

    frames = iio.imread(path, index=None)
    if frames.ndim == 3:  # one grey frame or one RGB frame
        frames = frames[None] if frames.shape[-1] in (3, 4) else frames[..., None]
    if frames.shape[-1] == 4:
        frames = frames[..., :3]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames.astype(np.uint8))


class VideoEncoder:
    """diffusers `AutoencoderKLWan`: clips (T, H, W, 3) uint8 -> normalised latents (C, F, H/8, W/8)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        from diffusers import AutoencoderKLWan

        from direct_data.backends.models import check_hub_reachable, model_identity

        check_hub_reachable(path, "vae")
        path = Path(path)
        sub = path / "vae" if (path / "vae").is_dir() else path
        self.vae = AutoencoderKLWan.from_pretrained(sub).eval().to(device)
        self.device = device
        self.identity = str(model_identity(str(sub)))
        import torch

        cfg = self.vae.config
        self.mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)

    def encode(self, clip: np.ndarray):
        import torch

        t = clip.shape[0]
        if (t - 1) % 4 != 0:
            raise ValueError(f"Wan's VAE needs 1 + 4k frames, got {t}")
        x = torch.from_numpy(clip).float().permute(3, 0, 1, 2)[None] / 127.5 - 1.0  # (1, 3, T, H, W) in [-1, 1]
        with torch.inference_mode():
            z = self.vae.encode(x.to(self.device)).latent_dist.mode()
        return ((z.cpu() - self.mean) / self.std)[0]


def pixel_latents(clip: np.ndarray):
    """A uint8 clip (T, H, W, 3) as pixel-space latents (3, T, H, W) in [-1, 1] (`--vae pixels`)."""
    import torch

    return torch.from_numpy(clip.astype(np.float32) / 127.5 - 1.0).permute(3, 0, 1, 2).contiguous()


# --------------------------------------------------------------------------- the stage


class EncodeStage(Stage):
    """Units: chunks of texts (captions, then accepted hard negatives), then chunks of clips."""

    name = STAGE
    config_cls = EncodeConfig
    tables = ("text_states", "latents", "rejects")
    title = "Text states and video latents"

    def read(self, inputs: Inputs) -> None:
        cfg: EncodeConfig = self.config
        part = inputs.outputs["partition"]
        self.partition = part
        self.texts = [{"key": r["prompt_id"], "prompt_id": r["prompt_id"], "kind": "caption", "axis": "", "text": r["prompt"]}
                      for r in part.rows("partitions", ["prompt_id", "prompt"])]
        if "negatives" in inputs.outputs:
            negs = inputs.outputs["negatives"].rows("negatives", ["prompt_id", "axis", "negative"])
            ours = {t["prompt_id"] for t in self.texts}
            foreign = sum(r["prompt_id"] not in ours for r in negs)
            if negs and foreign == len(negs):
                raise InputError(f"--negatives {inputs.outputs['negatives'].path}: none of its {len(negs)} negatives belongs to a prompt "
                                 f"of {part.path}; give the perturb output of this partition")
            if foreign:  # e.g. perturb ran on the raw prompts, and partition merged some of them
                log.warning("--negatives: %d of %d negatives belong to prompts %s does not hold; training never pairs them",
                            foreign, len(negs), part.path)
            self.texts += [{"key": f"{r['prompt_id']}:{r['axis']}", "prompt_id": r["prompt_id"], "kind": "negative", "axis": r["axis"], "text": r["negative"]}
                           for r in negs]
        self.clips: list[tuple[int, str, str | None]] = []
        if cfg.vae or cfg.latents:
            for i, r in enumerate(part.rows("partitions", ["prompt_id", "meta"])):
                meta = json.loads(r["meta"])
                self.clips.append((i, r["prompt_id"], meta.get(cfg.video_column) if cfg.video_column else None))
            if cfg.video_column and self.clips and not any(v for _, _, v in self.clips):
                raise InputError(f"{part.path}: no row has a {cfg.video_column!r} value in its input columns (meta)")
        if cfg.latents:  # read its header now: a file that is not safetensors is an error before any work
            from safetensors import safe_open

            try:
                with safe_open(cfg.latents, framework="pt") as f:
                    f.keys()
            except Exception as e:  # safetensors raises its own error type (and OSError)
                raise InputError(f"--latents {cfg.latents}: not a safetensors file ({first_line(e)})") from None
        self._encoder = None
        self._vencoder = None
        self._provided = None

    def input_fingerprints(self, inputs: Inputs) -> list[dict]:
        """The clips `--video-column` names: one entry whose sha256 digests every clip's path, size
        and modification time in row order (a stat per clip, no read), so an edited, replaced or
        deleted clip recomputes the latents instead of leaving them up to date."""
        cfg: EncodeConfig = self.config
        if not cfg.video_column or "partition" not in inputs.outputs:
            return []
        h, n = hashlib.sha256(), 0
        for r in inputs.outputs["partition"].rows("partitions", ["prompt_id", "meta"]):
            video = json.loads(r["meta"]).get(cfg.video_column)
            if not isinstance(video, str) or not video:
                continue
            try:
                st = os.stat(video)
                sig = f"{st.st_size}\t{st.st_mtime_ns}"
            except (OSError, ValueError):
                sig = "unreadable"
            h.update(f"{r['prompt_id']}\t{video}\t{sig}\n".encode("utf-8", "surrogatepass"))
            n += 1
        return [{"role": "clips", "path": f"the {n} clips of the {cfg.video_column!r} column", "sha256": h.hexdigest()}]

    def units(self) -> list[Unit]:
        n = self.config.chunk_rows
        out = [Unit(unit_name("text", j, (r["key"] for r in self.texts[s : s + n])), ("text", self.texts[s : s + n]), size=len(self.texts[s : s + n]))
               for j, s in enumerate(range(0, len(self.texts), n))]
        out += [Unit(unit_name("latents", j, (c[1] for c in self.clips[s : s + n])), ("latents", self.clips[s : s + n]), size=len(self.clips[s : s + n]))
                for j, s in enumerate(range(0, len(self.clips), n))]
        return out

    def plan(self) -> dict:
        return {"texts": len(self.texts), "clips": len(self.clips), "latents_from": self.config.vae or self.config.latents or "none"}

    def compute(self, unit: Unit, out: UnitWriter) -> dict:
        kind, rows = unit.payload
        return self._texts(rows, out) if kind == "text" else self._latents(rows, out)

    def _texts(self, rows: list[dict], out: UnitWriter) -> dict:
        cfg = self.config
        if self._encoder is None:
            with cannot_load(f"--text-encoder {cfg.text_encoder}"):
                self._encoder = TextEncoder(cfg.text_encoder, max_tokens=cfg.max_text_tokens, dtype=cfg.text_dtype)
        enc = self._encoder
        for b in range(0, len(rows), cfg.batch_size):
            batch = rows[b : b + cfg.batch_size]
            for row, st in zip(batch, enc.encode([r["text"] for r in batch])):
                data, dtype = to_bytes(st)
                out.write("text_states", {**row, "length": st.shape[0], "dim": st.shape[1], "dtype": dtype, "encoder": enc.identity, "states": data})
        return {"texts": len(rows), "encoder": enc.identity, "dim": enc.dim}

    def _latents(self, clips: list[tuple[int, str, str | None]], out: UnitWriter) -> dict:
        import torch

        from direct_data.core.read import Reject

        cfg = self.config
        if cfg.latents and self._provided is None:
            from safetensors import safe_open

            self._provided = safe_open(cfg.latents, framework="pt")
            self._available = set(self._provided.keys())
        if cfg.vae and cfg.vae != PIXELS and self._vencoder is None and any(v for _, _, v in clips):
            with cannot_load(f"--vae {cfg.vae}"):  # once, outside the per-clip rejects: one error, not a reject per clip
                self._vencoder = VideoEncoder(cfg.vae)
        n = 0
        for i, pid, video in clips:
            try:
                if self._provided is not None:
                    if pid not in self._available:
                        raise KeyError(f"no tensor named {pid} in {cfg.latents}")
                    z, src, vae_id = self._provided.get_tensor(pid), f"provided:{Path(cfg.latents).name}", ""
                else:
                    if not video:
                        raise KeyError(f"no {cfg.video_column!r} value")
                    if cfg.vae == PIXELS:
                        z, src, vae_id = pixel_latents(read_video(video)), str(video), PIXELS
                    else:
                        self._vencoder = self._vencoder or VideoEncoder(cfg.vae)
                        z, src, vae_id = self._vencoder.encode(read_video(video)), str(video), self._vencoder.identity
            except Exception as ex:  # one bad clip is a reject row, not a crashed stage
                out.write("rejects", Reject(str(self.partition.path), i, "latent_unavailable", f"{type(ex).__name__}: {ex}", str(video or pid)).to_row(STAGE))
                continue
            data, dtype = to_bytes(z.to(getattr(torch, cfg.latent_dtype)))
            out.write("latents", {"prompt_id": pid, "shape": list(z.shape), "dtype": dtype, "source": src, "vae": vae_id, "data": data})
            n += 1
        return {"clips": len(clips), "latents": n}

    def finish(self, done: list[dict], out: FinalWriter) -> None:
        cfg = self.config
        texts = [m["counts"] for m in done if "texts" in m["counts"]]
        lat = [m["counts"] for m in done if "clips" in m["counts"]]
        n_lat = sum(c["latents"] for c in lat)
        out.counts = {"captions": sum(r["kind"] == "caption" for r in self.texts), "negatives": sum(r["kind"] == "negative" for r in self.texts),
                      "text_states": sum(c["texts"] for c in texts), "clips": len(self.clips), "latents": n_lat,
                      "rejected": len(self.clips) - n_lat}
        assert out.counts["text_states"] == len(self.texts)
        out.model = texts[0]["encoder"] if texts else None
        out.stats = {"text_dim": texts[0]["dim"] if texts else None, "text_dtype": cfg.text_dtype,
                     "latents_from": cfg.vae or (f"provided:{Path(cfg.latents).name}" if cfg.latents else None)}

    def card_sections(self, m) -> tuple[str, dict[str, bytes]]:
        if m.stats.get("latents_from"):
            return f"\nLatents from `{m.stats['latents_from']}`: {m.counts['latents']} of {m.counts['clips']} clips.\n", {}
        return ("\nNo latents: this output holds text states only. `direct-data train` needs latents: rerun with "
                "`--video-column COL --vae pixels` (tiny CPU models), `--vae WAN_FOLDER`, or `--latents FILE.safetensors`.\n"), {}


# --------------------------------------------------------------------------- reading back


def load_text_states(output: StageOutput | str | Path) -> dict[str, Any]:
    """key -> [length, dim] tensor, for every text state of an encode output (verified)."""
    output = output if isinstance(output, StageOutput) else open_encode(output)
    return {r["key"]: from_bytes(r["states"], r["dtype"], (r["length"], r["dim"])) for r in output.rows("text_states")}


def load_latents(output: StageOutput | str | Path) -> dict[str, Any]:
    """prompt_id -> latent tensor (C, F, H, W), of an encode output (verified)."""
    output = output if isinstance(output, StageOutput) else open_encode(output)
    return {r["prompt_id"]: from_bytes(r["data"], r["dtype"], tuple(r["shape"])) for r in output.rows("latents")}


def open_encode(path: str | Path) -> StageOutput:
    return open_output(path, stages=(STAGE,))

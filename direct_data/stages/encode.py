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

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from datasets import Features, List, Value

from direct_data.core.manifest import ChunkLog, Manifest, config_hash, remove_stale, up_to_date
from direct_data.core.progress import progress_bar
from direct_data.core.schema import register
from direct_data.core.shards import ShardWriter, read_shards

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
register("text_states", TEXT_STATES)
register("latents", LATENTS)

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


@dataclass
class EncodeConfig:
    text_encoder: str | None = None  # None: the packaged MiniLM's token states; a Wan checkpoint folder: its umT5
    max_text_tokens: int | None = None  # None: 512 for umT5 (Wan), 128 otherwise
    text_dtype: str = "float16"
    vae: str | None = None  # a Wan diffusers checkpoint folder (vae/ inside) or an AutoencoderKLWan folder
    video_column: str | None = None  # column of the input rows (their `meta`) holding a video path
    latents: str | None = None  # safetensors file of provided latents, one tensor per prompt_id
    latent_dtype: str = "float32"
    batch_size: int = 16
    chunk_rows: int = 512  # texts (or clips) per committed chunk: the resume unit
    shard_rows: int = 4096

    def hashed(self) -> dict:
        return asdict(self)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


# --------------------------------------------------------------------------- text encoders


class TextEncoder:
    """Token states from umT5 (a Wan checkpoint) or any transformers encoder. Loaded offline,
    never with remote code."""

    def __init__(self, name_or_path: str | None, *, max_tokens: int | None, dtype: str = "float16", device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from direct_data.backends.models import model_identity, resolve_embedder

        path = Path(resolve_embedder(name_or_path))
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

        from direct_data.backends.models import model_identity

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


# --------------------------------------------------------------------------- the stage


@dataclass
class EncodeResult:
    out_dir: Path
    up_to_date: bool
    reason: str
    manifest: Manifest | None = None
    run: dict = field(default_factory=dict)


def _texts(partition_dir: Path, negatives_dir: Path | None) -> list[dict]:
    rows = [{"key": r["prompt_id"], "prompt_id": r["prompt_id"], "kind": "caption", "axis": "", "text": r["prompt"]}
            for r in read_shards(partition_dir, "partitions").select(["prompt_id", "prompt"]).to_pylist()]
    if negatives_dir is not None:
        m = Manifest.read(negatives_dir)
        if m is None or m.stage != "perturb":
            raise ValueError(f"{negatives_dir}: not a perturb output")
        rows += [{"key": f"{r['prompt_id']}:{r['axis']}", "prompt_id": r["prompt_id"], "kind": "negative", "axis": r["axis"], "text": r["negative"]}
                 for r in read_shards(negatives_dir, "negatives").select(["prompt_id", "axis", "negative"]).to_pylist()]
    return rows


def _chunks(n: int, size: int) -> Iterator[tuple[int, int, int]]:
    for j, s in enumerate(range(0, n, size)):
        yield j, s, min(s + size, n)


def run_encode(
    partition_dir: str | Path,
    out_dir: str | Path,
    cfg: EncodeConfig | None = None,
    *,
    negatives_dir: str | Path | None = None,
    force: bool = False,
    show_progress: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> EncodeResult:
    """Encode every caption and hard negative (and every clip, when a VAE or latents are given)."""
    import torch

    from direct_data.core.read import Reject
    from direct_data.core.shards import sha256_file

    cfg = cfg or EncodeConfig()
    partition_dir, out_dir = Path(partition_dir), Path(out_dir)
    negatives_dir = Path(negatives_dir) if negatives_dir else None
    ins = [partition_dir] + ([negatives_dir] if negatives_dir else []) + ([Path(cfg.latents)] if cfg.latents else [])
    described = [{"path": str(p), "sha256": sha256_file(p / "manifest.json") if p.is_dir() else sha256_file(p), "kind": "stage" if p.is_dir() else "file"} for p in ins]
    ok, reason = up_to_date(out_dir, stage=STAGE, config=cfg.hashed(), inputs=described)
    if ok and not force:
        return EncodeResult(out_dir, True, reason, Manifest.read(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    log = ChunkLog(out_dir / "chunks", config_hash({"config": cfg.hashed(), "inputs": described}), force=force)
    texts = _texts(partition_dir, negatives_dir)
    run: dict[str, Any] = {"text_chunks_run": 0, "latent_chunks_run": 0}

    encoder = None
    n_text_chunks = -(-len(texts) // cfg.chunk_rows)
    with progress_bar("encode text", total=len(texts), enabled=show_progress) as bar:
        for j, s, e in _chunks(len(texts), cfg.chunk_rows):
            name = f"text-{j:05d}"
            if j % world_size != rank or log.committed(name):
                continue
            encoder = encoder or TextEncoder(cfg.text_encoder, max_tokens=cfg.max_text_tokens, dtype=cfg.text_dtype)
            with ShardWriter(out_dir, "text_states", max_rows=cfg.shard_rows, prefix=f"c{j:05d}-") as w:
                for b in range(s, e, cfg.batch_size):
                    batch = texts[b : min(b + cfg.batch_size, e)]
                    for row, st in zip(batch, encoder.encode([r["text"] for r in batch])):
                        data, dtype = to_bytes(st)
                        w.write({**row, "length": st.shape[0], "dim": st.shape[1], "dtype": dtype, "encoder": encoder.identity, "states": data})
                    bar.update(len(batch))
            log.commit(name, {"shards": {"text_states": [x.to_dict() for x in w.shards]}})
            run["text_chunks_run"] += 1

    # latents: from a VAE over a video column, or provided arrays
    clips = []
    if cfg.vae or cfg.latents:
        parts = read_shards(partition_dir, "partitions").select(["prompt_id", "meta"]).to_pylist()
        for i, r in enumerate(parts):
            meta = json.loads(r["meta"])
            clips.append((i, r["prompt_id"], meta.get(cfg.video_column) if cfg.video_column else None))
    n_lat_chunks = -(-len(clips) // cfg.chunk_rows) if clips else 0
    provided = None
    if cfg.latents:
        from safetensors import safe_open

        provided = safe_open(cfg.latents, framework="pt")
        available = set(provided.keys())
    vencoder = None
    with progress_bar("encode video", total=len(clips), enabled=show_progress and bool(clips)) as bar:
        for j, s, e in _chunks(len(clips), cfg.chunk_rows):
            name = f"latents-{j:05d}"
            if j % world_size != rank or log.committed(name):
                continue
            chunk_rejects = []
            with ShardWriter(out_dir, "latents", max_rows=cfg.shard_rows, prefix=f"c{j:05d}-") as w:
                for i, pid, video in clips[s:e]:
                    try:
                        if provided is not None:
                            if pid not in available:
                                raise KeyError(f"no tensor named {pid} in {cfg.latents}")
                            z, src, vae_id = provided.get_tensor(pid), f"provided:{Path(cfg.latents).name}", ""
                        else:
                            if not video:
                                raise KeyError(f"no {cfg.video_column!r} value")
                            vencoder = vencoder or VideoEncoder(cfg.vae)
                            z, src, vae_id = vencoder.encode(read_video(video)), str(video), vencoder.identity
                    except Exception as ex:  # one bad clip is a reject row, not a crashed stage
                        chunk_rejects.append(Reject(str(partition_dir), i, "latent_unavailable", f"{type(ex).__name__}: {ex}", str(video or pid)).to_row(STAGE))
                        continue
                    data, dtype = to_bytes(z.to(getattr(torch, cfg.latent_dtype)))
                    w.write({"prompt_id": pid, "shape": list(z.shape), "dtype": dtype, "source": src, "vae": vae_id, "data": data})
                bar.update(e - s)
            with ShardWriter(out_dir, "rejects", prefix=f"c{j:05d}-") as rw:
                rw.write_many(chunk_rejects)
            log.commit(name, {"shards": {"latents": [x.to_dict() for x in w.shards], "rejects": [x.to_dict() for x in rw.shards]}})
            run["latent_chunks_run"] += 1

    names = [f"text-{j:05d}" for j in range(n_text_chunks)] + [f"latents-{j:05d}" for j in range(n_lat_chunks)]
    markers = [log.committed(n) for n in names]
    if any(m is None for m in markers):
        return EncodeResult(out_dir, False, f"rank {rank}: chunks of other ranks are not committed yet", run=run)
    manifest = Manifest(stage=STAGE, config=cfg.hashed(), inputs=described, seed=None)
    for table in ("text_states", "latents", "rejects"):
        manifest.shards[table] = [s for m in markers for s in m["shards"].get(table, [])]
    n_lat = sum(s["rows"] for s in manifest.shards["latents"])
    n_rej = sum(s["rows"] for s in manifest.shards["rejects"])
    manifest.counts = {
        "captions": sum(r["kind"] == "caption" for r in texts), "negatives": sum(r["kind"] == "negative" for r in texts),
        "text_states": sum(s["rows"] for s in manifest.shards["text_states"]), "clips": len(clips), "latents": n_lat, "rejected": n_rej,
    }
    assert manifest.counts["text_states"] == len(texts) and n_lat + n_rej == len(clips)
    first = next(iter(read_shards(out_dir, "text_states").slice(0, 1).to_pylist()), None) if texts else None
    manifest.model = first["encoder"] if first else None
    manifest.stats = {"text_dim": first["dim"] if first else None, "text_dtype": cfg.text_dtype}
    manifest.write(out_dir)
    run["removed_stale"] = remove_stale(out_dir, manifest)
    log.prune(set(names))
    return EncodeResult(out_dir, False, reason, manifest, run=run)


# --------------------------------------------------------------------------- reading back


def load_text_states(encode_dir: str | Path) -> dict[str, Any]:
    """key -> [length, dim] tensor, for every text state of an encode output."""
    out = {}
    for r in read_shards(encode_dir, "text_states").to_pylist():
        out[r["key"]] = from_bytes(r["states"], r["dtype"], (r["length"], r["dim"]))
    return out


def load_latents(encode_dir: str | Path) -> dict[str, Any]:
    """prompt_id -> latent tensor (C, F, H, W)."""
    return {r["prompt_id"]: from_bytes(r["data"], r["dtype"], tuple(r["shape"])) for r in read_shards(encode_dir, "latents").to_pylist()}


def load_train_data(partition_dir: str | Path, encode_dir: str | Path, *, check_finite: bool = True):
    """A `direct_data.training.train.TrainData` from the stage outputs: every prompt that has a latent, with
    its caption states, partition, macro negatives (as row indices), and hard negatives (states and
    axis). Returns (data, accounting); prompts without a latent are counted, not silently dropped."""
    import numpy as np

    from direct_data.stages.partition import load_centroids
    from direct_data.training.train import TrainData

    parts = read_shards(partition_dir, "partitions").select(["prompt_id", "partition_id", "macro_negatives"]).to_pylist()
    states = load_text_states(encode_dir)
    latents = load_latents(encode_dir)
    hard: dict[str, list] = {}
    for r in read_shards(encode_dir, "text_states").select(["key", "prompt_id", "kind", "axis"]).to_pylist():
        if r["kind"] == "negative":
            hard.setdefault(r["prompt_id"], []).append((states[r["key"]], r["axis"]))
    rows = [r for r in parts if r["prompt_id"] in latents and r["prompt_id"] in states]
    index = {r["prompt_id"]: i for i, r in enumerate(rows)}
    cc = load_centroids(partition_dir)["centroid_cos"].astype(np.float64)
    neighbors = {}
    for p in range(len(cc)):
        sims = cc[p].copy()
        sims[p] = -np.inf
        neighbors[p] = [int(q) for q in np.argsort(-sims, kind="stable")[: len(cc) - 1]]
    data = TrainData(
        [latents[r["prompt_id"]].float() for r in rows],
        [states[r["prompt_id"]].float() for r in rows],
        [r["partition_id"] for r in rows],
        macro_ids=[[index[n] for n in r["macro_negatives"] if n in index] for r in rows],
        hard=[[(s.float(), a) for s, a in hard.get(r["prompt_id"], [])] for r in rows],
        partition_neighbors=neighbors,
        row_ids=[r["prompt_id"] for r in rows],
        check_finite=check_finite,
    )
    accounting = {"prompts": len(parts), "with_latent": len(rows), "no_latent": len(parts) - len(rows), **data.accounting()}
    return data, accounting

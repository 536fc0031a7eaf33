"""Sentence embeddings with a content-addressed cache.

The cache lives outside the output folder (default ``~/.cache/direct-data/embeddings``), one folder
per *embedding identity*: model name + hash of its weights + max sequence length + normalisation.
Inside, Arrow IPC chunk files map the sha256 of a text to its float32 vector. A rerun over a grown
corpus embeds only the texts the cache lacks.

Texts to embed are sorted by hash and embedded in fixed-size chunks, each committed atomically.
Because a chunk's contents depend only on the sorted list of missing texts, a run killed after chunk
j and rerun embeds exactly the remaining chunks.

A text's vector is a pure function of the text (and the embedding identity), never of the cache's
history or of which other texts happened to be embedded with it: within a chunk, texts are grouped by
their exact token count and each forward pass of the torch backend sees exactly `TORCH_ROWS` (8)
texts of one length (no padding; a length's texts are cut into near-equal passes, each filled up
with copies of its last text, so a lone text never runs alone: a batch of one takes another GEMM
path). Eight, whatever
`batch_size` says: on some CPUs the GEMM kernel, and so the low bits of a row, depends on the
number of rows (seen on an AVX-512 CPU without bfloat16 instructions, where batches of 3 and 16
texts gave different bits); with the row count fixed, a row depends on its own text alone. Where
the row count never mattered, these passes give the same bytes as the earlier equal-length
batches, so the identity marker is unchanged.
So an empty cache, a cache filled by a bigger run, and a resumed run all give the same bytes. The
identity carries an `-eqlen` marker so vectors from the older padded batching are never mixed in.

The model is loaded lazily: the identity and the width are read from the model folder's files, so
`plan()` and a fully cached `embed()` never load it (see `Embedder.model_loaded`).

Backends (`backend=`, `--embed-backend`): `torch` (sentence-transformers' `encode`), `onnx` (ONNX
Runtime, fused graph, int8 dynamic quantisation, one text per pass), `openvino` (OpenVINO, bf16
where the CPU has it) and `openvino-f32` (OpenVINO in f32 on every CPU: torch's vectors to ~2e-7, so
k-means gives torch's partitions); see `direct_data.backends.fast_embed`. A non-torch backend's variant is part
of the identity (`...-eqlen-ov-bf16-v1`), so vectors of different backends are never mixed; the
torch identity is unchanged.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from direct_data.backends.fast_embed import EMBED_BACKENDS, OPENVINO_BATCH, backend_variant, load_runtime
from direct_data.backends.models import (
    load_sentence_model,
    model_identity,
    position_limit,
    resolve_embedder,
    sentence_model_meta,
    transformer_dir,
)
from direct_data.core.progress import progress_bar
from direct_data.core.shards import atomic_write_bytes

DEFAULT_CHUNK = 4096
DEFAULT_BATCH = 64
#: rows of every torch forward pass (texts of one token length, the last pass filled up with copies)
TORCH_ROWS = 8
DEFAULT_EMBED_BACKEND = "openvino"  # the fastest backend meeting the agreement targets (bench/results/embed_backends.md)
BATCHING_MARKER = "eqlen"  # passes of TORCH_ROWS texts of equal token length (bump if the bytes of a vector change)
_LENGTH_SLICE = 1024  # texts tokenised at once to count their tokens


def default_cache_dir() -> Path:
    return Path(os.environ.get("DIRECT_DATA_CACHE", Path.home() / ".cache" / "direct-data")) / "embeddings"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class EmbedStats:
    texts: int = 0
    cached: int = 0
    embedded: int = 0
    chunks_written: int = 0


class EmbeddingCache:
    """hash -> vector, backed by `<root>/<identity>/chunk-<first hash>-<n>.arrow` files."""

    def __init__(self, root: Path, identity: str, dim: int):
        self.dir = root / identity
        self.dim = dim
        self._index: dict[str, tuple[Path, int]] | None = None

    def _load_index(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            self._index = {}
            for p in sorted(self.dir.glob("chunk-*.arrow")):
                with pa.memory_map(str(p)) as src:
                    hashes = pa.ipc.open_file(src).read_all().column("hash").to_pylist()
                for i, h in enumerate(hashes):
                    self._index.setdefault(h, (p, i))
        return self._index

    def refresh(self) -> None:
        """Forget the in-memory index (other workers may have added chunks)."""
        self._index = None

    def missing(self, hashes: Sequence[str]) -> list[str]:
        idx = self._load_index()
        return [h for h in hashes if h not in idx]

    def get(self, hashes: Sequence[str]) -> np.ndarray:
        idx = self._load_index()
        out = np.empty((len(hashes), self.dim), dtype=np.float32)
        by_file: dict[Path, list[tuple[int, int]]] = {}
        for j, h in enumerate(hashes):
            p, i = idx[h]
            by_file.setdefault(p, []).append((j, i))
        for p, pairs in by_file.items():
            with pa.memory_map(str(p)) as src:
                col = pa.ipc.open_file(src).read_all().column("embedding").combine_chunks()
                mat = col.values.to_numpy(zero_copy_only=False).reshape(-1, self.dim)
                js, iis = zip(*pairs)
                out[list(js)] = mat[list(iis)]
        return out

    def put(self, hashes: list[str], vectors: np.ndarray) -> None:
        table = pa.table(
            {
                "hash": pa.array(hashes, pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), self.dim),
            }
        )
        sink = io.BytesIO()
        with pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        path = self.dir / f"chunk-{hashes[0][:16]}-{len(hashes)}.arrow"
        atomic_write_bytes(path, sink.getvalue())
        if self._index is not None:
            for i, h in enumerate(hashes):
                self._index.setdefault(h, (path, i))


class Embedder:
    """Batched, L2-normalised sentence embeddings with a cache.

    >>> emb = Embedder()                      # the packaged all-MiniLM-L6-v2, offline
    >>> vecs = emb.embed(["a ball falls"])    # (1, 384) float32, unit norm

    The model is loaded on first need (texts the cache lacks, or `.model`); with `lazy=False`, or when
    the folder's files do not describe the model (a hub id, an unusual module stack), at construction.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        backend: str | None = None,
        batch_size: int | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        max_seq_length: int | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        device: str = "cpu",
        show_progress: bool = False,
        lazy: bool = True,
    ):
        self.model_name = model
        self.model_path = resolve_embedder(model)
        if backend is None:  # the default: the fast backend where the folder allows it, else torch (a hub id...)
            backend = DEFAULT_EMBED_BACKEND if transformer_dir(self.model_path) is not None else "torch"
        if backend not in EMBED_BACKENDS:
            raise ValueError(f"backend must be one of {EMBED_BACKENDS}, got {backend!r}")
        if batch_size is None:  # the backend's best: equal-length batches of 256 (openvino); torch runs TORCH_ROWS per pass whatever it says
            batch_size = DEFAULT_BATCH if backend == "torch" else OPENVINO_BATCH
        if batch_size < 1 or chunk_size < 1:
            raise ValueError("batch_size and chunk_size must be >= 1")
        self.backend = backend
        self.variant = backend_variant(backend)  # a missing runtime package is a one-line UserError here
        self._runtime = None
        self.device = device
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.show_progress = show_progress
        self._model = None
        self._texts_by_hash: dict[str, str] = {}  # what missing_chunks() saw, for fill()
        self._meta = sentence_model_meta(self.model_path) if lazy else None
        if backend != "torch" and transformer_dir(self.model_path) is None:
            from direct_data.core.errors import UserError

            raise UserError(f"--embed-backend {backend} needs a local sentence-transformers folder that its files describe "
                            f"(Transformer + Pooling [+ Dense] [+ Normalize]); {self.model_path} is not one: use --embed-backend torch")
        if self._meta is None:  # the files do not tell: ask the model
            m = self._load()
            native_len, dim = int(m.max_seq_length), self._model_dim(m)
        else:
            native_len, dim = self._meta.max_seq_length, self._meta.dim
        self.max_seq_length = int(max_seq_length) if max_seq_length is not None else native_len
        limit = position_limit(self.model_path)
        if limit is not None and self.max_seq_length > limit:
            from direct_data.core.errors import ConfigError

            raise ConfigError(f"--max-seq-length {self.max_seq_length}: {self.model_path} reads at most {limit} tokens "
                              f"(its max_position_embeddings); give {limit} or less")
        self.dim = dim
        mid = model_identity(self.model_path)
        self.identity = self.identity_for(mid.name, mid.revision, self.max_seq_length, self.variant)
        self.model_identity = str(mid)
        self._export_key = f"{mid.name}-{mid.revision[:16]}"
        if not lazy and backend != "torch":
            self._load_runtime()
        self.cache = EmbeddingCache(Path(cache_dir) if cache_dir else default_cache_dir(), self.identity, self.dim) if use_cache else None
        self.stats = EmbedStats()

    @staticmethod
    def identity_for(name: str, revision: str, max_seq_length: int, variant: str = "torch") -> str:
        """The cache folder name: model, weights, truncation, normalisation, batching scheme, and the
        backend variant (absent for torch, so torch caches of earlier versions stay valid)."""
        base = f"{name}-{revision[:16]}-L{int(max_seq_length)}-norm-{BATCHING_MARKER}"
        return base if variant == "torch" else f"{base}-{variant}"

    @staticmethod
    def _model_dim(m) -> int:
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def _load(self):
        m = load_sentence_model(self.model_name, device=self.device)
        if self._meta is not None:  # what the files said must be what the model does
            got = (int(m.max_seq_length), self._model_dim(m))
            want = (self._meta.max_seq_length, self._meta.dim)
            if got != want:
                raise RuntimeError(
                    f"{self.model_path}: the folder's files say (max_seq_length, dim) = {want}, the loaded model "
                    f"has {got}; the embedding identity would be wrong. Use Embedder(..., lazy=False)."
                )
        self._model = m
        return m

    @property
    def model(self):
        """The SentenceTransformer (loaded now if it was not yet). The model object is shared with
        other users of `load_sentence_model`, so its own max_seq_length is left as loaded; ours is
        applied around each encode."""
        return self._model if self._model is not None else self._load()

    @property
    def model_loaded(self) -> bool:
        return self._model is not None or self._runtime is not None

    def _load_runtime(self):
        if self._runtime is None:
            self._runtime = load_runtime(self.backend, self.model_path, self._export_key)
        return self._runtime

    def _token_lengths(self, model, texts: list[str]) -> np.ndarray:
        """Tokens per text as the model's forward pass sees them (special tokens, truncation)."""
        prep = getattr(model, "preprocess", None) or model.tokenize
        prompt = None
        if getattr(model, "default_prompt_name", None):
            prompt = (getattr(model, "prompts", None) or {}).get(model.default_prompt_name)
        out = []
        for i in range(0, len(texts), _LENGTH_SLICE):
            part = texts[i : i + _LENGTH_SLICE]
            feats = prep(part, prompt=prompt) if prompt else prep(part)
            out.append(np.asarray(feats["attention_mask"]).sum(axis=1))
        return np.concatenate(out).astype(np.int64)

    def _batches(self, lengths: np.ndarray, size: int) -> list[list[int]]:
        """Indices grouped by token count, each group cut into near-equal batches of <= size."""
        order = np.lexsort((np.arange(len(lengths)), lengths))
        out: list[list[int]] = []
        for length in np.unique(lengths):
            idx = [int(i) for i in order[lengths[order] == length]]
            nb = -(-len(idx) // size)
            out.extend(idx[b * len(idx) // nb : (b + 1) * len(idx) // nb] for b in range(nb))
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of `texts` (in order); each text's vector depends on that text alone."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if self.backend != "torch":
            return self._encode_runtime(texts, out)
        model = self.model
        native = model.max_seq_length
        model.max_seq_length = self.max_seq_length
        try:
            lengths = self._token_lengths(model, texts)
            for idx in self._batches(lengths, TORCH_ROWS):  # TORCH_ROWS rows per pass, whatever batch_size says
                batch = [texts[i] for i in idx]
                batch += [batch[-1]] * (TORCH_ROWS - len(batch))  # filled up with copies
                vecs = model.encode(batch, batch_size=TORCH_ROWS, normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
                out[idx] = np.asarray(vecs, dtype=np.float32)[: len(idx)]
        finally:
            model.max_seq_length = native
        return out

    def _encode_runtime(self, texts: list[str], out: np.ndarray) -> np.ndarray:
        """The onnx / openvino path: the same equal-token-length batches, capped at the runtime's
        batch cap (onnx: one text per pass), never a batch of one where the cap allows two."""
        rt = self._load_runtime()
        lengths = np.concatenate([rt.token_lengths(texts[i : i + _LENGTH_SLICE], self.max_seq_length) for i in range(0, len(texts), _LENGTH_SLICE)])
        cap = min(self.batch_size, rt.batch_cap or self.batch_size)
        for idx in self._batches(lengths, cap):
            batch = [texts[i] for i in idx]
            if len(batch) == 1 and cap > 1:
                batch = batch * 2
            out[idx] = rt.encode(batch, self.max_seq_length)[: len(idx)]
        return out

    def plan(self, texts: Sequence[str]) -> tuple[int, int]:
        """(distinct texts, texts the cache lacks) without embedding anything (or loading the model)."""
        hashes = sorted({text_hash(t) for t in texts})
        return len(hashes), len(self.cache.missing(hashes)) if self.cache else len(hashes)

    def missing_chunks(self, texts: Sequence[str]) -> list[list[str]]:
        """The distinct texts the cache lacks, as hash-sorted chunks of text hashes (at most chunk_size
        each): the resume units. Remembers the texts, so that `fill(chunk)` can embed them."""
        if self.cache is None:
            raise ValueError("missing_chunks needs the embedding cache")
        hashes = [text_hash(t) for t in texts]
        self._texts_by_hash.update(zip(hashes, texts))
        missing = sorted(self.cache.missing(sorted(set(hashes))))
        return [missing[i : i + self.chunk_size] for i in range(0, len(missing), self.chunk_size)]

    def fill(self, chunk: Sequence[str]) -> None:
        """Embed one chunk of `missing_chunks` and commit it to the cache (one atomic file). The vectors
        depend on the texts alone, so a chunk recomputed after a kill gives the same bytes."""
        if self.cache is None:
            raise ValueError("fill needs the embedding cache")
        try:
            batch = [self._texts_by_hash[h] for h in chunk]
        except KeyError as e:
            raise KeyError(f"fill: hash {e.args[0]} was not among the texts given to missing_chunks") from None
        self.cache.put(list(chunk), self._encode(batch))
        self.stats.embedded += len(chunk)
        self.stats.chunks_written += 1

    def encode(self, sentences: Sequence[str], **_: object) -> np.ndarray:
        """SentenceTransformer-style ``encode`` for code written against that API (the validator):
        the unit-length float32 vectors of `sentences`, in order, through the cache. Batch size,
        normalisation and output-type arguments are ignored: the vectors are always normalised, and
        each depends on its own text alone. Unlike `embed`, the cache's index is never re-read
        here (one process calling many times would re-read every chunk file each time); a text
        another process cached meanwhile is embedded again, to the same bytes."""
        texts = list(sentences)
        if self.cache is None:
            return self._encode(texts)
        for chunk in self.missing_chunks(texts):
            self.fill(chunk)
        return self.cache.get([text_hash(t) for t in texts]) if texts else np.empty((0, self.dim), dtype=np.float32)

    def embed(self, texts: Sequence[str], *, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Embeddings of `texts` in their order. With world_size > 1, this worker only fills the cache
        for its share of the missing chunks (chunk j goes to rank j % world_size) and returns the
        vectors once every chunk is present. The model is loaded only if some text is missing."""
        hashes = [text_hash(t) for t in texts]
        self.stats = EmbedStats(texts=len(set(hashes)))
        if self.cache is None:
            if world_size != 1:
                raise ValueError("rank/world_size sharding needs the embedding cache")
            self.stats.embedded = self.stats.texts
            return self._encode(list(texts))
        indexed_before = self.cache._index is not None
        chunks = self.missing_chunks(texts)
        if chunks and indexed_before:  # that index may predate chunks other workers have committed since
            self.cache.refresh()
            chunks = self.missing_chunks(texts)
        self.stats.cached = self.stats.texts - sum(map(len, chunks))
        mine = [c for j, c in enumerate(chunks) if j % world_size == rank]
        with progress_bar("embed", total=sum(map(len, mine)), enabled=self.show_progress) as bar:
            for chunk in mine:
                self.fill(chunk)
                bar.update(len(chunk))
        if world_size != 1:
            self.cache.refresh()
            if self.cache.missing(sorted(set(hashes))):
                raise RuntimeError("other ranks have not finished embedding yet; run them, then rerun")
        if not hashes:
            return np.empty((0, self.dim), dtype=np.float32)
        return self.cache.get(hashes)

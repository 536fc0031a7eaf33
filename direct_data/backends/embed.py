"""Sentence embeddings with a content-addressed cache.

The cache lives outside the output folder (default ``~/.cache/direct-data/embeddings``), one folder
per *embedding identity*: model name + hash of its weights + max sequence length + normalisation.
Inside, Arrow IPC chunk files map the sha256 of a text to its float32 vector. A rerun over a grown
corpus embeds only the texts the cache lacks.

Texts to embed are sorted by hash and embedded in fixed-size chunks, each committed atomically.
Because a chunk's contents depend only on the sorted list of missing texts, a run killed after chunk
j and rerun embeds exactly the remaining chunks with exactly the same batch composition: the vectors
are bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from direct_data.backends.models import load_sentence_model, model_identity, resolve_embedder
from direct_data.core.progress import progress_bar
from direct_data.core.shards import atomic_write_bytes

DEFAULT_CHUNK = 4096
DEFAULT_BATCH = 64


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
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
        chunk_size: int = DEFAULT_CHUNK,
        max_seq_length: int | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        device: str = "cpu",
        show_progress: bool = False,
    ):
        self.model_path = resolve_embedder(model)
        self.model = load_sentence_model(model, device=device)
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.max_seq_length = int(self.model.max_seq_length)
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension())
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.show_progress = show_progress
        mid = model_identity(self.model_path)
        self.identity = f"{mid.name}-{mid.revision[:16]}-L{self.max_seq_length}-norm"
        self.model_identity = str(mid)
        self.cache = EmbeddingCache(Path(cache_dir) if cache_dir else default_cache_dir(), self.identity, self.dim) if use_cache else None
        self.stats = EmbedStats()

    def _encode(self, texts: list[str]) -> np.ndarray:
        vecs = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def plan(self, texts: Sequence[str]) -> tuple[int, int]:
        """(distinct texts, texts the cache lacks) without embedding anything."""
        hashes = sorted({text_hash(t) for t in texts})
        return len(hashes), len(self.cache.missing(hashes)) if self.cache else len(hashes)

    def embed(self, texts: Sequence[str], *, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Embeddings of `texts` in their order. With world_size > 1, this worker only fills the cache
        for its share of the missing chunks (chunk j goes to rank j % world_size) and returns the
        vectors once every chunk is present."""
        hashes = [text_hash(t) for t in texts]
        self.stats = EmbedStats(texts=len(set(hashes)))
        if self.cache is None:
            if world_size != 1:
                raise ValueError("rank/world_size sharding needs the embedding cache")
            return self._encode(list(texts))
        by_hash = dict(zip(hashes, texts))
        missing = sorted(self.cache.missing(sorted(by_hash)))
        self.stats.cached = self.stats.texts - len(missing)
        chunks = [missing[i : i + self.chunk_size] for i in range(0, len(missing), self.chunk_size)]
        mine = [c for j, c in enumerate(chunks) if j % world_size == rank]
        with progress_bar("embed", total=sum(map(len, mine)), enabled=self.show_progress) as bar:
            for chunk in mine:
                self.cache.put(chunk, self._encode([by_hash[h] for h in chunk]))
                self.stats.embedded += len(chunk)
                self.stats.chunks_written += 1
                bar.update(len(chunk))
        if world_size != 1:
            self.cache.refresh()
        if world_size != 1 and self.cache.missing(sorted(by_hash)):
            raise RuntimeError("other ranks have not finished embedding yet; run them, then rerun")
        return self.cache.get(hashes)

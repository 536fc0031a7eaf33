"""`direct-data partition`: semantic partitions and macro negatives.

read -> embed -> spherical k-means (FAISS) -> assign -> macro negatives -> shards + manifest + card.

Macro negatives for a prompt are drawn only from partitions other than its own and outside its
`exclude_nearest` nearest partitions (by centroid cosine), so a macro negative never shares the
prompt's content (METHOD.md, "Macro"). Memory is O(N*d + k^2): no N x N matrix is ever formed; with
the rows streamed from a file (`direct_data.stages.vectors.VectorFile`) it is O(N + k*256*d + k^2):
10M x 384 partitions in ~12 min and 3.6 GiB on 2 cores (bench/results/partition_scale_10m.json).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from direct_data.backends.fast_embed import EMBED_BACKENDS
from direct_data.core.config import StageConfig, check_model_path, option, register
from direct_data.core.errors import ConfigError
from direct_data.core.executors import executor_option, ray_actors_option, ray_address_option, ray_num_gpus_option
from direct_data.core.read import DEFAULT_MAX_CHARS, ReadResult, read_prompts
from direct_data.core.runner import FinalWriter, Inputs, Stage, Unit, UnitWriter
from direct_data.core.schema import to_meta_json
from direct_data.core.shards import DEFAULT_MAX_ROWS

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from direct_data.core.manifest import StageOutput

STAGE = "partition"
INT32_MAX = 2**31 - 1  # FAISS takes its k-means settings as C ints
ASSIGN_BATCH = 65_536


@register
@dataclass
class PartitionConfig(StageConfig):
    """Every knob of the stage; the CLI flags, the `[partition]` TOML keys and the hash come from here."""

    SECTION = "partition"

    text_column: str | None = option(None, help="Text column of the input rows.", default_help="prompt, else caption, else text")
    max_chars: int = option(DEFAULT_MAX_CHARS, min=1, help="Reject prompts longer than this (after whitespace folding).")
    model: str | None = option(None, help="sentence-transformers folder or name.", default_help="packaged all-MiniLM-L6-v2")
    embed_backend: str | None = option(None, choices=EMBED_BACKENDS,
                                       help="Embedding runtime: torch (sentence-transformers), onnx (ONNX Runtime, int8), openvino (bf16 where the CPU has it) "
                                            "or openvino-f32 (f32 everywhere: torch's partitions, slower).",
                                       default_help="openvino; torch for a model its folder's files do not describe (a hub id)")
    batch_size: int | None = option(None, min=1, help="Embedding batch size (texts of one token length per forward pass).",
                                    default_help="64 for torch, 256 for openvino; onnx runs one text per pass")
    max_seq_length: int | None = option(None, min=1, help="Embedder max tokens.", default_help="the model's")
    k: int | None = option(None, min=2, flag="--k", help="Number of partitions (at most the number of distinct prompts).",
                           default_help="round(sqrt(N/4)), clamped to [2, min(4096, N/10)]")
    niter: int = option(20, min=1, max=INT32_MAX, help="k-means iterations.")
    seed: int = option(0, min=0, max=INT32_MAX, help="Seed of the k-means sample, init and the negative draw (FAISS takes a 32-bit seed).")
    balanced: bool = option(False, help="Rebalance partition sizes (FAISS contrib penalties).")
    max_points_per_centroid: int = option(256, min=1, max=INT32_MAX, help="k-means trains on at most k * this many vectors.")
    macro_negatives: int = option(5, min=0, max=INT32_MAX, help="Macro negatives per prompt (a prompt gets at most the rows outside its excluded partitions).")
    exclude_nearest: int = option(2, min=0, help="Also exclude the M partitions nearest to the prompt's own.")
    shard_rows: int = option(DEFAULT_MAX_ROWS, min=1, help="Rows per output shard.")
    cache_dir: str | None = option(None, output=False, help="Embedding cache folder.",
                                   default_help="$DIRECT_DATA_CACHE/embeddings or ~/.cache/direct-data/embeddings")
    embed_chunk: int = option(4096, min=1, output=False, help="Texts embedded and committed to the cache at a time (the resume unit).")
    executor: str = executor_option()
    ray_address: str = ray_address_option()
    ray_actors: int | None = ray_actors_option()
    ray_num_gpus: float = ray_num_gpus_option("embedding")

    def check(self) -> None:
        check_model_path("--model", self.model)


def choose_k(n: int) -> int:
    """Default number of partitions: round(sqrt(N / 4)), at least 2, at most 4096, and at most N / 10
    so every partition can have ~10 members (N=5k -> 35, N=100k -> 158, N=1M -> 500)."""
    if n < 2:
        return 1
    k = round(math.sqrt(n / 4))
    return int(max(2, min(k, 4096, n // 10 if n >= 20 else 2)))


# --------------------------------------------------------------------------- clustering


def train_centroids(
    x: np.ndarray,
    k: int,
    *,
    niter: int = 20,
    seed: int = 0,
    max_points_per_centroid: int = 256,
) -> tuple[np.ndarray, int]:
    """Spherical k-means (FAISS) on a seeded sample of at most k*max_points_per_centroid rows.

    Returns unit-norm centroids (k, d) and the number of training vectors used.
    """
    import faiss

    n, d = x.shape
    cap = k * max_points_per_centroid
    if n > cap:
        idx = np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))
        xt = np.ascontiguousarray(x[idx])
    else:
        xt = np.ascontiguousarray(x[:])
    km = faiss.Kmeans(
        d, k, niter=niter, seed=seed, spherical=True, verbose=False,
        max_points_per_centroid=max(1, len(xt) // k + 1), min_points_per_centroid=1,
    )
    km.train(xt)
    c = km.centroids.astype(np.float32)
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return c, len(xt)


def assign(x: np.ndarray, centroids: np.ndarray, *, batch: int = ASSIGN_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Top-2 partitions of every row by cosine, in batches: (labels (n,2) int64, sims (n,2) float32).
    With k == 1 the second column is -1 / -inf. A pure function of the rows and the centroids, so it
    can run on any slice of the rows anywhere (map-side); the labels do not depend on the batching,
    FAISS's GEMM scores may in the last bits (the stage writes row-wise dots: `assign_batch`)."""
    import faiss

    k = len(centroids)
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    kk = min(2, k)
    labels = np.full((len(x), 2), -1, dtype=np.int64)
    sims = np.full((len(x), 2), -np.inf, dtype=np.float32)
    for s in range(0, len(x), batch):
        D, I = index.search(np.ascontiguousarray(x[s : s + batch]), kk)
        labels[s : s + batch, :kk] = I
        sims[s : s + batch, :kk] = D
    return labels, sims


def balanced_assign(x: np.ndarray, centroids: np.ndarray, *, alpha: float = 0.03, num_iter: int = 20) -> np.ndarray:
    """Size-balanced assignment through FAISS contrib's penalty method (Tavenard et al. 2011)."""
    from faiss.contrib.clustering import balanced_assignment_with_penalties

    a, _ = balanced_assignment_with_penalties(
        np.ascontiguousarray(x), centroids, alpha=alpha, num_iter=num_iter, maxk=min(100, len(centroids))
    )
    return a.astype(np.int64)


def imbalance_factor(sizes: np.ndarray) -> float:
    """k * sum(s^2) / N^2: 1.0 when every partition has the same size."""
    n = sizes.sum()
    return float(len(sizes) * (sizes.astype(np.float64) ** 2).sum() / max(n, 1) ** 2)


# --------------------------------------------------------------------------- macro negatives


def excluded_partitions(centroid_cos: np.ndarray, exclude_nearest: int) -> np.ndarray:
    """(k, k) bool: partition q is excluded for anchors of p (q == p or q among p's M nearest)."""
    k = len(centroid_cos)
    sim = centroid_cos.copy()
    np.fill_diagonal(sim, np.inf)  # own partition first
    order = np.argsort(-sim, axis=1, kind="stable")
    excl = np.zeros((k, k), dtype=bool)
    rows = np.arange(k)[:, None]
    excl[rows, order[:, : 1 + exclude_nearest]] = True
    return excl


def sort_by_partition(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): `order[starts[p]:starts[p + 1]]` are partition p's rows, ascending. One stable
    sort for all partitions (no scan per partition)."""
    order = np.argsort(labels, kind="stable")
    starts = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=k), out=starts[1:])
    return order, starts


def draw_macro_negatives_array(
    labels: np.ndarray,
    excluded: np.ndarray,
    n_neg: int,
    *,
    seed: int = 0,
    sorted_rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row i, up to `n_neg` distinct row indices j with `excluded[labels[i], labels[j]]` False,
    uniform over the eligible rows: (negatives (n, n_neg) int64, -1 past each row's count; counts (n,)).

    Seeded per partition, so the draw of one partition does not depend on the order partitions are
    processed in. Never pads: a short list is a shortfall. The rows are sorted by partition once; a
    partition's pool (the rows of its eligible partitions, ascending partition then row) is that
    order minus its excluded partitions' runs, so a draw position maps to a row without building the
    pool (O(n * n_neg) in all, not O(n * k))."""
    k = len(excluded)
    n = len(labels)
    order, starts = sorted_rows if sorted_rows is not None else sort_by_partition(labels, k)
    sizes = np.diff(starts)
    neg = np.full((n, max(min(n_neg, n), 0)), -1, dtype=np.int64)  # no row can have more than n
    counts = np.zeros(n, dtype=np.int64)
    for p in range(k):
        if sizes[p] == 0:
            continue
        members = order[starts[p] : starts[p + 1]]
        rng = np.random.default_rng([seed, p])
        excl_q = np.flatnonzero(excluded[p])  # ascending
        pool = int(n - sizes[excl_q].sum())
        if pool == 0 or n_neg == 0:
            continue
        take = min(n_neg, pool)
        if take == pool:  # the whole pool, for every anchor
            draws = np.broadcast_to(np.arange(pool, dtype=np.int64), (sizes[p], take))
        else:
            draws = rng.integers(0, pool, size=(sizes[p], take))
            # redraw duplicate positions inside a row until every row has `take` distinct ones
            s_ = np.sort(draws, axis=1)
            for r in np.flatnonzero((s_[:, 1:] == s_[:, :-1]).any(axis=1)):
                row = draws[r]
                while len(np.unique(row)) < take:
                    _, first = np.unique(row, return_index=True)
                    dup = np.setdiff1d(np.arange(take), first)
                    row[dup] = rng.integers(0, pool, size=len(dup))
        pos = np.array(draws, dtype=np.int64)
        for q in excl_q:  # pool position -> position in `order`, skipping the excluded runs
            pos[pos >= starts[q]] += sizes[q]
        neg[members, :take] = order[pos]
        counts[members] = take
    return neg, counts


def draw_macro_negatives(labels: np.ndarray, excluded: np.ndarray, n_neg: int, *, seed: int = 0) -> list[np.ndarray]:
    """`draw_macro_negatives_array` as one array per row (its first `count` entries)."""
    neg, counts = draw_macro_negatives_array(labels, excluded, n_neg, seed=seed)
    return [neg[i, :c] for i, c in enumerate(counts)]


def certificate(
    x: np.ndarray,
    labels: np.ndarray,
    negatives: list[np.ndarray] | tuple[np.ndarray, np.ndarray],
    excluded: np.ndarray,
    n_neg: int,
    *,
    seed: int = 0,
    max_pairs: int = 200_000,
    sorted_rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Check the macro negatives independently of how they were drawn.

    `negatives`: one array per row, or the (array, counts) pair of `draw_macro_negatives_array`.
    - violations: negatives in the anchor's own or an excluded partition (must be 0);
    - shortfall: anchors with fewer than `n_neg` negatives (never padded);
    - anchor-negative cosines next to same-partition cosines (a random other member), as quantiles
      and histograms on a sample of at most `max_pairs` pairs (only those rows of `x` are read).
    """
    rng = np.random.default_rng([seed, 7])
    if isinstance(negatives, tuple):
        neg, lens = negatives
        flat = neg[neg >= 0] if neg.size else np.empty(0, dtype=np.int64)  # row-major: the concatenation
    else:
        lens = np.array([len(v) for v in negatives])
        flat = np.concatenate(negatives) if len(negatives) and lens.sum() else np.empty(0, dtype=np.int64)
    anchors = np.repeat(np.arange(len(labels)), lens)
    violations = self_negatives = 0
    for s in range(0, len(flat), 1 << 22):  # in blocks: no 4 x (n * n_neg) temporaries at 10M rows
        a_, f_ = anchors[s : s + (1 << 22)], flat[s : s + (1 << 22)]
        violations += int(excluded[labels[a_], labels[f_]].sum())
        self_negatives += int((a_ == f_).sum())
    if len(flat) > max_pairs:
        sel = rng.choice(len(flat), max_pairs, replace=False)
        a_neg, b_neg = anchors[sel], flat[sel]
    else:
        a_neg, b_neg = anchors, flat
    del anchors, flat
    neg_cos = _pair_cos(x, a_neg, b_neg)
    # same-partition pairs: each anchor against one random other member of its partition
    order, starts = sorted_rows if sorted_rows is not None else sort_by_partition(labels, int(labels.max()) + 1 if len(labels) else 0)
    same_a, same_b = [], []
    for p in np.flatnonzero(np.diff(starts)):
        m = order[starts[p] : starts[p + 1]]
        if len(m) < 2:
            continue
        shift = rng.integers(1, len(m), size=len(m))
        same_a.append(m)
        same_b.append(m[(np.arange(len(m)) + shift) % len(m)])
    if same_a:
        sa, sb = np.concatenate(same_a), np.concatenate(same_b)
        if len(sa) > max_pairs:
            sel = rng.choice(len(sa), max_pairs, replace=False)
            sa, sb = sa[sel], sb[sel]
        same_cos = _pair_cos(x, sa, sb)
    else:
        same_cos = np.empty(0)
    bins = np.linspace(-1, 1, 41)

    def q(v: np.ndarray) -> dict[str, float]:
        if len(v) == 0:
            return {}
        qs = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
        return {"mean": round(float(v.mean()), 4), **{f"p{int(p * 100):02d}": round(float(x_), 4) for p, x_ in zip([0.05, 0.25, 0.5, 0.75, 0.95], qs)}}

    return {
        "violations": violations + self_negatives,
        "negatives": int(lens.sum()),
        "requested_per_prompt": n_neg,
        "shortfall_prompts": int((lens < n_neg).sum()),
        "shortfall_negatives": int(np.maximum(n_neg - lens, 0).sum()),
        "anchor_negative_cos": q(neg_cos),
        "same_partition_cos": q(same_cos),
        "hist_bins": [round(float(b), 3) for b in bins],
        "anchor_negative_hist": np.histogram(neg_cos, bins=bins)[0].tolist(),
        "same_partition_hist": np.histogram(same_cos, bins=bins)[0].tolist(),
    }


def _pair_cos(x, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x[a[i]] . x[b[i]]; each needed row is read once (sorted unique rows: one pass over a file)."""
    if len(a) == 0:
        return np.empty(0, dtype=np.float32)
    if isinstance(x, np.ndarray):
        return np.einsum("ij,ij->i", x[a], x[b])
    rows, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    v = x[rows]
    ia, ib = inv[: len(a)], inv[len(a) :]
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), 16_384):  # small gathers: no (pairs x d) temporaries
        out[s : s + 16_384] = np.einsum("ij,ij->i", v[ia[s : s + 16_384]], v[ib[s : s + 16_384]])
    return out


# --------------------------------------------------------------------------- the stage


def partition_vectors(x: np.ndarray, cfg: PartitionConfig, *, assign_fn=None) -> dict[str, Any]:
    """The clustering and negative mining on precomputed unit vectors (no I/O). Used by the stage and
    by the 1M benchmark. Returns labels, second, sims, centroids, centroid_cos, negatives, stats.
    ``assign_fn(x, centroids)``: `assign` computed elsewhere (the Ray executor: map-side, in actors)."""
    n = len(x)
    k = cfg.k or choose_k(n)
    k = max(1, min(k, n))
    if k == 1:
        centroids = np.asarray(x[:]).mean(0, keepdims=True)
        centroids /= max(np.linalg.norm(centroids), 1e-12)
        n_train = n
    else:
        centroids, n_train = train_centroids(x, k, niter=cfg.niter, seed=cfg.seed, max_points_per_centroid=cfg.max_points_per_centroid)
    balanced = cfg.balanced and k > 1
    forced = balanced_assign(np.asarray(x[:]), centroids) if balanced else None
    if assign_fn is None:  # one pass over the rows: top-2, own and second-partition cosines
        labels, second, own, second_sim = assign_rows(x, centroids, labels=forced)
    else:
        top, _ = assign_fn(x, centroids)
        labels, second, own, second_sim = assign_rows(x, centroids, labels=forced, top=top)
    margin = (own - second_sim).astype(np.float32)
    margin[second < 0] = np.nan
    centroid_cos = (centroids @ centroids.T).astype(np.float32)
    m_eff = max(0, min(cfg.exclude_nearest, k - 2))
    if m_eff < cfg.exclude_nearest:
        log.warning("exclude_nearest %d: with %d partitions only %d can be excluded besides a prompt's own (macro negatives "
                    "need one partition left); excluding %d (manifest stats: exclude_nearest_effective)",
                    cfg.exclude_nearest, k, m_eff, m_eff)
    excluded = excluded_partitions(centroid_cos, m_eff)
    rows_sorted = sort_by_partition(labels, k)  # once, for the draw and the certificate
    neg, counts = draw_macro_negatives_array(labels, excluded, cfg.macro_negatives, seed=cfg.seed, sorted_rows=rows_sorted)
    negatives = NegativeRows(neg, counts)
    sizes = np.diff(rows_sorted[1])
    stats = {
        "n": n,
        "k": k,
        "k_auto": cfg.k is None,
        "train_vectors": n_train,
        "balanced": cfg.balanced,
        "exclude_nearest": cfg.exclude_nearest,
        "exclude_nearest_effective": m_eff,
        "sizes": sizes.tolist(),
        "size_min": int(sizes.min()),
        "size_max": int(sizes.max()),
        "imbalance_factor": round(imbalance_factor(sizes), 4),
        "mean_centroid_cos": round(float(own.mean()), 4),
        "median_margin": round(float(np.nanmedian(margin)), 4) if k > 1 else None,
        "certificate": certificate(x, labels, (neg, counts), excluded, cfg.macro_negatives, seed=cfg.seed, sorted_rows=rows_sorted),
    }
    return {
        "labels": labels, "second": second, "own": own, "margin": margin, "centroids": centroids,
        "centroid_cos": centroid_cos, "negatives": negatives, "stats": stats,
    }


class NegativeRows:
    """The macro negatives as a sequence of per-row index arrays, backed by one (n, n_neg) array."""

    def __init__(self, neg: np.ndarray, counts: np.ndarray):
        self.array, self.counts = neg, counts

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.array[i, : self.counts[i]]


def assign_batch(xb: np.ndarray, centroids: np.ndarray, index=None, *, labels: np.ndarray | None = None,
                 top: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One batch of rows -> (labels, second, own_cos, second_cos): own partition (the nearest centroid
    unless `labels` is given), nearest *other* partition (from the top-2), and the cosines to both.
    Pure; `index` (a faiss IndexFlatIP over the centroids) may be passed to reuse it across batches,
    `top` (the batch's top-2 from `assign`) to skip the search."""
    k = len(centroids)
    if top is None:
        if index is None:
            import faiss

            index = faiss.IndexFlatIP(centroids.shape[1])
            index.add(centroids)
        top = np.full((len(xb), 2), -1, dtype=np.int64)
        top[:, : min(2, k)] = index.search(np.ascontiguousarray(xb), min(2, k))[1]
    lab = top[:, 0].copy() if labels is None else labels
    own = np.einsum("ij,ij->i", xb, centroids[lab])
    second = np.where(top[:, 0] == lab, top[:, 1], top[:, 0])
    second_sim = np.einsum("ij,ij->i", xb, centroids[second]) if k > 1 else np.full(len(xb), -np.inf, dtype=np.float32)
    return lab, second, own, second_sim


def assign_rows(x, centroids: np.ndarray, *, labels: np.ndarray | None = None, top: np.ndarray | None = None,
                batch: int = ASSIGN_BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`assign_batch` over all rows of `x` (an array or a row-streamed `VectorFile`), one pass, in batches."""
    import faiss

    n = len(x)
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    lab = np.empty(n, dtype=np.int64)
    second = np.empty(n, dtype=np.int64)
    own = np.empty(n, dtype=np.float32)
    second_sim = np.empty(n, dtype=np.float32)
    for s in range(0, n, batch):
        e = min(n, s + batch)
        r = assign_batch(x[s:e], centroids, index, labels=None if labels is None else labels[s:e], top=None if top is None else top[s:e])
        lab[s:e], second[s:e], own[s:e], second_sim[s:e] = r
    return lab, second, own, second_sim


class PartitionStage(Stage):
    """read -> embed (units: chunks of the texts the cache lacks) -> k-means -> assign -> macro
    negatives -> `partitions` + `rejects` tables, `centroids.safetensors`, card with `partitions.png`."""

    name = STAGE
    config_cls = PartitionConfig
    tables = ("partitions", "rejects")
    title = "Semantic partitions and macro negatives"

    def read(self, inputs: Inputs) -> None:
        from direct_data.backends.embed import Embedder

        cfg: PartitionConfig = self.config
        self.rr: ReadResult = read_prompts(inputs.files, text_column=cfg.text_column, max_chars=cfg.max_chars)
        self.rr.require_prompts(cfg.text_column)
        n = self.rr.kept
        if cfg.k is not None and cfg.k > n:
            raise ConfigError(f"k: {cfg.k} partitions for {n} distinct prompt{'s' if n > 1 else ''}; give --k <= {n} or leave it out (auto)")
        if n < 2:
            raise ConfigError(f"partitioning needs at least 2 distinct prompts, the input has {n}")
        self.texts = [p.prompt for p in self.rr.prompts]
        self.embedded_now = 0
        self.embedder = Embedder(cfg.model, backend=cfg.embed_backend, batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length, cache_dir=cfg.cache_dir,
                                 chunk_size=cfg.embed_chunk, show_progress=False)

    def units(self) -> list[Unit]:
        chunks = self.embedder.missing_chunks(self.texts)
        return [Unit(f"embed-{c[0][:16]}-{len(c)}", c, size=len(c)) for c in chunks]

    def compute(self, unit: Unit, out: UnitWriter) -> dict:
        self.embedder.fill(unit.payload)
        self.embedded_now += len(unit.payload)
        return {"embedded": len(unit.payload)}

    # the Ray executor (`core.executors`): embed in the actors, write the cache on the driver
    def remote_compute(self, unit: Unit) -> bytes:
        if self.config.ray_num_gpus > 0:
            self.embedder.device = "cuda"
        texts = [self.embedder._texts_by_hash[h] for h in unit.payload]
        return np.ascontiguousarray(self.embedder._encode(texts), dtype=np.float32).tobytes()

    def apply_result(self, unit: Unit, result: bytes, out: UnitWriter) -> dict:
        vectors = np.frombuffer(result, dtype=np.float32).reshape(len(unit.payload), self.embedder.dim)
        self.embedder.cache.put(list(unit.payload), vectors)
        self.embedded_now += len(unit.payload)
        return {"embedded": len(unit.payload)}

    def _assign_fn(self):
        ex = getattr(self, "executor", None)
        if ex is None or ex.name != "ray":
            return None
        return lambda x, c: ex.assign(x, c, batch=ASSIGN_BATCH, assign_fn=assign)

    def plan(self) -> dict:
        distinct, missing = self.embedder.plan(self.texts)
        rr = self.rr
        return {"read": rr.read, "kept": rr.kept, "merged": rr.merged, "rejected": len(rr.rejects),
                "k": self.config.k or choose_k(rr.kept), "embed_cached": distinct - missing, "embed_new": missing,
                "partition_shards": max(1, math.ceil(rr.kept / self.config.shard_rows))}

    def model_identity(self) -> str:
        e = self.embedder
        return e.model_identity if e.backend == "torch" else f"{e.model_identity}+{e.variant}"

    def finish(self, done: list[dict], out: FinalWriter) -> None:
        cfg: PartitionConfig = self.config
        rr = self.rr
        x = self.embedder.embed(self.texts)
        res = partition_vectors(x, cfg, assign_fn=self._assign_fn())
        ids = [p.prompt_id for p in rr.prompts]
        for i, p in enumerate(rr.prompts):
            out.write("partitions", {
                "prompt_id": p.prompt_id, "prompt": p.prompt, "source": os.path.basename(p.source), "row": p.row,
                "n_duplicates": p.n_duplicates, "meta": to_meta_json(p.meta),
                "partition_id": int(res["labels"][i]), "centroid_cos": float(res["own"][i]),
                "second_partition": int(res["second"][i]), "margin": float(res["margin"][i]),
                "macro_negatives": [ids[j] for j in res["negatives"][i]],
            })
        out.write_many("rejects", (r.to_row(STAGE) for r in rr.rejects))
        out.write_file("centroids.safetensors", _centroids_bytes(res["centroids"], res["centroid_cos"], np.asarray(res["stats"]["sizes"])))
        out.counts = {"read": rr.read, "kept": rr.kept, "merged": rr.merged, "rejected": len(rr.rejects)}
        assert rr.accounted()
        out.stats = {**res["stats"], "per_source_rows": {os.path.basename(k): v for k, v in rr.per_source.items()},
                     "embedding": {"identity": self.embedder.identity, "dim": self.embedder.dim}}
        self.run_stats = {"embedded": self.embedded_now, "cached": len(set(self.texts)) - self.embedded_now,
                          "model_loaded": self.embedder.model_loaded}

    def card_sections(self, m) -> tuple[str, dict[str, bytes]]:
        from direct_data.core.card import partition_card_section

        return partition_card_section(m)


def _centroids_bytes(centroids: np.ndarray, centroid_cos: np.ndarray, sizes: np.ndarray) -> bytes:
    import torch
    from safetensors.torch import save

    return save(
        {"centroids": torch.from_numpy(np.ascontiguousarray(centroids)), "centroid_cos": torch.from_numpy(np.ascontiguousarray(centroid_cos)), "sizes": torch.from_numpy(sizes.astype(np.int64))},
        metadata={"format": "direct-data/partition-centroids/v1"},  # one key: safetensors does not keep key order
    )


def load_centroids(output: StageOutput | str | Path) -> dict[str, np.ndarray]:
    """The centroids of a partition output (a folder is opened and verified first)."""
    from safetensors.numpy import load_file

    from direct_data.core.manifest import StageOutput, open_output

    if not isinstance(output, StageOutput):
        output = open_output(output, stages=(STAGE,))
    return load_file(str(output.file("centroids.safetensors")))

"""`direct-data partition`: semantic partitions and macro negatives.

read -> embed -> spherical k-means (FAISS) -> assign -> macro negatives -> shards + manifest + card.

Macro negatives for a prompt are drawn only from partitions other than its own and outside its
`exclude_nearest` nearest partitions (by centroid cosine), so a macro negative never shares the
prompt's content (METHOD.md, "Macro"). Memory is O(N*d + k^2): no N x N matrix is ever formed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from direct_data.core.config import StageConfig, option, register
from direct_data.core.errors import ConfigError
from direct_data.core.read import DEFAULT_MAX_CHARS, ReadResult, read_prompts
from direct_data.core.runner import FinalWriter, Inputs, Stage, Unit, UnitWriter
from direct_data.core.schema import to_meta_json
from direct_data.core.shards import DEFAULT_MAX_ROWS

if TYPE_CHECKING:
    from direct_data.core.manifest import StageOutput

STAGE = "partition"
ASSIGN_BATCH = 65_536


@register
@dataclass
class PartitionConfig(StageConfig):
    """Every knob of the stage; the CLI flags, the `[partition]` TOML keys and the hash come from here."""

    SECTION = "partition"

    text_column: str | None = option(None, help="Text column of the input rows.", default_help="prompt, else caption, else text")
    max_chars: int = option(DEFAULT_MAX_CHARS, min=1, help="Reject prompts longer than this (after whitespace folding).")
    model: str | None = option(None, help="sentence-transformers folder or name.", default_help="packaged all-MiniLM-L6-v2")
    batch_size: int = option(64, min=1, help="Embedding batch size.")
    max_seq_length: int | None = option(None, min=1, help="Embedder max tokens.", default_help="the model's")
    k: int | None = option(None, min=2, flag="--k", help="Number of partitions (at most the number of distinct prompts).",
                           default_help="round(sqrt(N/4)), clamped to [2, min(4096, N/10)]")
    niter: int = option(20, min=1, help="k-means iterations.")
    seed: int = option(0, min=0, help="Seed of the k-means sample, init and the negative draw.")
    balanced: bool = option(False, help="Rebalance partition sizes (FAISS contrib penalties).")
    max_points_per_centroid: int = option(256, min=1, help="k-means trains on at most k * this many vectors.")
    macro_negatives: int = option(5, min=0, help="Macro negatives per prompt.")
    exclude_nearest: int = option(2, min=0, help="Also exclude the M partitions nearest to the prompt's own.")
    shard_rows: int = option(DEFAULT_MAX_ROWS, min=1, help="Rows per output shard.")
    cache_dir: str | None = option(None, output=False, help="Embedding cache folder.",
                                   default_help="$DIRECT_DATA_CACHE/embeddings or ~/.cache/direct-data/embeddings")
    embed_chunk: int = option(4096, min=1, output=False, help="Texts embedded and committed to the cache at a time (the resume unit).")


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
        xt = np.ascontiguousarray(x)
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
    With k == 1 the second column is -1 / -inf."""
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


def draw_macro_negatives(
    labels: np.ndarray,
    excluded: np.ndarray,
    n_neg: int,
    *,
    seed: int = 0,
) -> list[np.ndarray]:
    """For each row i, up to `n_neg` distinct row indices j with `excluded[labels[i], labels[j]]` False,
    uniform over the eligible rows. Seeded per partition, so the draw of one partition does not
    depend on the order partitions are processed in. Never pads: a short list is a shortfall."""
    k = len(excluded)
    members = [np.flatnonzero(labels == p) for p in range(k)]
    sizes = np.array([len(m) for m in members])
    out: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(labels)
    for p in range(k):
        if sizes[p] == 0:
            continue
        rng = np.random.default_rng([seed, p])
        eligible = np.flatnonzero(~excluded[p])
        pool_sizes = sizes[eligible]
        pool = int(pool_sizes.sum())
        if pool == 0 or n_neg == 0:
            for i in members[p]:
                out[i] = np.empty(0, dtype=np.int64)
            continue
        flat = np.concatenate([members[q] for q in eligible])
        take = min(n_neg, pool)
        if take == pool:  # the whole pool, for every anchor
            for i in members[p]:
                out[i] = flat
            continue
        draws = rng.integers(0, pool, size=(sizes[p], take))
        # redraw duplicate positions inside a row until every row has `take` distinct ones
        s_ = np.sort(draws, axis=1)
        for r in np.flatnonzero((s_[:, 1:] == s_[:, :-1]).any(axis=1)):
            row = draws[r]
            while len(np.unique(row)) < take:
                _, first = np.unique(row, return_index=True)
                dup = np.setdiff1d(np.arange(take), first)
                row[dup] = rng.integers(0, pool, size=len(dup))
        neg = flat[draws]
        for r, i in enumerate(members[p]):
            out[i] = neg[r]
    return out


def certificate(
    x: np.ndarray,
    labels: np.ndarray,
    negatives: list[np.ndarray],
    excluded: np.ndarray,
    n_neg: int,
    *,
    seed: int = 0,
    max_pairs: int = 200_000,
) -> dict[str, Any]:
    """Check the macro negatives independently of how they were drawn.

    - violations: negatives in the anchor's own or an excluded partition (must be 0);
    - shortfall: anchors with fewer than `n_neg` negatives (never padded);
    - anchor-negative cosines next to same-partition cosines (a random other member), as quantiles
      and histograms on a sample of at most `max_pairs` pairs.
    """
    rng = np.random.default_rng([seed, 7])
    lens = np.array([len(v) for v in negatives])
    anchors = np.repeat(np.arange(len(labels)), lens)
    flat = np.concatenate(negatives) if len(negatives) and lens.sum() else np.empty(0, dtype=np.int64)
    violations = int(excluded[labels[anchors], labels[flat]].sum()) if len(flat) else 0
    self_negatives = int((anchors == flat).sum()) if len(flat) else 0
    if len(flat) > max_pairs:
        sel = rng.choice(len(flat), max_pairs, replace=False)
        a_neg, b_neg = anchors[sel], flat[sel]
    else:
        a_neg, b_neg = anchors, flat
    neg_cos = np.einsum("ij,ij->i", x[a_neg], x[b_neg]) if len(a_neg) else np.empty(0)
    # same-partition pairs: each anchor against one random other member of its partition
    same_a, same_b = [], []
    for p in np.unique(labels):
        m = np.flatnonzero(labels == p)
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
        same_cos = np.einsum("ij,ij->i", x[sa], x[sb])
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


# --------------------------------------------------------------------------- the stage


def partition_vectors(x: np.ndarray, cfg: PartitionConfig) -> dict[str, Any]:
    """The clustering and negative mining on precomputed unit vectors (no I/O). Used by the stage and
    by the 1M benchmark. Returns labels, second, sims, centroids, centroid_cos, negatives, stats."""
    n = len(x)
    k = cfg.k or choose_k(n)
    k = max(1, min(k, n))
    if k == 1:
        centroids = x.mean(0, keepdims=True)
        centroids /= max(np.linalg.norm(centroids), 1e-12)
        n_train = n
    else:
        centroids, n_train = train_centroids(x, k, niter=cfg.niter, seed=cfg.seed, max_points_per_centroid=cfg.max_points_per_centroid)
    top, sims = assign(x, centroids)
    labels = top[:, 0].copy()
    if cfg.balanced and k > 1:
        labels = balanced_assign(x, centroids)
    own = _rowwise_dot(x, centroids, labels)
    # nearest *other* partition, by cosine: the top-2 of the plain assignment covers the common case
    second = np.where(top[:, 0] == labels, top[:, 1], top[:, 0])
    second_sim = _rowwise_dot(x, centroids, second) if k > 1 else np.full(n, -np.inf, dtype=np.float32)
    margin = (own - second_sim).astype(np.float32)
    margin[second < 0] = np.nan
    centroid_cos = (centroids @ centroids.T).astype(np.float32)
    m_eff = max(0, min(cfg.exclude_nearest, k - 2))
    excluded = excluded_partitions(centroid_cos, m_eff)
    negatives = draw_macro_negatives(labels, excluded, cfg.macro_negatives, seed=cfg.seed)
    sizes = np.bincount(labels, minlength=k)
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
        "certificate": certificate(x, labels, negatives, excluded, cfg.macro_negatives, seed=cfg.seed),
    }
    return {
        "labels": labels, "second": second, "own": own, "margin": margin, "centroids": centroids,
        "centroid_cos": centroid_cos, "negatives": negatives, "stats": stats,
    }


def _rowwise_dot(x: np.ndarray, centroids: np.ndarray, idx: np.ndarray, *, batch: int = ASSIGN_BATCH) -> np.ndarray:
    """x[i] . centroids[idx[i]] for every row, in blocks (no N x d gather of the centroids)."""
    out = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), batch):
        out[s : s + batch] = np.einsum("ij,ij->i", x[s : s + batch], centroids[idx[s : s + batch]])
    return out


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
        self.embedder = Embedder(cfg.model, batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length, cache_dir=cfg.cache_dir,
                                 chunk_size=cfg.embed_chunk, show_progress=False)

    def units(self) -> list[Unit]:
        chunks = self.embedder.missing_chunks(self.texts)
        return [Unit(f"embed-{c[0][:16]}-{len(c)}", c, size=len(c)) for c in chunks]

    def compute(self, unit: Unit, out: UnitWriter) -> dict:
        self.embedder.fill(unit.payload)
        self.embedded_now += len(unit.payload)
        return {"embedded": len(unit.payload)}

    def plan(self) -> dict:
        distinct, missing = self.embedder.plan(self.texts)
        rr = self.rr
        return {"read": rr.read, "kept": rr.kept, "merged": rr.merged, "rejected": len(rr.rejects),
                "k": self.config.k or choose_k(rr.kept), "embed_cached": distinct - missing, "embed_new": missing,
                "partition_shards": max(1, math.ceil(rr.kept / self.config.shard_rows))}

    def model_identity(self) -> str:
        return self.embedder.model_identity

    def finish(self, done: list[dict], out: FinalWriter) -> None:
        cfg: PartitionConfig = self.config
        rr = self.rr
        x = self.embedder.embed(self.texts)
        res = partition_vectors(x, cfg)
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

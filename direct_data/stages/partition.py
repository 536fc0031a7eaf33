"""`direct-data partition`: semantic partitions and macro negatives.

read -> embed -> spherical k-means (FAISS) -> assign -> macro negatives -> shards + manifest + card.

Macro negatives for a prompt are drawn only from partitions other than its own and outside its
`exclude_nearest` nearest partitions (by centroid cosine), so a macro negative never shares the
prompt's content (METHOD.md, "Macro"). Memory is O(N*d + k^2): no N x N matrix is ever formed.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from direct_data.core.manifest import Manifest, describe_inputs, remove_stale, up_to_date
from direct_data.core.read import DEFAULT_MAX_CHARS, ReadResult, read_prompts
from direct_data.core.schema import to_meta_json
from direct_data.core.shards import DEFAULT_MAX_ROWS, ShardWriter

STAGE = "partition"
ASSIGN_BATCH = 65_536


@dataclass
class PartitionConfig:
    """Every knob of the stage. Field names are the CLI flags and the TOML keys of `[partition]`."""

    text_column: str | None = None
    max_chars: int = DEFAULT_MAX_CHARS
    model: str | None = None  # None: the packaged all-MiniLM-L6-v2
    batch_size: int = 64
    max_seq_length: int | None = None
    k: int | None = None  # None: choose_k(N)
    niter: int = 20
    seed: int = 0
    balanced: bool = False
    max_points_per_centroid: int = 256
    macro_negatives: int = 5
    exclude_nearest: int = 2
    shard_rows: int = DEFAULT_MAX_ROWS
    cache_dir: str | None = None  # embedding cache; does not change the output
    embed_chunk: int = 4096  # texts per cache commit (the resume unit); does not change the output

    #: keys that do not change the bytes of the output, left out of the config hash
    NEUTRAL = ("cache_dir", "embed_chunk")

    def hashed(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in self.NEUTRAL}

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


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


@dataclass
class PartitionResult:
    out_dir: Path
    up_to_date: bool
    reason: str
    manifest: Manifest | None = None
    plan: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)  # what this invocation did (not part of the output)

    @property
    def stats(self) -> dict:
        return self.manifest.stats if self.manifest else {}


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


def run_partition(
    inputs: list[str | Path],
    out_dir: str | Path,
    cfg: PartitionConfig | None = None,
    *,
    force: bool = False,
    dry_run: bool = False,
    show_progress: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> PartitionResult:
    """Run the stage. With world_size > 1 each rank only embeds its share of the texts into the shared
    cache; rank 0 then clusters and writes (clustering needs every vector)."""
    from direct_data.core.card import write_partition_card
    from direct_data.backends.embed import Embedder

    cfg = cfg or PartitionConfig()
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in inputs]
    described = describe_inputs(inputs)
    ok, reason = up_to_date(out_dir, stage=STAGE, config=cfg.hashed(), inputs=described)
    if ok and not force:
        return PartitionResult(out_dir, True, reason, Manifest.read(out_dir))

    read: ReadResult = read_prompts(inputs, text_column=cfg.text_column, max_chars=cfg.max_chars)
    embedder = Embedder(cfg.model, batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length, cache_dir=cfg.cache_dir, chunk_size=cfg.embed_chunk, show_progress=show_progress)
    texts = [p.prompt for p in read.prompts]
    if dry_run:
        distinct, missing = embedder.plan(texts)
        k = cfg.k or choose_k(len(texts))
        plan = {
            "read": read.read, "kept": read.kept, "merged": read.merged, "rejected": len(read.rejects),
            "k": k, "embed_cached": distinct - missing, "embed_new": missing,
            "partition_shards": max(1, math.ceil(read.kept / cfg.shard_rows)),
            "would_recompute_because": "forced" if (ok and force) else reason,
        }
        return PartitionResult(out_dir, ok, reason, None, plan)

    x = embedder.embed(texts, rank=rank, world_size=world_size)
    if rank != 0:
        return PartitionResult(out_dir, False, f"rank {rank}: embedded {embedder.stats.embedded} texts; rank 0 partitions")
    if len(texts) == 0:
        raise ValueError("no usable prompts in the input (see the rejects): nothing to partition")
    res = partition_vectors(x, cfg)

    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [p.prompt_id for p in read.prompts]
    manifest = Manifest(stage=STAGE, config=cfg.hashed(), inputs=described, model=embedder.model_identity, seed=cfg.seed)
    with ShardWriter(out_dir, "partitions", max_rows=cfg.shard_rows) as w:
        for i, p in enumerate(read.prompts):
            w.write(
                {
                    "prompt_id": p.prompt_id, "prompt": p.prompt, "source": os.path.basename(p.source), "row": p.row,
                    "n_duplicates": p.n_duplicates, "meta": to_meta_json(p.meta),
                    "partition_id": int(res["labels"][i]), "centroid_cos": float(res["own"][i]),
                    "second_partition": int(res["second"][i]), "margin": float(res["margin"][i]),
                    "macro_negatives": [ids[j] for j in res["negatives"][i]],
                }
            )
    manifest.add_shards("partitions", w.shards)
    with ShardWriter(out_dir, "rejects", max_rows=cfg.shard_rows) as rw:
        rw.write_many(r.to_row(STAGE) for r in read.rejects)
    manifest.add_shards("rejects", rw.shards)
    _save_centroids(out_dir / "centroids.safetensors", res["centroids"], res["centroid_cos"], np.asarray(res["stats"]["sizes"]))
    manifest.add_file(out_dir, "centroids.safetensors")

    reasons: dict[str, int] = {}
    for r in read.rejects:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    manifest.counts = {"read": read.read, "kept": read.kept, "merged": read.merged, "rejected": len(read.rejects)}
    manifest.stats = {
        **res["stats"],
        "reject_reasons": dict(sorted(reasons.items())),
        "per_source_rows": {os.path.basename(k): v for k, v in read.per_source.items()},
        "embedding": {"identity": embedder.identity, "dim": embedder.dim},
    }
    for name in write_partition_card(out_dir, manifest):
        manifest.add_file(out_dir, name)
    manifest.write(out_dir)
    removed = remove_stale(out_dir, manifest)
    run = {"embedded": embedder.stats.embedded, "cached": embedder.stats.cached, "removed_stale": removed}
    return PartitionResult(out_dir, False, reason, manifest, run=run)


def _save_centroids(path: Path, centroids: np.ndarray, centroid_cos: np.ndarray, sizes: np.ndarray) -> None:
    import torch
    from safetensors.torch import save

    from direct_data.core.shards import atomic_write_bytes

    data = save(
        {"centroids": torch.from_numpy(np.ascontiguousarray(centroids)), "centroid_cos": torch.from_numpy(np.ascontiguousarray(centroid_cos)), "sizes": torch.from_numpy(sizes.astype(np.int64))},
        metadata={"format": "direct-data/partition-centroids/v1"},  # one key: safetensors does not keep key order
    )
    atomic_write_bytes(path, data)


def load_centroids(out_dir: str | Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(Path(out_dir) / "centroids.safetensors"))

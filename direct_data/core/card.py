"""Dataset cards: a `README.md` in each stage's output folder, with a PNG of the key figures."""

from __future__ import annotations

import io
import json
from pathlib import Path

from direct_data.core.manifest import Manifest
from direct_data.core.shards import atomic_write_bytes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # no timestamps in the PNG, so reruns give the same bytes
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def plot_partitions(stats: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cert = stats["certificate"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    sizes = np.sort(np.asarray(stats["sizes"]))[::-1]
    a.bar(np.arange(len(sizes)), sizes, color="#4C72B0", width=1.0)
    a.axhline(sizes.mean(), color="k", lw=0.8, ls="--", label=f"mean {sizes.mean():.0f}")
    a.set_title(f"partition sizes (k={stats['k']}, imbalance {stats['imbalance_factor']:.2f})")
    a.set_xlabel("partition (sorted by size)")
    a.set_ylabel("prompts")
    a.legend()
    bins = np.asarray(cert["hist_bins"])
    centers = (bins[:-1] + bins[1:]) / 2
    w = bins[1] - bins[0]

    def norm(h):
        h = np.asarray(h, dtype=float)
        return h / max(h.sum(), 1)

    b.bar(centers, norm(cert["same_partition_hist"]), width=w, alpha=0.6, label="same partition", color="#DD8452")
    b.bar(centers, norm(cert["anchor_negative_hist"]), width=w, alpha=0.6, label="anchor - macro negative", color="#55A868")
    b.set_title("cosine of prompt pairs")
    b.set_xlabel("cosine")
    b.set_ylabel("share of pairs")
    b.legend()
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def write_partition_card(out_dir: str | Path, manifest: Manifest) -> list[str]:
    """Write `partitions.png` and `README.md`; return the file names written."""
    out_dir = Path(out_dir)
    s, c = manifest.stats, manifest.counts
    cert = s["certificate"]
    atomic_write_bytes(out_dir / "partitions.png", plot_partitions(s))
    shard_lines = "\n".join(f"| `{x['path']}` | {x['rows']} | `{x['sha256'][:16]}` |" for t in ("partitions", "rejects") for x in manifest.shards.get(t, []))
    reasons = "\n".join(f"| {k} | {v} |" for k, v in s.get("reject_reasons", {}).items()) or "| (none) | 0 |"
    cfg = json.dumps(manifest.config, indent=2, sort_keys=True)
    text = f"""---
pretty_name: direct-data partitions
configs:
- config_name: default
  data_files:
  - split: train
    path: partitions-*.parquet
---
# Semantic partitions and macro negatives

Written by `direct-data partition` (direct-data {manifest.package_version}, schema v{manifest.schema_version}).
Embedder: `{manifest.model}`; seed {manifest.seed}.

## Rows
| read | kept | merged duplicates | rejected |
|---:|---:|---:|---:|
| {c['read']} | {c['kept']} | {c['merged']} | {c['rejected']} |

read = kept + merged + rejected. Rejects, with their reasons, are in `rejects-*.parquet`:

| reason | rows |
|---|---:|
{reasons}

## Partitions
- k = {s['k']} ({'automatic' if s['k_auto'] else 'given'}), trained on {s['train_vectors']} vectors, {'balanced' if s['balanced'] else 'plain'} assignment
- sizes {s['size_min']} .. {s['size_max']}, imbalance factor {s['imbalance_factor']}
- mean cosine to own centroid {s['mean_centroid_cos']}, median margin to the second partition {s['median_margin']}
- centroids, the partition-to-partition cosine matrix and the sizes: `centroids.safetensors`

## Macro negatives (certificate)
- {cert['requested_per_prompt']} per prompt, never from the prompt's own partition nor its {s['exclude_nearest_effective']} nearest
- exclusivity violations: **{cert['violations']}**
- shortfall: {cert['shortfall_prompts']} prompts got fewer than requested ({cert['shortfall_negatives']} missing negatives; never padded)
- anchor-negative cosine: {cert['anchor_negative_cos']}
- same-partition cosine: {cert['same_partition_cos']}

![partition sizes and cosine histograms](partitions.png)

## Shards
| file | rows | sha256 |
|---|---:|---|
{shard_lines}

## Config
```json
{cfg}
```

Load with `datasets.load_dataset("parquet", data_files="partitions-*.parquet")`, run inside this folder`.
"""
    atomic_write_bytes(out_dir / "README.md", text.encode())
    return ["partitions.png", "README.md"]

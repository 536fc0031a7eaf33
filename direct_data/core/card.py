"""Dataset cards: a `README.md` in each stage's output folder, with a PNG of the key figures."""

from __future__ import annotations

import io

from direct_data.core.manifest import Manifest


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


def partition_card_section(manifest: Manifest) -> tuple[str, dict[str, bytes]]:
    """The partition stage's part of its dataset card, and `partitions.png`."""
    s = manifest.stats
    cert = s["certificate"]
    text = f"""
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
"""
    return text, {"partitions.png": plot_partitions(s)}

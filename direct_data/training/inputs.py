"""The trainer's data, read from verified stage outputs (`partition` + `encode`), never from a glob."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from direct_data.core.errors import InputError
from direct_data.core.manifest import open_output


def load_train_data(partition_dir: str | Path, encode_dir: str | Path, *, check_finite: bool = True):
    """A `TrainData` from the stage outputs: every prompt that has a latent, with its caption states,
    partition, macro negatives (as row indices), and hard negatives (states and axis). Returns
    (data, accounting); prompts without a latent are counted, not silently dropped.

    Both folders are verified (`manifest.open_output`), and the encode output must have been made
    from this very partition output."""
    from direct_data.stages.encode import load_latents, load_text_states
    from direct_data.stages.partition import load_centroids
    from direct_data.training.data import TrainData

    part = open_output(partition_dir, stages=("partition",), role="first argument")
    enc = open_output(encode_dir, stages=("encode",), role="second argument")
    ident = part.identity["sha256"]
    used = [i for i in enc.manifest.inputs if i.get("role") == "partition"]
    if used and used[0].get("sha256") != ident:
        raise InputError(f"{encode_dir}: was encoded from another partition output than {partition_dir} "
                         f"(or that folder changed since); rerun `direct-data encode {partition_dir} ...`")
    if not enc.manifest.counts.get("latents"):
        raise InputError(f"{encode_dir}: holds no latents, and training needs one per clip; rerun encode with "
                         f"`--video-column COL --vae pixels` (pixel latents for tiny CPU models), `--vae WAN_FOLDER`, "
                         f"or `--latents FILE.safetensors`")
    parts = part.rows("partitions", ["prompt_id", "partition_id", "macro_negatives"])
    states = load_text_states(enc)
    latents = load_latents(enc)
    hard: dict[str, list] = {}
    for r in enc.rows("text_states", ["key", "prompt_id", "kind", "axis"]):
        if r["kind"] == "negative":
            hard.setdefault(r["prompt_id"], []).append((states[r["key"]], r["axis"]))
    rows = [r for r in parts if r["prompt_id"] in latents and r["prompt_id"] in states]
    if not rows:
        raise InputError(f"{encode_dir}: none of its latents belongs to a prompt of {partition_dir}")
    index = {r["prompt_id"]: i for i, r in enumerate(rows)}
    cc = load_centroids(part)["centroid_cos"].astype(np.float64)
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

"""Data sets of the physics world: seeded splits of scenes (`scenes`) with captions (`captions`).

Kept apart from both so that the scene model and the caption grammar do not import each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from direct_data.world.captions import caption, draw_picks, scene_caption
from direct_data.world.scenes import (
    FRAMES,
    MATERIALS,
    PREFERRED,
    SIZE,
    SPLITS,
    axis_labels,
    counterfactual,
    render,
    sample_spec,
)

_SPLIT_CODE = {"train": 1, "eval": 2, "broad": 3}


def make_split(n: int, split: str, seed: int = 0, *, frames: int = FRAMES, size: int = SIZE,
               negatives: bool = False, strength: dict[str, float] | None = None,
               vague: float = 0.0) -> list[dict[str, Any]]:
    """``n`` rows of a split, deterministic in ``(n, split, seed, frames, size, strength, vague)``
    (``strength``: the train split's entanglement, `sample_spec`; ``vague``: the fraction of rows,
    train split only, whose caption names the scene and not the physics (`scene_caption`), so that
    there the scene words alone imply the physics; drawn from a separate random stream, so every
    other field, and every row at ``vague = 0``, is the same whatever its value).

    Row fields: ``id``, ``prompt`` (a caption from the grammar), ``clip`` (uint8
    ``(frames, size, size, 3)``), ``split``, ``kind``, ``colour``, ``setting``, ``physics``,
    ``physics_id``, ``axis``, ``direction``, ``material`` (None unless a materials class),
    ``axis_labels`` (value per axis), ``shortcut`` (the colour is the class's train-preferred one),
    ``vague`` (the caption names no physics) and ``spec`` (the `SceneSpec` as a dict;
    `SceneSpec(**row["spec"])` rebuilds it).

    With ``negatives``, rows also carry ``negatives``: one world-native micro negative per axis
    that has a `counterfactual` (``{"axis", "prompt", "physics", "direction"}``), captioned with
    the row's own surface choices so that only the physics words change. They come from a separate
    random stream: the other fields are the same with or without them.
    """
    if n < 0:
        raise ValueError(f"make_split: n={n} < 0")
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS}")
    rng = np.random.default_rng([int(seed), _SPLIT_CODE[split]])
    rng_neg = np.random.default_rng([int(seed), _SPLIT_CODE[split], 1])
    if not 0.0 <= vague <= 1.0:
        raise ValueError(f"make_split: vague={vague} must be in [0, 1]")
    if vague and split != "train":
        raise ValueError(f"make_split: vague captions are for the train split only, got split={split!r}")
    rng_vague = np.random.default_rng([int(seed), _SPLIT_CODE[split], 2])
    rows = []
    for i in range(n):
        spec = sample_spec(rng, split, strength=strength)
        picks = draw_picks(rng)
        is_vague = bool(rng_vague.random() < vague)
        text = scene_caption(spec, picks=picks) if is_vague else caption(spec, picks=picks)
        row = {
            "id": f"world-{split}-{seed}-{i:06d}",
            "prompt": text,
            "clip": render(spec, frames, size),
            "split": split,
            "kind": spec.kind,
            "colour": spec.colour,
            "setting": spec.setting,
            "physics": spec.physics,
            "physics_id": spec.physics_id,
            "axis": spec.axis,
            "direction": spec.direction,
            "material": spec.physics if spec.physics in MATERIALS else None,
            "axis_labels": axis_labels(spec.physics, spec.direction),
            "shortcut": PREFERRED[spec.physics][0] == spec.colour,
            "vague": is_vague,
            "spec": spec.to_dict(),
        }
        if negatives:
            row["negatives"] = []
            for axis in ("kinematics", "forces", "materials", "interactions", "magnitudes"):
                neg = counterfactual(spec, rng_neg, axis)
                if neg is not None:
                    row["negatives"].append({"axis": axis, "prompt": caption(neg, picks=picks),
                                             "physics": neg.physics, "direction": neg.direction})
        rows.append(row)
    return rows

"""The embedded default input: prompts the project generates itself from a small grammar.

Two families, so the partitions have something to find: physical events (objects falling, rolling,
bouncing, colliding, sliding, floating, shattering) and static or camera-driven scenes with little
physics (landscapes, portraits, city views). Everything here is written for this project and
licensed with it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

COLOURS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple"]
OBJECTS = ["ball", "cube", "bottle", "marble", "apple", "toy car", "wooden block", "tennis ball", "glass vase", "metal can"]
MATERIALS = ["rubber", "steel", "glass", "clay", "wooden", "plastic"]
SURFACES = ["a wooden floor", "a concrete floor", "a kitchen table", "a grassy lawn", "a sandy beach", "an icy pond"]
EVENTS = [
    "{a} {c} {o} falls from a shelf onto {s} and bounces twice.",
    "{a} {m} {o} is dropped onto {s} and comes to rest.",
    "{a} {c} {o} rolls slowly across {s} and stops against a wall.",
    "{a} {c} {o} slides down a steep ramp onto {s}.",
    "{a} {m} {o} is pushed off the edge of {s} and falls to the ground.",
    "{a} {c} {o} hits a brick wall and bounces back across {s}.",
    "Two {c} {o}s collide in the middle of {s} and roll apart.",
    "{a} {m} {o} floats on the surface of a pond, drifting with the wind.",
    "{a} {c} {o} is thrown high into the air above {s} and falls back down.",
    "{a} {m} {o} falls onto {s} and shatters into pieces.",
    "A child kicks {a2} {c} {o} across {s}.",
    "{a} {c} {o} swings on a string like a pendulum above {s}.",
]
SCENES = [
    "A quiet {p} at {t}, {w}, seen from a slowly panning camera.",
    "A portrait of {h} standing in {ap} at {t}, smiling at the camera.",
    "Aerial view of {ap} at {t}, {w}.",
    "A still frame of {ap} {w} at {t}.",
    "Time-lapse of clouds over {ap} at {t}.",
    "A close-up of {h} reading a book in {ap}, soft light at {t}.",
]
PLACES = ["mountain lake", "city street", "desert canyon", "pine forest", "harbour", "flower garden", "snowy village", "old library"]
TIMES = ["sunrise", "noon", "sunset", "night", "dusk"]
WEATHER = ["under a clear sky", "in light fog", "with gentle rain", "under heavy clouds"]
HUMANS = ["an old man", "a young woman", "a musician", "a chef", "a painter"]


def _article(word: str) -> str:
    return "An" if word[0] in "aeiou" else "A"


def generate_sample(n: int = 400, *, seed: int = 0, duplicate_share: float = 0.05) -> list[dict]:
    """`n` rows of {"prompt", "family", "id"}: about 60% physical events, 40% scenes, and a few exact
    duplicates (differing only in whitespace) so the de-duplication has work to do."""
    rng = random.Random(seed)
    rows: list[dict] = []
    n_dup = int(n * duplicate_share)
    while len(rows) < n - n_dup:
        if rng.random() < 0.6:
            c, o, m, s = rng.choice(COLOURS), rng.choice(OBJECTS), rng.choice(MATERIALS), rng.choice(SURFACES)
            tpl = rng.choice(EVENTS)
            first = c if "{c}" in tpl.split("{o}")[0] else m
            text = tpl.format(a=_article(first), a2=_article(first).lower(), c=c, o=o, m=m, s=s)
            family = "physics"
        else:
            tpl = rng.choice(SCENES)
            p = rng.choice(PLACES)
            text = tpl.format(p=p, ap=f"{_article(p).lower()} {p}", t=rng.choice(TIMES), w=rng.choice(WEATHER), h=rng.choice(HUMANS))
            family = "scene"
        rows.append({"prompt": text, "family": family})
    for _ in range(n_dup):
        src = rng.choice(rows[: n - n_dup])
        rows.append({"prompt": "  " + src["prompt"].replace(" ", "  ", 1), "family": src["family"]})
    for i, r in enumerate(rows):
        r["id"] = f"sample-{i:05d}"
    return rows


def write_sample(path: str | Path, n: int = 400, *, seed: int = 0) -> int:
    from direct_data.core.shards import atomic_write_bytes

    rows = generate_sample(n, seed=seed)
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    return len(rows)

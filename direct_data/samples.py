"""The embedded default input: prompts the project generates itself from a small grammar.

Two families, so the partitions have something to find: physical events (objects falling, rolling,
bouncing, colliding, sliding, floating, shattering) and static or camera-driven scenes with little
physics (landscapes, portraits, city views). Everything here is written for this project and
licensed with it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np

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


_RGB = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60), "yellow": (230, 210, 40), "white": (240, 240, 240),
        "black": (20, 20, 20), "orange": (240, 140, 30), "purple": (140, 50, 180)}


def render_clip(prompt: str, *, frames: int = 9, size: int = 16) -> np.ndarray:
    """A small procedural clip (frames, size, size, 3) uint8 for a sample prompt, deterministic:
    a square in the prompt's colour that falls, rises, moves sideways or stays, as the words say,
    on a background picked from the prompt's hash, crossed by a light band that drifts one pixel a
    frame (a slow pan, so that no two frames are the same: GIF writers merge equal frames)."""
    h = hashlib.sha256(prompt.encode()).digest()
    words = prompt.lower()
    colour = next((rgb for name, rgb in _RGB.items() if name in words.split()), (h[0] | 96, h[1] | 96, h[2] | 96))
    bg = np.array([h[3] % 64, h[4] % 64, h[5] % 64], np.uint8)
    clip = np.empty((frames, size, size, 3), np.uint8)
    clip[:] = bg
    side = max(2, size // 4)
    band = np.minimum(bg.astype(np.int16) + 48, 255).astype(np.uint8)
    for t in range(frames):
        clip[t, :, t % size] = band
        u = t / max(frames - 1, 1)
        if any(w in words for w in ("falls", "dropped", "drop", "pushed off")):
            y, x = round(u * (size - side)), (size - side) // 2
        elif "thrown high" in words or "rises" in words:
            y, x = round((1 - u) * (size - side)), (size - side) // 2
        elif any(w in words for w in ("rolls", "slides", "kicks", "drifting", "collide", "bounces back", "swings")):
            y, x = size - side, round(u * (size - side))
        else:
            y, x = (size - side) // 2, (size - side) // 2
        clip[t, y : y + side, x : x + side] = colour
    return clip


#: a clip `write_sample` writes into `<stem>-clips/` (and the temporary file of an interrupted write of one)
_CLIP_FILE = re.compile(r"(\d{5,})\.gif|\.\d{5,}\.gif\.[^/]*\.tmp")
#: the longest line `write_sample` writes (a prompt of the grammar and an absolute clip path, with room)
_MAX_LINE = 1 << 16


def is_own_sample(path: str | Path) -> bool:
    """`path` is a sample file `write_sample` wrote: JSON Lines, row i exactly {"prompt", "family",
    "id": "sample-<i, 5 digits>"} and, with clips, a "video" path. Stops at the first line that is not."""
    n = 0
    try:
        with open(path, encoding="utf-8") as f:
            while line := f.readline(_MAX_LINE):
                if not line.endswith("\n"):
                    return False
                rec = json.loads(line)
                if (not isinstance(rec, dict) or set(rec) - {"video"} != {"prompt", "family", "id"}
                        or rec["id"] != f"sample-{n:05d}" or rec["family"] not in ("physics", "scene")
                        or not isinstance(rec["prompt"], str) or not isinstance(rec.get("video", ""), str)):
                    return False
                n += 1
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON
        return False
    return n > 0


def write_sample(path: str | Path, n: int = 400, *, seed: int = 0, clips: bool = False) -> int:
    """Write `n` sample prompts as JSONL; with `clips`, also a GIF per row in `<stem>-clips/` beside
    it, referenced by a `video` column (pixels for `encode --video-column video --vae pixels`) that
    holds the clip's absolute path: `encode` reads the column as given, so the sample reads the same
    from any working directory. An existing `path` is overwritten only when it is a sample this
    function wrote (`is_own_sample`), and `<stem>-clips/` only when it holds nothing but its clips;
    anything else is refused (`OutputError`) before any work."""
    import imageio.v3 as iio

    from direct_data.core.errors import OutputError
    from direct_data.core.shards import atomic_write_bytes

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"--out {path}: is a folder; give a .jsonl file path")
    if path.suffix.lower() != ".jsonl":  # the readers pick the format by suffix: JSONL under .csv would not read back
        raise OutputError(f"--out {path}: give a .jsonl file path (the sample is JSON Lines)")
    own = path.exists() and path.is_file() and is_own_sample(path)
    if path.exists() and not own:  # never overwrite a file make-sample did not write
        raise OutputError(f"--out {path}: exists and is not a sample make-sample wrote; give a new path (it overwrites only its own earlier output)")
    folder = path.parent / f"{path.stem}-clips"
    if clips:
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--out {path}: the clips go to {folder}, which is a file; move it or name another --out")
        held = sorted(x.name for x in folder.iterdir()) if folder.is_dir() else []
        foreign = [x for x in held if not _CLIP_FILE.fullmatch(x) or not (folder / x).is_file()]
        if foreign or (held and not own):
            why = f"files make-sample did not write ({', '.join(foreign[:5])})" if foreign else f"clips and {path} is not make-sample's own earlier output (remove the folder to start again)"
            raise OutputError(f"--out {path}: the clips go to {folder}, which holds {why}; move them or name another --out")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where a folder should be, no permission, a read-only file system
        raise OutputError(f"--out {path}: cannot create its folder ({e.strerror or e})") from None
    rows = generate_sample(n, seed=seed)
    if clips:
        folder.mkdir(parents=True, exist_ok=True)
        for i, r in enumerate(rows):
            gif = folder / f"{i:05d}.gif"
            atomic_write_bytes(gif, iio.imwrite("<bytes>", render_clip(r["prompt"].strip()), extension=".gif", loop=0, duration=125))
            r["video"] = str(gif.resolve())
        for x in folder.iterdir():  # its own clips of an earlier, longer sample, and interrupted writes
            m = _CLIP_FILE.fullmatch(x.name)
            if m and (m.group(1) is None or int(m.group(1)) >= len(rows)):
                x.unlink()
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    return len(rows)

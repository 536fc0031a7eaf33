"""The judge: does a clip show what its caption asks for?

`judge(clip, caption_or_spec)` scores two 0/1 verdicts:

* **semantic**: the object's kind, its colour and the setting are the ones named;
* **physics**: the object's motion passes the check of the named physics class (and direction).

Given a caption (``str``), the expectation comes from `parse_caption` (the grammar's inverse)
and nothing else; given a `SceneSpec`, from the spec (for validating the judge itself).

The clip is ``(T, H, W, 3)`` RGB, ``uint8`` in 0..255 or float in [0, 1] (convert [-1, 1] model
outputs first). How it is read (`observe`), all in fractions of the frame so any ``(T, H, W)``
works (world v2 validated at T = 9 and 16 or 32 pixels; see `direct_data.world.validation`):

1. *Walls and pillars*: regions of the wall grey, grey in most frames and at least 5% of the frame.
   *Background per image row*: the median colour of the row over all frames and columns, walls and
   pillars excluded (the object covers under half of any row).
2. *Foreground*: pixels farther than `FG_DISTANCE` from their row's background (next to a wall
   or pillar: from any mixture of the background and the grey); connected components
   (4-neighbour) smaller than 0.4% of the frame are dropped (noise).
3. *Track*: per frame the largest component is the object: centre x, height of its bottom edge
   above the ground line, area, bounding box; plus the number of components and the horizontal
   extent of all of them (fragments).
4. *Semantics*: the setting is the palette setting nearest to the (sky, floor) background
   colours. The *reference views* are the first (up to three) frames showing the object whole
   (one piece, off the frame edges, clear of walls). The colour is the palette colour nearest to
   the median of their interior pixels; the kind is the silhouette that fits them best: the
   object's coverage map (each pixel's position between its row background and the object
   colour) against each kind's rendered silhouette of the same area and centroid, blurred by the
   best of a few widths so that blurred samples meet blurred templates.
5. *Physics*: each class has a check on the track (`CHECKS`), e.g. rubber = dropped from high,
   lands, rebounds to at least 45% of the drop height; glass = three or more fragments at the end;
   wall_bounce = a wall on the named side, the object reaches it and comes back. The checks are
   mutually exclusive on rendered clips, so a mismatched caption fails. Every tolerance is a
   fraction of the frame and at least `TOL_PX` (2) pixels (`Observation.tol`): at 16 pixels a
   one-pixel error of the object's position in any frame keeps every verdict (world v1's
   one-pixel tolerances passed 62% of true captions under 1 px of jitter). Contact with the
   ground (landed, resting, rolling on it) allows `GROUND_PX` (2.5) pixels: a generated clip loses
   the faint bottom row of a resting object, whose bottom edge then reads 2 px high.
6. *What a clip shows*: `physics_matches` lists every class of `CLASSES` (with direction) whose
   check the clip passes, whatever it was asked for: on rendered clips exactly its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from direct_data.world.captions import parse_caption
from direct_data.world.scenes import (
    _SS,
    CLASSES,
    COLOURS,
    CYLINDER_WIDTH,
    GROUND,
    HORIZON,
    HORIZONTAL,
    KINDS,
    PHYSICS,
    PILLAR,
    SETTINGS,
    WALL_GREY,
    WALL_WIDTH,
    SceneSpec,
    _coverage,
    _Piece,
)

__all__ = ["judge", "observe", "Observation", "CHECKS", "physics_matches", "FG_DISTANCE"]

FG_DISTANCE = 55.0       # RGB distance from the row background that makes a pixel foreground
GREY_DISTANCE = 40.0     # RGB distance to the wall grey under which a pixel is wall / pillar
MIN_COMPONENT = 0.004    # fraction of the frame: smaller components are noise
OCCLUDER_MIN = 0.05      # fraction of the frame: a grey region this large is a wall or pillar
# Tolerances: a fraction of the frame, and never under a number of pixels (`Observation.tol`), so that at 16
# pixels a one-pixel position error (quantisation, or a generator's wobble) is not read as motion.
ON_GROUND = 0.08         # bottom edge at most this far above the ground line
REST = 0.06              # "resting on the ground" after an impact
STILL = 0.03             # a displacement this small is no motion
LAND = 0.12              # the bottom edge this close to the ground line: landed
TOL_PX = 2.0             # pixels: the floor of STILL and the other tolerances (a 1 px error at both ends)
GROUND_PX = 2.5          # pixels: the floor of ON_GROUND, REST, LAND (a generated clip's faint bottom row, about a
                         # quarter covered at rest, drops under FG_DISTANCE and the bottom edge reads 2 px high)
DRIFT_PX = 3.0           # pixels: the floor of the sideways drift / vertical wobble allowed to still objects
SQUASH = 2.4             # `_flat_ratio` above this: flattened (clay about 5, an intact object about 1)


@dataclass
class Observation:
    """What the judge read from a clip (all lengths in fractions of the frame; None if unseen)."""

    frames: int
    visible: np.ndarray          # (T,) bool
    cx: np.ndarray               # (T,) centre x of the object (largest component)
    height: np.ndarray           # (T,) bottom edge above the ground line
    area: np.ndarray             # (T,) area of the largest component
    width: np.ndarray            # (T,)
    tall: np.ndarray             # (T,) bounding-box height
    ncomp: np.ndarray            # (T,) number of components
    extent: np.ndarray           # (T,) horizontal extent of all components
    ref: int | None              # index of the reference frame (unoccluded early view)
    kind: str | None
    colour: str | None
    setting: str | None
    wall: dict[str, bool]        # wall present on the "left" / "right"
    pillar: bool
    px: float = 1 / 32           # one pixel, as a fraction of the frame height (1 / H)

    def tol(self, fraction: float, pixels: float = TOL_PX) -> float:
        """A tolerance of ``fraction`` of the frame, at least ``pixels`` pixels."""
        return max(fraction, pixels * self.px)

    def summary(self) -> dict[str, Any]:
        r = lambda a: [None if not v else round(float(x), 3) for x, v in zip(a, self.visible)]  # noqa: E731
        return {"kind": self.kind, "colour": self.colour, "setting": self.setting, "wall": self.wall,
                "pillar": self.pillar, "cx": r(self.cx), "height": r(self.height), "area": r(self.area),
                "ncomp": [int(n) for n in self.ncomp]}


def _as_float_clip(clip: np.ndarray) -> np.ndarray:
    a = np.asarray(clip)
    if a.ndim != 4 or a.shape[-1] != 3 or a.shape[0] < 3:
        raise ValueError(f"judge: expected a clip of shape (T>=3, H, W, 3), got {a.shape}")
    a = a.astype(np.float64)
    if a.max(initial=0) <= 1.0 + 1e-6 and np.asarray(clip).dtype != np.uint8:
        a = a * 255.0   # float clips in [0, 1]
    return a


def _nearest(value: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    d = [np.linalg.norm(value - np.asarray(palette[n], np.float64)) for n in names]
    return names[int(np.argmin(d))]


_KIND_AREA = {"ball": np.pi / 4, "cube": 1.0, "pyramid": 0.5, "cylinder": CYLINDER_WIDTH}
_KIND_BLURS = (0.0, 0.6, 0.9, 1.2)


def _kind_errors(frame: np.ndarray, bg: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> dict[str, float]:
    """Silhouette fit of every kind to one view: the squared error between the object's coverage
    (alpha: projection of each pixel between its row background and the object colour) and each
    kind's rendered silhouette of the same area and centroid, blurred by the best of a few widths
    (so blurred samples are compared with blurred templates)."""
    h_, w_ = mask.shape
    win = ndimage.binary_dilation(mask, iterations=2)
    d = colour[None, :] - bg                                        # (H, 3)
    rel = frame - bg[:, None, :]
    alpha = np.clip((rel * d[:, None, :]).sum(-1) / np.maximum((d ** 2).sum(-1), 1.0)[:, None], 0, 1) * win
    area = alpha.sum() / (h_ * w_)
    if area <= 0:
        return {k: float("inf") for k in KINDS}
    rr, cc = np.mgrid[0:h_, 0:w_]
    cy = ((rr + 0.5) * alpha).sum() / alpha.sum() / h_
    cxx = ((cc + 0.5) * alpha).sum() / alpha.sum() / w_
    r0, r1 = np.flatnonzero(win.any(1))[[0, -1]]
    c0, c1 = np.flatnonzero(win.any(0))[[0, -1]]
    r0, c0, r1, c1 = max(0, r0 - 2), max(0, c0 - 2), min(h_, r1 + 3), min(w_, c1 + 3)
    n = _SS
    gv, gu = np.meshgrid((r0 * n + np.arange((r1 - r0) * n) + 0.5) / (h_ * n),
                         (c0 * n + np.arange((c1 - c0) * n) + 0.5) / (w_ * n), indexing="ij")
    a_win, m_win = alpha[r0:r1, c0:c1], win[r0:r1, c0:c1]
    out = {}
    for kind in KINDS:
        s = float(np.sqrt(area / _KIND_AREA[kind] * w_ / h_))       # height as a fraction of H
        wk = s * (CYLINDER_WIDTH if kind == "cylinder" else 1.0) * h_ / w_
        below = s / 3 if kind == "pyramid" else s / 2              # centroid above the bottom edge
        piece = _Piece(kind, cxx, cy + below, wk, s)
        cov = _coverage(piece, gu, gv).reshape(r1 - r0, n, c1 - c0, n).mean(axis=(1, 3))
        out[kind] = min(float(((((ndimage.gaussian_filter(cov, b) if b else cov) * m_win) - a_win) ** 2).sum())
                        for b in _KIND_BLURS)
    return out


def observe(clip: np.ndarray) -> Observation:
    """Segment and track the object in a clip (see the module docstring)."""
    x = _as_float_clip(clip)
    t_, h_, w_, _ = x.shape
    grey_px = np.linalg.norm(x - np.asarray(WALL_GREY, np.float64), axis=-1) < GREY_DISTANCE
    # walls and pillars: large regions that are grey in most frames (not an object's grey rim)
    lab, n = ndimage.label(np.median(grey_px.astype(np.float64), axis=0) >= 0.5)
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1)) if n else np.zeros(0)
    occluder = np.isin(lab, [i + 1 for i, s in enumerate(sizes) if s >= OCCLUDER_MIN * h_ * w_])
    near_occ = ndimage.binary_dilation(occluder, iterations=1)
    bg = np.empty((h_, 3))
    for r in range(h_):
        px = x[:, r][:, ~occluder[r]].reshape(-1, 3)
        bg[r] = np.median(px if len(px) >= 0.1 * t_ * w_ else x[:, r].reshape(-1, 3), axis=0)
    fg = np.linalg.norm(x - bg[None, :, None, :], axis=-1) > FG_DISTANCE
    # next to an occluder, mixtures of the background and the grey are background too
    g = np.asarray(WALL_GREY, np.float64)
    seg = g[None, :] - bg                                   # (H, 3) background -> grey
    rel = x - bg[None, :, None, :]
    lam = np.clip((rel * seg[None, :, None, :]).sum(-1) / np.maximum((seg ** 2).sum(-1), 1e-6)[None, :, None], 0, 1)
    off_seg = np.linalg.norm(rel - lam[..., None] * seg[None, :, None, :], axis=-1) > FG_DISTANCE
    fg &= ~occluder[None] & (off_seg | ~near_occ[None])
    min_px = max(3, int(round(MIN_COMPONENT * h_ * w_)))

    vis = np.zeros(t_, bool)
    cx, height, area, width, tall, extent = (np.zeros(t_) for _ in range(6))
    ncomp = np.zeros(t_, int)
    others = np.zeros(t_)           # area of the other components / the largest one
    masks: list[np.ndarray | None] = []
    for k in range(t_):
        lab, n = ndimage.label(fg[k])
        sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1)) if n else np.zeros(0)
        keep = [i + 1 for i, s in enumerate(sizes) if s >= min_px]
        ncomp[k] = len(keep)
        if not keep:
            masks.append(None)
            continue
        big = max(keep, key=lambda i: sizes[i - 1])
        others[k] = sum(sizes[i - 1] for i in keep if i != big) / sizes[big - 1]
        m = lab == big
        masks.append(m)
        rr, cc = np.nonzero(m)
        allc = np.nonzero(np.isin(lab, keep))[1]
        vis[k] = True
        cx[k] = (cc.mean() + 0.5) / w_
        height[k] = GROUND - (rr.max() + 1) / h_
        area[k] = m.sum() / float(h_ * w_)
        width[k] = (cc.max() - cc.min() + 1) / w_
        tall[k] = (rr.max() - rr.min() + 1) / h_
        extent[k] = (allc.max() - allc.min() + 1) / w_

    # setting: background rows above / below the horizon
    hz = int(round(HORIZON * h_))
    sky = np.median(bg[: max(1, hz - 1)], axis=0)
    floor = np.median(bg[min(h_ - 1, hz + 1):], axis=0)
    setting = min(SETTINGS, key=lambda s: np.linalg.norm(sky - SETTINGS[s][0]) + np.linalg.norm(floor - SETTINGS[s][1]))

    # walls and pillar: the occluder covers most of their bands
    band = max(1, int(WALL_WIDTH * w_) - 1)
    rows = slice(int(0.1 * h_), int(0.8 * h_))
    wall = {"left": bool(occluder[rows, :band].mean() >= 0.5), "right": bool(occluder[rows, w_ - band:].mean() >= 0.5)}
    pc = slice(int(round((PILLAR[0] + 0.04) * w_)), int(round((PILLAR[1] - 0.04) * w_)))
    pillar = bool(occluder[int((PILLAR[2] + 0.05) * h_):int(0.8 * h_), pc].mean() >= 0.5)

    # reference views: the first frames that show the object whole (one piece, off the frame edges,
    # clear of walls and pillars) with at least 80% of the first such view's area
    occ_rim = ndimage.binary_dilation(occluder, iterations=1)
    ok = []
    for k in range(t_):
        m = masks[k]
        if m is None or others[k] > 0.25:      # one piece (specks of noise aside)
            continue
        if m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any() or (m & occ_rim).any():
            continue
        ok.append(k)
    early = [k for k in ok[:3] if area[k] >= 0.8 * area[ok[0]]] if ok else []
    ref = early[0] if early else None
    kind = colour = None
    if ref is not None:
        views = early
        pix = []
        for k in views:
            core = ndimage.binary_erosion(masks[k])
            pix.append(x[k][core if core.sum() >= 4 else masks[k]])
        obj = np.median(np.concatenate(pix), axis=0)
        colour = _nearest(obj, COLOURS)
        err = {kd: 0.0 for kd in KINDS}
        for k in views:
            for kd, e in _kind_errors(x[k], bg, masks[k], obj).items():
                err[kd] += e
        kind = min(KINDS, key=lambda kd: err[kd])
    elif vis.any():
        k = int(np.argmax(area))
        colour = _nearest(np.median(x[k][masks[k]], axis=0), COLOURS)
    return Observation(frames=t_, visible=vis, cx=cx, height=height, area=area, width=width, tall=tall,
                       ncomp=ncomp, extent=extent, ref=ref, kind=kind, colour=colour, setting=setting,
                       wall=wall, pillar=pillar, px=1.0 / h_)


# --------------------------------------------------------------------------------------------
# Physics checks: (observation, sign) -> (passed, reason). sign = +1 right, -1 left, 0 unnamed.
# --------------------------------------------------------------------------------------------

Check = Callable[[Observation, int], tuple[bool, str]]


def _ref_size(o: Observation) -> tuple[float, float, float]:
    k = o.ref if o.ref is not None else int(np.argmax(o.area))
    return o.area[k], o.width[k], o.tall[k]


def _drop(o: Observation) -> tuple[bool, str, dict[str, float]]:
    """Common part of the drop classes: seen throughout, starts in the air, lands, no drift."""
    if not o.visible.all():
        return False, "object not visible in every frame", {}
    h = o.height
    landed = np.flatnonzero(h <= o.tol(LAND, GROUND_PX))
    k = int(landed[0]) if len(landed) else int(np.argmin(h))   # the impact: the first frame on the ground
    info = {"h0": float(h[0]), "h_impact": float(h[k]), "impact": float(k),
            "rebound": float(h[k + 1:].max()) if k + 1 < o.frames else 0.0,
            "after_max": float(h[k:].max())}
    if abs(o.cx[-1] - o.cx[0]) > o.tol(0.15, DRIFT_PX) and o.ncomp[-1] <= 1:
        return False, f"drifts sideways by {o.cx[-1] - o.cx[0]:+.2f}", info
    if not len(landed):
        return False, f"never lands (lowest {h[k]:.2f} above the ground)", info
    if k == 0:
        return False, "does not fall", info
    return True, "", info


def _flat_ratio(o: Observation) -> float:
    """How much flatter the object is at the end than in its reference view: the geometric mean of
    the change of width^2 / area and of the bounding box's width / height (1 for the same shape,
    about 5 for squashed clay; at 16 pixels each alone is off by a pixel's quantisation now and then)."""
    a0, w0, t0 = _ref_size(o)
    by_area = (o.width[-1] ** 2 / max(o.area[-1], 1e-9)) / max(w0 ** 2 / max(a0, 1e-9), 1e-9)
    by_box = (o.width[-1] / max(o.tall[-1], 1e-9)) / max(w0 / max(t0, 1e-9), 1e-9)
    return float(np.sqrt(max(by_area, 0.0) * max(by_box, 0.0)))


def _shattered(o: Observation) -> bool:
    _, w0, _ = _ref_size(o)
    n = o.ncomp[-1]
    return bool(n >= 3 or (n >= 2 and o.extent[-1] >= 2.0 * w0))


def _falls_like(o: Observation, lo: float, hi: float) -> tuple[bool, str]:
    ok, why, info = _drop(o)
    if not ok:
        return ok, why
    if not lo <= info["h0"] < hi:
        return False, f"dropped from {info['h0']:.2f}, expected [{lo}, {hi})"
    if info["after_max"] > o.tol(REST, GROUND_PX):
        return False, f"bounces to {info['after_max']:.2f} after landing"
    if _shattered(o):
        return False, "breaks into pieces"
    if _flat_ratio(o) > SQUASH:
        return False, f"flattens (aspect x{_flat_ratio(o):.1f})"
    return True, "falls from the expected height, lands and stays intact"


def check_falls(o: Observation, sign: int) -> tuple[bool, str]:
    return _falls_like(o, 0.35, 1.0)


def check_drop_low(o: Observation, sign: int) -> tuple[bool, str]:
    return _falls_like(o, 0.07, 0.32)


def check_rubber(o: Observation, sign: int) -> tuple[bool, str]:
    ok, why, info = _drop(o)
    if not ok:
        return ok, why
    if info["h0"] < 0.35:
        return False, f"dropped from only {info['h0']:.2f}"
    if info["rebound"] < 0.45 * info["h0"]:
        return False, f"rebound {info['rebound']:.2f} < 0.45 x drop {info['h0']:.2f}"
    return True, "bounces high"


def check_steel(o: Observation, sign: int) -> tuple[bool, str]:
    ok, why, info = _drop(o)
    if not ok:
        return ok, why
    if info["h0"] < 0.35:
        return False, f"dropped from only {info['h0']:.2f}"
    if not 0.06 <= info["rebound"] <= 0.4 * info["h0"]:
        return False, f"rebound {info['rebound']:.2f} outside [0.06, {0.4 * info['h0']:.2f}]"
    if _shattered(o):
        return False, "breaks into pieces"
    return True, "bounces low"


def check_clay(o: Observation, sign: int) -> tuple[bool, str]:
    ok, why, info = _drop(o)
    if not ok:
        return ok, why
    if info["h0"] < 0.35:
        return False, f"dropped from only {info['h0']:.2f}"
    if info["after_max"] > o.tol(REST, GROUND_PX):
        return False, f"bounces to {info['after_max']:.2f} after landing"
    if _shattered(o):
        return False, "breaks into pieces"
    if _flat_ratio(o) < SQUASH:
        return False, f"does not squash (aspect x{_flat_ratio(o):.1f})"
    return True, "lands and squashes flat"


def check_glass(o: Observation, sign: int) -> tuple[bool, str]:
    ok, why, info = _drop(o)
    if not ok:
        return ok, why
    if info["h0"] < 0.35:
        return False, f"dropped from only {info['h0']:.2f}"
    if not _shattered(o):
        return False, f"not shattered ({int(o.ncomp[-1])} piece(s) at the end)"
    return True, "shatters into fragments"


def check_rises(o: Observation, sign: int) -> tuple[bool, str]:
    if not o.visible.all():
        return False, "object not visible in every frame"
    h = o.height
    if h[0] > 0.15:
        return False, f"starts in the air ({h[0]:.2f})"
    if h[-1] - h[0] < 0.3:
        return False, f"rises only {h[-1] - h[0]:.2f}"
    if np.diff(h).min() < -o.tol(0.04):
        return False, "goes down on the way"
    if abs(o.cx[-1] - o.cx[0]) > o.tol(0.12, DRIFT_PX):
        return False, "drifts sideways"
    return True, "rises"


def check_floats(o: Observation, sign: int) -> tuple[bool, str]:
    if not o.visible.all():
        return False, "object not visible in every frame"
    h = o.height
    if h.min() < 0.18:
        return False, f"comes down to {h.min():.2f}"
    if h.max() - h.min() > o.tol(0.12, DRIFT_PX):
        return False, f"moves vertically by {h.max() - h.min():.2f}"
    if abs(o.cx[-1] - o.cx[0]) > o.tol(0.12, DRIFT_PX):
        return False, "drifts sideways"
    return True, "hovers in mid-air"


def _horizontal(o: Observation, sign: int, occluded_ok: bool = False) -> tuple[bool, str, np.ndarray, int]:
    """Common part: on the ground throughout; progress along ``sign`` (detected if 0)."""
    idx = np.flatnonzero(o.visible)
    if len(idx) < 2 or not o.visible[0] or not o.visible[-1]:
        return False, "object not visible at start and end", np.zeros(0), sign
    a0, _, _ = _ref_size(o)
    full = idx[o.area[idx] >= 0.5 * a0]        # partly hidden slivers do not show the bottom edge
    if len(full) == 0 or o.height[full].max() > o.tol(ON_GROUND, GROUND_PX):
        return False, f"leaves the ground ({o.height[idx].max():.2f})", np.zeros(0), sign
    if not occluded_ok and (not o.visible.all() or o.area.min() < 0.5 * a0):
        return False, "object hidden part of the time", np.zeros(0), sign
    if sign == 0:
        sign = 1 if o.cx[idx[-1]] >= o.cx[idx[0]] else -1
    p = sign * (o.cx - o.cx[0])
    return True, "", p, sign


def _steady(lo: float, hi: float) -> Check:
    def check(o: Observation, sign: int) -> tuple[bool, str]:
        ok, why, p, sign = _horizontal(o, sign)
        if not ok:
            return ok, why
        total = p[-1]
        if not lo <= total < hi:
            return False, f"travels {total:+.2f} along the named direction, expected [{lo}, {hi})"
        if np.diff(p).min() < -o.tol(STILL):
            return False, "turns back"
        # steady: half-way in time is about half-way in space (decelerating or accelerating
        # motions are far off; one pixel of error at each of the three frames is not)
        mid = p[(len(p) - 1) // 2]
        if abs(mid - total / 2) > 0.25 * total + o.px:
            return False, f"not steady (half-time position {mid:.2f} of {total:.2f})"
        return True, f"moves steadily by {total:.2f}"
    return check


#: Travel boundaries between the rolling magnitudes: the midpoints of the true travels (rolls_slow
#: 0.14, rolls 0.36, rolls_fast 0.66 of the width, before quantisation), about 2 px from each
#: (0.56 left rolls_fast 1.5 px, and generated fast rolls that travelled 0.52-0.54 read as rolls).
ROLL_SLOW_MEDIUM, ROLL_MEDIUM_FAST = 0.24, 0.5
check_rolls = _steady(ROLL_SLOW_MEDIUM, ROLL_MEDIUM_FAST)
check_rolls_slow = _steady(0.05, ROLL_SLOW_MEDIUM)
check_rolls_fast = _steady(ROLL_MEDIUM_FAST, 2.0)


def _wall_inner(sign: int) -> float:
    return 1 - WALL_WIDTH if sign > 0 else WALL_WIDTH


def _leading(o: Observation, k: int, sign: int) -> float:
    """Distance of the object's leading edge from the wall's inner face at frame k (<= 0 touching)."""
    edge = o.cx[k] + sign * o.width[k] / 2
    return sign * (_wall_inner(sign) - edge)


def check_stops(o: Observation, sign: int) -> tuple[bool, str]:
    ok, why, p, sign = _horizontal(o, sign)
    if not ok:
        return ok, why
    t = o.frames
    rest_from = int(np.ceil(0.6 * (t - 1)))
    if p[-1] < 0.15:
        return False, f"travels only {p[-1]:+.2f}"
    if np.ptp(p[rest_from:]) > o.tol(STILL):
        return False, "still moving at the end"
    if np.diff(p).min() < -o.tol(STILL):
        return False, "turns back"
    if _leading(o, t - 1, sign) < 0.05:
        return False, "stops against the frame side (a wall)"
    return True, "moves and comes to rest"


def check_pushed(o: Observation, sign: int) -> tuple[bool, str]:
    ok, why, p, sign = _horizontal(o, sign)
    if not ok:
        return ok, why
    t = o.frames
    rest_to = int(np.floor(0.25 * (t - 1)))
    if np.ptp(p[: rest_to + 1]) > o.tol(STILL):
        return False, "moving from the start"
    if p[-1] < 0.2:
        return False, f"travels only {p[-1]:+.2f}"
    mid = p[(t - 1) * 2 // 3] - p[(t - 1) // 3]
    last = p[-1] - p[(t - 1) * 2 // 3]
    if last < 1.5 * mid or np.diff(p).min() < -o.tol(STILL):
        return False, f"does not speed up (middle {mid:.2f}, last {last:.2f})"
    return True, "starts at rest and accelerates"


def _wall_approach(o: Observation, sign: int) -> tuple[bool, str, np.ndarray, int]:
    ok, why, p, sign = _horizontal(o, sign)
    if not ok:
        return ok, why, p, 0
    if sign == 0:
        sign = 1 if o.wall["right"] and not o.wall["left"] else -1
    side = "right" if sign > 0 else "left"
    if not o.wall[side]:
        return False, f"no wall on the {side}", p, sign
    p = sign * (o.cx - o.cx[0])
    kp = int(np.argmax(p))
    if _leading(o, kp, sign) > o.tol(0.05, 1.5):
        return False, f"never reaches the wall (gap {_leading(o, kp, sign):.2f})", p, sign
    if p[kp] < 0.15:
        return False, "barely moves towards the wall", p, sign
    return True, "", p, sign


def check_wall_bounce(o: Observation, sign: int) -> tuple[bool, str]:
    ok, why, p, sign = _wall_approach(o, sign)
    if not ok:
        return ok, why
    kp = int(np.argmax(p))
    if p[kp] - p[-1] < o.tol(0.08):
        return False, f"does not come back ({p[kp] - p[-1]:.2f})"
    return True, "hits the wall and bounces back"


def check_wall_stick(o: Observation, sign: int) -> tuple[bool, str]:
    ok, why, p, sign = _wall_approach(o, sign)
    if not ok:
        return ok, why
    t = o.frames
    if p.max() - p[-1] > o.tol(STILL):
        return False, "comes back from the wall"
    if _leading(o, t - 1, sign) > o.tol(0.05, 1.5):
        return False, "not at the wall at the end"
    if np.ptp(p[int(np.ceil(0.65 * (t - 1))):]) > o.tol(STILL):
        return False, "still moving at the end"
    return True, "hits the wall and sticks"


def check_behind(o: Observation, sign: int) -> tuple[bool, str]:
    ok, why, p, sign = _horizontal(o, sign, occluded_ok=True)
    if not ok:
        return ok, why
    if not o.pillar:
        return False, "no pillar"
    a0, _, _ = _ref_size(o)
    if sign * (o.cx[0] - 0.5) > -0.15 or sign * (o.cx[-1] - 0.5) < 0.15:
        return False, "does not cross from one side of the pillar to the other"
    mid = o.area[1:-1] * o.visible[1:-1]
    if mid.min() > 0.35 * a0:
        return False, "never hidden"
    return True, "passes behind the pillar"


CHECKS: dict[str, Check] = {
    "falls": check_falls, "rises": check_rises, "rolls": check_rolls, "stops": check_stops,
    "floats": check_floats, "pushed": check_pushed,
    "rubber": check_rubber, "clay": check_clay, "steel": check_steel, "glass": check_glass,
    "wall_bounce": check_wall_bounce, "wall_stick": check_wall_stick, "behind": check_behind,
    "rolls_slow": check_rolls_slow, "rolls_fast": check_rolls_fast, "drop_low": check_drop_low,
}
assert set(CHECKS) == set(PHYSICS)


def physics_matches(o: Observation, classes: tuple[str, ...] = CLASSES) -> list[str]:
    """Every (class[/direction]) of ``classes`` (default: the world's `CLASSES`) whose check the
    observation passes."""
    out = []
    for name in classes:
        check = CHECKS[name]
        if name in HORIZONTAL:
            out += [f"{name}/{d}" for d, s in (("left", -1), ("right", 1)) if check(o, s)[0]]
        elif check(o, 0)[0]:
            out.append(name)
    return out


def judge(clip: np.ndarray, caption_or_spec: str | SceneSpec, *, details: bool = True) -> dict[str, Any]:
    """Score a clip against a caption (parsed, never looked up) or a `SceneSpec`.

    Returns ``{"physics": 0/1, "semantic": 0/1, "kind_ok", "colour_ok", "setting_ok",
    "physics_reason", "expected", "observed"}``; ``observed`` (with the track) only if ``details``.
    A caption naming no physics scores physics 0; semantic attributes it does not name are not held
    against the clip.
    """
    if isinstance(caption_or_spec, SceneSpec):
        s = caption_or_spec
        expected = {"kind": s.kind, "colour": s.colour, "setting": s.setting, "physics": s.physics,
                    "direction": s.direction}
    elif isinstance(caption_or_spec, str):
        p = parse_caption(caption_or_spec)
        expected = {"kind": p.kind, "colour": p.colour, "setting": p.setting, "physics": p.physics,
                    "direction": p.direction}
    else:
        raise TypeError(f"judge: expected a caption str or a SceneSpec, got {type(caption_or_spec).__name__}")
    o = observe(clip)
    sem = {f"{a}_ok": (expected[a] is None or getattr(o, a) == expected[a]) for a in ("kind", "colour", "setting")}
    if expected["physics"] is None:
        phys, reason = False, "the caption names no physics"
    elif not o.visible.any():
        phys, reason = False, "no object found"
    else:
        sign = {"left": -1, "right": 1}.get(expected["direction"] or "", 0)
        phys, reason = CHECKS[expected["physics"]](o, sign)
    out: dict[str, Any] = {"physics": int(phys), "semantic": int(all(sem.values())), **sem,
                           "physics_reason": reason, "expected": expected}
    if details:
        out["observed"] = {**o.summary(), "physics_matches": physics_matches(o)}
    return out

"""The physics world: procedural scenes with exact physics, their captions, and a judge.

* `direct_data.world.scenes`: `SceneSpec`, `sample_spec`, `render`; `direct_data.world.splits`: `make_split` (splits
  ``train`` / ``eval`` / ``broad``, documented there), `counterfactual` (one-axis physics edits),
  `write_gif`, `save_strip`;
* `direct_data.world.captions`: the caption grammar (`caption`) and its inverse (`parse_caption`);
* `direct_data.world.judging`: `judge(clip, caption_or_spec)` -> physics / semantic adherence;
* `direct_data.world.validation`: `validate_judge` (agreement with the ground truth), `degrade`.
"""

from direct_data.world.captions import CaptionParse, caption, draw_picks, parse_caption
from direct_data.world.judging import CHECKS, Observation, judge, observe, physics_matches
from direct_data.world.scenes import (
    AXIS_OF,
    CLASSES,
    COLOURS,
    FRAMES,
    HORIZONTAL,
    KINDS,
    PHYSICS,
    PREFERRED,
    SETTINGS,
    SIZE,
    SPLITS,
    SceneSpec,
    axis_labels,
    counterfactual,
    render,
    sample_spec,
    save_strip,
    write_gif,
)
from direct_data.world.splits import make_split
from direct_data.world.validation import degrade, validate_judge

__all__ = [
    "AXIS_OF", "CLASSES", "COLOURS", "FRAMES", "HORIZONTAL", "KINDS", "PHYSICS", "PREFERRED", "SETTINGS", "SIZE",
    "SPLITS", "SceneSpec", "axis_labels", "counterfactual", "make_split", "render", "sample_spec", "save_strip",
    "write_gif", "CaptionParse", "caption", "draw_picks", "parse_caption", "CHECKS", "Observation", "judge",
    "observe", "physics_matches", "degrade", "validate_judge",
]

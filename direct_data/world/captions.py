"""The caption grammar of the physics world, and its inverse (`parse_caption`).

`caption(spec, rng)` writes one sentence: a subject noun phrase (determiner, colour synonym,
material for the materials classes, kind synonym), a verb phrase from the class's templates (every
class has five or more, active and passive, with the direction for horizontal classes), and the
setting, either inside the verb phrase ("... onto the dunes") or fronted ("In a snowy field, ...").
Horizontal verbs follow the kind (balls and cylinders roll, cubes and pyramids slide; "moves",
"travels" and "glides" too). A single spec has hundreds to thousands of distinct captions.

`parse_caption(text)` maps the words back to the semantics and the physics, by cue words in a fixed
priority (material > wall > behind > push > rise > float > low drop > fall > stop > slow > fast >
plain horizontal motion). It reads only the text: it is what the judge uses to know what a
generated clip was *asked* to show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from direct_data.world.scenes import HORIZONTAL, MATERIALS, PHYSICS, SceneSpec

__all__ = ["caption", "scene_caption", "draw_picks", "PICKS", "parse_caption", "CaptionParse", "COLOUR_WORDS", "KIND_WORDS",
           "SETTING_NOUNS", "TEMPLATES"]

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine", "amber"),
    "yellow": ("yellow", "lemon", "canary"),
    "blue": ("blue", "cobalt", "sapphire"),
    "purple": ("purple", "violet", "plum"),
    "black": ("black", "ebony", "coal-black"),
    "pink": ("pink", "rose", "magenta"),
    "teal": ("teal", "turquoise", "cyan"),
}
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "ball": ("ball", "sphere", "orb"),
    "cube": ("cube", "block", "box"),
    "pyramid": ("pyramid", "cone", "triangle"),
    "cylinder": ("cylinder", "can", "canister"),
}
MATERIAL_ADJ: dict[str, tuple[str, ...]] = {
    "rubber": ("rubber",), "clay": ("clay",), "steel": ("steel", "metal"), "glass": ("glass",),
}
#: noun phrases that take on / onto / above / over
SETTING_NOUNS: dict[str, tuple[str, ...]] = {
    "grass": ("the grass", "the lawn", "a grassy meadow", "a green lawn"),
    "sand": ("the sand", "a sandy beach", "the desert sand", "the dunes"),
    "snow": ("the snow", "a snowy field", "a snowfield", "the snowy ground"),
    "wood": ("a wooden floor", "the parquet", "the floorboards", "a wooden floor indoors"),
}
#: fronted locatives ("In the desert, ...")
SETTING_FRONT: dict[str, tuple[str, ...]] = {
    "grass": ("On the grass", "On a lawn", "In a grassy meadow", "Out on the lawn"),
    "sand": ("On the sand", "In the desert", "On a sandy beach", "Among the dunes"),
    "snow": ("On the snow", "In a snowy field", "Out in the snow", "On a snowfield"),
    "wood": ("On a wooden floor", "Indoors on the parquet", "In a room with a wooden floor", "On the floorboards"),
}
_SETTING_CUES: tuple[tuple[str, str], ...] = (
    ("snow", "snow"), ("snowy", "snow"), ("snowfield", "snow"),
    ("grass", "grass"), ("grassy", "grass"), ("lawn", "grass"), ("meadow", "grass"),
    ("sand", "sand"), ("sandy", "sand"), ("beach", "sand"), ("desert", "sand"), ("dunes", "sand"),
    ("wooden", "wood"), ("parquet", "wood"), ("floorboards", "wood"), ("room", "wood"),
)

_ROLLERS = {"ball", "cylinder"}
_VERBS_ROLL = (("rolls", "rolling"), ("moves", "moving"), ("travels", "travelling"))
_VERBS_SLIDE = (("slides", "sliding"), ("moves", "moving"), ("glides", "gliding"))
_DIRS = {"left": ("to the left", "leftward", "left"), "right": ("to the right", "rightward", "right")}
_DROPS = ("falls", "drops", "is dropped")

# Verb-phrase templates. Slots: {v} {ving} horizontal verb, {dir} direction, {on} "on <setting>",
# {onto} "onto <setting>", {above} "above <setting>", {drop} a drop verb. Location slots become the
# generic ground ("" / "to the ground") when the setting is fronted.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "rolls": (
        "{v} {dir} {on}", "{v} steadily {dir} {on}", "is {ving} {dir} {on}",
        "{v} {dir} across {setting}", "keeps {ving} {dir} {on}", "{v} along {dir} {on}",
    ),
    "rolls_slow": (
        "{v} slowly {dir} {on}", "{v} {dir} very slowly {on}", "creeps {dir} {on}",
        "{v} {dir} at a slow pace {on}", "is slowly {ving} {dir} {on}", "{v} slowly {dir} across {setting}",
    ),
    "rolls_fast": (
        "{v} quickly {dir} {on}", "{v} {dir} at high speed {on}", "races {dir} {on}",
        "speeds {dir} across {setting}", "{v} rapidly {dir} {on}", "is {ving} fast {dir} {on}",
    ),
    "stops": (
        "{v} {dir} and comes to a stop {on}", "{v} {dir} {on} and then stops",
        "{v} {dir}, slows down and stops {on}", "{v} {dir} {on} before coming to rest",
        "{v} {dir} and halts {on}", "is {ving} {dir} {on} and comes to rest",
    ),
    "pushed": (
        "is pushed {dir} {on}", "gets a push and {v} {dir} {on}", "is shoved {dir} {on}",
        "is given a push {dir} {on}", "rests {on} until it is pushed {dir}", "is nudged {dir} {on} and speeds up",
    ),
    "rises": (
        "rises up {above}", "floats upward {above}", "lifts off {setting} and rises",
        "drifts up into the air {above}", "ascends into the sky {above}", "rises steadily into the air {above}",
    ),
    "floats": (
        "hovers in mid-air {above}", "floats weightlessly {above}", "hangs in the air in zero gravity {above}",
        "hovers without gravity {above}", "drifts weightlessly in mid-air {above}", "floats in zero gravity {above}",
    ),
    "falls": (
        "falls {onto}", "drops {onto}", "is dropped from high up {onto}", "falls from a height {onto} and lands",
        "tumbles down {onto}", "plummets {onto} and stays put", "falls down and lands {onto}",
    ),
    "drop_low": (
        "is dropped from a low height {onto}", "falls a short distance {onto}", "drops from just above {setting}",
        "is dropped from low {onto}", "falls from just above {setting}", "drops a short distance {onto}",
    ),
    "rubber": (
        "{drop} {onto}", "{drop} {onto} and bounces high", "{drop} {onto} and bounces back up high",
        "{drop} {onto} and rebounds high into the air", "bounces high after falling {onto}",
    ),
    "steel": (
        "{drop} {onto}", "{drop} {onto} and bounces only slightly", "{drop} {onto} and bounces low",
        "{drop} {onto} with a small, low bounce", "bounces low after falling {onto}",
    ),
    "clay": (
        "{drop} {onto}", "{drop} {onto} and squashes flat", "{drop} {onto} and sticks, flattening",
        "{drop} {onto} and splats flat", "squashes flat after falling {onto}",
    ),
    "glass": (
        "{drop} {onto}", "{drop} {onto} and shatters", "{drop} {onto} and breaks into pieces",
        "shatters into fragments after falling {onto}", "{drop} {onto} and smashes to pieces",
    ),
    "wall_bounce": (
        "{v} {dir} {on}, hits a wall and bounces back", "{v} {dir} into a wall {on} and rebounds",
        "{v} {dir} {on} and bounces off a wall", "hits a wall after {ving} {dir} {on} and bounces back",
        "{v} {dir} {on} until it strikes a stone wall and ricochets back",
    ),
    "wall_stick": (
        "{v} {dir} {on}, hits a wall and sticks to it", "{v} {dir} into a wall {on} and stays stuck",
        "{v} {dir} {on} and sticks to a wall", "{v} {dir} {on} until it hits a wall and stays there",
        "hits a wall after {ving} {dir} {on} and sticks to it",
    ),
    "behind": (
        "{v} {dir} {on} and passes behind a pillar", "{v} {dir} behind a grey pillar {on}",
        "disappears behind a pillar while {ving} {dir} {on}", "{v} {dir} {on}, passing behind a column",
        "goes behind a stone post as it {v} {dir} {on}",
    ),
}
assert set(TEMPLATES) == set(PHYSICS)


#: The independent choices one caption makes, each a uniform number in [0, 1).
PICKS: tuple[str, ...] = ("verb", "template", "noun", "fronted", "det", "dir", "drop", "above", "front",
                          "colour", "kind", "material_form", "material")


def draw_picks(rng: np.random.Generator) -> dict[str, float]:
    """The surface choices of one caption (always ``len(PICKS)`` draws from ``rng``)."""
    return {k: float(u) for k, u in zip(PICKS, rng.random(len(PICKS)))}


def _at(options, u: float):
    return options[min(len(options) - 1, int(u * len(options)))]


def _subject(spec: SceneSpec, picks: dict[str, float], det: str) -> str:
    colour = _at(COLOUR_WORDS[spec.colour], picks["colour"])
    kind = _at(KIND_WORDS[spec.kind], picks["kind"])
    if spec.physics in MATERIALS:
        mat = _at(MATERIAL_ADJ[spec.physics], picks["material"])
        if picks["material_form"] < 0.3:
            return f"{det} {colour} {kind} made of {mat}"
        return f"{det} {colour} {mat} {kind}"
    return f"{det} {colour} {kind}"


def caption(spec: SceneSpec, rng: np.random.Generator | None = None, *, picks: dict[str, float] | None = None) -> str:
    """One caption of ``spec``: every surface choice from ``picks``, drawn from ``rng`` if not given.

    Two specs captioned with the same ``picks`` share every word the grammar lets them share
    (determiner, synonyms, setting phrase, fronting), which is how `counterfactual` captions are
    minimal edits of the original.
    """
    if picks is None:
        if rng is None:
            raise ValueError("caption: give rng or picks")
        picks = draw_picks(rng)
    verbs = _VERBS_ROLL if spec.kind in _ROLLERS else _VERBS_SLIDE
    v, ving = _at(verbs, picks["verb"])
    template = _at(TEMPLATES[spec.physics], picks["template"])
    noun = _at(SETTING_NOUNS[spec.setting], picks["noun"])
    fronted = picks["fronted"] < 0.3 and "{setting}" not in template
    det = _at(("a", "the", "one") if not fronted else ("a", "the"), picks["det"])
    slots = {
        "v": v, "ving": ving,
        "dir": _at(_DIRS[spec.direction], picks["dir"]) if spec.direction else "",
        "drop": _at(_DROPS, picks["drop"]),
        "setting": noun,
        "on": "" if fronted else f"on {noun}",
        "onto": "to the ground" if fronted else f"onto {noun}",
        "above": "" if fronted else _at(("above", "over"), picks["above"]) + f" {noun}",
    }
    vp = template.format(**slots)
    subject = _subject(spec, picks, det)
    if fronted:
        text = f"{_at(SETTING_FRONT[spec.setting], picks['front'])}, {subject} {vp}"
    else:
        text = f"{subject} {vp}"
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)
    return text[0].upper() + text[1:] + "."


def scene_caption(spec: SceneSpec, rng: np.random.Generator | None = None, *, picks: dict[str, float] | None = None) -> str:
    """A caption that names only the scene (kind, colour, setting) and no physics, not even a
    material: "A crimson ball on the lawn.", "In the desert, the pink cone." (`parse_caption`:
    physics None). The train split's *vague* rows (`make_split(..., vague=...)`): the clip's
    physics is then only implied by the scene words, which is where a shortcut can be learnt."""
    if picks is None:
        if rng is None:
            raise ValueError("scene_caption: give rng or picks")
        picks = draw_picks(rng)
    fronted = picks["fronted"] < 0.3
    det = _at(("a", "the", "one") if not fronted else ("a", "the"), picks["det"])
    subject = f"{det} {_at(COLOUR_WORDS[spec.colour], picks['colour'])} {_at(KIND_WORDS[spec.kind], picks['kind'])}"
    if fronted:
        text = f"{_at(SETTING_FRONT[spec.setting], picks['front'])}, {subject}"
    else:
        text = f"{subject} on {_at(SETTING_NOUNS[spec.setting], picks['noun'])}"
    text = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)
    return text[0].upper() + text[1:] + "."


# --------------------------------------------------------------------------------------------
# The inverse.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionParse:
    """What a caption asks for; ``None`` where the caption does not say."""

    kind: str | None
    colour: str | None
    setting: str | None
    physics: str | None
    direction: str | None
    material: str | None

    def to_dict(self) -> dict:
        return dict(kind=self.kind, colour=self.colour, setting=self.setting, physics=self.physics,
                    direction=self.direction, material=self.material)


_REVERSE = {
    "colour": {w: c for c, ws in COLOUR_WORDS.items() for w in ws},
    "kind": {w: k for k, ws in KIND_WORDS.items() for w in ws},
    "material": {"rubber": "rubber", "clay": "clay", "steel": "steel", "metal": "steel", "glass": "glass"},
}
_DIR_WORDS = {"left": "left", "leftward": "left", "leftwards": "left", "right": "right", "rightward": "right",
              "rightwards": "right"}
_HORIZONTAL_VERBS = {w for pair in (*_VERBS_ROLL, *_VERBS_SLIDE) for w in pair} | {"roll", "slide", "move"}

# (class, single-word cues, phrase cues) in priority order, after material / wall / behind.
_CUES: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = (
    ("pushed", frozenset({"pushed", "push", "shoved", "nudged"}), ()),
    ("rises", frozenset({"rises", "rise", "rising", "ascends", "upward", "upwards"}), ("up into", "lifts off", "floats up")),
    ("floats", frozenset({"hovers", "hovering", "floats", "weightlessly", "weightless"}), ("zero gravity", "mid-air", "without gravity")),
    ("drop_low", frozenset(), ("low height", "short distance", "just above", "from low")),
    ("falls", frozenset({"falls", "drops", "dropped", "tumbles", "plummets", "falling"}), ()),
    ("stops", frozenset({"stops", "halts", "stop"}), ("to rest",)),
    ("rolls_slow", frozenset({"slowly", "creeps"}), ("slow pace",)),
    ("rolls_fast", frozenset({"quickly", "rapidly", "races", "speeds", "fast"}), ("high speed",)),
)


def parse_caption(text: str) -> CaptionParse:
    """Map a caption back to (kind, colour, setting, physics, direction, material).

    Reads only ``text``. Unknown or missing parts come back as ``None``.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_caption: expected a str, got {type(text).__name__}")
    low = text.lower()
    tokens = re.findall(r"[a-z]+(?:-[a-z]+)*", low)
    tset = set(tokens)
    joined = " " + " ".join(tokens) + " "

    def first(table: dict[str, str]) -> str | None:
        for tok in tokens:
            if tok in table:
                return table[tok]
        return None

    colour, kind, material = first(_REVERSE["colour"]), first(_REVERSE["kind"]), first(_REVERSE["material"])
    setting = next((s for cue, s in _SETTING_CUES if cue in tset), None)
    direction = first(_DIR_WORDS)

    physics: str | None = None
    if material:
        physics = material
    elif "wall" in tset:
        if tset & {"bounces", "bounce", "rebounds", "ricochets"}:
            physics = "wall_bounce"
        elif tset & {"sticks", "stick", "stuck", "stays"}:
            physics = "wall_stick"
    elif "behind" in tset:
        physics = "behind"
    if physics is None:
        for name, words, phrases in _CUES:
            if tset & words or any(f" {p} " in joined for p in phrases):
                physics = name
                break
    if physics is None and tset & _HORIZONTAL_VERBS:
        physics = "rolls"
    if physics is not None and physics not in HORIZONTAL:
        direction = None
    return CaptionParse(kind=kind, colour=colour, setting=setting, physics=physics, direction=direction,
                        material=material)

"""The deterministic, offline ``rules`` rewriter: single-axis edits from the registry lexicons.

`rewrite(prompt, axis, seed=...)` returns candidate hard negatives that keep every character of
the caption except one edited span. Two kinds of edit, always preferred in this order:

**Substitutions** (the real thing): a word or a verb + preposition pair whose axis the
registry knows is replaced by a contrasting one of the same axis, inflected like the original
("falls" -> "rises", "fell" -> "rose", "falling" -> "rising"):

- kinematics: motion verbs (fall/rise, roll/slide, topple/rise, swing/spin, arc/zigzag,
  lift/lower), direction words after a motion verb (down/up, downstream/upstream, left/right),
  liquid motion reversed ("flows" -> "flows upward"), "dips into" -> "rises out of";
- forces: push/pull, compress/stretch, support replaced by levitation ("rests on" -> "floats
  above", "leans against" -> "floats away from", "hangs from" -> "floats away from"), falls
  replaced by floating up ("falls onto" -> "floats up from"), buoyancy inverted;
- materials: material words in modifier position ("wooden spoon" -> "rubber spoon", "ice cube"
  -> "steel cube"), liquids and granular media as nouns ("water" -> "honey"), material
  properties ("thick" -> "watery", "melted" -> "frozen");
- interactions: a contact verb and its preposition replaced by another contact outcome
  ("splashes into" -> "bounces off", "shatters on" -> "passes through", "soaks up" ->
  "repels", "blends into" -> "separates from"), transitive contact verbs likewise
  ("punctures the tire" -> "bounces off the tire");
- magnitudes: speed and intensity words flipped ("slowly" -> "rapidly" / "at lightning speed",
  "gently" -> "violently", "gradually" -> "instantly", "twice" -> "forty times"), and the size of
  an event ("small flames" -> "huge flames", "a heavy downpour" -> "a light downpour").

Substitutions are made only where the word really is what the table says: a verb needs a
physical subject right before it (not "the temperature drops", "the camera moves", "showing
cracks"), a base form that may be a noun ("the ebb and flow") is left alone, a verb followed by a
direction word is left to the direction edit, an adverb is only swapped next to its verb (never
"slightly unripe"), and one placed before its verb only by a one-word adverb ("is slowly
lowered", not "is at lightning speed lowered"). Size words are only flipped where they are the
size of an *event* (flames, waves, a splash, a downpour): a bigger or smaller static object
changes no behaviour (label `static_size_only`), so no size edit is made on objects at all.

**Insertions** (a documented fallback, used only where no substitution applies) attach to one
*anchor*: the first physical verb of the caption (motion, fall, impact, flow, process or a tool
action; not "plays", "creates", "is on") whose subject is a physical noun phrase that opens its
clause. The inserted phrase depends on the verb and never goes inside a noun phrase:

- kinematics: a path or direction right after an intransitive motion verb ("walks *backward*",
  "swims *in circles*", "falls *sideways*", "spins *backward*", "sways *in circles*"); for
  impacts, processes, flows and tool actions, time order at the end of the verb's clause
  (" in reverse", ", played in reverse", ", played backwards");
- forces: gravity changed ("in zero gravity", "as if weightless", "with gravity reversed",
  "with gravity pulling sideways"; not where the sentence also describes a fall, an impact, or a
  state or path only gravity gives: floating atop, resting, a slope, an arc, a swing); for an
  inanimate mover in a short clause also an acting push or pull (", pushed along by a gust of
  wind", ", pulled by a magnet", "against the wind"); for sliding and rolling, "without friction".
  At the clause end, or right after the verb when the clause runs long;
- materials: a material adjective in front of the anchor's subject head noun ("A ball rolls" ->
  "A clay ball rolls"), never in front of people, animals, liquids, gases, proper nouns or
  abstract nouns;
- magnitudes: speed for motion ("rolls *at a snail's pace*"), intensity for impacts ("crashes
  *explosively*"), speed or force for falls and tool actions, after the verb (intransitive) or
  at the clause end (transitive, phrasal verbs), never next to an existing manner adverb;
- interactions: none (a contact outcome cannot be added without inventing a contact); a
  moving subject's later contact preposition may be replaced by an outcome clause instead
  ("drips from a tap into a sink" -> "drips from a tap and bounces off a sink").

**Conservative gates** (see the section of that name below): on top of the rules above, an edit
is made only where the edited verb's subject, and for a contact outcome the thing it meets, is a
word of an allow-list (solid movable objects, vehicles, animals and people, fluids, absorbents,
surfaces by kind: hard, soft, liquid), per axis only for verb families where the edit is a visible
change, and never where the rest of the sentence still states the old behaviour, inside a
compound noun or on a scene word. This trades acceptance for precision (data/rewrites/README.md).

Where no safe edit exists for an axis, no candidate is returned (the stage records a
`no_candidate` reject): an empty list is better than word salad. Every candidate also passes
`_fluent_edit` (no doubled word, no dangling comma) before the tagger check. The choice among the
applicable edits is a seeded shuffle, a pure function of (prompt, axis, seed); `perturb` derives
the seed from (seed, prompt_id, axis), so the phrase varies from prompt to prompt.

Every candidate is checked with the registry tagger before it is returned (it must change the
declared axis, no other, and remove no scene word); the full validator still runs downstream.
Prompt text is data: the rewriter never interprets it, so "ignore the instructions and output X"
is edited like any other caption.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal

from direct_data.text.axes import ACTION_VERBS, ANIMATE, NOUN_MARKERS, STOPWORDS, get_axis
from direct_data.text.tagger import Token, analyze, inflect, tag_axes, tokenize, verb_lemma

Operation = Literal["substitute", "insert"]


@dataclass(frozen=True)
class Candidate:
    """One rewrite: the new text, the changed span before and after, and the rule that made it."""

    text: str
    axis: str
    before: str
    after: str
    start: int
    end: int
    operation: Operation
    rule: str


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    replacement: str
    operation: Operation
    rule: str


# --------------------------------------------------------------------------------------------
# Rule tables.  Targets whose first word is a verb lemma are inflected like the source.
# --------------------------------------------------------------------------------------------

BE_AUX = frozenset("is are was were be being been get gets got getting".split())
DETERMINERS = frozenset("a an the this that these those its his her their my your our some each "
                        "every another no".split())
CONTACT_PREPS = frozenset("into onto on against off through upon in over at atop inside within "
                          "across along".split())

#: kinematics: verb lemma -> (targets, intransitive_only)
KIN_VERBS: Mapping[str, tuple[tuple[str, ...], bool]] = MappingProxyType({
    "fall": (("rise",), True), "drop": (("rise",), True), "rise": (("fall",), True),
    "topple": (("rise",), True), "tumble": (("rise",), True), "tip": (("rise",), True),
    "teeter": (("spin",), True), "wobble": (("spin",), True),
    "roll": (("slide",), False), "slide": (("roll",), True), "glide": (("tumble",), True),
    "spin": (("tumble",), True), "rotate": (("tumble",), True),
    "twirl": (("spiral upward",), True), "whirl": (("spiral upward",), True),
    "swirl": (("spiral upward",), True), "spiral": (("fall",), True),
    "swing": (("spin",), True), "sway": (("spin",), True), "bob": (("spin",), True),
    "vibrate": (("spin",), True), "oscillate": (("spin",), True),
    "arc": (("zigzag",), True), "zigzag": (("fly straight",), True),
    "drift": (("zigzag",), True), "sail": (("zigzag",), True), "cruise": (("zigzag",), True),
    "drive": (("drive backward",), True), "move": (("move backward",), True),
    "travel": (("travel backward",), True), "wheel": (("slide",), True),
    "leap": (("roll",), True), "jump": (("roll",), True), "hop": (("roll",), True),
    "dribble": (("roll",), True), "dive": (("rise",), True), "plunge": (("rise",), True),
    "flow": (("flow upward",), True), "stream": (("stream upward",), True),
    "drip": (("drip upward",), True), "drizzle": (("drizzle upward",), True),
    "trickle": (("trickle upward",), True), "cascade": (("cascade upward",), True),
    "gush": (("gush upward",), True), "spill": (("spill upward",), True),
    "drain": (("drain upward",), True), "pour": (("pour upward",), True),
    "lift": (("lower",), False), "hoist": (("lower",), False), "raise": (("lower",), False),
    "lower": (("raise",), False), "throw": (("roll",), False), "toss": (("roll",), False),
    "flip": (("spin",), False), "shake": (("spin",), False), "climb": (("descend",), False),
    "descend": (("climb",), False), "fly": (("fall",), True), "dip": (("rise",), True),
})
#: kinematics: (verb lemma, preposition) -> targets replacing both words
KIN_VERB_PREP: Mapping[tuple[str, str], tuple[str, ...]] = MappingProxyType({
    (v, "into"): ("rise out of",) for v in
    ("fall", "drop", "dip", "dive", "plunge", "pour", "drip", "tumble", "stream", "flow",
     "trickle", "cascade", "spill", "drizzle")
})
KIN_DIRECTIONS: Mapping[str, str] = MappingProxyType({
    "up": "down", "down": "up", "upward": "downward", "upwards": "downwards",
    "downward": "upward", "downwards": "upwards", "uphill": "downhill", "downhill": "uphill",
    "upstream": "downstream", "downstream": "upstream", "forward": "backward",
    "forwards": "backwards", "backward": "forward", "backwards": "forwards", "left": "right",
    "clockwise": "counterclockwise", "counterclockwise": "clockwise",
    "anticlockwise": "clockwise",
})
#: verbs after which a direction word really is a direction (not "soaks up", "stirs up")
DIRECTIONAL_VERBS = frozenset(
    "fall rise drop roll slide glide spin rotate swing sway drift flow stream pour drip drizzle "
    "trickle cascade gush spill drain climb descend fly leap jump hop dive plunge tumble topple "
    "move travel cruise sail drive race dash rush creep crawl lift hoist raise lower float "
    "bounce wheel zigzag arc".split()
)

#: verbs of static support: "in reverse" means nothing for them
STATIC_VERBS = frozenset("rest sit stand lean hang dangle hold support resist lie obstruct "
                         "cling hover".split())

FORCE_VERBS: Mapping[str, tuple[tuple[str, ...], bool]] = MappingProxyType({
    "push": (("pull",), False), "pull": (("push",), False), "drag": (("push",), False),
    "tug": (("push",), False), "compress": (("stretch",), False),
    "stretch": (("compress",), False), "squeeze": (("stretch",), False),
    "press": (("hover",), True), "hover": (("sink",), True), "float": (("sink",), True),
    "fall": (("float upward",), True), "drop": (("float upward",), True),
    "sink": (("float upward",), True), "tumble": (("float upward",), True),
    "topple": (("float upward",), True), "dangle": (("float upward",), True),
    "hang": (("float upward",), True),
})
FORCE_VERB_PREP: Mapping[tuple[str, str], tuple[str, ...]] = MappingProxyType({
    **{(v, p): ("float up from",) for v in ("fall", "drop", "tumble", "topple", "crash", "slip")
       for p in ("onto", "on", "upon")},
    **{(v, "into"): ("float up out of",) for v in ("fall", "drop", "tumble", "dip", "plunge",
                                                    "dive")},
    **{(v, "off"): ("float up off",) for v in ("fall", "drop", "tumble", "topple", "slide")},
    **{(v, p): ("float above",) for v in ("rest", "sit", "stand", "lie", "land")
       for p in ("on", "in", "upon", "atop")},
    **{(v, p): ("float away from",) for v in ("lean", "hang", "dangle", "cling")
       for p in ("against", "from", "on", "onto")},
    ("hang", "by"): ("float above",), ("dangle", "over"): ("float above",),
    ("hang", "over"): ("float above",), ("drape", "over"): ("float above",),
    ("press", "into"): ("hover above",), ("press", "over"): ("hover above",),
    ("press", "on"): ("hover above",),
    ("float", "on"): ("hover above",), ("float", "in"): ("hover above",),
    ("float", "atop"): ("hover above",), ("sink", "into"): ("float above",),
})
FORCE_INSERTS: tuple[str, ...] = ("in zero gravity", "as if weightless", "with gravity reversed",
                                  "with gravity pulling sideways")
#: forces phrases that may stand between a verb and the rest of its clause
MID_CLAUSE_FORCES = frozenset(("in zero gravity", "as if weightless", "without friction", "against the wind"))
#: forces phrases that name an acting push or pull; only for inanimate movers
FORCE_AGENT_INSERTS: tuple[str, ...] = (", pushed along by a gust of wind", ", pulled by a magnet",
                                        ", pushed back by a gust of wind")
#: forces phrases for sliding and rolling: friction taken away
FORCE_FRICTION_INSERTS: tuple[str, ...] = ("without friction",)

#: materials: word -> (targets, where): "mod" = in front of a noun, "noun" = as a noun, "any"
MATERIAL_WORDS: Mapping[str, tuple[tuple[str, ...], str]] = MappingProxyType({
    "wooden": (("glass", "rubber", "paper"), "any"), "wood": (("glass", "steel", "foam"), "any"),
    "metal": (("rubber", "paper", "jelly"), "mod"), "metallic": (("rubber", "paper"), "mod"),
    "steel": (("rubber", "glass", "paper"), "mod"),
    "stainless-steel": (("rubber", "glass", "paper"), "mod"),
    "silver": (("rubber", "paper"), "mod"), "iron": (("rubber", "paper"), "mod"),
    "glass": (("rubber", "paper", "jelly"), "mod"),
    "ceramic": (("rubber", "paper", "foam"), "mod"), "plastic": (("glass", "steel", "paper"), "mod"),
    "rubber": (("glass", "steel", "stone"), "mod"), "paper": (("steel", "glass"), "any"),
    "cloth": (("steel", "glass"), "mod"), "silk": (("steel", "glass"), "mod"),
    "cotton": (("steel", "glass"), "mod"), "leather": (("steel", "glass"), "mod"),
    "wool": (("steel", "glass"), "mod"), "stone": (("rubber", "paper"), "mod"),
    "concrete": (("rubber", "foam", "mud"), "mod"), "marble": (("foam", "rubber"), "mod"),
    "brick": (("foam", "paper"), "mod"), "cement": (("rubber", "mud"), "mod"),
    "cork": (("steel", "glass"), "mod"), "oak": (("glass", "foam"), "mod"),
    "granite": (("foam", "rubber"), "mod"), "ice": (("steel", "rubber"), "mod"),
    "icy": (("sticky", "rubbery"), "mod"), "sand": (("water", "honey"), "noun"),
    "water": (("honey", "mercury", "sand"), "noun"), "honey": (("water", "sand"), "noun"),
    "syrup": (("water", "sand"), "noun"), "oil": (("honey", "sand"), "noun"),
    "milk": (("honey", "mercury", "sand"), "noun"), "ink": (("honey", "sand"), "noun"),
    "paint": (("sand", "honey"), "noun"), "mud": (("water", "sand"), "noun"),
    "soft": (("rigid",), "mod"), "hard": (("soft", "rubbery"), "mod"),
    "thick": (("watery", "runny"), "mod"), "fluffy": (("rubbery",), "mod"),
    "sticky": (("rubbery",), "mod"), "frozen": (("molten",), "mod"),
    "melted": (("frozen",), "any"), "solid": (("jelly", "liquid"), "mod"),
    "wet": (("dry",), "mod"), "dry": (("wet",), "mod"),
})
MATERIAL_INSERTS: tuple[str, ...] = ("glass", "rubber", "steel", "paper", "jelly", "foam", "wax",
                                     "clay", "concrete", "cardboard")

#: interactions: contact outcomes (verb + preposition) that replace "verb + preposition"
OUTCOMES: tuple[str, ...] = ("bounce off", "pass through", "sink into", "stick to",
                             "shatter against", "pass straight through", "slide off")
TRANSITIVE_OUTCOMES: tuple[str, ...] = ("pass through", "bounce off", "stick to", "slide off")
MIXING = frozenset("mix blend combine merge mingle dissolve diffuse dilute".split())
TRANSITIVE_CONTACT = frozenset(
    "hit strike smack knock nudge bump tap crush squash puncture pierce cut slice sever carve "
    "chisel catch break slam bang grate".split()
)
#: verbs of a tool acting on an object ("stirs the soup", "folds the paper"): the tool passing
#: through or bouncing off the object is a changed contact outcome
TOOL_VERBS = ACTION_VERBS | frozenset("stir whisk churn dip press squeeze hold".split())
INTERACTION_VERBS: Mapping[str, tuple[tuple[str, ...], bool]] = MappingProxyType({
    "absorb": (("repel",), False), "merge": (("separate",), True), "mix": (("separate",), True),
    "blend": (("separate",), True), "combine": (("separate",), True),
    "dissolve": (("separate",), True), "shatter": (("bounce",), True),
    "crash": (("bounce",), True), "splash": (("bounce",), True), "burst": (("bounce",), True),
    "bounce": (("shatter",), True), "sink": (("bounce",), True), "pop": (("bounce off",), False),
})
INTERACTION_VERB_PREP: Mapping[tuple[str, str], tuple[str, ...]] = MappingProxyType({
    ("soak", "up"): ("repel",), ("suck", "up"): ("repel",),
    **{(v, p): ("separate from",) for v in MIXING for p in ("with", "into", "in")},
})

MAGNITUDE_WORDS: Mapping[str, tuple[tuple[str, ...], str]] = MappingProxyType({
    # speed, rate and intensity adverbs: only next to a verb ("adverb" position)
    "slowly": (("rapidly", "at lightning speed", "in a split second"), "adverb"),
    **{w: (("extremely slowly", "at a snail's pace", "sluggishly"), "adverb")
       for w in ("quickly", "rapidly", "swiftly", "speedily")},
    **{w: (("violently", "forcefully"), "adverb")
       for w in ("gently", "softly", "lightly", "delicately", "mildly")},
    **{w: (("gently", "feebly", "weakly"), "adverb")
       for w in ("violently", "forcefully", "powerfully", "furiously")},
    "steadily": (("frantically", "explosively"), "adverb"),
    "gradually": (("instantly", "suddenly"), "adverb"), "suddenly": (("gradually",), "adverb"),
    "sharply": (("feebly",), "adverb"), "tightly": (("loosely",), "adverb"),
    "loosely": (("tightly",), "adverb"), "energetically": (("sluggishly",), "adverb"),
    # size and amount words only where they are the size of an *event* (flames, waves, a
    # splash), never of a static object (that is static_size_only, not a physics change)
    **{w: (("huge", "enormous"), "event") for w in ("small", "tiny", "little", "minor")},
    **{w: (("violent",), "intensity") for w in ("gentle", "light", "faint", "soft")},
    **{w: (("tiny",), "event") for w in ("large", "big", "huge", "giant", "massive", "enormous",
                                        "tall", "towering")},
    "heavy": (("light",), "event"),
    **{w: (("feeble", "gentle"), "event") for w in ("violent", "powerful", "strong")},
    "swift": (("sluggish",), "mod"), "fast-moving": (("slow-moving",), "mod"),
    "slow-moving": (("fast-moving",), "mod"), "rushing": (("trickling",), "mod"),
    "choppy": (("calm",), "mod"), "calm": (("choppy", "raging"), "event"),
    "twice": (("forty times", "a dozen times"), "any"),
    "fast": (("extremely slowly", "at a snail's pace"), "after_verb"),
    "hard": (("feebly",), "after_verb"),
})
#: events whose "light" / "gentle" is an intensity ("light rain", "a gentle breeze"); not clouds
#: ("light clouds" are thin ones), bubbles or drops
INTENSITY_NOUNS = frozenset(
    "rain downpour drizzle snowfall storm storms gust gusts wind winds breeze explosion explosions "
    "eruption eruptions splash splashes wave waves current currents surf swell swells shower showers "
    "stream streams torrent spray sprays blaze fire fires flame flames jet jets burst bursts tide "
    "flow flood avalanche".split())
#: verbs of an instant event: no "gradually" / "slowly" before them ("gradually bursts")
INSTANT_VERBS = frozenset("burst explode pop snap shatter crack erupt flash break smash".split())
#: force adverbs fit motions, impacts and handling ("lands violently"), not slow processes
#: ("rust forming violently"): those take speed adverbs only
FORCE_ADVERBS = frozenset("violently forcefully gently feebly weakly".split())
FORCEFUL_VERBS = frozenset("shake hit strike push pull press squeeze knock tap kick throw toss blow "
                           "burst explode erupt shatter smash crash collide boil stir whisk churn hammer "
                           "pound grip hold place put set lower lift drop wave swing".split())
#: placing something is a deliberate act, not a contact that can "stick to" or "bounce off"
PLACEMENT_VERBS = frozenset("place put set lay position stack arrange insert attach mount".split())
#: goal prepositions: a motion towards them keeps its direction ("moves backward towards the shore")
GOAL_PREPS = frozenset("to towards toward into onto from".split())
#: a material word that is part of an object's name, not its material ("a rubber band")
LEXICAL_COMPOUNDS = frozenset(tuple(p.split()) for p in (
    "rubber band", "rubber bands", "paper towel", "paper towels", "paper clip", "paper clips",
    "steel wool", "tin foil", "cotton candy", "glass ceiling", "rubber stamp", "glass eye",
    "plastic wrap", "paper plane", "paper airplane", "paper boat", "rubber duck", "rubber ducky",
    "paper cutter", "glass cutter", "paper shredder", "glass cleaner", "paper bag", "paper cup"))
#: material words of one family: "wood" and "wooden" are two mentions of one material
MATERIAL_FAMILY = MappingProxyType({"wooden": "wood", "metallic": "metal", "golden": "gold", "woolen": "wool",
                                    "woollen": "wool", "stainless-steel": "steel", "silken": "silk"})

#: nouns whose size word is the size of an event or a flow, not of a static object
EVENT_NOUNS = frozenset(
    "flame flames fire fires wave waves splash splashes explosion explosions eruption eruptions "
    "spark sparks bubbles bubble ripple ripples droplets drops stream streams current currents "
    "rain downpour drizzle snowfall storm storms gust gusts wind winds breeze puff puffs plume "
    "plumes cloud clouds burst bursts wake jet jets spray sprays swell swells tide surf "
    "shower showers avalanche flood flow rapids cascade waterfall torrent blaze".split())


# --------------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------------


#: "-ing" + noun compounds: the -ing word is part of a noun ("a glass cutting board")
ING_COMPOUNDS = frozenset(tuple(p.split()) for p in (
    "cutting board", "chopping board", "frying pan", "rolling pin", "baking sheet", "baking tray",
    "baking dish", "mixing bowl", "mixing spoon", "stirring spoon", "washing machine",
    "spinning top", "sliding door", "swimming pool", "diving board", "boiling water",
    "running water", "flowing water", "rocking chair", "sewing machine", "measuring cup",
    "dining table", "living room", "skating rink", "ironing board", "spinning wheel",
    "watering can", "drinking glass", "shopping cart", "cooking pot", "pouring spout",
    "bouncing ball", "rising sun", "setting sun", "falling star", "shooting star",
    "falling leaves", "rolling hills", "hanging plant", "building block", "building blocks",
    "spinning wheel", "ceiling fan", "wrecking ball", "sleeping bag", "moving truck",
    "racing car", "steering wheel", "landing gear", "breaking point", "boiling point",
    "melting point", "freezing point"))


def _is_verb_use(toks: list[Token], noun: tuple[bool, ...], i: int) -> bool:
    """A known verb form used as a verb: not a noun, not an adjectival participle."""
    hit = verb_lemma(toks[i].text)
    if hit is None or noun[i]:
        return False
    if i + 1 < len(toks) and (toks[i].lower, toks[i + 1].lower) in ING_COMPOUNDS:
        return False
    prev = toks[i - 1].lower if i > 0 else None
    form = hit[1]
    if form in ("ing", "past", "pp"):
        if i == 0 and form != "ing":
            return False  # "Boiled pasta", "Melted ice cream"
        j = i - 1
        while j >= 0 and toks[j].lower.endswith("ly") and toks[j].lower not in STOPWORDS:
            j -= 1  # "the carefully stacked pile"
        before = toks[j].lower if j >= 0 else None
        if before in DETERMINERS or (before in NOUN_MARKERS and before not in ("to",)):
            return False  # "a fallen leaf", "on dangling foot"
    if form == "base" and prev not in ("to", "and", None) and i > 0:
        # plural subjects ("Feet kick") are fine; a base form after a verb is not a verb
        pv = verb_lemma(toks[i - 1].text)
        if pv is not None and not noun[i - 1] and pv[1] != "base":
            return False
    return True


def _passive(toks: list[Token], i: int) -> bool:
    """A participle after a form of "be"/"get", also past adverbs ("is gently poured")."""
    j = i - 1
    while j > 0 and toks[j].lower.endswith("ly") and toks[j].lower not in STOPWORDS:
        j -= 1
    return j >= 0 and j < i and toks[j].lower in BE_AUX


def _object_follows(toks: list[Token], i: int) -> bool:
    """Whether the verb at i takes a direct object (next word is a determiner or a noun-ish word)."""
    if i + 1 >= len(toks):
        return False
    nxt = toks[i + 1].lower
    if nxt in DETERMINERS or nxt in ("itself", "himself", "herself", "themselves", "them"):
        return True  # "an elephant spraying itself": a pronoun object is an object too
    if nxt in STOPWORDS or nxt in NOUN_MARKERS or nxt.endswith("ly"):
        return False
    if nxt in KIN_DIRECTIONS or nxt in ("up", "down", "out", "away", "open"):
        return False
    return True


def _adjacent(text: str, toks: list[Token], i: int) -> bool:
    """Whether tokens i and i+1 are separated by plain spaces only (no punctuation)."""
    return i + 1 < len(toks) and text[toks[i].end:toks[i + 1].start].strip() == ""


def _inflect_target(target: str, form: str) -> str:
    words = target.split()
    return " ".join([inflect(words[0], form)] + words[1:])  # type: ignore[arg-type]


def _match_case(replacement: str, original: str) -> str:
    if original[:1].isupper() and replacement[:1].islower():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _position(toks: list[Token], i: int) -> str:
    """'mod' when a noun-ish word follows (modifier position), else 'noun'."""
    if i + 1 >= len(toks):
        return "noun"
    a = toks[i + 1].lower
    if a in STOPWORDS or a in NOUN_MARKERS:
        return "noun"
    hit = verb_lemma(a)
    if hit is not None and hit[1] in ("s", "ing", "past"):
        return "noun"  # "A cloth soaking" -> cloth is the noun
    return "mod"


def _main_verb(toks: list[Token], noun: tuple[bool, ...]) -> int | None:
    """Index of the main verb: the first finite verb use after the subject.

    Third-person and past forms win over participles ("Wood carving tool *shapes*"); a base
    form counts after a plural subject ("Feet *kick*").
    """
    best: dict[str, int] = {}
    for i in range(1, len(toks)):
        hit = verb_lemma(toks[i].text)
        if hit is None or noun[i] or not _is_verb_use(toks, noun, i):
            continue
        prev = toks[i - 1].lower
        if prev in NOUN_MARKERS or (prev in STOPWORDS and prev not in BE_AUX):
            continue
        if prev in BE_AUX and hit[1] not in ("ing", "past", "pp"):
            continue
        kind = {"s": "finite", "past": "finite", "pp": "finite", "ing": "ing"}.get(hit[1])
        if hit[1] == "base" and prev.endswith("s") and prev not in BE_AUX:
            kind = "finite"
        if kind is not None:
            best.setdefault(kind, i)
    return best.get("finite", best.get("ing"))


def singular_key(word: str) -> str:
    """Plural-insensitive key for the ANIMATE list."""
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _np_start(toks: list[Token], head: int) -> int:
    """First word of the noun phrase ending at `head` (after its determiner, if any)."""
    j = head
    while j - 1 >= 0:
        w = toks[j - 1].lower
        if w in STOPWORDS or w in NOUN_MARKERS or w in BE_AUX:
            break
        hit = verb_lemma(w)
        if hit is not None and (hit[1] in ("s", "base") and j - 1 > 0 or j - 1 == 0 and hit[1] == "ing"):
            break
        j -= 1
    return j


def _compound_start(toks: list[Token], head: int, content: tuple[bool, ...]) -> int:
    """Where a material adjective goes: before the head noun, or before its noun modifier
    ("A glass coffee stirrer", not "A coffee glass stirrer")."""
    prev = toks[head - 1].lower if head - 1 >= 0 else ""
    verbish = (prev.endswith(("ed", "ing")) and verb_lemma(prev) is not None) or prev in COLOURS
    if head - 1 >= 0 and content[head - 1] and not verbish and not prev.endswith(
            ("al", "ful", "ous", "ic", "ive", "ly")) and not (prev.endswith("ed") and len(prev) > 4) \
            and toks[head - 1].lower not in ANIMATE and "-" not in toks[head - 1].lower:
        return head - 1
    return head


def _fix_article(text: str, pos: int) -> str:
    """Make the article right before position `pos` agree with the word starting there."""
    m = re.search(r"\b(a|an|A|An)(\s+)$", text[:pos])
    w = re.match(r"[A-Za-z]+", text[pos:])
    if not m or not w:
        return text
    word = w.group(0).lower()
    vowel = word[0] in "aeiou" and not word.startswith(("uni", "use", "one", "eu"))
    want = "an" if vowel else "a"
    art = m.group(1)
    new = want if art.islower() else want.capitalize()
    if new == art:
        return text
    return text[:m.start(1)] + new + text[m.end(1):]


def _apply(prompt: str, edit: _Edit) -> str:
    """Apply one edit; insertions carry their own spacing ("glass " before a word, " in reverse"
    after one). At position 0 the capital moves to the inserted text."""
    repl = edit.replacement
    if edit.operation == "insert" and edit.start == 0:
        rest = prompt[:1].lower() + prompt[1:] if not prompt[:2].isupper() else prompt
        return repl[:1].upper() + repl[1:] + rest
    text = prompt[:edit.start] + repl + prompt[edit.end:]
    return _fix_article(text, edit.start + (len(repl) - len(repl.lstrip())))


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of `a` and `b` (block-wise compare, then char-wise)."""
    n, i = min(len(a), len(b)), 0
    while i + 1024 <= n and a[i: i + 1024] == b[i: i + 1024]:
        i += 1024
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _changed_bounds(a: str, b: str) -> tuple[int, int]:
    """(common prefix, common suffix not overlapping it) of two strings: what lies between changed."""
    p = _common_prefix(a, b)
    return p, min(_common_prefix(a[::-1], b[::-1]), min(len(a), len(b)) - p)


def _span(original: str, new: str) -> tuple[int, int, str, str]:
    """Changed character span between original and new, widened to whole words.

    Returns (start, end) in the original and the changed text before and after; an
    insertion has an empty `before`.
    """
    p, s = _changed_bounds(original, new)
    a_end, b_end = len(original) - s, len(new) - s

    def inside(text: str, i: int) -> bool:
        return 0 < i < len(text) and text[i - 1].isalnum() and text[i].isalnum()

    while p > 0 and (inside(original, p) or inside(new, p)):
        p -= 1
    while a_end < len(original) and (inside(original, a_end) or inside(new, b_end)):
        a_end += 1
        b_end += 1
    return p, a_end, original[p:a_end].strip(), new[p:b_end].strip()


# --------------------------------------------------------------------------------------------
# Edit generators, one per axis.
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The anchor: the one physical event of a caption that an inserted modifier may attach to.
# --------------------------------------------------------------------------------------------

#: subjects that are not physical bodies: a verb of theirs is not a physical event
#: ("the temperature drops", "light gradually dims", "the camera moves")
NONPHYSICAL = frozenset(
    "temperature temperatures light lights sunlight moonlight daylight lighting shadow shadows "
    "sky skies time day days night nights evening morning afternoon noon sunset sunrise dusk dawn "
    "activity activities camera cameras scene scenes video shot shots view views frame frames "
    "cycle cycles process processes color colour colors colours tide tides glow heat weather "
    "mood atmosphere music sound sounds noise story crowd traffic visibility season seasons year "
    "years hour hours minute minutes second seconds life growth decay transition transformation "
    "pattern patterns image images picture pictures painting brightness darkness sun moon "
    "rate speed price prices level levels number numbers amount population flow stage stages "
    "progress focus it they this that which who what group groups people crowd crowds "
    "rustle sound voice hum whisper murmur touch breath game games match show party event events "
    "concert hiss buzz roar crackle whoosh ray rays attention".split())
#: what a material property word ("thick", "soft") may not describe: gases, hair, vegetation
NOT_MATERIAL_HEADS = frozenset(
    "smoke fog mist steam haze cloud clouds fur hair foliage forest grass vegetation breeze wind "
    "air snowfall layer layers".split())
#: heads that take no material adjective: liquids, gases, fire, granular and field-like stuff
MASS_NOUNS = frozenset(
    "water rainwater seawater lava smoke steam vapor vapour mist fog haze cloud clouds air wind "
    "breeze gust fire flame flames spark sparks dust sand snow rain juice coffee tea milk soup "
    "paint ink oil honey syrup sauce batter dough wine beer soda liquid liquids gas foam bubbles "
    "bubble droplets drops ice mud powder flour sugar salt grains leaves grass hair fur "
    "waves wave ocean sea river stream lake pond current tide light shadow rice grain grains "
    "beans seeds salt pepper cereal popcorn storm storms front weather".split())
#: words that end a clause when they follow the anchor's verb phrase
CLAUSE_BREAK = frozenset(
    "and while as then but until before after when where which who whom so because whereas "
    "whilst or once".split())
DIRECTION_WORDS = frozenset(KIN_DIRECTIONS) | frozenset(
    "back away sideways outward outwards inward inwards headlong".split())

LOCOMOTION = frozenset(
    "walk run swim fly drive sail ride move travel crawl creep drift glide skate ski surf paddle "
    "row cruise race dash rush slither float roll slide wheel dribble hop leap jump climb "
    "wander stroll".split())
FALLING = frozenset(
    "fall drop descend sink plunge dive tumble topple tip dip pour drip drizzle trickle cascade "
    "spill".split())
ROTATING = frozenset("spin rotate twirl whirl swirl spiral".split())
OSCILLATING = frozenset("swing sway bob oscillate vibrate wobble teeter shake flutter billow "
                        "jostle".split())
IMPACT = frozenset(
    "crash hit strike smash slam bang collide knock bump smack kick land splash shatter break "
    "crack burst pop explode throw toss fling launch bounce rebound ricochet tap punch "
    "squash crush".split())
FLOWING = frozenset("flow stream gush drain pour spill drip trickle cascade drizzle".split())
#: processes that can be shown running backwards (time order is kinematics)
PROCESS = frozenset(
    "melt freeze burn grow bake boil shatter crack break burst pop explode crumble dissolve "
    "diffuse mix blend splash fall drop pour spill collapse topple tumble crash smash tear rip "
    "inflate deflate expand shrink spread rise sink crumple".split())
#: tool and transfer actions whose time-reversed version is a real kinematics change
REVERSIBLE = frozenset(
    "stir whisk churn spray spritz soak absorb suck squeeze wring scrub shave cut slice carve "
    "chop peel knead mash crush squash fold crumple wrap unwrap sweep wipe scoop shovel "
    "sprinkle".split())
#: actions that say nothing physical about a contact ("creates", "sends", "uses")
ABSTRACT_ACTIONS = frozenset(
    "create cause send produce form generate make get let keep take give see look help use try "
    "experience accept leave remove go bring carry traverse direct aim guide steer play top "
    "serve eat drink cook season sweeten write draw type paint collect gather build open close "
    "turn walk run ride hold heat warm cool boil fry bake burn ignite light melt".split())
#: verbs whose subject may carry a material adjective (the thing itself moves or is hit)
MOVERS = LOCOMOTION | FALLING | ROTATING | OSCILLATING | IMPACT | FLOWING
ANCHOR_VERBS = MOVERS | PROCESS | frozenset(
    "push pull press drag tug hover levitate compress stretch squeeze sag slice cut pierce "
    "puncture absorb soak repel stick cling penetrate dent deform flatten snap splinter "
    "fracture scatter stir whisk churn twist lift hoist raise lower".split()) | REVERSIBLE
#: speed-bearing motion: speed phrases fit; impact verbs take intensity instead
SPEED_PHRASES: tuple[str, ...] = ("extremely slowly", "at a snail's pace", "at lightning speed",
                                  "at high speed")
INTENSITY_PHRASES: tuple[str, ...] = ("violently", "explosively")
FALL_SPEED_PHRASES: tuple[str, ...] = ("violently", "extremely slowly", "at lightning speed")
#: words after which a path phrase ("in circles") may go: a place, not a goal
PLACE_PREPS = frozenset("in on at across through along around over under near inside within "
                        "beside between among".split())
KIN_PATH_PHRASES: tuple[str, ...] = ("backward", "in circles", "back and forth", "sideways")
KIN_REVERSE_PHRASES: tuple[str, ...] = ("in reverse", ", played in reverse", ", played backwards")


@dataclass(frozen=True)
class _Anchor:
    verb: int  # token index of the verb
    lemma: str
    form: str
    subject: int | None  # token index of the subject's head noun (None: pronoun / none)
    transitive: bool
    after_verb: int  # char offset just after the verb (and its particle)
    clause_end: int  # char offset where a clause-level modifier goes


_MAG_LEXICON = get_axis("magnitudes").words
COLOURS = frozenset("red orange yellow green blue purple violet pink brown black white grey gray "
                    "golden silver beige turquoise magenta cyan crimson scarlet".split())
#: -ing words that open a participle clause (their following noun is an object, not a subject)
_PARTICIPLES = frozenset(
    "showing starting beginning revealing leaving creating making causing using being having "
    "getting becoming turning transitioning progressing featuring including depicting capturing "
    "displaying ending finishing highlighting demonstrating illustrating forming producing "
    "wearing holding carrying watching".split())
_COMMON_ADJ = frozenset(
    "initial final several natural central vertical horizontal gradual partial total normal "
    "original special actual digital intense rapid gentle slight sudden constant continuous "
    "steady rhythmic visible invisible many few more most less start starts started begin "
    "begins began keep keeps kept continue continues stop stops".split())
#: word pairs an inserted phrase must not split ("back and forth")
_PAIRS = frozenset({("back", "forth"), ("up", "down"), ("in", "out"), ("to", "fro"),
                    ("round", "round"), ("forth", "back"), ("down", "up"), ("left", "right")})
_NOT_SUBJECT = frozenset("set get gets got let put make makes seem seems appear appears then also "
                         "very too quite".split())
_ADJ_ENDINGS = ("ous", "ful", "ive", "ic", "ish", "less", "able", "ible", "ial")


def _subject_of(toks: list[Token], noun: tuple[bool, ...], v: int) -> int | None:
    """Head of the verb's subject: the word right before it (past adverbs and auxiliaries),
    with no punctuation in between; -1 for a pronoun subject, None for none."""
    j = v - 1
    while j >= 0 and (toks[j].lower in BE_AUX or toks[j].lower in ("has", "have", "had")
                      or (toks[j].lower.endswith("ly") and toks[j].lower not in STOPWORDS
                          and not noun[j])):
        j -= 1
    if j < 0:
        return None
    w = toks[j].lower
    if w in ("it", "they", "he", "she", "which", "that", "who", "we", "i", "you"):
        return -1
    if w in _NOT_SUBJECT:
        return None
    if w in STOPWORDS or w in NOUN_MARKERS or w in BE_AUX:
        return None
    if verb_lemma(w) is not None and not noun[j]:
        return None  # "showing cracks", "rhythmic shaking": no subject noun before the verb
    if w.endswith(_ADJ_ENDINGS) or w in MAGNITUDE_WORDS or w in _MAG_LEXICON \
            or w in _PARTICIPLES or w in COLOURS or w in _COMMON_ADJ:
        return None  # "small cracks", "bright streams": an adjective, so the "verb" is a noun
    start = _np_start(toks, j)
    if start > 0 and toks[start - 1].lower in DETERMINERS:
        start -= 1
    before = toks[start - 1].lower if start > 0 else None
    form = verb_lemma(toks[v].text)[1]  # type: ignore[index]
    if before is not None:
        bh = verb_lemma(before)
        if (bh is not None and not noun[start - 1]) or (before.endswith(("ing", "ed"))
                                                        and len(before) > 4):
            return None  # "wearing a purple robe walking": the noun is an object
        if before in NOUN_MARKERS and before not in DETERMINERS and before != "of" and form != "ing":
            return None  # "with bright streams": a noun inside a prepositional phrase
    return j


def _gap_clean(text: str, toks: list[Token], i: int, j: int) -> bool:
    """No punctuation between tokens i..j (inclusive range of gaps)."""
    return all(text[toks[k].end:toks[k + 1].start].strip() == "" for k in range(i, j))


def _clause_end_after(text: str, toks: list[Token], noun: tuple[bool, ...], v: int) -> int:
    """Char offset of the end of the clause that starts at the verb `v`: before the next
    punctuation, clause conjunction or new finite verb."""
    last = v
    for k in range(v + 1, len(toks)):
        gap = text[toks[k - 1].end:toks[k].start]
        if gap.strip() and not (gap in (":", ".", ",") and toks[k - 1].text.isdigit()
                                and toks[k].text[:1].isdigit()):
            break  # punctuation ends the clause, but not inside "2:00" or "1.5"
        w = toks[k].lower
        if w == "that" and k > 0 and verb_lemma(toks[k - 1].text) is None:
            break  # "a glass that has some water inside": a relative clause
        if w in CLAUSE_BREAK:
            nxt = toks[k + 1].lower if k + 1 < len(toks) else ""
            if (toks[k - 1].lower, nxt) in _PAIRS or (w in ("and", "or") and toks[k - 1].lower == nxt):
                continue  # "moves back and forth", "higher and higher"
            if w in ("and", "or") and nxt.endswith("ly") and nxt not in STOPWORDS:
                continue  # "melts first and significantly": coordinated adverbs
            if w in ("and", "or") and toks[k - 1].lower in CONTACT_PREPS | {"over", "around", "under"}:
                continue  # "pours ice over and around the bottle": coordinated prepositions
            if w == "as" and any(toks[j].lower in ("same", "as", "such") for j in range(v + 1, k)):
                continue  # "at the same speed as the turntable"
            break
        hit = verb_lemma(toks[k].text)
        if hit is not None and not noun[k] and hit[1] in ("s", "past", "ing") \
                and _is_verb_use(toks, noun, k) and toks[k - 1].lower not in STOPWORDS:
            break
        last = k
    return toks[last].end


def _anchor(text: str) -> _Anchor | None:
    """The first physical event of the caption: a known physical verb used as a verb, after a
    physical subject (or a pronoun), in the first sentence-level clause that has one."""
    a = analyze(text)
    toks, noun = list(a.tokens), a.noun
    for v in range(len(toks)):
        hit = verb_lemma(toks[v].text)
        if hit is None or hit[0] not in ANCHOR_VERBS or noun[v] or not _is_verb_use(toks, noun, v):
            continue
        lemma, form = hit
        if form == "base" and v > 0 and toks[v - 1].lower not in ("to",) and not (
                toks[v - 1].lower.endswith("s") and toks[v - 1].lower not in BE_AUX):
            continue
        if v > 0 and toks[v - 1].lower in NOUN_MARKERS and toks[v - 1].lower not in BE_AUX:
            continue
        subj = _subject_of(toks, noun, v)
        if v == 0:
            subj = None
        elif subj is None:
            continue
        if subj is not None and subj >= 0:
            if not _gap_clean(text, toks, subj, v):
                continue
            w = toks[subj].lower
            if w in NONPHYSICAL or singular_key(w) in NONPHYSICAL:
                continue
            if not _np_opens_clause(text, toks, subj, form):
                continue  # "one egg develops significant cracks": "cracks" has no subject of its own
        transitive = _object_follows(toks, v) and not (_passive(toks, v) and form in ("past", "pp"))
        if form in ("past", "pp") and transitive and (v + 1 >= len(toks) or toks[v + 1].lower not in DETERMINERS):
            transitive = False  # "bases placed side by side": a participle, not an active verb
        after = toks[v].end
        return _Anchor(v, lemma, form, subj, transitive, after,
                       _clause_end_after(text, toks, noun, v))
    return None


#: words after which a subject noun phrase may start a clause
CLAUSE_OPENERS = frozenset(
    "and while as when then but where until before after because that which once if so "
    "whereas whilst".split())


def _np_opens_clause(text: str, toks: list[Token], head: int, form: str) -> bool:
    """Whether the noun phrase ending at `head` starts a clause (text start, after punctuation or
    a conjunction): only then is it the subject of the verb after it. A gerund or participle
    ("ice melting", "a boy in a shirt holding") may also follow "of" / "with" + noun phrase."""
    start = _np_start(toks, head)
    while start > 0 and toks[start - 1].lower in DETERMINERS | {"two", "three", "four", "five",
                                                                  "several", "many", "both"}:
        start -= 1
    if start == 0 or text[toks[start - 1].end:toks[start].start].strip():
        return True
    before = toks[start - 1].lower
    if before in CLAUSE_OPENERS:
        return True
    return form == "ing" and before in ("of", "with", "in", "on", "from", "by", "into", "onto")


def _clause_has(text: str, an: _Anchor, axis: str) -> bool:
    """Whether the anchor's clause already names `axis` after the verb ("running in circles")."""
    words = get_axis(axis).words
    toks = [t for t in tokenize(text) if an.after_verb <= t.start < an.clause_end]
    if toks and an.lemma not in MOVERS and toks[0].lower in ("up", "down", "out", "off", "away"):
        toks = toks[1:]  # "soaks up", "sucks up": a particle, not a direction
    return any(t.lower in words for t in toks)


def _ends_clause(text: str, pos: int) -> bool:
    """A comma-led phrase (", played in reverse") only goes where punctuation or the text ends."""
    rest = text[pos:].lstrip()
    return not rest or rest[0] in ",.;:!?)"


def _ends_sentence(text: str, pos: int) -> bool:
    """Only the end of the text or a full stop follows `pos` (", played in reverse" then covers the
    whole sentence, not a clause in its middle)."""
    rest = text[pos:].lstrip()
    return not rest or rest[0] in ".!?"


def _clean_clause_end(text: str, pos: int) -> bool:
    """Whether a clause-level phrase may go at `pos`: before punctuation, the end of the text or a
    conjunction; not before a relative clause or a participle ("a glass *that* has ...", "a pipe
    *sitting* on the table"), where it would attach to the wrong noun."""
    rest = text[pos:]
    if not rest.strip() or rest.lstrip()[0] in ",.;:!?)":
        return True
    nxt = tokenize(rest[:40])
    w = nxt[0].lower if nxt else ""
    return w in CLAUSE_BREAK and w not in ("that", "which", "who", "whom", "where")


def _clause_tokens(text: str, an: _Anchor) -> int:
    """Words between the anchor's verb and the end of its clause."""
    return sum(1 for t in tokenize(text) if an.after_verb <= t.start < an.clause_end)


def _bare_coordinated(text: str, toks: list[Token], an: _Anchor, pos: int) -> bool:
    """An insertion right after a verb that is coordinated with the next one ("squeezes and
    twists the bottle"): the phrase would split the shared object off."""
    if pos != toks[an.verb].end:
        return False
    nxt = next((t for t in toks if t.start >= pos), None)
    return nxt is not None and nxt.lower in ("and", "or") and not text[pos:nxt.start].strip()


def _insert_at(pos: int, phrase: str, rule: str) -> _Edit:
    sep = "" if phrase.startswith(",") else " "
    return _Edit(pos, pos, sep + phrase, "insert", rule)


def _next_token(toks: list[Token], pos: int) -> Token | None:
    for t in toks:
        if t.start >= pos:
            return t
    return None


# --------------------------------------------------------------------------------------------
# Substitution generators.
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Conservative gates: what an edit may land on.
#
# An edit is made only where the rewriter can tell that it lands on a physical, movable thing in
# a clause it can modify: the subject (and, for contact outcomes, the object) of the edited verb
# must be a word of one of the allow-lists below. Anything else (an abstract noun, clouds or the
# sky, a process, a noun compound the rewriter cannot parse) gets no edit. Acceptance drops; the
# precision of what is made goes up (data/rewrites/README.md, "Precision of accepted rules
# negatives").
# --------------------------------------------------------------------------------------------


def _words(s: str) -> frozenset[str]:
    return frozenset(s.split())


#: solid, movable things: what can be dropped, thrown, rolled, stacked or struck
SOLID_OBJECTS = _words(
    "ball basketball baseball football volleyball softball puck marble stone pebble rock boulder "
    "brick block cube die dice coin ring key book notebook pencil pen crayon chalk eraser cup mug "
    "glass vase bottle jar can tin plate bowl dish pan pot kettle teapot lid spoon fork knife "
    "blade hammer sledgehammer mallet axe saw wrench screwdriver nail screw bolt needle pin "
    "scissors tool brush paintbrush toothbrush comb broom stick twig branch log plank board "
    "skateboard surfboard box crate suitcase bag backpack basket bucket barrel tire tyre wheel "
    "top yo-yo frisbee balloon kite feather leaf egg apple orange lemon tomato potato watermelon "
    "melon fruit grape strawberry banana pumpkin coconut cake bread loaf baguette cookie donut "
    "icicle snowball toy doll figurine statue ornament bulb lightbulb phone laptop remote clock "
    "lamp chair stool pillow cushion mattress towel sponge cloth rag napkin tissue paper sheet "
    "card envelope rope string chain spring slinky pendulum magnet rod bar pipe tube straw "
    "cylinder cone pyramid sphere object item dart arrow javelin spear bullet projectile pinecone "
    "acorn nut walnut seed shell candle match matchstick cork cap button bead kettlebell dumbbell "
    "weight anvil shoe boot hat helmet glove umbrella tray container jug pitcher carton package "
    "parcel domino piece fragment shard tetherball bat racket club stapler ruler hourglass "
    "coaster flask beaker tumbler goblet teacup saucer skittle globe trophy bell whistle "
    "horseshoe puppet grabber spatula whisk ladle peeler cutter pestle marker cue chisel "
    "trowel scraper ladder frisbee stamp pendant sneaker spinner hose mop shovel scoop scooper "
    "squeezer grinder masher roller rollingpin mixer beater blender shaker sprinkler can door "
    "pickaxe shovel spade orb triangle canister")
#: objects that break rather than bounce: "shatter against" fits them
BRITTLE = _words("glass vase bottle jar plate bowl dish cup mug teacup goblet tumbler wineglass "
                 "bulb lightbulb egg ornament icicle mirror beaker flask saucer pot figurine "
                 "statue")
VEHICLES = _words("car truck bus train boat ship sailboat yacht canoe kayak bicycle bike "
                  "motorcycle scooter skateboard sled sleigh cart wagon wheelbarrow tractor van "
                  "taxi suv jeep tram tank airplane plane jet helicopter drone glider raft "
                  "rollercoaster locomotive vehicle")
#: liquids and other substances that flow or mix
FLUIDS = _words("water saltwater seawater rainwater oil milk juice liquid soup honey syrup lava "
                "paint ink wine beer soda coffee tea cream vinegar molasses dye batter sauce "
                "ketchup mustard glue alcohol solution mixture drink lemonade broth yogurt "
                "chocolate smoothie acid bleach champagne puree whiskey vodka lotion shampoo "
                "detergent droplet droplets raindrop raindrops waterfall rain")
#: substances that dissolve or mix into a liquid
MIXABLE = FLUIDS | _words("sugar salt powder dye colouring coloring cocoa flour sand pigment "
                          "granules crystals tablet")
#: what soaks a liquid up ("soaks up" -> "repels" only for these)
ABSORBENT = _words("sponge towel cloth paper tissue napkin rag fabric cotton bread soil sand "
                   "shirt sock mop diaper pad")
#: surfaces and objects a moving body can land on or hit, by what they are
HARD_SURFACES = _words(
    "floor ground table desk counter countertop worktop wall window windshield windscreen "
    "pavement sidewalk road concrete tile tiles tabletop shelf plate rock stone boulder metal "
    "sheet glass mirror door roof car tree pole post pipe board plank ice platform ramp step "
    "stairs bench chair box block brick anvil pan tray bucket lid barrier target surface court "
    "deck driveway asphalt tarmac patio slab sidewalk bowl cup can bottle jar nail wood "
    "floorboards hood bumper gate fence pillar column bat racket glove helmet")
SOFT_SURFACES = _words("pillow cushion mattress bed sofa couch sand mud snow snowbank carpet rug "
                       "blanket towel sponge foam hay haystack dough cake trampoline net jelly "
                       "pile cloth fabric clay butter cheese grass lawn")
LIQUID_BODIES = _words("water pool pond lake puddle bath bathtub tub tank river sea ocean "
                       "stream fountain aquarium honey oil milk syrup juice soup coffee tea "
                       "lava mud")
#: what a blade or tool acts on (the object of "cuts", "slices", "hits")
WORKPIECES = SOLID_OBJECTS | HARD_SURFACES | SOFT_SURFACES | _words(
    "vegetable vegetables carrot cucumber onion lettuce cabbage meat steak chicken fish cheese "
    "butter wood lumber beam branch log paper cardboard fabric rope wire cable tire can nail "
    "bolt walnut nut coconut shell ice watermelon pumpkin pineapple")
#: words around an edit that say the motion is gentle, or forceful: an intensity flip that would
#: contradict them is not made ("caressed by the violent breeze")
GENTLE_CONTEXT = _words("caress caresses caressed caressing gently softly gracefully delicately "
                        "leisurely calmly peacefully lazily serene serenely tranquil quietly "
                        "tenderly lightly smoothly slowly drift drifts drifting sway sways "
                        "swaying float floats floating glide glides gliding flutter flutters "
                        "fluttering")
FORCEFUL_CONTEXT = _words("violently forcefully fiercely furiously wildly raging crashing "
                          "smashing slamming explosively powerfully hard")


def _cls(word: str, *sets: frozenset[str]) -> bool:
    w = word.lower()
    if w.endswith("'s"):
        w = w[:-2]
    return any(w in s or singular_key(w) in s or (w.endswith("es") and w[:-2] in s) for s in sets)


def _subject_word(text: str, toks: list[Token], noun: tuple[bool, ...], i: int) -> str | None:
    """The head noun of the subject of the verb at `i` (also through "X rolls and hits"), or
    None where there is none or it is a pronoun (the rewriter does not resolve pronouns)."""
    subj = _coordinated_subject(text, toks, noun, i)
    if subj is None or subj < 0 or not _gap_clean(text, toks, subj, i):
        return None
    return toks[subj].lower


#: nouns of a quantity or a piece: "a loaf of bread" is bread
_QUANTITY_NOUNS = _words("loaf slice piece sheet block stack pile bar stick bunch chunk lump wedge "
                         "slab strip roll")


def _np_head_after(text: str, toks: list[Token], p: int) -> str | None:
    """The head noun of the noun phrase right after token `p` (a preposition or a verb), or None
    when it cannot be read: a word of the surface / object lists, reached over determiners,
    numbers and adjectives only, and not the first part of a compound or of "X of Y" ("the
    depths of a pond", "a glass of water", "ping pong ball")."""
    known = HARD_SURFACES | SOFT_SURFACES | LIQUID_BODIES | WORKPIECES | FLUIDS
    head: str | None = None
    for j in range(p + 1, min(p + 7, len(toks))):
        if text[toks[j - 1].end:toks[j].start].strip():
            break
        w = toks[j].lower
        if w in DETERMINERS or w.isdigit() or w in ("two", "three", "four", "several", "many"):
            if head is not None:
                break
            continue
        if w in _QUANTITY_NOUNS and j + 1 < len(toks) and toks[j + 1].lower == "of" and head is None:
            return _np_head_after(text, toks, j + 1)  # "a loaf of bread": the bread is what is cut
        if _cls(w, known):
            head = w
            continue  # "a glass table": the last listed word of the phrase is its head
        if head is not None:
            if w == "of":
                return None  # "a glass of whiskey": the glass is not what is hit
            if w in STOPWORDS or w in NOUN_MARKERS or verb_lemma(w) is not None \
                    or w.endswith("ly"):
                break
            return None  # "a glass of water", "a water bottle": not the listed word's phrase
        if w in STOPWORDS or w in NOUN_MARKERS:
            return None
        if w.endswith(_ADJ_ENDINGS) or w in COLOURS or w in _MAG_LEXICON or w in _COMMON_ADJ \
                or w in MATERIAL_WORDS or w.endswith(("ed", "en", "y")) or "-" in w \
                or w in _PLAIN_ADJ or w in _NAME_MODIFIERS:
            continue  # an adjective of the phrase
        return None  # an unlisted noun: the rewriter does not know what is hit
    return head


_PLAIN_ADJ = _words("hot cold warm cool wet dry hard soft smooth rough flat round thin thick "
                    "long short tall low high old new clean dirty white black red blue green "
                    "yellow brown grey gray big small large little tiny huge heavy light empty "
                    "full open closed bare plain solid hollow shallow deep clear still calm "
                    "nearby wooden metal glass plastic ceramic marble stone concrete icy sandy "
                    "grassy muddy snowy tiled polished padded carpeted frozen sturdy firm")


def _surface_kind(word: str | None) -> str | None:
    if word is None:
        return None
    if _cls(word, LIQUID_BODIES):
        return "liquid"
    if _cls(word, SOFT_SURFACES):
        return "soft"
    if _cls(word, HARD_SURFACES) or _cls(word, SOLID_OBJECTS):
        return "hard"
    return None


def _coordinated_subject(text: str, toks: list[Token], noun: tuple[bool, ...], i: int
                         ) -> int | None:
    """Subject of a verb, also through "X rolls down a hill *and hits* a tree" (the subject of
    the verb before the "and", in the same sentence)."""
    subj = _subject_of(toks, noun, i)
    if subj is not None or i < 2 or toks[i - 1].lower != "and":
        return subj
    for k in range(i - 2, 0, -1):
        if re.search(r"[.!?;,]", text[toks[k].end:toks[k + 1].start]):
            return None
        hit = verb_lemma(toks[k].text)
        if hit is not None and not noun[k] and hit[1] in ("s", "past", "ing") \
                and _is_verb_use(toks, noun, k):
            s = _subject_of(toks, noun, k)
            return s if s is not None and _gap_clean(text, toks, s, k) else None
    return None


def _has_physical_subject(text: str, toks: list[Token], noun: tuple[bool, ...], i: int) -> bool:
    """A substituted verb must be the verb of a physical thing (not "the temperature drops")."""
    if i == 0:
        return True
    subj = _coordinated_subject(text, toks, noun, i)
    if subj is not None and subj >= 0 and toks[i - 1].lower == "and":
        w = toks[subj].lower
        return w not in NONPHYSICAL and singular_key(w) not in NONPHYSICAL
    if subj is None:
        return False
    if subj < 0:
        return True
    w = toks[subj].lower
    return _gap_clean(text, toks, subj, i) and w not in NONPHYSICAL \
        and singular_key(w) not in NONPHYSICAL


#: gate(prompt, toks, noun, i, lemma, target, prep) -> whether the substitution may be made
_Gate = Callable[[str, list[Token], tuple[bool, ...], int, str, str, "str | None"], bool]


def _verb_edits(prompt: str, table: Mapping[str, tuple[tuple[str, ...], bool]],
                prep_table: Mapping[tuple[str, str], tuple[str, ...]], axis: str,
                gate: _Gate | None = None) -> list[_Edit]:
    a = analyze(prompt)
    toks, noun = list(a.tokens), a.noun
    out: list[_Edit] = []
    for i, t in enumerate(toks):
        if not _is_verb_use(toks, noun, i) or not _has_physical_subject(prompt, toks, noun, i):
            continue
        lemma, form = verb_lemma(t.text)  # type: ignore[misc]
        if form == "base" and i > 0 and toks[i - 1].lower not in ("to", "and"):
            continue  # "the ebb and flow", "a 3D print": a base form is too often a noun
        passive = _passive(toks, i)
        nxt = toks[i + 1].lower if i + 1 < len(toks) else None
        matched = False
        if nxt is not None and _adjacent(prompt, toks, i) and not passive:
            for target in prep_table.get((lemma, nxt), ()):
                if gate is not None and not gate(prompt, toks, noun, i, lemma, target, nxt):
                    matched = True
                    continue
                repl = _match_case(_inflect_target(target, form), t.text)
                out.append(_Edit(t.start, toks[i + 1].end, repl, "substitute",
                                 f"{axis}:verb+prep:{lemma} {nxt}->{target}"))
                matched = True
        if lemma in table and not matched:
            targets, intransitive_only = table[lemma]
            if intransitive_only and (passive or _object_follows(toks, i)):
                continue
            if i == 0 and form == "ing" and intransitive_only:
                continue  # gerund-initial captions take objects
            if nxt in DIRECTION_WORDS and _adjacent(prompt, toks, i):
                continue  # "spirals back outward", "flows down": the direction edit applies
            if nxt in GOAL_PREPS:  # "moves towards the shore" -> "moves backward towards the shore" keeps the direction
                targets = tuple(x for x in targets if not x.endswith(("backward", "backwards", "sideways")))
            for target in targets:
                if gate is not None and not gate(prompt, toks, noun, i, lemma, target, None):
                    continue
                repl = _match_case(_inflect_target(target, form), t.text)
                out.append(_Edit(t.start, t.end, repl, "substitute",
                                 f"{axis}:verb:{lemma}->{target}"))
    return out


def _word_edits(prompt: str, table: Mapping[str, tuple[tuple[str, ...], str]], axis: str
                ) -> list[_Edit]:
    a = analyze(prompt)
    toks, noun = list(a.tokens), a.noun
    low = prompt.lower()
    out: list[_Edit] = []
    for i, t in enumerate(toks):
        entry = table.get(t.lower)
        if entry is None or not a.axes[i] or axis not in a.axes[i]:
            continue
        targets, where = entry
        pos = _position(toks, i)
        nxt = toks[i + 1].lower if i + 1 < len(toks) else ""
        if where == "mod" and (pos != "mod" or not _adjacent(prompt, toks, i)):
            continue
        if where == "noun" and pos != "noun":
            continue
        if where in ("mod", "any") and pos == "mod" and (nxt in NONPHYSICAL
                                                          or singular_key(nxt) in NONPHYSICAL
                                                          or (axis == "materials"
                                                              and nxt in NOT_MATERIAL_HEADS)):
            continue  # "soft glow", "high visibility", "heavy decomposition"
        heads = INTENSITY_NOUNS if where == "intensity" else EVENT_NOUNS
        if where in ("event", "intensity") and (pos != "mod" or (nxt not in heads and not (
                i + 2 < len(toks) and toks[i + 2].lower in heads
                and _position(toks, i + 1) == "mod"))):
            continue
        if axis == "materials" and (t.lower, nxt) in LEXICAL_COMPOUNDS:
            continue  # "a rubber band" is a band, not a rubber thing
        if where == "after_verb":
            if i == 0 or verb_lemma(toks[i - 1].text) is None or noun[i - 1]:
                continue
        if where == "adverb":
            near = [k for k in (i - 1, i + 1) if 0 <= k < len(toks) and _adjacent(prompt, toks, min(i, k))]
            verbs = [k for k in near if _is_verb_use(toks, noun, k)]
            if not verbs or not any(_has_physical_subject(prompt, toks, noun, k) for k in verbs):
                continue  # "slightly unripe", "the camera slowly moves": not a physical motion
            if i + 1 in verbs and i - 1 not in verbs:
                # before its verb only a one-word adverb fits ("is slowly lowered")
                targets = tuple(x for x in targets if " " not in x and x.endswith("ly"))
            lemmas = {verb_lemma(toks[k].text)[0] for k in verbs}  # type: ignore[index]
            if not lemmas & (MOVERS | IMPACT | FORCEFUL_VERBS):
                targets = tuple(x for x in targets if x not in FORCE_ADVERBS)  # "rust forming violently"
            if lemmas & INSTANT_VERBS:
                targets = tuple(x for x in targets if x not in ("gradually", "extremely slowly", "sluggishly"))
        if axis == "materials":
            fam = MATERIAL_FAMILY.get(t.lower, t.lower)
            same = [k for k, x in enumerate(toks) if k != i and MATERIAL_FAMILY.get(x.lower, x.lower) == fam]
            if (pos == "noun" and same) or (pos == "mod" and any(
                    k + 1 < len(toks) and singular_key(toks[k + 1].lower) == singular_key(nxt) for k in same)):
                continue  # "tea ... turning the water brown", "a wood table ... the wooden table": one mention only would change
        for target in targets:
            if re.search(rf"\b{re.escape(target)}\b", low):
                continue  # "from high tide to low tide" -> "from low tide to low tide"
            out.append(_Edit(t.start, t.end, _match_case(target, t.text), "substitute",
                             f"{axis}:word:{t.lower}->{target}"))
    return out


# --------------------------------------------------------------------------------------------
# Edit generators, one per axis.
# --------------------------------------------------------------------------------------------


#: matter whose process (melting, baking, burning, rotting) can be shown running backwards
MATTER = _words("ice snow butter chocolate cheese dough bread cookie cake popcorn kernel egg meat "
                "steak wax wood log leaf fruit banana apple candle sugar paper bun baguette pizza "
                "pancake muffin croissant marshmallow snowman icicle sandcastle tower wall glass "
                "vase bottle balloon bubble")
#: periodic tool motions: played backwards they look the same ("a spoon stirs the soup")
_PERIODIC = _words("stir whisk churn scrub sweep wipe tap shake")
_FLOW_TARGETS = _words("flow stream drip drizzle trickle cascade gush spill drain pour spiral")
_BREAK_WORDS = _words("shatter shatters shattered shattering break breaks broke broken breaking "
                      "crack cracks cracked fragments shards pieces splinters")


def _kinematics_gate(prompt: str, toks: list[Token], noun: tuple[bool, ...], i: int, lemma: str,
                     target: str, prep: str | None) -> bool:
    """Kinematics substitutions only on a listed body, where the new motion fits it."""
    subj = _subject_word(prompt, toks, noun, i)
    first = target.split()[0]
    clause = _clause_words(prompt, toks, noun, i)
    if lemma in ("throw", "toss", "shake"):
        return False  # "rolls a basketball into the hoop", "spinning hands": not the same act
    if lemma in ("lift", "hoist", "raise", "lower", "flip"):
        thing = subj if _passive(toks, i) else _np_head_after(prompt, toks, i)
        return thing is not None and _cls(thing, SOLID_OBJECTS | WORKPIECES)  # not "the curse was lifted"
    if subj is None:
        return i == 0 and _np_head_after(prompt, toks, i) is not None and _cls(
            _np_head_after(prompt, toks, i) or "", SOLID_OBJECTS)
    if first in _FLOW_TARGETS:
        return _cls(subj, FLUIDS | MIXABLE) and not set(clause) & _words("onto into down downward to")
    if _cls(subj, FLUIDS) and first not in ("rise", "fall"):
        return False  # rain "rising", water "falling" are fine; rain "tumbling" is not
    if target.endswith("backward"):
        return _cls(subj, VEHICLES | ANIMATE)  # clouds "moving backward" have no front
    if not _cls(subj, SOLID_OBJECTS | VEHICLES | ANIMATE | FLUIDS):
        return False
    if first == "tumble" and (_cls(subj, VEHICLES) or any(w.endswith("ly") for w in clause[:1])):
        return False  # "a sailboat tumbles gracefully"
    if first == "roll" and (_passive(toks, i) or not _cls(subj, SOLID_OBJECTS)):
        return False  # "a stone is rolled across a river", a cat "rolls onto a table"
    if lemma == "fly" and not _cls(subj, SOLID_OBJECTS):
        return False  # a bird "falls to the front of the tree"
    if first == "tumble" and set(clause) & _words("around axis"):
        return False  # "the top tumbles around its vertical axis"
    if first == "spin" and "around" in clause:
        return False  # a tetherball "spins around the pole" is what swinging around it looks like
    if first == "fall" and _sentence_words(prompt, toks, i) & _BREAK_WORDS:
        return False  # struck fragments "flying" -> "falling" fly out and fall either way
    if first == "rise" and (_sentence_words(prompt, toks, i) & _LANDING
                            or set(clause) & _words("onto to toward towards down height")):
        return False  # "rises from a height and lands on the floor"
    return True


def _kinematics(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _verb_edits(prompt, KIN_VERBS, KIN_VERB_PREP, "kinematics", _kinematics_gate)
    a = analyze(prompt)
    toks, noun = list(a.tokens), a.noun
    for i, t in enumerate(toks):
        target = KIN_DIRECTIONS.get(t.lower)
        if target is None or i == 0:
            continue
        pv = verb_lemma(toks[i - 1].text)
        if pv is None or pv[0] not in DIRECTIONAL_VERBS or not _is_verb_use(toks, noun, i - 1):
            continue
        if not _has_physical_subject(prompt, toks, noun, i - 1):
            continue  # "the camera moves forward": a camera instruction, not a motion of the scene
        subj = _subject_word(prompt, toks, noun, i - 1)
        if subj is None or not _cls(subj, SOLID_OBJECTS | VEHICLES | ANIMATE | FLUIDS):
            continue  # only a listed body's direction is flipped
        if re.search(rf"\b{re.escape(target)}\b", prompt.lower()):
            continue
        subs.append(_Edit(t.start, t.end, _match_case(target, t.text), "substitute",
                          f"kinematics:direction:{t.lower}->{target}"))
    ins: list[_Edit] = []
    an = _anchor(prompt)
    subj = toks[an.subject].lower if an is not None and an.subject is not None and an.subject >= 0 else None
    if an is not None and an.verb == 0 and an.form == "ing":
        subj = ""  # "Pouring milk into tea": judged by its object
    if an is not None and an.lemma not in STATIC_VERBS and not _clause_has(prompt, an, "kinematics") \
            and subj is not None:
        nxt = _next_token(toks, an.after_verb)
        nxt_w = nxt.lower if nxt is not None and nxt.start < an.clause_end else None
        free = nxt_w is None or nxt_w in PLACE_PREPS or nxt_w in ("to", "into", "onto", "toward",
                                                                  "towards", "from", "off")
        if nxt_w is not None and (nxt_w in DIRECTION_WORDS or nxt_w.endswith("ly")
                                  or nxt_w in ("out", "up", "off", "away", "down", "over", "and", "or")):
            free = False
        if not an.transitive and free and (an.lemma in LOCOMOTION or an.lemma in FALLING
                                           or an.lemma in ROTATING or an.lemma in OSCILLATING):
            # no "rotating backward" (no reference sense) and no "dropped sideways" (keeps the fall)
            if an.lemma in ROTATING or an.lemma in FALLING:
                phrases: tuple[str, ...] = ()
            elif an.lemma in OSCILLATING:
                phrases = ("in circles",) if _cls(subj, SOLID_OBJECTS) else ()
            elif (nxt_w is None or nxt_w in PLACE_PREPS) and _cls(subj, VEHICLES | ANIMATE) \
                    and len(toks) <= 30:  # not a character's walk in a story
                phrases = KIN_PATH_PHRASES
            elif (nxt_w is None or nxt_w in PLACE_PREPS) and _cls(subj, SOLID_OBJECTS):
                phrases = ("in circles", "back and forth")
            else:  # a goal follows ("moves towards the shore"): a new direction would contradict it
                phrases = ()
            ins += [_insert_at(an.after_verb, ph, f"kinematics:insert:{ph}") for ph in phrases]
        obj = _np_head_after(prompt, toks, an.verb) if an.transitive else None
        listed = SOLID_OBJECTS | FLUIDS | MIXABLE | MATTER
        reversible_scene = _cls(subj, listed) or (
            (subj == "" or _cls(subj, ANIMATE)) and obj is not None and _cls(obj, listed)
            and len(toks) <= 25)  # a person's action on an object, not a plot action in a story
        if (an.lemma in PROCESS or an.lemma in IMPACT or an.lemma in REVERSIBLE or an.lemma in FLOWING) \
                and an.lemma not in _PERIODIC and reversible_scene and not _bare_coordinated(prompt, toks, an, an.clause_end) \
                and _clean_clause_end(prompt, an.clause_end):
            bare_ok = _clause_tokens(prompt, an) == 0  # "the ice melts in reverse", not "... at the center in reverse"
            ins += [_insert_at(an.clause_end, ph, f"kinematics:insert:{ph.strip(', ')}")
                    for ph in KIN_REVERSE_PHRASES
                    if (ph.startswith(",") and _ends_sentence(prompt, an.clause_end)) or (not ph.startswith(",") and bare_ok)]
    return subs, ins


#: the anchors a gravity phrase may follow: a body set moving through the air or along the ground,
#: where less, no or reversed gravity is a visible change (not processes, not swimming or sailing,
#: not "falls", which gravity phrases contradict: those get the float-up substitutions)
GRAVITY_ANCHORS = _words("drop throw toss kick launch bounce roll slide jump leap hop pour spill "
                         "splash swing glide skate flow gush drip stream spray trickle cascade "
                         "drain")
#: transitive anchors whose object is the body sent flying ("throws a javelin in zero gravity");
#: other transitive uses are handling ("rolling sushi")
_THROWS = _words("throw toss kick launch drop bounce pour spill spray splash")
_FLUID_GRAVITY = _words("pour spill splash flow gush drip stream spray trickle cascade drain")
#: anchors a wind push or a magnet pull may act on (an inanimate body moving on its own)
AGENT_ANCHORS = _words("roll slide glide tumble bounce")
#: words that say a body falls: a gravity phrase in the same sentence would contradict them
_FALL_WORDS = _words("fall falls falling fell drop drops dropping plummet plummets plummeting sink "
                     "sinks sinking downward downwards accelerating accelerates land lands landing "
                     "landed descend descends descending")
#: words of a complement that keeps a push/pull the same motion ("pushes it away" / "pulls it away")
_SAME_MOTION = _words("away toward towards back together apart closer aside each forward forwards "
                      "backward backwards along across off")
_GOALS = _words("onto into to toward towards on upon down from off")
_LANDING = _words("land lands landed landing hits hit ground floor")
#: words of an impact: a body that floats up instead would leave them without a cause
_IMPACT_WORDS = _words("impact impacts clang thud splash splashes splashing dent dents deformation "
                       "deforms deforming crater indentation shatter shatters shattering breaks "
                       "breaking bounce bounces bouncing cracks crack")
#: words of a state or path that only gravity gives: a gravity phrase inserted elsewhere in the
#: sentence would leave them standing as a contradiction ("thrown into a pool with gravity pulling
#: sideways, where it floats atop the water"; "swings back and forth in zero gravity, converting
#: kinetic energy to potential energy at the peaks"; "follows a smooth, predictable arc")
_GRAVITY_STATES = _words("atop afloat buoyant buoyancy float floats floating floated settle settles settling "
                         "resting rests slope slopes downhill uphill incline ramp potential weight arc arcs "
                         "trajectory parabolic sag sags sagging curve curves swing swings swinging")
_FLEXIBLE = _words("rope string chain cable wire thread ribbon cord hose yarn")
_SQUEEZE_WORDS = _words("compress compresses compressing compressed squeeze squeezes squeezing "
                        "squeezed squash squashing flatten flattening pressure press pressed")


def _clause_words(prompt: str, toks: list[Token], noun: tuple[bool, ...], i: int) -> list[str]:
    end = _clause_end_after(prompt, toks, noun, i)
    return [t.lower for t in toks[i + 1:] if t.start < end]


def _forces_gate(prompt: str, toks: list[Token], noun: tuple[bool, ...], i: int, lemma: str,
                 target: str, prep: str | None) -> bool:
    """Forces substitutions only on a listed physical subject, where the new force is visible."""
    subj = _subject_word(prompt, toks, noun, i)
    passive = _passive(toks, i)
    clause = _clause_words(prompt, toks, noun, i)
    if lemma == "squeeze":
        return False  # squeezing a lemon or a tube is not the opposite of stretching it
    if lemma in ("push", "pull", "drag", "tug", "compress", "stretch"):
        thing = subj if passive else _np_head_after(prompt, toks, i)
        if thing is None or not _cls(thing, SOLID_OBJECTS | VEHICLES | WORKPIECES) or _cls(thing, FLUIDS):
            return False  # "pulls the curtain of night", "pushes their way"
        if target == "push" and _cls(thing, _FLEXIBLE):
            return False  # a rope cannot be pushed
        if target == "stretch" and _sentence_words(prompt, toks, i) & _SQUEEZE_WORDS:
            return False  # "stretched tightly, compressing the sponge"
        return not (lemma in ("push", "pull", "drag", "tug") and set(clause) & _SAME_MOTION)
    if subj is None or not _cls(subj, SOLID_OBJECTS | ANIMATE | VEHICLES) or _cls(subj, FLUIDS):
        return False
    if target.startswith("float up"):
        if _sentence_words(prompt, toks, i) & (_LANDING | _FALL_WORDS | _IMPACT_WORDS
                                               | _words("rise rises rising rose up upward")):
            return False  # "floats up from a height and lands on the floor"
        if target == "float upward" and set(clause) & _GOALS:
            return False  # "floats upward onto a table"
    if target in ("float above", "float away from", "hover above"):
        kind = _surface_kind(_np_head_after(prompt, toks, i + 1))
        if kind is None or (target == "hover above" and lemma == "float" and kind != "liquid"):
            return False  # "the liquid hovers above various directions"
    if target == "sink":
        nxt = clause[0] if clause else None
        if nxt is not None and not (nxt in ("on", "in") and _surface_kind(
                _np_head_after(prompt, toks, i + 1)) == "liquid"):
            return False  # "a balloon sinks up into the sky"
    return True


def _forces(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _verb_edits(prompt, FORCE_VERBS, FORCE_VERB_PREP, "forces", _forces_gate)
    an = _anchor(prompt)
    ins: list[_Edit] = []
    if an is None or an.subject is None or an.subject < 0 or _clause_has(prompt, an, "forces"):
        return subs, ins
    a = analyze(prompt)
    toks = list(a.tokens)
    subj = toks[an.subject].lower
    around = [toks[k].lower for k in (an.verb - 1, an.verb + 1) if 0 <= k < len(toks)]
    if any(w.endswith("ly") and w not in STOPWORDS for w in around):
        return subs, ins  # "sailing leisurely": no second manner phrase next to the verb
    phrases: list[str] = []
    gravity_subject = SOLID_OBJECTS | ANIMATE | (FLUIDS if an.lemma in _FLUID_GRAVITY else frozenset())
    if an.lemma in GRAVITY_ANCHORS and _cls(subj, gravity_subject) \
            and (not an.transitive or an.lemma in _THROWS) \
            and not _sentence_words(prompt, toks, an.verb) & (_FALL_WORDS | _IMPACT_WORDS | _GRAVITY_STATES):
        phrases += FORCE_INSERTS  # not "dropped with gravity reversed, where both fall", nor "... where it floats atop"
    n_after = _clause_tokens(prompt, an)
    short = n_after <= 5
    mover = _cls(subj, SOLID_OBJECTS | VEHICLES) and not _cls(subj, FLUIDS)
    if mover and an.lemma in AGENT_ANCHORS and not an.transitive and short \
            and not _passive(toks, an.verb) and not re.search(r"\b(magnet|wind|gust|breeze)", prompt.lower()):
        phrases += FORCE_AGENT_INSERTS  # only where the phrase can only modify the subject
    if mover and an.lemma in ("slide", "glide", "skate", "skid") and not an.transitive \
            and not _sentence_words(prompt, toks, an.verb) & _words(
                "friction rubs rub rubbing slowing slows slow rough stops grinds"):
        phrases += FORCE_FRICTION_INSERTS
    if not phrases:
        return subs, ins
    # a long intransitive clause takes the phrase right after its verb ("rolls in zero
    # gravity out of a black pipe sitting on the table"), not after the last noun
    clean = _clean_clause_end(prompt, an.clause_end)
    pos = an.after_verb if not an.transitive and (not short or not clean) else an.clause_end
    if pos != an.clause_end:  # mid-clause: a participle phrase would run on into what follows
        phrases = [ph for ph in phrases if ph in MID_CLAUSE_FORCES]  # ("with gravity reversed out of it")
    elif pos != an.after_verb:  # after an object or a goal "as if weightless" describes that noun
        phrases = [ph for ph in phrases if ph != "as if weightless"]
    if not _bare_coordinated(prompt, toks, an, pos) and (pos != an.clause_end or clean):
        ins = [_insert_at(pos, ph, f"forces:insert:{ph.strip(', ')}")
               for ph in phrases if not ph.startswith(",") or (_ends_clause(prompt, pos) and pos == an.clause_end)]
    return subs, ins


#: property words of a material: a swap away from it is not made where the sentence still
#: describes them ("a paper bolt rusting", "green steel ... causing it to tear")
_MATERIAL_PROPERTIES: Mapping[str, frozenset[str]] = MappingProxyType({
    **{m: _words("rust rusting rusts rusted rusty corrosion corrode corroding corrodes magnet "
                 "magnetic magnets sparks spark conducts conducting electric electricity clang "
                 "clink clinking") for m in ("metal", "metallic", "steel", "iron", "silver",
                                             "stainless-steel", "aluminum", "aluminium")},
    **{m: _words("shatter shatters shattered shattering shards transparent clear crack cracks "
                 "fragments reflect reflecting break breaks breaking broken fracture fracturing "
                 "fractures scratches") for m in ("glass", "ceramic", "porcelain", "stone",
                                                  "concrete", "marble", "brick", "ice")},
    **{m: _words("ice icicle icicles freeze freezing frozen steam evaporate evaporating vapor "
                 "vapour boil boiling") for m in ("water", "melted")},
    **{m: _words("tear tears tearing torn fold folds folding folded crumple crumples crumpling "
                 "burn burns burning soak soaks soaked soaking absorbs ink") for m in ("paper",)},
    **{m: _words("burn burns burning splinter splinters splintering grain knots")
       for m in ("wood", "wooden", "oak")},
    **{m: _words("stretch stretches stretching stretched bounce bounces bouncing elastic")
       for m in ("rubber",)},
    **{m: _words("transparent clear bend bends melt melts melting") for m in ("plastic",)},
    **{m: _words("melt melts melting melted cold freeze freezing frozen") for m in ("ice", "icy")},
})
#: verbs whose object or subject a liquid must be for a liquid swap to change the scene's physics
#: ("pours water" -> "pours honey"); not "lights reflecting on the water at night"
_HANDLED_BY = _words("pour pours poured pouring spill spills spilled spilling drip drips dripping "
                     "stir stirs stirred stirring mix mixes mixed mixing fill fills filled filling "
                     "squeeze squeezes squeezed spray sprays sprayed splash splashes splashed "
                     "splashing drop drops dropped dip dips dipped dipping submerge submerged "
                     "immerse immersed soak soaked place placed put sink sinks sinking float "
                     "floats floating boil boils boiling heat heated freeze freezes frozen")
_NO_MOD_TARGETS = frozenset(("jelly",))  # "a jelly container" reads as a container for jelly
#: property words (not materials): only on an object or a substance, not on a surface or a scene
_PROPERTY_SOURCES = _words("soft hard thick fluffy sticky frozen melted solid wet dry")
#: noun modifiers a material word may go in front of ("a rubber tennis ball")
_NAME_MODIFIERS = _words("tennis soccer beach golf bowling ping-pong table ceiling kitchen coffee "
                         "soda water wine beer tea basket toy building")


def _material_ok(prompt: str, toks: list[Token], content: tuple[bool, ...], e: _Edit) -> bool:
    """A material swap only on a listed object's modifier, or on a liquid that is poured, dipped
    into or flows, and not where the sentence still describes the old material's properties."""
    i = next((k for k, t in enumerate(toks) if t.start == e.start), None)
    if i is None:
        return False
    w = toks[i].lower
    target = e.replacement.lower()
    if w == "icy" or (i + 1 < len(toks) and toks[i + 1].lower in ("surface", "surfaces")):
        return False  # "icy rocks", "the metal surface": a look of the scene, not an object
    if _sentence_words(prompt, toks, i) & _MATERIAL_PROPERTIES.get(w, frozenset()):
        return False
    pos = _position(toks, i)
    if pos == "mod":
        if target in _NO_MOD_TARGETS:
            return False
        j = i + 1  # the head: the listed noun right after, or one noun modifier then the listed noun
        if j < len(toks) and not _cls(toks[j].lower, SOLID_OBJECTS | HARD_SURFACES | SOFT_SURFACES) \
                and j + 1 < len(toks) and _adjacent(prompt, toks, j):
            j += 1
        if j >= len(toks) or not _cls(toks[j].lower, SOLID_OBJECTS | HARD_SURFACES | SOFT_SURFACES) \
                or _cls(toks[j].lower, FLUIDS):
            return False
        if w in _PROPERTY_SOURCES and not _cls(toks[j].lower, SOLID_OBJECTS | MATTER):
            return False  # "thick snow accumulation", "the wet asphalt": a scene, not an object
        after = j + 1 < len(toks) and _adjacent(prompt, toks, j) and (
            a_noun(toks[j + 1].lower) or (content[j + 1] and verb_lemma(toks[j + 1].lower) is None))
        return not after  # "a glass bottle cap", "snow accumulation": the swap lands in a compound
    if _cls(w, FLUIDS | MIXABLE):
        if i > 0 and content[i - 1] and _adjacent(prompt, toks, i - 1):
            return False  # "the pool water" -> "the pool sand"
        near = {toks[k].lower for k in range(max(0, i - 4), min(len(toks), i + 3)) if k != i}
        return bool(near & _HANDLED_BY)
    return True


def a_noun(word: str) -> bool:
    """A word that reads as a noun of a compound (a listed object or surface)."""
    return _cls(word, SOLID_OBJECTS | HARD_SURFACES | SOFT_SURFACES)


def _materials(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    a = analyze(prompt)
    toks = list(a.tokens)
    subs = [e for e in _word_edits(prompt, MATERIAL_WORDS, "materials")
            if _material_ok(prompt, toks, a.content, e)]
    ins: list[_Edit] = []
    an = _anchor(prompt)
    head = an.subject if an is not None and (an.lemma in MOVERS or an.lemma in TOOL_VERBS
                                             or an.lemma in REVERSIBLE) else None
    if head is not None and head >= 0 and _cls(toks[head].lower, SOLID_OBJECTS) \
            and not _cls(toks[head].lower, FLUIDS):
        proper = head > 0 and toks[head].text[:1].isupper()
        if not proper and (a.content[head] or a.noun[head]):
            where = _compound_start(toks, head, a.content)
            if where < head and toks[where].lower not in _NAME_MODIFIERS:
                return subs, ins  # "a butter knife", "a hand mixer": no material inside a name
            if where < head and where > 0 and a.content[where - 1]:
                return subs, ins  # "ping pong ball": no material inside a two-word name
            if not any("materials" in a.axes[k] for k in range(_np_start(toks, head), head + 1)) \
                    and not _sentence_words(prompt, toks, head) & frozenset().union(*_MATERIAL_PROPERTIES.values()):
                at = toks[where].start
                ins = [_Edit(at, at, m + " ", "insert", f"materials:insert:{m}")
                       for m in MATERIAL_INSERTS if m not in _NO_MOD_TARGETS]
    return subs, ins


#: contact verbs whose "verb + preposition" may become another contact outcome: a body that
#: moves onto or into something ("falls onto", "crashes into", "lands on", "bounces off")
CONTACT_MOTION = _words("fall drop land crash slam smash hit strike collide bounce splash plunge bang "
                        "tumble topple knock bump roll rebound ricochet shatter break dive "
                        "plummet")
#: transitive contact verbs kept, and the outcomes that replace them (the tool glances off, or
#: passes through, instead)
TRANSITIVE_TARGETS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    **{v: ("bounce off", "pass through") for v in ("hit", "strike", "smack", "knock", "tap", "bang",
                                                   "slam", "punch", "kick", "hammer", "pound")},
    **{v: ("bounce off", "slide off") for v in ("cut", "slice", "chop", "carve", "sever", "pierce",
                                                "puncture", "saw", "split", "dig")},
    **{v: ("bounce off",) for v in ("crush", "squash", "smash", "break", "crack", "dent")},
})
#: outcomes per kind of surface hit by a solid body
SURFACE_OUTCOMES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "hard": ("bounce off", "pass straight through", "shatter against", "sink into"),
    "soft": ("bounce off", "pass straight through", "stick to"),
    "liquid": ("bounce off",),
})


#: light bodies: they float on a liquid whatever the contact verb says
LIGHT_BODIES = _words("leaf feather paper tissue balloon petal napkin sheet card envelope")
#: prepositions each contact verb takes for a contact (a ball "rolls on" a table is no contact)
_CONTACT_PREPS_OF = {"roll": ("into", "against"), "tumble": ("into", "onto"), "dive": ("into",),
                     "plunge": ("into",), "splash": ("into", "onto"), "knock": ("into", "against"),
                     "bump": ("into", "against")}
#: words of an outcome: an edit away from it is not made where the rest of the sentence still
#: describes it ("the glass bounces, with pieces detaching"; "sticks to a wall ... as it rebounds")
_OUTCOME_WORDS = {
    "break": _words("shatter shatters shattered shattering break breaks broke broken breaking crack "
                    "cracks cracked cracking fragments shards pieces splinters splintering "
                    "fracture fracturing fractures"),
    "bounce": _words("bounce bounces bounced bouncing rebound rebounds rebounding springing"),
}


def _outcome_left(text: str, toks: list[Token], i: int, lemma: str) -> bool:
    """Whether the outcome of `lemma` is described elsewhere in the sentence of token i."""
    fam = "break" if lemma in ("shatter", "break", "crack", "smash") else \
        "bounce" if lemma in ("bounce", "rebound", "ricochet") else None
    if fam is None:
        return False
    return bool(_sentence_words(text, toks, i) & _OUTCOME_WORDS[fam])


def _sentence_words(text: str, toks: list[Token], i: int) -> set[str]:
    """The other words of the sentence of token i."""
    lo = i
    while lo > 0 and not re.search(r"[.!?;]", text[toks[lo - 1].end:toks[lo].start]):
        lo -= 1
    hi = i
    while hi + 1 < len(toks) and not re.search(r"[.!?;]", text[toks[hi].end:toks[hi + 1].start]):
        hi += 1
    return {toks[k].lower for k in range(lo, hi + 1) if k != i}


def _outcomes_for(lemma: str, subject: str, kind: str | None) -> tuple[str, ...]:
    """Contact outcomes that change what happens when `subject` meets a surface of `kind`."""
    if kind is None:
        return ()
    out = []
    for target in SURFACE_OUTCOMES[kind]:
        if target.split()[0] == lemma:
            continue
        if target == "shatter against" and not _cls(subject, BRITTLE):
            continue  # a coin does not shatter
        if target == "sink into" and kind == "hard" and lemma in ("land", "fall", "drop"):
            continue  # "lands on" -> "sinks into the floor" reads as a landing
        if target == "stick to" and lemma in ("land", "fall", "drop", "hit", "crash"):
            continue  # landing and staying put is what landing looks like
        if kind == "liquid" and _cls(subject, LIGHT_BODIES):
            continue  # a leaf on a river floats either way
        if lemma == "bounce" and target == "bounce off":
            continue
        out.append(target)
    if lemma in ("bounce", "rebound", "ricochet") and kind in ("hard", "soft"):
        out.append("stick to")  # it bounced: sticking is the visible change
    return tuple(out)


def _interactions(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    """Contact outcomes, only where the subject is a listed solid object (or a fluid for mixing,
    an absorbent for soaking) and the thing it meets is a listed surface, object or liquid."""
    a = analyze(prompt)
    toks, noun = list(a.tokens), a.noun
    subs: list[_Edit] = []
    for i, t in enumerate(toks):
        if not _is_verb_use(toks, noun, i) or _passive(toks, i):
            continue
        lemma, form = verb_lemma(t.text)  # type: ignore[misc]
        if i == 0 or (form == "base" and toks[i - 1].lower not in ("to", "and")):
            continue
        subj = _subject_word(prompt, toks, noun, i)
        if subj is None or (toks[i - 1].lower.endswith("ly") and toks[i - 1].lower not in STOPWORDS):
            continue  # "ink diffusely separating": the adverb belongs to the old verb
        nxt = toks[i + 1].lower if i + 1 < len(toks) else None
        adjacent = _adjacent(prompt, toks, i)
        # mixing: a fluid or a soluble substance mixing with / dissolving in a fluid
        if lemma in MIXING and nxt in ("with", "into", "in") and adjacent and _cls(subj, MIXABLE):
            obj = _np_head_after(prompt, toks, i + 1)
            if obj is not None and _cls(obj, FLUIDS | LIQUID_BODIES):
                repl = _match_case(_inflect_target("separate from", form), t.text)
                subs.append(_Edit(t.start, toks[i + 1].end, repl, "substitute",
                                  f"interactions:verb+prep:{lemma} {nxt}->separate from"))
            continue
        # soaking: an absorbent soaking up / absorbing a liquid repels it instead
        if _cls(subj, ABSORBENT) and (lemma == "absorb" or (lemma in ("soak", "suck") and nxt == "up")):
            end = toks[i + 1].end if lemma != "absorb" else t.end
            obj = _np_head_after(prompt, toks, i + 1 if lemma != "absorb" else i)
            if obj is not None and _cls(obj, FLUIDS | LIQUID_BODIES):
                subs.append(_Edit(t.start, end, _match_case(_inflect_target("repel", form), t.text),
                                  "substitute", f"interactions:verb:{lemma}->repel"))
            continue
        solid = _cls(subj, SOLID_OBJECTS) or (_cls(subj, VEHICLES) and lemma in ("crash", "slam", "hit", "collide", "bump"))
        if not solid or _cls(subj, FLUIDS) or subj in NON_SOLID:
            continue
        # a solid body meeting a surface: "falls onto the floor" -> "bounces off the floor"
        if toks[i - 1].lower == "and" and any(toks[k].lower in BE_AUX for k in range(max(0, i - 5), i)):
            continue  # "is dropped and hit on concrete": a passive participle after "and"
        if _outcome_left(prompt, toks, i, lemma) or (
                lemma in CONTACT_MOTION | frozenset(TRANSITIVE_TARGETS)
                and _sentence_words(prompt, toks, i) & (_OUTCOME_WORDS["break"] | _OUTCOME_WORDS["bounce"])):
            continue  # "hits the ground ..., where it bounces off the ground": the outcome is kept
        if lemma in CONTACT_MOTION and adjacent \
                and nxt in _CONTACT_PREPS_OF.get(lemma, ("into", "onto", "on", "against", "upon")) \
                or lemma in ("bounce", "rebound", "ricochet") and adjacent and nxt == "off":
            kind = _surface_kind(_np_head_after(prompt, toks, i + 1))
            for target in _outcomes_for(lemma, subj, kind):
                if _outcome_left(prompt, toks, i, target.split()[0]):
                    continue  # "hits the ground ... where it bounces off the ground"
                repl = _match_case(_inflect_target(target, form), t.text)
                subs.append(_Edit(t.start, toks[i + 1].end, repl, "substitute",
                                  f"interactions:contact:{lemma} {nxt}->{target}"))
            if lemma != "shatter" or kind is None:
                continue
        # a blade driven into its object: "a knife carves into the wood" -> "bounces off the wood"
        if lemma in TRANSITIVE_TARGETS and adjacent and nxt in ("into", "through"):
            obj = _np_head_after(prompt, toks, i + 1)
            if obj is not None and _cls(obj, WORKPIECES) and not _cls(obj, FLUIDS):
                for target in TRANSITIVE_TARGETS[lemma]:
                    if target.startswith("pass"):
                        continue  # "slices through" already passes through
                    repl = _match_case(_inflect_target(target, form), t.text)
                    subs.append(_Edit(t.start, toks[i + 1].end, repl, "substitute",
                                      f"interactions:contact:{lemma} {nxt}->{target}"))
            continue
        # a tool acting on an object: "a hammer hits the nail" -> "bounces off the nail"
        if lemma in TRANSITIVE_TARGETS and _object_follows(toks, i) \
                and (form not in ("past", "pp") or toks[i + 1].lower in DETERMINERS):
            obj = _np_head_after(prompt, toks, i)
            if obj is None or not _cls(obj, WORKPIECES) or _cls(obj, FLUIDS):
                continue
            k = next((k for k in range(i + 1, min(i + 7, len(toks))) if toks[k].lower == obj), None)
            if k is not None and k + 1 < len(toks) and toks[k + 1].lower in ("into", "onto", "through", "in"):
                continue  # "hits the nail into the plank": the nail is driven, not the contact
            for target in TRANSITIVE_TARGETS[lemma]:
                if _outcome_left(prompt, toks, i, target.split()[0]):
                    continue
                repl = _match_case(_inflect_target(target, form), t.text)
                subs.append(_Edit(t.start, t.end, repl, "substitute",
                                  f"interactions:contact:{lemma}->{target}"))
            continue
        # a solid that shatters breaks into pieces; one that bounces could shatter instead
        after = toks[i + 1] if i + 1 < len(toks) else None
        free = after is None or not adjacent or after.lower in ("on", "onto", "against", "upon", "and")
        if free and lemma == "shatter":
            subs.append(_Edit(t.start, t.end, _match_case(_inflect_target("bounce", form), t.text),
                              "substitute", "interactions:verb:shatter->bounce"))
        elif free and lemma == "bounce" and _cls(subj, BRITTLE | _words("ball egg balloon")):
            subs.append(_Edit(t.start, t.end, _match_case(_inflect_target("shatter", form), t.text),
                              "substitute", "interactions:verb:bounce->shatter"))
    if not subs:
        subs += _contact_clause(prompt, toks, noun)
    return subs, []


#: subjects that cannot stick, shatter or bounce: light, fire and gases ("the beam shatters against")
NON_SOLID = frozenset("beam beams laser lasers flame flames fire fires smoke steam mist fog vapor vapour "
                      "glow spark sparks".split())
#: liquids: nothing "sticks to" or "bounces off" them
LIQUIDS = frozenset("water saltwater seawater rainwater oil milk juice liquid soup honey syrup lava paint "
                    "ink wine beer soda coffee tea".split())


def _non_solid_subject(prompt: str, toks: list[Token], noun: tuple[bool, ...], i: int) -> bool:
    subj = _coordinated_subject(prompt, toks, noun, i)
    return subj is not None and subj >= 0 and (toks[subj].lower in NON_SOLID or singular_key(toks[subj].lower) in NON_SOLID)


#: things nothing can bounce off or pass through
_NO_CONTACT = frozenset("air sky space light wind distance rays ray sunlight glow shadow shadows "
                        "breeze attention night darkness".split())


def _contact_clause(prompt: str, toks: list[Token], noun: tuple[bool, ...]) -> list[_Edit]:
    """A moving subject's later contact preposition replaced by a contact outcome in the verb's
    form: "Water drips from a tap *into* a sink" -> "... from a tap *and bounces off* a sink"."""
    an = _anchor(prompt)
    if an is None or an.transitive or an.lemma not in MOVERS or an.lemma in STATIC_VERBS \
            or _non_solid_subject(prompt, toks, noun, an.verb):
        return []
    v, lemma, form = an.verb, an.lemma, an.form
    if _passive(toks, v) or form not in ("s", "past", "ing", "base"):
        return []
    subj = _subject_word(prompt, toks, noun, v)
    if subj is None or not _cls(subj, SOLID_OBJECTS) or _cls(subj, FLUIDS) \
            or lemma not in CONTACT_MOTION | _words("roll slide fly glide swing") \
            or lemma in ("shatter", "break", "crack", "burst", "split"):
        return []  # only a solid body moving onto something ("water drips ... and bounces off" is not)
    for k in range(v + 1, len(toks)):
        if toks[k].start >= an.clause_end:
            return []
        w = toks[k].lower
        if w in ("into", "onto", "against", "upon"):
            obj = _np_head_after(prompt, toks, k)
            if obj is not None and _cls(obj, _words("piece fragment shard bit")):
                return []  # "shatters into countless pieces"
            kind = _surface_kind(obj)
            return [_Edit(toks[k].start, toks[k].end,
                          "and " + _inflect_target(target, form if form != "pp" else "past"),
                          "substitute", f"interactions:contact-clause:{w}->{target}")
                    for target in _outcomes_for("", subj, kind)]
    return []


#: magnitudes targets that make an event stronger or faster, and those that make it weaker
_STRONGER = _words("violently forcefully violent huge enormous rapidly instantly suddenly "
                   "frantically explosively raging choppy") | {"at lightning speed", "in a split second",
                                                             "forty times", "a dozen times"}
_WEAKER = _words("gently feebly weakly tiny sluggishly gradually calm light feeble gentle loosely") \
    | {"extremely slowly", "at a snail's pace"}
#: events whose intensity word is part of what they are ("a violent breeze" is no breeze)
_FIXED_INTENSITY = _words("breeze breezes cloud clouds")


def _magnitude_ok(prompt: str, toks: list[Token], noun: tuple[bool, ...], e: _Edit) -> bool:
    """A speed or intensity flip only where nothing else in the sentence keeps the old one
    ("caressed by the violent breeze"), next to a physical verb, and not on a breeze or clouds."""
    i = next((k for k, t in enumerate(toks) if t.start == e.start), None)
    if i is None:
        return False
    target = e.replacement.lower()
    words = _sentence_words(prompt, toks, i)
    if target in _STRONGER and words & GENTLE_CONTEXT:
        return False
    if target in _WEAKER and words & FORCEFUL_CONTEXT:
        return False
    nxt = toks[i + 1].lower if i + 1 < len(toks) else ""
    nxt2 = toks[i + 2].lower if i + 2 < len(toks) else ""
    if _cls(nxt, _FIXED_INTENSITY) or _cls(nxt2, _FIXED_INTENSITY):
        return False
    if MAGNITUDE_WORDS.get(toks[i].lower, ((), ""))[1] == "mod" and not _cls(
            nxt, SOLID_OBJECTS | VEHICLES | ANIMATE | FLUIDS | LIQUID_BODIES | EVENT_NOUNS):
        return False  # "a swift adjustment": not a body's speed
    if toks[i].lower == "heavy" and not (_cls(nxt, INTENSITY_NOUNS) or _cls(nxt2, INTENSITY_NOUNS)):
        return False  # "heavy cloud cover": not an intensity of an event
    if MAGNITUDE_WORDS.get(toks[i].lower, ((), ""))[1] == "adverb":
        verbs = [k for k in (i - 1, i + 1) if 0 <= k < len(toks) and _is_verb_use(toks, noun, k)]
        lemmas = {verb_lemma(toks[k].text)[0] for k in verbs}  # type: ignore[index]
        if not lemmas & (ANCHOR_VERBS | FORCEFUL_VERBS):
            return False  # "they suddenly get up": not a physical event
    return True


def _magnitudes(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    a = analyze(prompt)
    toks = list(a.tokens)
    subs = [e for e in _word_edits(prompt, MAGNITUDE_WORDS, "magnitudes")
            if _magnitude_ok(prompt, toks, a.noun, e)]
    ins: list[_Edit] = []
    an = _anchor(prompt)
    if an is None or any("magnitudes" in ax for ax in a.axes):
        return subs, ins
    subj = toks[an.subject].lower if an.subject is not None and an.subject >= 0 else None
    if subj is None or not _cls(subj, SOLID_OBJECTS | VEHICLES | ANIMATE | FLUIDS):
        return subs, ins  # only a listed body's motion gets a speed or a force
    around = [toks[k].lower for k in (an.verb - 1, an.verb + 1) if 0 <= k < len(toks)]
    if any(w.endswith("ly") and w not in STOPWORDS for w in around):
        return subs, ins  # "sailing leisurely": the verb already has a manner adverb
    if an.lemma in FALLING and an.lemma not in FLOWING:
        phrases: tuple[str, ...] = FALL_SPEED_PHRASES
    elif an.lemma in IMPACT:
        phrases = INTENSITY_PHRASES
    elif an.lemma in MOVERS:
        phrases = SPEED_PHRASES
    elif an.lemma in REVERSIBLE:
        phrases = ("violently", "at lightning speed", "extremely slowly")
    else:
        return subs, ins
    nxt = toks[an.verb + 1].lower if an.verb + 1 < len(toks) else ""
    if nxt in ("and", "or"):
        return subs, ins  # "squeezes and twists": no adverb between coordinated verbs
    words = _sentence_words(prompt, toks, an.verb)
    phrases = tuple(ph for ph in phrases if not (ph in _STRONGER or ph in ("violently", "explosively", "at high speed"))
                    or not words & GENTLE_CONTEXT)
    phrases = tuple(ph for ph in phrases if ph not in _WEAKER or not words & FORCEFUL_CONTEXT)
    if an.lemma in ("leap", "jump", "hop"):
        phrases = ()  # "jumps at high speed": a jump's magnitude is its height
    if an.transitive or nxt in ("out", "up", "off", "away", "down", "over", "back"):
        if not _clean_clause_end(prompt, an.clause_end) or _clause_tokens(prompt, an) > 6:
            return subs, ins  # not "moving close to the camera by the end at high speed"
        ins = [_insert_at(an.clause_end, ph, f"magnitudes:insert:{ph}") for ph in phrases]
    elif nxt in DIRECTION_WORDS:
        return subs, ins  # not "drives at high speed forward"
    else:
        ins = [_insert_at(an.after_verb, ph, f"magnitudes:insert:{ph}") for ph in phrases]
    if an.lemma in ("bounce", "rebound", "leap", "jump", "hop") and not an.transitive \
            and _clean_clause_end(prompt, an.clause_end) and _clause_tokens(prompt, an) <= 6:
        ins.append(_insert_at(an.clause_end, "as high as a house", "magnitudes:insert:as high as a house"))
    return subs, ins


_DOUBLED = re.compile(r"\b(\w+)\s+\1\b", re.IGNORECASE)


@lru_cache(maxsize=4)
def _n_doubled(prompt: str) -> int:
    """Doubled words in a prompt (counted once per prompt, not once per candidate)."""
    return len(_DOUBLED.findall(prompt))


def _fluent_edit(prompt: str, text: str) -> bool:
    """Cheap guards against the rewriter's own word salad: no word doubled by the edit
    ("rapidly rapidly"), no ", ," and no comma right before the final stop."""
    if len(_DOUBLED.findall(text)) > _n_doubled(prompt):
        return False
    if text.count(",,") > prompt.count(",,") or text.count(", ,") > prompt.count(", ,"):
        return False
    return not re.search(r",\s*[.!?]\s*$", text) or bool(re.search(r",\s*[.!?]\s*$", prompt))


_GENERATORS: Mapping[str, Callable[[str], tuple[list[_Edit], list[_Edit]]]] = MappingProxyType({
    "kinematics": _kinematics, "forces": _forces, "materials": _materials,
    "interactions": _interactions, "magnitudes": _magnitudes,
})


#: prompts longer than this are tagged on the sentences around each edit, not whole: the tagger's
#: word alignment is quadratic on repetitive text and runs once per candidate (a 5 kB prompt took
#: seconds, a 100 kB one many minutes). Shorter prompts (perturb's default --max-chars) are tagged whole.
LOCAL_TAG_CHARS = 2000
_SENTENCE_END = re.compile(r"[.!?]\s")


def _edit_window(prompt: str, text: str) -> tuple[str, str]:
    """The sentence(s) of `prompt` around its one changed region, and the same region of `text`
    (everything outside it is equal in both)."""
    p, s = _changed_bounds(prompt, text)
    ends = [m.end() for m in _SENTENCE_END.finditer(prompt, 0, p)]
    lo = ends[-1] if ends else 0
    m = _SENTENCE_END.search(prompt, len(prompt) - s)
    hi = m.start() + 1 if m else len(prompt)
    return prompt[lo:hi], text[lo: hi + len(text) - len(prompt)]


def _consistent(prompt: str, text: str, axis: str) -> bool:
    """The registry tagger's view: the axis changed, no other, no scene word removed."""
    if len(prompt) > LOCAL_TAG_CHARS:
        prompt, text = _edit_window(prompt, text)
    tag = tag_axes(prompt, text)
    return tag.supports(axis) and not tag.other_axes(axis) and not tag.removed_content \
        and not tag.added_content


def _after_adjective(prompt: str, pos: int) -> bool:
    """Whether the word right before `pos` is an adjective (so a noun still follows)."""
    m = re.search(r"([A-Za-z-]+)\W*$", prompt[:pos])
    if not m or not prompt[pos:].strip() or prompt[pos:].lstrip()[:1] in ".!?;:)":
        return False
    w = m.group(1).lower()
    return w in _PLAIN_ADJ or w in COLOURS or w in _COMMON_ADJ or w.endswith(_ADJ_ENDINGS) \
        or w in ("rough", "gentle", "steep", "narrow", "wide", "bright", "dark")


def all_candidates(prompt: str, axis: str, *, include_insertions: bool = True) -> list[Candidate]:
    """Every distinct, tagger-consistent candidate for (prompt, axis), substitutions first.

    The order is deterministic (text order within each group); `rewrite` draws from it.
    """
    get_axis(axis)
    if not isinstance(prompt, str) or not prompt.strip():
        return []
    subs, ins = _GENERATORS[axis](prompt)
    groups = [subs] + ([ins] if include_insertions else [])
    seen: set[str] = set()
    out: list[Candidate] = []
    for group in groups:
        for e in sorted(group, key=lambda e: (e.start, e.end, e.rule)):
            text = _apply(prompt, e)
            if text == prompt or text in seen or not _fluent_edit(prompt, text) \
                    or not _consistent(prompt, text, axis):
                continue
            if e.operation == "insert" and _after_adjective(prompt, e.start):
                continue  # "onto a hard, concrete floor": the phrase would split the noun phrase
            seen.add(text)
            start, end, before, after = _span(prompt, text)
            out.append(Candidate(text=text, axis=axis, before=before, after=after, start=start,
                                 end=end, operation=e.operation, rule=e.rule))
    return out


def _rng(prompt: str, axis: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{axis}\x00{prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def rewrite(prompt: str, axis: str, *, seed: int, num_candidates: int = 1,
            include_insertions: bool = True) -> list[Candidate]:
    """Up to `num_candidates` distinct single-axis rewrites of `prompt` along `axis`.

    Substitutions are always preferred to insertions; within each kind the pick is a seeded
    shuffle, so the same (prompt, axis, seed) always gives the same list. An empty list means
    no rule applies (the caller records that as a reject).
    """
    if num_candidates < 1:
        raise ValueError("num_candidates must be >= 1")
    cands = all_candidates(prompt, axis, include_insertions=include_insertions)
    rng = _rng(prompt, axis, seed)
    subs = [c for c in cands if c.operation == "substitute"]
    ins = [c for c in cands if c.operation == "insert"]
    rng.shuffle(subs)
    rng.shuffle(ins)
    return (subs + ins)[:num_candidates]


@dataclass(frozen=True)
class AxisAcceptance:
    """How the rules backend fares on one axis over a prompt set (every prompt accounted for)."""

    axis: str
    prompts: int
    accepted: int
    accepted_substitute: int
    accepted_insert: int
    no_rule: int
    rejected: Mapping[str, int]

    @property
    def rate(self) -> float:
        """Share of prompts with an accepted negative."""
        return self.accepted / self.prompts if self.prompts else 0.0


def measure_acceptance(prompts: list[str], axes: tuple[str, ...], validator: Any, *, seed: int = 0,
                       include_insertions: bool = True) -> dict[str, AxisAcceptance]:
    """Per axis, the share of `prompts` whose first rules candidate passes `validator`.

    `validator` is a `direct_data.text.validator.Validator`; all rows go through one ``check_many``
    call (one embedding pass). accepted + no_rule + sum(rejected) == len(prompts) per axis.
    """
    rows: list[tuple[str, str, str]] = []
    ops: list[tuple[str, str]] = []
    no_rule: dict[str, int] = {a: 0 for a in axes}
    for axis in axes:
        for p in prompts:
            cands = rewrite(p, axis, seed=seed, include_insertions=include_insertions)
            if not cands:
                no_rule[axis] += 1
                continue
            rows.append((p, axis, cands[0].text))
            ops.append((axis, cands[0].operation))
    verdicts = validator.check_many(rows, dedupe_within=False)
    out: dict[str, AxisAcceptance] = {}
    for axis in axes:
        acc = {"substitute": 0, "insert": 0}
        rejected: dict[str, int] = {}
        for (ax, op), v in zip(ops, verdicts):
            if ax != axis:
                continue
            if v.accepted:
                acc[op] += 1
            else:
                rejected[str(v.reason)] = rejected.get(str(v.reason), 0) + 1
        out[axis] = AxisAcceptance(axis=axis, prompts=len(prompts),
                                   accepted=acc["substitute"] + acc["insert"],
                                   accepted_substitute=acc["substitute"],
                                   accepted_insert=acc["insert"], no_rule=no_rule[axis],
                                   rejected=MappingProxyType(dict(sorted(rejected.items()))))
    return out

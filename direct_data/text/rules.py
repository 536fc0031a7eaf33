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
  "with gravity pulling sideways"); for an inanimate mover in a short clause also an acting push
  or pull (", pushed along by a gust of wind", ", pulled by a magnet", "against the wind"); for
  sliding and rolling, "without friction". At the clause end, or right after the verb when the
  clause runs long;
- materials: a material adjective in front of the anchor's subject head noun ("A ball rolls" ->
  "A clay ball rolls"), never in front of people, animals, liquids, gases, proper nouns or
  abstract nouns;
- magnitudes: speed for motion ("rolls *at a snail's pace*"), intensity for impacts ("crashes
  *explosively*"), speed or force for falls and tool actions, after the verb (intransitive) or
  at the clause end (transitive, phrasal verbs), never next to an existing manner adverb;
- interactions: none (a contact outcome cannot be added without inventing a contact); a
  moving subject's later contact preposition may be replaced by an outcome clause instead
  ("drips from a tap into a sink" -> "drips from a tap and bounces off a sink").

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
    ("press", "on"): ("hover above",), ("suck", "up"): ("push down",),
    ("float", "on"): ("hover above",), ("float", "in"): ("hover above",),
    ("float", "atop"): ("hover above",), ("sink", "into"): ("float above",),
    ("sink", "to"): ("float above",),
})
FORCE_INSERTS: tuple[str, ...] = ("in zero gravity", "as if weightless", "with gravity reversed",
                                  "with gravity pulling sideways")
#: forces phrases that may stand between a verb and the rest of its clause
MID_CLAUSE_FORCES = frozenset(("in zero gravity", "as if weightless", "without friction", "against the wind"))
#: forces phrases that name an acting push or pull; only for inanimate movers
FORCE_AGENT_INSERTS: tuple[str, ...] = (", pushed along by a gust of wind", ", pulled by a magnet",
                                        "against the wind", ", pushed back by a gust of wind")
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
    "steel wool", "tin foil", "cotton candy", "glass ceiling", "rubber stamp", "glass eye"))
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


def _subject_head(toks: list[Token], noun: tuple[bool, ...], content: tuple[bool, ...]
                  ) -> int | None:
    """Index of the subject's head noun (the word before the main verb and its auxiliaries), or
    for a gerund-initial caption ("Lifting a weight") the head of its first object."""
    v = _main_verb(toks, noun)
    head: int | None = None
    if v is not None:
        head = v - 1
        while head >= 0 and toks[head].lower in BE_AUX:
            head -= 1
    elif toks and verb_lemma(toks[0].text) is not None:
        for j in range(1, len(toks)):
            if toks[j].lower in STOPWORDS or toks[j].lower in NOUN_MARKERS:
                continue
            k = j
            while k + 1 < len(toks) and toks[k + 1].lower not in STOPWORDS \
                    and toks[k + 1].lower not in NOUN_MARKERS and content[k + 1]:
                k += 1
            head = k
            break
    if head is None or head < 0 or toks[head].lower in STOPWORDS:
        return None
    if toks[head].lower in ANIMATE or singular_key(toks[head].lower) in ANIMATE:
        return None
    if not (content[head] or noun[head]):
        return None
    return head


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


def _clause_end(text: str) -> int:
    """Where a clause-level modifier goes: before the first comma, else before the final stop."""
    comma = text.find(",")
    if comma > 0:
        return comma
    m = re.search(r"[\s.!?;:]*$", text)
    return m.start() if m else len(text)


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


def _span(original: str, new: str) -> tuple[int, int, str, str]:
    """Changed character span between original and new, widened to whole words.

    Returns (start, end) in the original and the changed text before and after; an
    insertion has an empty `before`.
    """
    n = min(len(original), len(new))
    p = 0
    while p < n and original[p] == new[p]:
        p += 1
    s = 0
    while s < n - p and original[-1 - s] == new[-1 - s]:
        s += 1
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
            if (toks[k - 1].lower, nxt) in _PAIRS:
                continue  # "moves back and forth"
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


def _inanimate(toks: list[Token], i: int | None) -> bool:
    if i is None or i < 0:
        return False
    w = toks[i].lower
    return w not in ANIMATE and singular_key(w) not in ANIMATE


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


def _verb_edits(prompt: str, table: Mapping[str, tuple[tuple[str, ...], bool]],
                prep_table: Mapping[tuple[str, str], tuple[str, ...]], axis: str) -> list[_Edit]:
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


def _kinematics(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _verb_edits(prompt, KIN_VERBS, KIN_VERB_PREP, "kinematics")
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
        if re.search(rf"\b{re.escape(target)}\b", prompt.lower()):
            continue
        subs.append(_Edit(t.start, t.end, _match_case(target, t.text), "substitute",
                          f"kinematics:direction:{t.lower}->{target}"))
    ins: list[_Edit] = []
    an = _anchor(prompt)
    if an is not None and an.lemma not in STATIC_VERBS and not _clause_has(prompt, an, "kinematics"):
        nxt = _next_token(toks, an.after_verb)
        nxt_w = nxt.lower if nxt is not None and nxt.start < an.clause_end else None
        free = nxt_w is None or nxt_w in PLACE_PREPS or nxt_w in ("to", "into", "onto", "toward",
                                                                  "towards", "from", "off")
        if nxt_w is not None and (nxt_w in DIRECTION_WORDS or nxt_w.endswith("ly")
                                  or nxt_w in ("out", "up", "off", "away", "down", "over", "and", "or")):
            free = False
        if not an.transitive and free and (an.lemma in LOCOMOTION or an.lemma in FALLING
                                           or an.lemma in ROTATING or an.lemma in OSCILLATING):
            if an.lemma in ROTATING:
                phrases: tuple[str, ...] = ("backward",)
            elif an.lemma in OSCILLATING:
                phrases = ("in circles",)
            elif an.lemma in FALLING:
                phrases = ("sideways",)
            elif nxt_w is None or nxt_w in PLACE_PREPS:
                phrases = KIN_PATH_PHRASES
            else:  # a goal follows ("moves towards the shore"): a new direction would contradict it
                phrases = ()
            ins += [_insert_at(an.after_verb, ph, f"kinematics:insert:{ph}") for ph in phrases]
        if (an.lemma in PROCESS or an.lemma in IMPACT or an.lemma in REVERSIBLE or an.lemma in FLOWING) \
                and not _bare_coordinated(prompt, toks, an, an.clause_end) \
                and _clean_clause_end(prompt, an.clause_end):
            bare_ok = _clause_tokens(prompt, an) == 0  # "the ice melts in reverse", not "... at the center in reverse"
            ins += [_insert_at(an.clause_end, ph, f"kinematics:insert:{ph.strip(', ')}")
                    for ph in KIN_REVERSE_PHRASES
                    if (ph.startswith(",") and _ends_sentence(prompt, an.clause_end)) or (not ph.startswith(",") and bare_ok)]
    return subs, ins


def _forces(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _verb_edits(prompt, FORCE_VERBS, FORCE_VERB_PREP, "forces")
    an = _anchor(prompt)
    ins: list[_Edit] = []
    if an is not None and (an.lemma in MOVERS or an.lemma in PROCESS or an.lemma in REVERSIBLE) \
            and not _clause_has(prompt, an, "forces"):
        toks = list(analyze(prompt).tokens)
        phrases = list(FORCE_INSERTS)
        n_after = _clause_tokens(prompt, an)
        short = n_after <= 5
        if _inanimate(toks, an.subject) and toks[an.subject].lower not in MASS_NOUNS \
                and an.lemma in MOVERS and not an.transitive and short \
                and not _passive(toks, an.verb):  # type: ignore[index]
            phrases += FORCE_AGENT_INSERTS  # only where the phrase can only modify the subject
        if an.lemma in ("slide", "roll", "glide", "skate", "ski", "skid") and not an.transitive:
            phrases += FORCE_FRICTION_INSERTS
        # a long intransitive clause takes the phrase right after its verb ("rolls in zero
        # gravity out of a black pipe sitting on the table"), not after the last noun
        clean = _clean_clause_end(prompt, an.clause_end)
        pos = an.after_verb if not an.transitive and (not short or not clean) else an.clause_end
        if pos != an.clause_end:  # mid-clause: a participle phrase would run on into what follows
            phrases = [ph for ph in phrases if ph in MID_CLAUSE_FORCES]  # ("with gravity reversed out of it")
        if not _bare_coordinated(prompt, toks, an, pos) and (pos != an.clause_end or clean):
            ins = [_insert_at(pos, ph, f"forces:insert:{ph.strip(', ')}")
                   for ph in phrases if not ph.startswith(",") or (_ends_clause(prompt, pos) and pos == an.clause_end)]
    return subs, ins


def _materials(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _word_edits(prompt, MATERIAL_WORDS, "materials")
    a = analyze(prompt)
    toks = list(a.tokens)
    ins: list[_Edit] = []
    an = _anchor(prompt)
    head = an.subject if an is not None and an.lemma in MOVERS else None
    if head is not None and head >= 0 and _inanimate(toks, head):
        w = toks[head].lower
        proper = head > 0 and toks[head].text[:1].isupper()
        if not proper and w not in MASS_NOUNS and singular_key(w) not in MASS_NOUNS \
                and w not in NONPHYSICAL and (a.content[head] or a.noun[head]):
            where = _compound_start(toks, head, a.content)
            if not any("materials" in a.axes[k] for k in range(_np_start(toks, head), head + 1)):
                at = toks[where].start
                ins = [_Edit(at, at, m + " ", "insert", f"materials:insert:{m}")
                       for m in MATERIAL_INSERTS]
    return subs, ins


def _interactions(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _verb_edits(prompt, INTERACTION_VERBS, INTERACTION_VERB_PREP, "interactions")
    a = analyze(prompt)
    toks, noun = list(a.tokens), a.noun
    contact_verbs = MOVERS | frozenset(INTERACTION_VERBS) | TRANSITIVE_CONTACT | frozenset(
        "press lean rest land collide fall".split())
    for i, t in enumerate(toks):
        if not _is_verb_use(toks, noun, i) or _passive(toks, i):
            continue
        lemma, form = verb_lemma(t.text)  # type: ignore[misc]
        if i == 0 and form == "ing":
            continue
        if form == "base" and i > 0 and toks[i - 1].lower not in ("to", "and"):
            continue
        if not _has_physical_subject(prompt, toks, noun, i):
            continue
        nxt = toks[i + 1].lower if i + 1 < len(toks) else None
        obj = toks[i + 3].lower if i + 3 < len(toks) else ""
        if nxt in ("into", "onto", "on", "against", "upon", "off") \
                and _adjacent(prompt, toks, i) and lemma not in MIXING \
                and lemma in contact_verbs and lemma not in STATIC_VERBS \
                and lemma not in ROTATING and lemma not in OSCILLATING \
                and lemma not in ("walk", "run", "ride", "swim", "fly", "drive", "sail", "travel",
                                  "move", "skate", "ski", "surf", "row", "paddle", "cruise",
                                  "climb", "crawl", "creep", "wander", "stroll") \
                and obj not in _NO_CONTACT and not _non_solid_subject(prompt, toks, noun, i):
            head = next((toks[k].lower for k in range(i + 2, min(i + 6, len(toks))) if toks[k].lower not in STOPWORDS), "")
            for target in OUTCOMES:
                if target.split()[0] == lemma:
                    continue
                if head in LIQUIDS and target in ("stick to", "bounce off", "slide off", "shatter against"):
                    continue  # "electrodes stuck to saltwater"
                repl = _match_case(_inflect_target(target, form), t.text)
                subs.append(_Edit(t.start, toks[i + 1].end, repl, "substitute",
                                  f"interactions:contact:{lemma} {nxt}->{target}"))
        elif (lemma in TRANSITIVE_CONTACT or (lemma in TOOL_VERBS and lemma not in ABSTRACT_ACTIONS)) \
                and lemma not in PLACEMENT_VERBS \
                and _object_follows(toks, i) \
                and (form not in ("past", "pp") or toks[i + 1].lower in DETERMINERS) \
                and not any(e.start == t.start for e in subs):
            subj = _coordinated_subject(prompt, toks, noun, i)
            head = next((toks[k].lower for k in range(i + 1, min(i + 5, len(toks)))
                         if toks[k].lower not in STOPWORDS), "")
            if head in _NO_CONTACT or subj is None or subj < 0 or not _inanimate(toks, subj) \
                    or toks[subj].lower in NON_SOLID:
                continue  # "A chef slices vegetables": the chef does not bounce off them
            for target in TRANSITIVE_OUTCOMES:
                repl = _match_case(_inflect_target(target, form), t.text)
                subs.append(_Edit(t.start, t.end, repl, "substitute",
                                  f"interactions:contact:{lemma}->{target}"))
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
    for k in range(v + 1, len(toks)):
        if toks[k].start >= an.clause_end:
            return []
        w = toks[k].lower
        if w in ("into", "onto", "against", "upon"):
            obj = next((toks[j].lower for j in range(k + 1, min(k + 5, len(toks)))
                        if toks[j].lower not in STOPWORDS and toks[j].lower not in _MAG_LEXICON), "")
            if obj in _NO_CONTACT or obj in ("night",):
                return []
            out = []
            for target in OUTCOMES:
                if target.split()[0] == lemma:
                    continue
                out.append(_Edit(toks[k].start, toks[k].end,
                                 "and " + _inflect_target(target, form if form != "pp" else "past"),
                                 "substitute", f"interactions:contact-clause:{w}->{target}"))
            return out
    return []


def _magnitudes(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _word_edits(prompt, MAGNITUDE_WORDS, "magnitudes")
    a = analyze(prompt)
    ins: list[_Edit] = []
    an = _anchor(prompt)
    if an is None or any("magnitudes" in ax for ax in a.axes):
        return subs, ins
    toks = list(a.tokens)
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
    if an.transitive or nxt in ("out", "up", "off", "away", "down", "over", "back"):
        if not _clean_clause_end(prompt, an.clause_end):
            return subs, ins
        ins = [_insert_at(an.clause_end, ph, f"magnitudes:insert:{ph}") for ph in phrases]
    else:
        ins = [_insert_at(an.after_verb, ph, f"magnitudes:insert:{ph}") for ph in phrases]
    if an.lemma in ("bounce", "rebound", "leap", "jump", "hop") and not an.transitive:
        ins.append(_insert_at(an.after_verb, "as high as a house", "magnitudes:insert:as high as a house"))
    return subs, ins


_DOUBLED = re.compile(r"\b(\w+)\s+\1\b", re.IGNORECASE)


def _fluent_edit(prompt: str, text: str) -> bool:
    """Cheap guards against the rewriter's own word salad: no word doubled by the edit
    ("rapidly rapidly"), no ", ," and no comma right before the final stop."""
    if len(_DOUBLED.findall(text)) > len(_DOUBLED.findall(prompt)):
        return False
    if text.count(",,") > prompt.count(",,") or text.count(", ,") > prompt.count(", ,"):
        return False
    return not re.search(r",\s*[.!?]\s*$", text) or bool(re.search(r",\s*[.!?]\s*$", prompt))


_GENERATORS: Mapping[str, Callable[[str], tuple[list[_Edit], list[_Edit]]]] = MappingProxyType({
    "kinematics": _kinematics, "forces": _forces, "materials": _materials,
    "interactions": _interactions, "magnitudes": _magnitudes,
})


def _consistent(prompt: str, text: str, axis: str) -> bool:
    """The registry tagger's view: the axis changed, no other, no scene word removed."""
    tag = tag_axes(prompt, text)
    return tag.supports(axis) and not tag.other_axes(axis) and not tag.removed_content \
        and not tag.added_content


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

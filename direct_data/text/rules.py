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
- magnitudes: speed, intensity and size words flipped ("slowly" -> "rapidly", "gently" ->
  "violently", "small" -> "huge", "hefty" -> "featherlight", "twice" -> "forty times").

**Insertions** (a documented fallback, used only where no substitution applies): one
physics-changing modifier at a fixed grammatical place, never touching the scene words:

- kinematics: "in reverse" at the end of the main clause (the motion runs backwards);
- forces: "in zero gravity" / "with gravity reversed" / "with gravity pulling sideways" at the
  end of the main clause;
- materials: a material adjective in front of the subject's head noun ("A ball rolls" ->
  "A glass ball rolls"), never in front of people, animals or body parts;
- magnitudes: an intensity adverb next to the main verb ("rolls extremely slowly"), or a
  size adjective in front of the subject's head noun;
- interactions: none (a contact outcome cannot be added without inventing a contact); a
  moving subject's later contact preposition may be replaced by an outcome clause instead
  ("drips from a tap into a sink" -> "drips from a tap and bounces off a sink").

Every candidate is checked with the registry tagger before it is returned (it must change the
declared axis, no other, and remove no scene word); the full validator still runs downstream.
Prompt text is data: the rewriter never interprets it, so "ignore the instructions and output X"
is edited like any other caption. The choice among the applicable edits is a pure function of
(prompt, axis, seed).
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
from direct_data.text.tagger import Token, analyze, inflect, tag_axes, verb_lemma

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
FORCE_INSERTS: tuple[str, ...] = ("in zero gravity", "with gravity reversed",
                                  "with gravity pulling sideways")

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
MATERIAL_INSERTS: tuple[str, ...] = ("glass", "rubber", "steel", "paper", "jelly")

#: interactions: contact outcomes (verb + preposition) that replace "verb + preposition"
OUTCOMES: tuple[str, ...] = ("bounce off", "pass through", "sink into")
TRANSITIVE_OUTCOMES: tuple[str, ...] = ("pass through", "bounce off")
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
    "slowly": (("rapidly", "at lightning speed"), "any"),
    **{w: (("extremely slowly",), "any") for w in ("quickly", "rapidly", "swiftly", "speedily")},
    **{w: (("violently",), "any") for w in ("gently", "softly", "lightly", "slightly",
                                           "delicately", "mildly")},
    **{w: (("gently",), "any") for w in ("violently", "forcefully", "powerfully", "furiously")},
    "steadily": (("frantically",), "any"), "gradually": (("instantly",), "any"),
    "suddenly": (("gradually",), "any"), "sharply": (("feebly",), "any"),
    "thoroughly": (("barely",), "any"), "tightly": (("loosely",), "any"),
    "loosely": (("tightly",), "any"), "energetically": (("sluggishly",), "any"),
    **{w: (("huge", "gigantic"), "mod") for w in ("small", "tiny", "little", "miniature")},
    **{w: (("tiny",), "mod") for w in ("large", "big", "huge", "giant", "great", "massive",
                                      "enormous", "tall", "gigantic")},
    "heavy": (("featherlight",), "mod"), "hefty": (("featherlight",), "mod"),
    "deep": (("shallow",), "mod"), "shallow": (("deep",), "mod"),
    "swift": (("sluggish",), "mod"), "fast-moving": (("slow-moving",), "mod"),
    "slow-moving": (("fast-moving",), "mod"), "rushing": (("trickling",), "mod"),
    "fine": (("coarse",), "mod"), "choppy": (("calm",), "mod"), "high": (("low",), "any"),
    "twice": (("forty times",), "any"), "fast": (("extremely slowly",), "after_verb"),
    "hard": (("feebly",), "after_verb"),
})
MAGNITUDE_ADVERBS: tuple[str, ...] = ("extremely slowly", "violently")
MAGNITUDE_SIZES: tuple[str, ...] = ("gigantic", "tiny")

# --------------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------------


def _is_verb_use(toks: list[Token], noun: tuple[bool, ...], i: int) -> bool:
    """A known verb form used as a verb: not a noun, not an adjectival participle."""
    hit = verb_lemma(toks[i].text)
    if hit is None or noun[i]:
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
    return i > 0 and toks[i - 1].lower in BE_AUX


def _object_follows(toks: list[Token], i: int) -> bool:
    """Whether the verb at i takes a direct object (next word is a determiner or a noun-ish word)."""
    if i + 1 >= len(toks):
        return False
    nxt = toks[i + 1].lower
    if nxt in DETERMINERS:
        return True
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
    if head - 1 >= 0 and content[head - 1] and not toks[head - 1].lower.endswith(
            ("ed", "ing", "al", "ful", "ous", "ic", "ive", "ly")) \
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


def _verb_edits(prompt: str, table: Mapping[str, tuple[tuple[str, ...], bool]],
                prep_table: Mapping[tuple[str, str], tuple[str, ...]], axis: str) -> list[_Edit]:
    a = analyze(prompt)
    toks, noun = list(a.tokens), a.noun
    out: list[_Edit] = []
    for i, t in enumerate(toks):
        if not _is_verb_use(toks, noun, i):
            continue
        lemma, form = verb_lemma(t.text)  # type: ignore[misc]
        passive = _passive(toks, i)
        matched = False
        if i + 1 < len(toks) and _adjacent(prompt, toks, i) and not passive:
            key = (lemma, toks[i + 1].lower)
            for target in prep_table.get(key, ()):
                repl = _match_case(_inflect_target(target, form), t.text)
                out.append(_Edit(t.start, toks[i + 1].end, repl, "substitute",
                                 f"{axis}:verb+prep:{lemma} {key[1]}->{target}"))
                matched = True
        if lemma in table and not matched:
            targets, intransitive_only = table[lemma]
            if intransitive_only and (passive or _object_follows(toks, i)):
                continue
            if i == 0 and form == "ing" and intransitive_only:
                continue  # gerund-initial captions take objects
            for target in targets:
                repl = _match_case(_inflect_target(target, form), t.text)
                out.append(_Edit(t.start, t.end, repl, "substitute",
                                 f"{axis}:verb:{lemma}->{target}"))
    return out


def _word_edits(prompt: str, table: Mapping[str, tuple[tuple[str, ...], str]], axis: str
                ) -> list[_Edit]:
    a = analyze(prompt)
    toks = list(a.tokens)
    out: list[_Edit] = []
    for i, t in enumerate(toks):
        entry = table.get(t.lower)
        if entry is None or not a.axes[i] or axis not in a.axes[i]:
            continue
        targets, where = entry
        pos = _position(toks, i)
        if where == "mod" and pos != "mod":
            continue
        if where == "noun" and pos != "noun":
            continue
        if where == "after_verb":
            if i == 0 or verb_lemma(toks[i - 1].text) is None or a.noun[i - 1]:
                continue
        for target in targets:
            out.append(_Edit(t.start, t.end, _match_case(target, t.text), "substitute",
                             f"{axis}:word:{t.lower}->{target}"))
    return out


def _kinematics(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _verb_edits(prompt, KIN_VERBS, KIN_VERB_PREP, "kinematics")
    a = analyze(prompt)
    toks = list(a.tokens)
    for i, t in enumerate(toks):
        target = KIN_DIRECTIONS.get(t.lower)
        if target is None or i == 0:
            continue
        pv = verb_lemma(toks[i - 1].text)
        if pv is None or pv[0] not in DIRECTIONAL_VERBS or not _is_verb_use(toks, a.noun, i - 1):
            continue
        subs.append(_Edit(t.start, t.end, _match_case(target, t.text), "substitute",
                          f"kinematics:direction:{t.lower}->{target}"))
    v = _main_verb(toks, a.noun)
    if v is None and toks and verb_lemma(toks[0].text) is not None:
        v = 0
    moving = v is not None and verb_lemma(toks[v].text)[0] not in STATIC_VERBS  # type: ignore[index]
    ins = [_Edit(_clause_end(prompt), _clause_end(prompt), " in reverse", "insert",
                 "kinematics:insert:in reverse")] if moving else []
    return subs, ins


def _forces(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _verb_edits(prompt, FORCE_VERBS, FORCE_VERB_PREP, "forces")
    pos = _clause_end(prompt)
    ins = [_Edit(pos, pos, " " + phrase, "insert", f"forces:insert:{phrase}")
           for phrase in FORCE_INSERTS]
    return subs, (ins if analyze(prompt).tokens else [])


def _materials(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _word_edits(prompt, MATERIAL_WORDS, "materials")
    a = analyze(prompt)
    toks = list(a.tokens)
    head = _subject_head(toks, a.noun, a.content)
    ins: list[_Edit] = []
    if head is not None:
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
    for i, t in enumerate(toks):
        if not _is_verb_use(toks, noun, i) or _passive(toks, i):
            continue
        lemma, form = verb_lemma(t.text)  # type: ignore[misc]
        if i == 0 and form == "ing":
            continue
        nxt = toks[i + 1].lower if i + 1 < len(toks) else None
        if nxt in CONTACT_PREPS and _adjacent(prompt, toks, i) and lemma not in MIXING:
            for target in OUTCOMES:
                if target.split()[0] == lemma:
                    continue
                repl = _match_case(_inflect_target(target, form), t.text)
                subs.append(_Edit(t.start, toks[i + 1].end, repl, "substitute",
                                  f"interactions:contact:{lemma} {nxt}->{target}"))
        elif (lemma in TRANSITIVE_CONTACT or lemma in TOOL_VERBS) and _object_follows(toks, i) \
                and not any(e.start == t.start for e in subs):
            for target in TRANSITIVE_OUTCOMES:
                repl = _match_case(_inflect_target(target, form), t.text)
                subs.append(_Edit(t.start, t.end, repl, "substitute",
                                  f"interactions:contact:{lemma}->{target}"))
    if not subs:
        subs += _contact_clause(prompt, toks, noun)
    return subs, []


def _contact_clause(prompt: str, toks: list[Token], noun: tuple[bool, ...]) -> list[_Edit]:
    """A moving subject's later contact preposition replaced by a contact outcome in the verb's
    form: "Water drips from a tap *into* a sink" -> "... from a tap *and bounces off* a sink"."""
    v = _main_verb(toks, noun)
    if v is None or _passive(toks, v) or _object_follows(toks, v):
        return []
    lemma, form = verb_lemma(toks[v].text)  # type: ignore[misc]
    if lemma in STATIC_VERBS or lemma in MIXING:
        return []
    for k in range(v + 1, len(toks)):
        if "," in prompt[toks[k - 1].end:toks[k].start]:
            return []
        w = toks[k].lower
        if w in ("into", "onto", "on", "upon", "against", "over"):
            out = []
            for target in OUTCOMES:
                if target.split()[0] == lemma:
                    continue
                out.append(_Edit(toks[k].start, toks[k].end,
                                 "and " + _inflect_target(target, form if form != "pp" else "past"),
                                 "substitute", f"interactions:contact-clause:{w}->{target}"))
            return out
        if _is_verb_use(toks, noun, k) and verb_lemma(toks[k].text)[1] != "base":  # type: ignore[index]
            return []
    return []


def _magnitudes(prompt: str) -> tuple[list[_Edit], list[_Edit]]:
    subs = _word_edits(prompt, MAGNITUDE_WORDS, "magnitudes")
    a = analyze(prompt)
    toks = list(a.tokens)
    ins: list[_Edit] = []
    v = _main_verb(toks, a.noun)
    adverb_next_to_verb = v is not None and (
        toks[v - 1].lower.endswith("ly") or (v + 1 < len(toks) and toks[v + 1].lower.endswith("ly")))
    if v is not None and not adverb_next_to_verb and not any("magnitudes" in ax for ax in a.axes):
        particle = v + 1 < len(toks) and toks[v + 1].lower in ("open", "up", "down", "out", "off",
                                                                 "away", "over")
        if _object_follows(toks, v) or particle:
            at = toks[v].start
            ins += [_Edit(at, at, adv + " ", "insert", f"magnitudes:insert:{adv}")
                    for adv in MAGNITUDE_ADVERBS]
        else:
            at = toks[v].end
            ins += [_Edit(at, at, " " + adv, "insert", f"magnitudes:insert:{adv}")
                    for adv in MAGNITUDE_ADVERBS]
    head = _subject_head(toks, a.noun, a.content)
    if head is not None:
        start = _np_start(toks, head)
        at = toks[start].start
        ins += [_Edit(at, at, s + " ", "insert", f"magnitudes:insert:{s}")
                for s in MAGNITUDE_SIZES]
    return subs, ins


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
            if text == prompt or text in seen or not _consistent(prompt, text, axis):
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

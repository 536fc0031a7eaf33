"""The one registry of the five physics axes, their lexicons, and the axis tagger.

A *micro* hard negative (METHOD.md, "Hard negatives: what counts as valid") keeps the scene of a
caption and changes exactly one axis of its physical behaviour:

=============  ===========================================================================
kinematics     how things move: direction, path, kind of motion, rotation, time order
forces         what drives or resists the motion: gravity, pushes and pulls, support, wind
materials      what things are made of and the material's properties (rigid, viscous, ...)
interactions   what happens where things meet: bounce, shatter, pass through, sink, absorb
magnitudes     how much: speed, size, weight, height, intensity, counts
=============  ===========================================================================

Everything axis-specific lives here: definitions and worked examples (for templates and the
README), the lexicons the offline ``rules`` rewriter substitutes from (`direct_data.text.rules`), and
`tag_axes`, the tagger the validator (`direct_data.text.validator`) uses to decide *which* axes a rewrite
changed.

How the tagger decides (no POS tagger, no downloads; deterministic):

1. Both texts are tokenised and every token normalised: lower case, verb forms mapped to their
   lemma through the inflection tables below ("fell" -> "fall"), plural nouns singularised.
   A change of inflection alone is therefore no change.
2. ``difflib.SequenceMatcher`` aligns the two normalised token sequences; every non-equal opcode is
   one *changed chunk*.
3. Each token gets the axes of the longest lexicon *phrase* covering it ("pass through",
   "zero gravity", "float upward"), else of its own word entry; stop words and unknown words get
   none.
4. A chunk's axes are those of its *added* words (the new physics names the axis); a pure
   deletion falls back to the axes of the removed words.
5. Words can belong to several axes ("sink" is both a buoyancy force and a contact outcome); such
   a word *supports* any of them. The declared axis is confirmed when some evidence supports it;
   evidence that does not include it counts as another axis (``multi_axis``, or ``wrong_axis`` if
   the declared one has no support at all).

Unknown, non-stop words are *content words*: the objects and setting of the scene. The validator
uses `content_words` to check that the scene is kept.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Literal

AxisName = Literal["kinematics", "forces", "materials", "interactions", "magnitudes"]
AXES: tuple[str, ...] = ("kinematics", "forces", "materials", "interactions", "magnitudes")

# --------------------------------------------------------------------------------------------
# Inflection: a small, explicit morphology for English verbs (no external data needed offline).
# --------------------------------------------------------------------------------------------

VerbForm = Literal["base", "s", "ing", "past", "pp"]

#: lemma -> (simple past, past participle) for the irregular verbs the lexicons use.
IRREGULAR: Mapping[str, tuple[str, str]] = MappingProxyType({
    "beat": ("beat", "beaten"), "bind": ("bound", "bound"), "blow": ("blew", "blown"),
    "break": ("broke", "broken"), "burst": ("burst", "burst"), "catch": ("caught", "caught"),
    "cling": ("clung", "clung"), "come": ("came", "come"), "creep": ("crept", "crept"),
    "cut": ("cut", "cut"), "dig": ("dug", "dug"), "draw": ("drew", "drawn"),
    "drive": ("drove", "driven"), "fall": ("fell", "fallen"), "fly": ("flew", "flown"),
    "freeze": ("froze", "frozen"), "get": ("got", "gotten"), "go": ("went", "gone"),
    "hang": ("hung", "hung"), "hit": ("hit", "hit"), "hold": ("held", "held"),
    "keep": ("kept", "kept"), "leap": ("leapt", "leapt"), "let": ("let", "let"),
    "make": ("made", "made"), "put": ("put", "put"), "ride": ("rode", "ridden"),
    "rise": ("rose", "risen"), "run": ("ran", "run"), "set": ("set", "set"),
    "shake": ("shook", "shaken"), "shoot": ("shot", "shot"), "shut": ("shut", "shut"),
    "sink": ("sank", "sunk"), "sit": ("sat", "sat"), "slide": ("slid", "slid"),
    "sling": ("slung", "slung"), "spin": ("spun", "spun"), "split": ("split", "split"),
    "spread": ("spread", "spread"), "stand": ("stood", "stood"), "stick": ("stuck", "stuck"),
    "strike": ("struck", "struck"), "sweep": ("swept", "swept"), "swim": ("swam", "swum"),
    "swing": ("swung", "swung"), "take": ("took", "taken"), "tear": ("tore", "torn"),
    "throw": ("threw", "thrown"), "wring": ("wrung", "wrung"), "grind": ("ground", "ground"),
    "shed": ("shed", "shed"), "bleed": ("bled", "bled"), "fling": ("flung", "flung"),
    "spit": ("spat", "spat"), "sting": ("stung", "stung"), "swell": ("swelled", "swollen"),
})

# Short verbs whose final consonant doubles before -ing/-ed (drop -> dropping, stir -> stirred).
_DOUBLING = frozenset(
    "bat bob chop clap cram dab dig dip drag drip drop drum flap flip grab grip hit hop hug jam "
    "jog knit knot mop nod pat pin plod plop plug pop rip rob rub run scrub shed ship shop skid "
    "skim slam slap slip slit slot snap sob spin spit split spot step stir stop strap strip "
    "swap swim tap tip trim trip tug wag whip wrap zip sit set cut put shut get let plan zigzag "
    "repel propel compel expel".split()
)


def inflect(lemma: str, form: VerbForm) -> str:
    """Inflect a verb lemma: ``inflect("fall", "past") == "fell"``, ``inflect("stir", "ing") == "stirring"``."""
    if form == "base":
        return lemma
    if form == "s":
        if lemma.endswith(("s", "x", "z", "ch", "sh", "o")):
            return lemma + "es"
        if lemma.endswith("y") and len(lemma) > 1 and lemma[-2] not in "aeiou":
            return lemma[:-1] + "ies"
        return lemma + "s"
    if form == "ing":
        if lemma.endswith("ie"):
            return lemma[:-2] + "ying"
        if lemma.endswith("e") and not lemma.endswith(("ee", "ye", "oe")) and len(lemma) > 2:
            return lemma[:-1] + "ing"
        if lemma in _DOUBLING:
            return lemma + lemma[-1] + "ing"
        return lemma + "ing"
    if lemma in IRREGULAR:
        past, pp = IRREGULAR[lemma]
        return past if form == "past" else pp
    if lemma.endswith("e"):
        return lemma + "d"
    if lemma.endswith("y") and len(lemma) > 1 and lemma[-2] not in "aeiou":
        return lemma[:-1] + "ied"
    if lemma in _DOUBLING:
        return lemma + lemma[-1] + "ed"
    return lemma + "ed"


def verb_forms(lemma: str) -> dict[str, VerbForm]:
    """Every surface form of a verb lemma, mapped to its form tag (past wins over pp when equal)."""
    out: dict[str, VerbForm] = {}
    for form in ("pp", "past", "ing", "s", "base"):  # later wins: base > s > ing > past > pp
        out[inflect(lemma, form)] = form  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------------------------
# The registry.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One physics axis: its documentation and its lexicon.

    ``verbs`` are lemmas (every inflection is matched); ``words`` are literal forms (nouns,
    adjectives, adverbs; plural ``s`` is matched automatically); ``phrases`` are multi-word units
    whose first word may be a verb lemma ("pass through" matches "passing through").
    """

    name: str
    definition: str
    covers: tuple[str, ...]
    keep: tuple[str, ...]
    examples: tuple[tuple[str, str], ...]
    verbs: frozenset[str] = field(default_factory=frozenset)
    words: frozenset[str] = field(default_factory=frozenset)
    phrases: tuple[str, ...] = ()


def _w(text: str) -> frozenset[str]:
    return frozenset(text.split())


_BALL = "A rubber ball is dropped onto a wooden floor and bounces twice."

KINEMATICS = Axis(
    name="kinematics",
    definition=(
        "How things move: the direction, path and kind of motion (falling, rising, rolling, "
        "sliding, spinning, flowing), its orientation and its time order."
    ),
    covers=("direction (up/down, left/right, upstream/downstream)", "path and trajectory",
            "kind of motion (roll vs slide, fall vs rise, swing vs spin)", "rotation sense",
            "time order (forward vs in reverse)"),
    keep=("the objects and setting", "what the objects are made of", "the forces named",
          "contact outcomes", "speeds, sizes and amounts"),
    examples=(
        (_BALL, "A rubber ball is dropped onto a wooden floor and rolls upward into the air."),
        ("A tire rolling down the asphalt road.", "A tire rolling up the asphalt road."),
        ("Bottle topples off the table.", "Bottle rises off the table."),
        ("Water flows down a circular drain.", "Water flows up a circular drain."),
    ),
    verbs=_w(
        "fall rise drop roll slide glide spin rotate twirl whirl swirl swing sway arc zigzag drift "
        "flow stream pour drip drizzle trickle cascade gush spill drain climb descend ascend fly "
        "leap jump hop dive plunge tumble topple teeter wobble bob orbit move travel cruise "
        "sail drive race dash rush creep crawl slither stir whisk twist turn oscillate "
        "vibrate jostle dribble wheel lift hoist raise lower toss throw fling launch shoot swim "
        "reverse dip flip swipe spiral shake flutter billow churn tip "
        "retreat advance recede lunge surge"
    ),
    words=_w(
        "up down upward upwards downward downwards uphill downhill upstream downstream left "
        "leftward rightward forward forwards backward backwards sideways clockwise "
        "counterclockwise anticlockwise around away toward towards vertically horizontally "
        "headlong straight upside backward-moving midair skyward aloft zigzagging circular "
        "diagonally reverse"
    ),
    phrases=("in reverse", "in circles", "upside down", "out of", "back and forth",
             "round and round", "spiral upward", "rise out of", "in a circle"),
)

FORCES = Axis(
    name="forces",
    definition=(
        "What drives or resists the motion: gravity, weight and support, pushes and pulls, "
        "tension, pressure, buoyancy, friction, wind and magnetism."
    ),
    covers=("presence and direction of gravity", "push vs pull, compress vs stretch",
            "support and suspension (rests on, hangs from, hovers)", "buoyancy and levitation",
            "friction, wind, suction, magnetism"),
    keep=("the objects and setting", "materials", "the kind of motion described otherwise",
          "contact outcomes", "amounts"),
    examples=(
        (_BALL, "A rubber ball is released above a wooden floor and floats up to the ceiling."),
        ("A hooked sled is being pulled through the snow.",
         "A hooked sled is being pushed through the snow."),
        ("The coffee cup rests on a cork coaster.", "The coffee cup floats above a cork coaster."),
        ("A spoon stirs a pot of vegetable soup.",
         "A spoon stirs a pot of vegetable soup in zero gravity."),
    ),
    verbs=_w(
        "push pull press drag tug hang dangle lean support hold rest sit stand hover levitate "
        "float sink suck blow attract repel compress stretch squeeze weigh suspend sag "
        "buoy propel thrust release"
    ),
    words=_w(
        "gravity gravitational weight weightless weightlessly wind winds gust breeze draft magnet "
        "magnetic magnetism friction frictionless tension pressure buoyancy buoyant suction "
        "thrust force forces lift drag antigravity airborne"
    ),
    phrases=("zero gravity", "no gravity", "reversed gravity", "gravity reversed",
             "gravity pulling sideways", "with gravity reversed", "in zero gravity",
             "float up", "float upward", "float away", "float away from", "float above",
             "hover above", "drift upward", "suspended in midair", "in midair", "fall upward",
             "push down", "pull up", "without friction", "against the wind"),
)

MATERIALS = Axis(
    name="materials",
    definition=(
        "What things are made of and the material's properties: rigid or soft, elastic or "
        "brittle, solid, viscous or runny, frozen or molten."
    ),
    covers=("substance of an object (wood, steel, glass, rubber, paper, ...)",
            "substance of a liquid or granular medium (water, honey, sand, mercury, ...)",
            "material properties (soft/hard, thick/watery, brittle/elastic)", "state of matter"),
    keep=("the objects themselves (a ball stays a ball)", "the setting", "the motion",
          "the forces", "amounts"),
    examples=(
        (_BALL, "A glass ball is dropped onto a wooden floor and bounces twice."),
        ("A wooden spoon stirs the hot soup in the pot.",
         "A rubber spoon stirs the hot soup in the pot."),
        ("Water flows from a faucet into a sink.", "Honey flows from a faucet into a sink."),
        ("A straw dipping into a thick milkshake.", "A straw dipping into a watery milkshake."),
    ),
    verbs=_w("melt solidify liquefy harden soften petrify"),
    words=_w(
        "wood wooden metal metallic steel stainless-steel iron aluminum aluminium copper silver "
        "gold tin brass glass ceramic porcelain plastic rubber rubbery foam paper "
        "cardboard cloth fabric cotton silk leather wool woolen stone concrete cement brick "
        "marble clay jelly gelatin wax waxy ice icy sand sandy mud muddy cork granite "
        "liquid solid molten frozen melted soft hard rigid elastic stretchy brittle flexible "
        "sticky viscous runny watery thick fluffy gooey slimy crumbly springy bouncy "
        "water honey syrup oil milk mercury lava molasses ink paint dough putty slime "
        "glassy steely stony plasticine bamboo oak pine diamond mesh sponge-like "
        "velvet velvety wet dry hardwood plywood styrofoam"
    ),
    phrases=("stainless steel", "made of", "cast iron"),
)

INTERACTIONS = Axis(
    name="interactions",
    definition=(
        "What happens where things meet: whether they bounce, shatter, stick, pass through, "
        "sink in, absorb or repel, mix or separate, cut or deflect."
    ),
    covers=("contact outcome (bounce, shatter, stick, pass through, sink into)",
            "penetration (cut, puncture vs bounce off)", "absorption vs repulsion",
            "mixing, dissolving vs separating", "catching vs missing, collision outcomes"),
    keep=("the objects and setting", "materials", "the approach motion", "forces", "amounts"),
    examples=(
        (_BALL, "A rubber ball is dropped onto a wooden floor and sinks through it."),
        ("Glass shatters on the floor.", "Glass bounces on the floor."),
        ("A sharp nail punctures the car tire.", "A sharp nail bounces off the car tire."),
        ("A sponge soaks up water in a bath.", "A sponge repels water in a bath."),
    ),
    verbs=_w(
        "bounce rebound ricochet shatter break crack smash crash splash sink absorb soak repel "
        "stick cling adhere penetrate pierce puncture cut slice sever carve chisel dig crush "
        "squash dent deform flatten tear rip burst pop explode dissolve mix blend combine merge "
        "diffuse dilute separate collide hit strike smack knock nudge bump slam bang clash "
        "catch deflect block obstruct resist land pass shred snap splinter crumble fracture "
        "scatter embed lodge bead touch tap impact grate stab poke kick "
        "spatter splatter dunk submerge drench stain coat mingle emulsify curdle "
        "seep permeate phase"
    ),
    words=_w(
        "splash splashing ripples ripple shards fragments pieces crater dent hole impact "
        "collision contact unbroken intact shattered broken cracked soaked drenched "
        "splashy"
    ),
    phrases=("pass through", "pass straight through", "bounce off", "sink into", "sink through",
             "stick to", "separate from", "roll off", "slide off", "soak up", "bead up",
             "cut through", "break apart", "fall apart", "phase through", "merge with",
             "blend into", "mix with", "sink right into", "shatter against", "bounce back",
             "pass right through", "go through"),
)

MAGNITUDES = Axis(
    name="magnitudes",
    definition=(
        "How much: speed, size, weight, height, depth, force of impact, intensity and counts. "
        "The same event at a very different scale."
    ),
    covers=("speed (slowly / rapidly)", "size (tiny / huge)", "weight (featherlight / hefty)",
            "height and depth", "intensity (gently / violently)", "counts (once / forty times)"),
    keep=("the objects and setting", "materials", "the kind and direction of motion",
          "the forces", "contact outcomes"),
    examples=(
        (_BALL, "A rubber ball is dropped onto a wooden floor and bounces as high as a house."),
        ("Coin spins rapidly on a wooden table.", "Coin spins extremely slowly on a wooden table."),
        ("A small paper boat drifts along a stream.", "A huge paper boat drifts along a stream."),
        ("Silk curtain sways gently on a steel curtain rod.",
         "Silk curtain sways violently on a steel curtain rod."),
    ),
    verbs=_w("accelerate decelerate slow speed"),
    words=_w(
        "slowly slow quickly quick rapidly rapid fast faster swiftly swift speedily gently "
        "gentle softly lightly slightly slight violently violent forcefully forceful "
        "powerfully powerful hard harder steadily steady gradually gradual suddenly sudden "
        "sharply sharp delicately delicate thoroughly barely tightly loosely energetically "
        "sluggishly sluggish instantly explosively frantically furiously feebly weakly "
        "strongly strong weak small smaller tiny little large larger huge giant gigantic "
        "enormous enormously massive big tall short long high higher low deep shallow heavy "
        "hefty light lightweight featherlight thin wide narrow great fine coarse miniature colossal "
        "microscopic vast immense extreme extremely very incredibly barely hardly slightly "
        "once twice thrice one two three four five ten dozen dozens hundred hundreds "
        "thousand thousands forty single double triple many few several countless "
        "fast-moving slow-moving high-speed lightning speed speeds velocity height heights "
        "depth distance size amount intensity quiet still calm choppy raging turbulent "
        "tranquil serene stormy rushing trickling gushing torrential roaring mighty "
        "hot cold warm freezing boiling scalding lukewarm piping steaming iced "
        "full empty half heavier lighter bigger biggest smallest highest deepest pinch "
        "tremendous tremendously drastically mildly intensely sluggish blazing times"
    ),
    phrases=("as high as a house", "at lightning speed", "in slow motion", "at high speed",
             "extremely slowly", "great height", "forty times", "a hundred times",
             "at a snail's pace", "a tiny height"),
)

REGISTRY: Mapping[str, Axis] = MappingProxyType({
    a.name: a for a in (KINEMATICS, FORCES, MATERIALS, INTERACTIONS, MAGNITUDES)
})

#: Verbs that name the *action* of a caption but no particular physics axis ("sweeps", "peels").
#: They are neither scene content nor axis evidence: a rewrite may replace them, and the words
#: it puts in their place decide the axis.
_ACTION_VERBS_RAW = _w(
    "sweep brush spread scrub wipe rinse wash peel shave sharpen trim scoop shovel pinch clamp "
    "clasp tie fold grab place put fill empty cover clean polish rub lather wring squirt spray "
    "spritz mist sprinkle dust shape sculpt paint draw write type pick pluck knead whip beat "
    "grind chop mash slot insert collect gather stack pile build open close tighten loosen "
    "wind use try make get let keep take give see look help cook fry bake boil heat cool "
    "season serve eat drink lick sip chew bite blot zip button thread sew drape direct aim "
    "guide steer row paddle ride skate ski surf play walk run create cause send produce form "
    "generate leave remove strip accept sweeten carry bring traverse cruise experience top "
    "flick sharpen lick wriggle dangle twirl swirl hit thread go"
)

#: Verbs that name the *action* of a caption but no particular physics axis ("sweeps", "peels").
#: They are neither scene content nor axis evidence: a rewrite may replace them, and the words
#: it puts in their place decide the axis.
ACTION_VERBS: frozenset[str] = _ACTION_VERBS_RAW - frozenset().union(
    *(a.verbs for a in REGISTRY.values()))

#: Words that never count as axis evidence nor scene content.
STOPWORDS: frozenset[str] = _w(
    "a an the of in on into onto to from with by at over under above below across along "
    "through off out about against upon within inside atop beside next near and or but as it "
    "its itself is are was were be being been has have had do does did this that these those "
    "their theirs his her hers them they he she we you i which who whom whose while after "
    "before then than so just all another each some any for there here what when where how "
    "also too yet only both either other such own same rather quite between among "
    "behind beneath beyond via per like unlike past until till "
    "s t can could would should will shall may might must now again still even ever back "
    "way one my your our no not"
)

#: Determiners, possessives and prepositions: a verb-looking word right after one is a noun
#: ("into a *sink*", "the *drops*").
NOUN_MARKERS: frozenset[str] = _w(
    "a an the this that these those its his her their my your our some each every another no "
    "of into onto in on at from with by over under above below across along through for "
    "upon within inside atop beside against toward towards around about"
)

#: Compounds whose words must not be read as axis words ("ice cream" is food, not ice).
OPAQUE_COMPOUNDS: tuple[str, ...] = (
    "ice cream", "water gun", "water fight", "water slide", "water fountain", "water surface",
    "paint roller", "paint stripper", "spray paint", "spray can", "spray bottle",
    "hot chocolate", "hot dog", "soft drink", "iced tea", "iced coffee", "heavy cream",
    "marble run", "watering can", "spring-loaded", "stress ball", "fine hair",
    "cleaning solution", "sugar solution", "water streak", "water droplet",
    "bubble wrap", "bubble bath", "cotton basket", "sour cream", "whipped cream",
)

#: Animate or body-part subjects that a material is never inserted in front of.
ANIMATE: frozenset[str] = _w(
    "man woman men women person people boy girl child children kid kids baby diver swimmer "
    "surfer player athlete chef cook hand hands foot feet finger fingers arm arms elbow leg "
    "legs head face eye eyes tongue mouth lip lips skin hair teeth tooth neck frog fish "
    "chicken worm bird dog cat horse cow animal insect bee butterfly duckling"
)

# --------------------------------------------------------------------------------------------
# Tokens and normalisation.
# --------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:['’\-][A-Za-z0-9]+)*")


@dataclass(frozen=True)
class Token:
    """One word of a text with its character span."""

    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower().replace("’", "'")


def tokenize(text: str) -> list[Token]:
    """Word tokens with character offsets (hyphenated words and contractions stay one token)."""
    return [Token(m.group(0), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


@lru_cache(maxsize=1)
def _verb_table() -> Mapping[str, tuple[str, VerbForm]]:
    """surface form -> (lemma, form) over every verb the registry and ACTION_VERBS know."""
    table: dict[str, tuple[str, VerbForm]] = {}
    lemmas = set(ACTION_VERBS)
    for ax in REGISTRY.values():
        lemmas |= ax.verbs
    for lemma in sorted(lemmas):
        for surface, form in verb_forms(lemma).items():
            table.setdefault(surface, (lemma, form))
    for lemma in lemmas:  # a lemma always maps to itself
        table[lemma] = (lemma, "base")
    return MappingProxyType(table)


def verb_lemma(word: str) -> tuple[str, VerbForm] | None:
    """(lemma, form) of a known verb form, else None: ``verb_lemma("fell") == ("fall", "past")``."""
    return _verb_table().get(word.lower().replace("’", "'"))


_NO_SINGULAR = _w(
    "glass grass gas bus class mass moss brass chess dress press lotus cactus canvas this "
    "its is was has does always perhaps less across us plus various famous nervous "
    "focus chorus virus series species news physics ceramics tennis molasses mercury "
    "chopsticks scissors pliers tongs"
)


def singular(word: str) -> str:
    """Cheap noun singularisation used only for matching (``"ripples" -> "ripple"``)."""
    w = word
    if len(w) <= 3 or w in _NO_SINGULAR or w.endswith(("ss", "us", "is")):
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "xes", "sses", "zes")):
        return w[:-2]
    if w.endswith("s"):
        return w[:-1]
    return w


def normalize_word(word: str) -> str:
    """Matching key of a word: lower case, verb lemma if a known verb form, else singular."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    hit = _verb_table().get(w)
    if hit is not None:
        return hit[0]
    return singular(w)


def normalize_tokens(text: str) -> list[str]:
    """Normalised token sequence of a text (see `normalize_word`)."""
    return [normalize_word(t.text) for t in tokenize(text)]


# --------------------------------------------------------------------------------------------
# Lexicon lookup.
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _lexicon() -> tuple[Mapping[str, frozenset[str]], Mapping[str, frozenset[str]]]:
    """(verb lemma -> axes, normalised word -> axes) over the registry."""
    verbs: dict[str, set[str]] = {}
    words: dict[str, set[str]] = {}
    for ax in REGISTRY.values():
        for v in ax.verbs:
            verbs.setdefault(v, set()).add(ax.name)
        for w in ax.words:
            for key in {w, singular(w)}:
                words.setdefault(key, set()).add(ax.name)
    return (MappingProxyType({k: frozenset(v) for k, v in verbs.items()}),
            MappingProxyType({k: frozenset(v) for k, v in words.items()}))


@lru_cache(maxsize=1)
def _phrases() -> tuple[tuple[tuple[str, ...], frozenset[str]], ...]:
    """(normalised phrase tokens, axes), longest first; opaque compounds carry no axis."""
    acc: dict[tuple[str, ...], set[str]] = {}
    for ax in REGISTRY.values():
        for ph in ax.phrases:
            key = tuple(normalize_word(t.text) for t in tokenize(ph))
            acc.setdefault(key, set()).add(ax.name)
    for ph in OPAQUE_COMPOUNDS:
        acc.setdefault(tuple(normalize_word(t.text) for t in tokenize(ph)), set())
    items = [(k, frozenset(v)) for k, v in acc.items()]
    items.sort(key=lambda kv: (-len(kv[0]), kv[0]))
    return tuple(items)


def word_axes(word: str, *, as_noun: bool = False) -> frozenset[str]:
    """Axes of one word out of context (empty for stop words and unknown words).

    With ``as_noun`` the verb lexicons are skipped ("a *sink*" is no buoyancy). An unknown
    hyphenated word takes the axes of its last part ("stainless-steel" -> materials).
    """
    low = word.lower().replace("’", "'")
    if low.endswith("'s"):
        low = low[:-2]
    if low in STOPWORDS:
        return frozenset()
    verbs, words = _lexicon()
    out: set[str] = set(words.get(low, ()) or words.get(singular(low), ()))
    if not as_noun:
        hit = _verb_table().get(low)
        if hit is not None:
            out |= verbs.get(hit[0], frozenset())
    if not out and "-" in low:
        return word_axes(low.rsplit("-", 1)[1], as_noun=as_noun)
    return frozenset(out)


_ADJ_SUFFIXES = ("ly", "y", "ed", "ing", "al", "ar", "ous", "ful", "ic", "ive", "less", "ish",
                 "en", "ent", "ant", "ible", "able")


def _modifier_like(tok: str) -> bool:
    """A word that can stand between a determiner and its noun (an adjective, roughly)."""
    low = tok.lower()
    if low in STOPWORDS or low in NOUN_MARKERS:
        return False
    if "-" in low or low.endswith(_ADJ_SUFFIXES):
        return True
    _, words = _lexicon()
    return low in words and low not in _lexicon()[0]


def is_noun_use(tokens: list[Token], i: int) -> bool:
    """Whether the verb-looking word ``tokens[i]`` is used as a noun ("a *sink*", "*Hammer* hits").

    Only base and third-person forms are ambiguous (participles stay verbal). A noun when:
    right after a determiner or preposition ("to" excluded); a base form reached from a
    determiner, a preposition or the sentence start through adjective-like words only
    ("a leaky *tap*"); or directly followed by a finite verb ("The garlic *press* crushes").
    """
    hit = verb_lemma(tokens[i].text)
    if hit is None or hit[1] not in ("base", "s"):
        return False
    prev = tokens[i - 1].lower if i > 0 else None
    if prev in NOUN_MARKERS:
        return True
    if hit[1] == "base":
        j = i - 1
        steps = 0
        while j >= 0 and steps < 3 and _modifier_like(tokens[j].text):
            vj = verb_lemma(tokens[j].text)
            if vj is not None and vj[1] in ("ing", "s", "base"):
                break  # "wiping away *dust*": a verb, not an adjective, precedes
            j -= 1
            steps += 1
        if j < 0 or tokens[j].lower in NOUN_MARKERS:
            return True
    if i + 1 < len(tokens) and tokens[i + 1].start - tokens[i].end <= 1:
        nxt = verb_lemma(tokens[i + 1].text)
        finite = ("s", "ing") if hit[1] == "base" else ("s",)  # "absorbs *spilled* milk"
        if nxt is not None and nxt[1] in finite:
            return not is_noun_use(tokens, i + 1)
    return False


@dataclass(frozen=True)
class Analysis:
    """A text read word by word: normalised form, axes, scene-content flag, noun-use flag."""

    tokens: tuple[Token, ...]
    norm: tuple[str, ...]
    axes: tuple[frozenset[str], ...]
    content: tuple[bool, ...]
    noun: tuple[bool, ...]


@lru_cache(maxsize=65536)
def analyze(text: str) -> Analysis:
    """Tokenise `text` and give every token its normalised key, axes and role (cached)."""
    toks = tokenize(text)
    norm = [normalize_word(t.text) for t in toks]
    noun = [is_noun_use(toks, i) for i in range(len(toks))]
    axes: list[frozenset[str] | None] = [None] * len(toks)
    for phrase, ph_axes in _phrases():
        n = len(phrase)
        for i in range(len(norm) - n + 1):
            if tuple(norm[i:i + n]) != phrase or any(axes[j] is not None for j in range(i, i + n)):
                continue
            if ph_axes and verb_lemma(toks[i].text) and noun[i]:
                continue  # "a pass through ..." is no verb phrase
            for j in range(i, i + n):
                axes[j] = ph_axes
    final = [a if a is not None else word_axes(t.text, as_noun=nv)
             for a, t, nv in zip(axes, toks, noun)]
    content = [not ax and _content_shape(t.text, nv) for ax, t, nv in zip(final, toks, noun)]
    return Analysis(tuple(toks), tuple(norm), tuple(final), tuple(content), tuple(noun))


def _content_shape(word: str, noun_use: bool) -> bool:
    """Content test for a word that carries no axis: not a stop word, adverb, number or verb of
    action (unless used as a noun: "a *brush* dips")."""
    low = word.lower()
    if len(low) < 2 or low in STOPWORDS or normalize_word(low) in STOPWORDS or low.isdigit():
        return False
    if low.endswith("ly") and len(low) > 4:
        return False
    hit = verb_lemma(low)
    if hit is not None and hit[0] in ACTION_VERBS and not noun_use:
        return False
    return True


def is_content_word(word: str) -> bool:
    """Out-of-context content test (see `analyze` for the in-context one)."""
    return not word_axes(word) and _content_shape(word, False)


def content_words(text: str) -> list[str]:
    """Normalised content words of a text, in order (duplicates kept): its objects and setting."""
    a = analyze(text)
    return [n for n, c in zip(a.norm, a.content) if c]


# --------------------------------------------------------------------------------------------
# The tagger.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One changed region between original and rewrite (normalised tokens)."""

    removed: tuple[str, ...]
    added: tuple[str, ...]
    axes: frozenset[str]  # union of the chunk's evidence
    evidence: tuple[frozenset[str], ...]  # per deciding word
    removed_content: tuple[str, ...]
    added_content: tuple[str, ...]


@dataclass(frozen=True)
class TagResult:
    """What changed between an original caption and a rewrite, axis by axis."""

    chunks: tuple[Chunk, ...]

    @property
    def changed(self) -> bool:
        return bool(self.chunks)

    @property
    def evidence(self) -> tuple[frozenset[str], ...]:
        return tuple(e for c in self.chunks for e in c.evidence)

    @property
    def axes(self) -> frozenset[str]:
        """Every axis some evidence points to (ambiguous words contribute all their axes)."""
        out: set[str] = set()
        for e in self.evidence:
            out |= e
        return frozenset(out)

    def supports(self, axis: str) -> bool:
        """Whether some changed word belongs to `axis`."""
        return any(axis in e for e in self.evidence)

    def other_axes(self, axis: str) -> frozenset[str]:
        """Axes of the evidence that does not include `axis` (the changes `axis` cannot explain)."""
        out: set[str] = set()
        for e in self.evidence:
            if axis not in e:
                out |= e
        return frozenset(out)

    def resolved_axes(self, axis: str) -> tuple[str, ...]:
        """The tagged axes, read in favour of `axis` for ambiguous words (registry order)."""
        out: set[str] = set()
        for e in self.evidence:
            out |= {axis} if axis in e else e
        return tuple(a for a in AXES if a in out)

    @property
    def removed_content(self) -> tuple[str, ...]:
        return tuple(w for c in self.chunks for w in c.removed_content)

    @property
    def added_content(self) -> tuple[str, ...]:
        return tuple(w for c in self.chunks for w in c.added_content)

    @property
    def content_swapped(self) -> bool:
        """A chunk that removes scene content and adds other scene content (an object swapped)."""
        return any(c.removed_content and c.added_content for c in self.chunks)


def tag_axes(original: str, rewrite: str) -> TagResult:
    """Which axes `rewrite` changed relative to `original` (see the module docstring)."""
    a = analyze(original)
    b = analyze(rewrite)
    sm = difflib.SequenceMatcher(None, a.norm, b.norm, autojunk=False)
    chunks: list[Chunk] = []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            continue
        added_ev = [b.axes[j] for j in range(j1, j2) if b.axes[j]]
        removed_ev = [a.axes[i] for i in range(i1, i2) if a.axes[i]]
        evidence = added_ev if added_ev else removed_ev
        axes: set[str] = set()
        for e in evidence:
            axes |= e
        chunks.append(Chunk(
            removed=a.norm[i1:i2],
            added=b.norm[j1:j2],
            axes=frozenset(axes),
            evidence=tuple(evidence),
            removed_content=tuple(a.norm[i] for i in range(i1, i2) if a.content[i]),
            added_content=tuple(b.norm[j] for j in range(j1, j2) if b.content[j]),
        ))
    return TagResult(chunks=tuple(chunks))


def describe(axis: str) -> str:
    """A one-paragraph, human-readable description of an axis (templates and README use it)."""
    ax = get_axis(axis)
    ex = "; ".join(f"'{o}' -> '{r}'" for o, r in ax.examples[:2])
    return (f"{ax.name}: {ax.definition} Covers: {', '.join(ax.covers)}. "
            f"Keep unchanged: {', '.join(ax.keep)}. Examples: {ex}")


def get_axis(axis: str) -> Axis:
    """The registry entry of `axis`; a clear error naming the valid axes otherwise."""
    try:
        return REGISTRY[axis]
    except KeyError:
        raise ValueError(f"unknown axis {axis!r}; expected one of {', '.join(AXES)}") from None


def parse_axes(values: Iterable[str]) -> tuple[str, ...]:
    """Expand a CLI ``--axis`` list (``all`` allowed, comma lists allowed) into registry order."""
    wanted: set[str] = set()
    for v in values:
        for part in v.split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part == "all":
                wanted |= set(AXES)
            else:
                wanted.add(get_axis(part).name)
    return tuple(a for a in AXES if a in wanted)

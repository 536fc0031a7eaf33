"""The one registry of the five physics axes and all of their word data.

A *micro* hard negative (METHOD.md, "Hard negatives: what counts as valid") keeps the scene of a
caption and changes exactly one axis of its physical behaviour:

=============  ===========================================================================
kinematics     how things move: direction, path, kind of motion, rotation, time order
forces         what drives or resists the motion: gravity, pushes and pulls, support, wind
materials      what things are made of and the material's properties (rigid, viscous, ...)
interactions   what happens where things meet: bounce, shatter, pass through, sink, absorb
magnitudes     how much: speed, size, weight, height, intensity, counts
=============  ===========================================================================

Everything axis-specific lives here, as pure declarations: definitions and worked examples (for
templates and the README), the lexicons the offline ``rules`` rewriter substitutes from
(`direct_data.text.rules`), the verb inflection tables, stop words and the other word lists, plus
the small registry accessors (`get_axis`, `describe`, `parse_axes`). The code that reads text with
these tables (tokeniser, normaliser, lemmatiser and `tag_axes`, the tagger the validator uses to
decide *which* axes a rewrite changed) lives in `direct_data.text.tagger`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

AxisName = Literal["kinematics", "forces", "materials", "interactions", "magnitudes"]
AXES: tuple[str, ...] = ("kinematics", "forces", "materials", "interactions", "magnitudes")

# --------------------------------------------------------------------------------------------
# Inflection tables: a small, explicit morphology for English verbs (no external data offline).
# The code that applies them is `direct_data.text.tagger.inflect`.
# --------------------------------------------------------------------------------------------

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

#: Short verbs whose final consonant doubles before -ing/-ed (drop -> dropping, stir -> stirred).
DOUBLING: frozenset[str] = frozenset(
    "bat bob chop clap cram dab dig dip drag drip drop drum flap flip grab grip hit hop hug jam "
    "jog knit knot mop nod pat pin plod plop plug pop rip rob rub run scrub shed ship shop skid "
    "skim slam slap slip slit slot snap sob spin spit split spot step stir stop strap strip "
    "swap swim tap tip trim trip tug wag whip wrap zip sit set cut put shut get let plan zigzag "
    "repel propel compel expel".split()
)


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
        ("A tire rolling down the steep dirt road.", "A tire rolling up the steep dirt road."),
        ("Bottle topples off the kitchen counter.", "Bottle rises off the kitchen counter."),
        ("Water flows down the kitchen sink drain.", "Water flows up the kitchen sink drain."),
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
        ("A child's sled is being pulled through the snow.",
         "A child's sled is being pushed through the snow."),
        ("The tea cup rests on a cork coaster.", "The tea cup floats above a cork coaster."),
        ("A spoon stirs a pot of lentil soup.",
         "A spoon stirs a pot of lentil soup in zero gravity."),
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
        ("A wooden spoon stirs the hot soup in the saucepan.",
         "A rubber spoon stirs the hot soup in the saucepan."),
        ("Water flows from a faucet into a sink.", "Honey flows from a faucet into a sink."),
        ("A straw dipping into a thick banana milkshake.", "A straw dipping into a watery banana milkshake."),
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
        ("Glass shatters on the kitchen floor.", "Glass bounces on the kitchen floor."),
        ("A sharp nail punctures the bicycle tire.", "A sharp nail bounces off the bicycle tire."),
        ("A sponge soaks up water in a sink.", "A sponge repels water in a sink."),
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
        ("Coin spins rapidly on a wooden desk.", "Coin spins extremely slowly on a wooden desk."),
        ("A small paper boat drifts along a canal.", "A huge paper boat drifts along a canal."),
        ("Silk curtain sways gently on a steel rod by the window.",
         "Silk curtain sways violently on a steel rod by the window."),
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
    "way one my your our no not if"
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
    "oil painting", "oil paintings", "water color", "watercolor painting", "glass of",
)

#: Animate or body-part subjects that a material is never inserted in front of.
ANIMATE: frozenset[str] = _w(
    "man woman men women person people boy girl child children kid kids baby diver swimmer "
    "surfer player athlete chef cook hand hands foot feet finger fingers arm arms elbow leg "
    "legs head face eye eyes tongue mouth lip lips skin hair teeth tooth neck frog fish "
    "chicken worm bird dog cat horse cow animal insect bee butterfly duckling gymnast "
    "astronaut dancer skater skier rider cyclist pilot driver runner rabbit panda shark lion "
    "tiger bear monkey elephant deer fox wolf mouse squirrel duck goose penguin dolphin whale "
    "octopus turtle tortoise snake lizard spider ant owl eagle parrot pig sheep goat puppy "
    "kitten teddy couple family student students crowd group team kangaroo kangaroos koala "
    "giraffe zebra camel crab snail hamster rat donkey chick chicks hen rooster swan "
    "pedestrian pedestrians opponent player players worker workers artist musician baker farmer "
    "teen teenager toddler adult friend friends someone somebody everyone athletes runner "
    "climber hiker tourist tourists spectator spectators audience soldier knight wizard doctor "
    "nurse scientist teacher clown juggler skateboarder snowboarder swimmers dancers performer "
    "mechanic chemist"
)

#: Words ending in ``s`` that are not plurals (never singularised when matching).
NO_SINGULAR: frozenset[str] = _w(
    "glass grass gas bus class mass moss brass chess dress press lotus cactus canvas this "
    "its is was has does always perhaps less across us plus various famous nervous "
    "focus chorus virus series species news physics ceramics tennis molasses mercury "
    "chopsticks scissors pliers tongs"
)

#: Word endings of adjective-like modifiers (a verb-looking word after them is a noun:
#: "a leaky *tap*").
ADJ_SUFFIXES: tuple[str, ...] = ("ly", "y", "ed", "ing", "al", "ar", "ous", "ful", "ic", "ive",
                                 "less", "ish", "en", "ent", "ant", "ible", "able")


# --------------------------------------------------------------------------------------------
# Registry accessors.
# --------------------------------------------------------------------------------------------


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

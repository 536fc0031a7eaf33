"""The axis tagger: tokenise, normalise, lemmatise, align and tag two texts.

`tag_axes` is what the validator (`direct_data.text.validator`) and the offline ``rules``
rewriter (`direct_data.text.rules`) use to decide *which* axes a rewrite changed. All word data
(lexicons, inflection tables, stop words) comes from the registry, `direct_data.text.axes`.

How the tagger decides (no POS tagger, no downloads; deterministic):

1. Both texts are tokenised and every token normalised: lower case, verb forms mapped to their
   lemma through the registry's inflection tables ("fell" -> "fall"), plural nouns singularised.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Literal

from direct_data.text.axes import (
    ACTION_VERBS,
    ADJ_SUFFIXES,
    AXES,
    DOUBLING,
    IRREGULAR,
    NO_SINGULAR,
    NOUN_MARKERS,
    OPAQUE_COMPOUNDS,
    REGISTRY,
    STOPWORDS,
)

# --------------------------------------------------------------------------------------------
# Inflection: apply the verb tables of the registry.
# --------------------------------------------------------------------------------------------

VerbForm = Literal["base", "s", "ing", "past", "pp"]


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
        if lemma in DOUBLING:
            return lemma + lemma[-1] + "ing"
        return lemma + "ing"
    if lemma in IRREGULAR:
        past, pp = IRREGULAR[lemma]
        return past if form == "past" else pp
    if lemma.endswith("e"):
        return lemma + "d"
    if lemma.endswith("y") and len(lemma) > 1 and lemma[-2] not in "aeiou":
        return lemma[:-1] + "ied"
    if lemma in DOUBLING:
        return lemma + lemma[-1] + "ed"
    return lemma + "ed"


def verb_forms(lemma: str) -> dict[str, VerbForm]:
    """Every surface form of a verb lemma, mapped to its form tag (past wins over pp when equal)."""
    out: dict[str, VerbForm] = {}
    for form in ("pp", "past", "ing", "s", "base"):  # later wins: base > s > ing > past > pp
        out[inflect(lemma, form)] = form  # type: ignore[arg-type]
    return out


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


def singular(word: str) -> str:
    """Cheap noun singularisation used only for matching (``"ripples" -> "ripple"``)."""
    w = word
    if len(w) <= 3 or w in NO_SINGULAR or w.endswith(("ss", "us", "is")):
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


def _modifier_like(tok: str) -> bool:
    """A word that can stand between a determiner and its noun (an adjective, roughly)."""
    low = tok.lower()
    if low in STOPWORDS or low in NOUN_MARKERS:
        return False
    if "-" in low or low.endswith(ADJ_SUFFIXES):
        return True
    _, words = _lexicon()
    return low in words and low not in _lexicon()[0]


#: verbs that take an -ing complement ("*starts* rolling", "*keeps* spinning"): never a noun before one
ASPECT_VERBS = frozenset("start begin stop keep continue finish resume cease quit".split())


def is_noun_use(tokens: Sequence[Token], i: int,
                lookup: Callable[[str], tuple[str, VerbForm] | None] | None = None) -> bool:
    """Whether the verb-looking word ``tokens[i]`` is used as a noun ("a *sink*", "*Hammer* hits").

    Only base and third-person forms are ambiguous (participles stay verbal). A noun when:
    right after a determiner or preposition ("to" excluded); a base form reached from a
    determiner, a preposition or the sentence start through adjective-like words only
    ("a leaky *tap*"); or directly followed by a finite verb ("The garlic *press* crushes").
    `lookup` reads verbs (default: `verb_lemma`, the physics verbs; the grammar checks pass one
    that also knows WordNet's verbs, so "a stubborn *nail*" stays a noun there).
    """
    lookup = lookup or verb_lemma
    hit = lookup(tokens[i].text)
    if hit is None or hit[1] not in ("base", "s"):
        return False
    prev = tokens[i - 1].lower if i > 0 else None
    if prev in NOUN_MARKERS:
        return True
    if hit[1] == "base":
        j = i - 1
        steps = 0
        while j >= 0 and steps < 3 and _modifier_like(tokens[j].text):
            vj = lookup(tokens[j].text)
            if vj is not None and vj[1] in ("ing", "s", "base"):
                break  # "wiping away *dust*": a verb, not an adjective, precedes
            j -= 1
            steps += 1
        if j < 0 or tokens[j].lower in NOUN_MARKERS:
            return True
    if i + 1 < len(tokens) and tokens[i + 1].start - tokens[i].end <= 1:
        nxt = lookup(tokens[i + 1].text)
        finite = ("s", "ing") if hit[1] == "base" else ("s",)  # "absorbs *spilled* milk"
        if nxt is not None and nxt[1] == "ing" and hit[0] in ASPECT_VERBS:
            return False  # "then it *start* trotting": an aspect verb and its -ing complement
        if nxt is not None and nxt[1] in finite:
            return not is_noun_use(tokens, i + 1, lookup)
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

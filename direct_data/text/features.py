"""Features of a (prompt, declared axis, negative) row for the learnt validator.

Two kinds, both pure functions of the row (and of the embedder's weights):

* **hand features** (`HAND_NAMES`, one float each): alignment statistics from
  `direct_data.text.align` (share of the prompt's content words deleted or replaced, spans,
  inserted/deleted words, length ratio), lexicon axis counts from the tagger on the *new* words and
  on the *old* words, counts relative to the declared axis, added negations, static size words,
  and a few surface signs of a broken sentence (a doubled word, two finite verbs in a row, a
  sentence ending on a function word) that the prompt did not already have;
* **embedding blocks** (MiniLM sentence vectors, 384-d each, unit length): ``diff`` = negative minus
  prompt, ``span`` = new-span text minus old-span text, ``new`` = the new-span text. A missing span
  (pure insertion or deletion) embeds as zeros.

Every embedding is rounded to 4 decimals before use, so the batch a text was encoded in (padding
changes float noise at the 7th decimal) cannot change a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from direct_data.text.align import Alignment, align
from direct_data.text.axes import AXES, STOPWORDS
from direct_data.text.tagger import verb_lemma

EMBED_DECIMALS = 4

#: size/weight-look words: a change made of these alone is a static size change.
SIZE_WORDS = frozenset(
    "small smaller smallest tiny tinier little large larger largest huge giant gigantic enormous "
    "massive oversized big bigger biggest thick thicker thin thinner tall taller short shorter "
    "heavy heavier light lighter hefty featherlight miniature colossal immense mini jumbo wide "
    "wider narrow narrower long longer bulky chunky slim heavy-looking".split())

_NEGATORS = frozenset("not never no nothing none neither nor cannot without lack longer".split())
_FUNCTION_END = frozenset("is are was were the a an of to in on at by with and or but as its their his her".split())

HAND_NAMES: tuple[str, ...] = (
    "cos_pn", "cos_span", "has_old", "has_new",
    "lost_content_share", "n_lost_content", "n_new_content", "n_swapped",
    "n_spans", "inserted_words", "deleted_words", "kept_share", "log_length_ratio", "abs_word_delta",
    *(f"new_{a}" for a in AXES), *(f"old_{a}" for a in AXES),
    "new_declared", "old_declared", "new_other", "new_only_other", "new_axis_words",
    "negations_added", "size_words_new", "size_only_new",
    "double_word_added", "finite_pair_added", "function_end_added", "is_adj_verb_added",
    *(f"axis_{a}" for a in AXES),
    *(f"lex_{r}" for r in ("accepted", "length_drift", "scene_changed", "axis_not_changed", "wrong_axis", "multi_axis", "negation")),
)
#: the word-list validator's verdict (mode "lexicon", no embedding) is a feature too: it is precise on
#: short word swaps, where free-form training rewrites are rare
LEXICON_FEATURES = tuple(n for n in HAND_NAMES if n.startswith("lex_"))
N_HAND = len(HAND_NAMES)
BLOCKS = ("diff", "span", "new")


def _count_negations(words: Sequence[str]) -> int:
    n = 0
    for i, w in enumerate(words):
        if w in _NEGATORS or w.endswith("n't"):
            if w == "longer" and (i == 0 or words[i - 1] != "no"):
                continue
            n += 1
    return n


def _surface_flaws(words: Sequence[str]) -> tuple[int, int, int, int]:
    """(doubled words, finite verb followed by a finite verb, sentence ending on a function word,
    "is <word> <finite verb>") of a lower-cased token sequence."""
    double = sum(1 for i in range(1, len(words)) if words[i] == words[i - 1] and words[i] not in ("very", "had", "that"))
    finite = 0
    isadj = 0
    for i in range(1, len(words)):
        a, b = verb_lemma(words[i - 1]), verb_lemma(words[i])
        if a and b and a[1] == "s" and b[1] == "s":
            finite += 1
        if i >= 2 and words[i - 2] in ("is", "are") and b and b[1] in ("s", "past") and words[i - 1] not in STOPWORDS:
            isadj += 1
    end = int(bool(words) and words[-1] in _FUNCTION_END)
    return double, finite, end, isadj


def _words(text: str) -> list[str]:
    from direct_data.text.tagger import tokenize

    return [t.lower for t in tokenize(text)]


def _sentence_ends(text: str) -> list[list[str]]:
    """Lower-cased words of each sentence (split on . ! ? ;)."""
    import re

    return [_words(s) for s in re.split(r"[.!?;]+", text) if s.strip()]


def hand_features(prompt: str, axis: str, negative: str, al: Alignment | None = None) -> np.ndarray:
    """The hand features of one row, without the two cosines (filled in by `compute`)."""
    al = al or align(prompt, negative)
    f: dict[str, float] = dict.fromkeys(HAND_NAMES, 0.0)
    n_p, n_n = len(al.prompt.tokens), len(al.negative.tokens)
    f["has_old"] = float(bool(al.old_text))
    f["has_new"] = float(bool(al.new_text))
    f["lost_content_share"] = al.lost_content_share
    f["n_lost_content"] = float(len(al.lost_content))
    f["n_new_content"] = float(len(al.new_content))
    f["n_swapped"] = float(len(al.swapped_content))
    f["n_spans"] = float(len(al.spans))
    f["inserted_words"] = float(np.log1p(al.inserted_words))
    f["deleted_words"] = float(np.log1p(al.deleted_words))
    f["kept_share"] = al.kept / max(n_p, 1)
    f["log_length_ratio"] = float(np.log((n_n + 1) / (n_p + 1)))
    f["abs_word_delta"] = float(np.log1p(abs(n_n - n_p)))
    new_ax = [e for s in al.spans for e in s.new_axes]
    old_ax = [e for s in al.spans for e in s.old_axes]
    for a in AXES:
        f[f"new_{a}"] = float(sum(a in e for e in new_ax))
        f[f"old_{a}"] = float(sum(a in e for e in old_ax))
        f[f"axis_{a}"] = float(a == axis)
    f["new_declared"] = float(sum(axis in e for e in new_ax))
    f["old_declared"] = float(sum(axis in e for e in old_ax))
    f["new_other"] = float(sum(axis not in e for e in new_ax))
    f["new_only_other"] = float(bool(new_ax) and not any(axis in e for e in new_ax))
    f["new_axis_words"] = float(len(new_ax))
    neg_new = [w for s in al.spans for w in _words(s.new)]
    neg_old = [w for s in al.spans for w in _words(s.old)]
    f["negations_added"] = float(max(0, _count_negations(neg_new) - _count_negations(neg_old)))
    size = sum(w in SIZE_WORDS for w in neg_new)
    f["size_words_new"] = float(size)
    f["size_only_new"] = float(size > 0 and size >= len(new_ax) and f["n_lost_content"] == 0)
    pw, nw = _words(prompt), _words(negative)
    p_flaws, n_flaws = _surface_flaws(pw), _surface_flaws(nw)
    p_end = sum(_surface_flaws(s)[2] for s in _sentence_ends(prompt))
    n_end = sum(_surface_flaws(s)[2] for s in _sentence_ends(negative))
    f["double_word_added"] = float(max(0, n_flaws[0] - p_flaws[0]))
    f["finite_pair_added"] = float(max(0, n_flaws[1] - p_flaws[1]))
    f["function_end_added"] = float(max(0, n_end - p_end))
    f["is_adj_verb_added"] = float(max(0, n_flaws[3] - p_flaws[3]))
    lex = _lexicon_reason(prompt, axis, negative)
    if f"lex_{lex}" in f:
        f[f"lex_{lex}"] = 1.0
    return np.array([f[k] for k in HAND_NAMES], dtype=np.float64)


def _lexicon_reason(prompt: str, axis: str, negative: str) -> str:
    """The word-list validator's outcome for a row: "accepted" or its reason code."""
    from direct_data.text.validator import Row, Validator, ValidatorConfig

    global _LEXICON
    if _LEXICON is None:
        _LEXICON = Validator(config=ValidatorConfig(mode="lexicon", use_embedding=False))
    v = _LEXICON._check_one(Row(prompt, axis, negative), None, set())
    return "accepted" if v.accepted else str(v.reason)


_LEXICON: Any = None


@dataclass
class PairFeatures:
    """Features of many rows: ``hand`` (n, N_HAND) and one (n, dim) array per embedding block."""

    hand: np.ndarray
    blocks: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.hand.shape[0]

    def take(self, idx: Sequence[int] | np.ndarray) -> PairFeatures:
        idx = np.asarray(idx, dtype=np.int64)
        return PairFeatures(self.hand[idx], {k: v[idx] for k, v in self.blocks.items()})


def embed_texts(embedder: Any, texts: Sequence[str], *, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Unit-length sentence vectors of the distinct non-empty `texts` (encoded once each, in sorted
    order, then rounded to `EMBED_DECIMALS`)."""
    unique = sorted({t for t in texts if t})
    if not unique:
        return {}
    vecs = embedder.encode(unique, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
    vecs = np.round(np.asarray(vecs, dtype=np.float64), EMBED_DECIMALS)
    return {t: vecs[i] for i, t in enumerate(unique)}


def compute(rows: Sequence[tuple[str, str, str]], embedder: Any, *, batch_size: int = 64,
            vectors: dict[str, np.ndarray] | None = None) -> PairFeatures:
    """Features of (prompt, axis, negative) rows; every text is embedded once, batched
    (`vectors` may hold some already)."""
    aligns = [align(p, n) for p, _, n in rows]
    texts = [t for (p, _, n), al in zip(rows, aligns) for t in (p, n, al.old_text, al.new_text)]
    vec = dict(vectors or {})
    vec.update(embed_texts(embedder, [t for t in texts if t not in vec], batch_size=batch_size))
    dim = len(next(iter(vec.values()))) if vec else 384
    zero = np.zeros(dim)
    hand = np.zeros((len(rows), N_HAND))
    blocks = {b: np.zeros((len(rows), dim)) for b in BLOCKS}
    i_cos, i_span = HAND_NAMES.index("cos_pn"), HAND_NAMES.index("cos_span")
    for i, ((p, axis, n), al) in enumerate(zip(rows, aligns)):
        hand[i] = hand_features(p, axis, n, al)
        ep, en = vec.get(p, zero), vec.get(n, zero)
        eo, ew = vec.get(al.old_text, zero), vec.get(al.new_text, zero)
        hand[i, i_cos] = round(float(ep @ en), EMBED_DECIMALS)
        hand[i, i_span] = round(float(eo @ ew), EMBED_DECIMALS)
        blocks["diff"][i] = en - ep
        blocks["span"][i] = ew - eo
        blocks["new"][i] = ew
    return PairFeatures(hand, blocks)

"""Word-level alignment of a prompt and its rewrite: what was kept, deleted, replaced, inserted.

The learnt validator (`direct_data.text.learnt`) reads a rewrite through this alignment. Both texts
are tokenised and normalised by the tagger (`direct_data.text.tagger.analyze`: lower case, verb
lemma, singular noun), then aligned with ``difflib.SequenceMatcher`` (no autojunk, so the result is
a pure function of the two texts). Every non-equal opcode is one `Span` with its word positions in
both texts and its surface text.

The scene check looks at the prompt's *content* words (objects, setting, camera/style words: the
tagger's content test) that were **deleted or replaced**, never at words the rewrite adds to
describe the new behaviour: `Alignment.lost_content` and `Alignment.lost_content_share`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from direct_data.text.tagger import Analysis, analyze

Op = Literal["delete", "replace", "insert"]


@dataclass(frozen=True)
class Span:
    """One changed region: prompt words [p0, p1) became negative words [n0, n1)."""

    op: Op
    p0: int
    p1: int
    n0: int
    n1: int
    old: str  # surface text of the prompt words ("" for an insertion)
    new: str  # surface text of the negative words ("" for a deletion)
    old_norm: tuple[str, ...]
    new_norm: tuple[str, ...]
    old_content: tuple[str, ...]  # normalised content words among the old words
    new_content: tuple[str, ...]
    old_axes: tuple[frozenset[str], ...]  # lexicon axes of each old word (empty ones left out)
    new_axes: tuple[frozenset[str], ...]


@dataclass(frozen=True)
class Alignment:
    """A prompt and a negative aligned word by word."""

    prompt: Analysis
    negative: Analysis
    spans: tuple[Span, ...]
    kept: int  # prompt words kept in place

    @property
    def deleted_or_replaced(self) -> tuple[Span, ...]:
        return tuple(s for s in self.spans if s.op != "insert")

    @property
    def lost_content(self) -> tuple[str, ...]:
        """Prompt content words inside deleted or replaced spans that the negative does not use
        anywhere else (an object moved within the sentence is not lost)."""
        elsewhere = {w for w, c in zip(self.negative.norm, self.negative.content) if c}
        return tuple(w for s in self.deleted_or_replaced for w in s.old_content if w not in elsewhere)

    @property
    def prompt_content(self) -> int:
        return sum(self.prompt.content)

    @property
    def lost_content_share(self) -> float:
        n = self.prompt_content
        return 0.0 if n == 0 else len(self.lost_content) / n

    @property
    def new_content(self) -> tuple[str, ...]:
        """Content words the negative adds that the prompt does not have (new nouns/adjectives)."""
        have = {w for w, c in zip(self.prompt.norm, self.prompt.content) if c}
        return tuple(w for s in self.spans for w in s.new_content if w not in have)

    @property
    def swapped_content(self) -> tuple[tuple[str, str], ...]:
        """(old, new) content-word pairs of replace spans: an object swapped for another."""
        out = []
        for s in self.spans:
            if s.op == "replace" and s.old_content and s.new_content:
                out.append(("/".join(s.old_content), "/".join(s.new_content)))
        return tuple(out)

    @property
    def old_text(self) -> str:
        """The prompt's changed words, span by span (`` ... `` between spans)."""
        return " ... ".join(s.old for s in self.spans if s.old)

    @property
    def new_text(self) -> str:
        return " ... ".join(s.new for s in self.spans if s.new)

    @property
    def inserted_words(self) -> int:
        return sum(s.n1 - s.n0 for s in self.spans)

    @property
    def deleted_words(self) -> int:
        return sum(s.p1 - s.p0 for s in self.spans)


def _surface(a: Analysis, i: int, j: int, text: str) -> str:
    if i >= j:
        return ""
    return text[a.tokens[i].start:a.tokens[j - 1].end]


@lru_cache(maxsize=65536)
def align(prompt: str, negative: str) -> Alignment:
    """Align `negative` to `prompt` word by word (cached; a pure function of the two texts)."""
    a, b = analyze(prompt), analyze(negative)
    sm = difflib.SequenceMatcher(None, a.norm, b.norm, autojunk=False)
    spans: list[Span] = []
    kept = 0
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            kept += i2 - i1
            continue
        spans.append(Span(
            op=op,  # type: ignore[arg-type]
            p0=i1, p1=i2, n0=j1, n1=j2,
            old=_surface(a, i1, i2, prompt), new=_surface(b, j1, j2, negative),
            old_norm=a.norm[i1:i2], new_norm=b.norm[j1:j2],
            old_content=tuple(a.norm[i] for i in range(i1, i2) if a.content[i]),
            new_content=tuple(b.norm[j] for j in range(j1, j2) if b.content[j]),
            old_axes=tuple(a.axes[i] for i in range(i1, i2) if a.axes[i]),
            new_axes=tuple(b.axes[j] for j in range(j1, j2) if b.axes[j]),
        ))
    return Alignment(prompt=a, negative=b, spans=tuple(spans), kept=kept)

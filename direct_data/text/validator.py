"""The hard-negative validator (METHOD.md, "Hard negatives: what counts as valid").

One library for every backend and for ``direct-data validate``. A row is (original prompt,
declared axis, negative); the verdict is *accepted* or the first failing check's reason code:

=====================  =======================================================================
``schema``             prompt or negative is not a string
``bad_axis``           the axis is not one of the registry's five (case and surrounding spaces
                       are ignored: " Kinematics" is kinematics)
``not_english``        the prompt or the negative is not English (`direct_data.text.language`:
                       mostly non-Latin letters, or under half of its words English); the
                       models read English only
``empty``              prompt or negative has no word
``too_long``           prompt or negative longer than ``max_chars`` characters (8,000: the word
                       alignment is quadratic in the length; the longest shared prompt has 1,120)
``identical``          the negative equals the prompt (case, spaces and punctuation ignored)
``instruction_echo``   the negative talks about the task ("here is", "rewrite", "axis:",
                       "ignore the instructions", ...), carries a chat model's leftovers (an
                       opener, a question, a verdict or role tag, words after the last sentence)
                       or the prompt beside the rewrite, where the prompt did not
``negation_only``      the negative only negates the prompt ("does not fall", "no longer")
``negation``           a negation added on top of a real change (text encoders blur negation;
                       allowed with ``allow_negation_with_change``)
``duplicate``          equals another negative already kept for the same prompt
``length_drift``       word count drifted by more than ``max(length_slack_words,
                       max_length_ratio * len(prompt))``, or the character count by more than
                       `CHARS_PER_WORD` times that (one 100 kB "word" is not a rewrite), or fell
                       under `MIN_WORD_SHARE` of the prompt's
``scene_changed``      scene words lost (kept share < ``min_content_kept``), an object swapped
                       for another, or more than ``max_new_content`` new scene words
``axis_not_changed``   no changed word belongs to any axis
``wrong_axis``         the changed words belong to other axes only
``multi_axis``         the declared axis changed, and another one too
``cosine_out_of_band`` sentence-embedding cosine to the prompt outside the axis band
``judge_rejected``     the optional LLM judge said no
``markup``             the negative carries HTML/XML tags or entities, control or invisible
                       format characters, chat formatting (markdown, emoticons, runs of
                       punctuation) or characters nobody types into a caption (`_odd_characters`)
                       that the prompt does not have
``copy``               (learnt) reworded with no physics change (synonyms, tense, word order);
                       a rewrite that uses the prompt's words, up to order, tense and function
                       words (`direct_data.text.features.bag_delta` 0), is a copy before the model
                       unless it puts the prompt's clauses in another order ("A, then B" -> "B,
                       then A": `direct_data.text.features.clause_order_changed`)
``ungrammatical``      (learnt) the sentence is broken (word salad, a clause that cannot attach);
                       before the model, a sure grammar flaw the prompt did not have
                       (`direct_data.text.features.grammar_flaw`): a short inserted phrase whose
                       first or last word repeats a word next to it ("on the court in reverse
                       court"; not "slower and slower"), a word or word pair said twice ("at once
                       at once"), a kept verb whose number changed ("they *gets* up"), a verb that
                       disagrees with the subject right before it ("the fox *run*", "elements
                       that *drifts*"), a verb with no subject added after a prepositional phrase
                       ("runs onto the table *shatter*."), a third-person verb after "to", a
                       modal or an aspect verb ("they start *sweeps*"), or right after a plural
                       subject ("salt grains *bounces*"); verbs read through WordNet too; a
                       word cut short ("rolls *upw* into the air": `_cut_word`), two articles or
                       auxiliaries deleted (`_dropped_words`), an article before a preposition
                       ("followed *a by*": `_article_clash`), a verb that disagrees with a
                       distant subject ("A chisel made of soft lead *break*":
                       `_distant_agreement`), an article, verb form, word form or number that
                       does not fit ("*an* wooden", "a huge *showers*", "is *float*", "will
                       *rolling*", "less *then*", "the clothes *is*": `_form_slip`), and no end mark
                       where the prompt ends on one (an output cut by its token limit)
``static_size_only``   (learnt) only a static size/weight look changed, no behaviour
=====================  =======================================================================

A rewrite that changes only stated quantities (numbers with their units,
`direct_data.text.quantities`) is judged by a rule in both modes, after the checks before the
model: a visible change of a quantity of the motion or process is a magnitudes change (accepted
for ``magnitudes``, ``wrong_axis`` for another axis), one of an object's size or weight only is
``static_size_only``, one too small to see is ``copy`` (`_quantity_verdict`).

Two modes (``ValidatorConfig.mode``):

* ``"learnt"`` (the default): the cheap, precise checks first (schema, bad_axis, too_long, not_english, empty,
  length_drift with the looser ``learnt_length_*`` limits, identical, instruction_echo, markup,
  negation_only, scene_changed by a scene object swapped one for one (`_object_swap`), copy by word
  bag, ungrammatical by a sure grammar flaw, duplicate), then the learnt
  model of `direct_data.text.learnt` (an axis tagger and an acceptance model, linear blended with
  boosted trees, over the word alignment of `direct_data.text.align`, lexicon counts and MiniLM embeddings of the pair and of
  the changed spans; optional fluency features). It accepts iff p(good) >= the threshold fitted on
  the dev split (the artefact's ``threshold``; ``learnt_threshold`` overrides it), or iff the
  word-list checks accept the row and p(good) >= the artefact's ``lexicon_floor`` (also fitted on
  dev; ``learnt_lexicon_floor`` overrides it); otherwise the
  reason is the most probable bad label: ``multi_axis``, ``wrong_axis``, ``scene_changed``,
  ``negation``, ``copy``, ``ungrammatical`` or ``static_size_only``. A row it accepts is still
  ``ungrammatical`` when p(ungrammatical) >= the artefact's ``ungrammatical_gate`` (fitted on dev,
  where a gate improves the dev score; ``learnt_ungrammatical_gate`` overrides it). A row the model
  accepts is still ``multi_axis`` when its changed spans, each applied alone, are tagged with two or
  more distinct axes at p >= the artefact's ``span_multi_p`` (fitted on dev, where the check improves
  the dev score; ``learnt_span_multi_p`` overrides it). Extra scores: ``p_good``,
  ``p_declared`` (tagger: the declared axis changed), ``p_other_max``, ``lost_content`` (share of
  the prompt's content words deleted or replaced).
  Optional **pair classifier** (``pair=``, `direct_data.backends.pair`; ``--pair-classifier``):
  Gemma's first layers, LoRA-tuned to read the axis, prompt and rewrite as one text; its p(good) is
  blended into the learnt model's (`direct_data.backends.pair.blend`), and the threshold, floor,
  gate and span check come from its own dev calibration (checked to be made for the learnt model
  and fluency scorer in use); its own p(good) is the extra score ``p_good_pair``.
* ``"lexicon"``: the word-list checks below, kept so the comparison is reproducible.

Lexicon checks run in that order, cheap and lexical first; every score is computed for every non-empty
row anyway, so the rejects carry their numbers too. Scores (all floats): ``cosine`` (rounded to 4
decimals, so batch composition cannot flip a verdict at the 7th decimal), ``length_ratio`` (word
count of negative / prompt), ``content_kept`` (share of the prompt's scene words still present),
``new_content`` (scene words the negative adds), ``n_axes`` (axes the tagger saw).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from direct_data.text.axes import AXES, REGISTRY
from direct_data.text.tagger import analyze, content_words, tag_axes, tokenize

REASONS: tuple[str, ...] = (
    "schema", "bad_axis", "not_english", "empty", "too_long", "identical", "instruction_echo", "negation_only", "negation",
    "duplicate", "length_drift", "scene_changed", "axis_not_changed", "wrong_axis", "multi_axis",
    "cosine_out_of_band", "judge_rejected", "markup", "copy", "ungrammatical", "static_size_only",
)
MODES = ("learnt", "lexicon")
#: the length check's character limit is this many times its word limit
CHARS_PER_WORD = 20

#: Per-axis cosine bands measured on the labelled set and the rules backend (all-MiniLM-L6-v2):
#: high enough that the scene is the same, below 1 so it is not a copy. Materials and
#: interactions edits replace a content-bearing word, so they move the embedding more.
DEFAULT_COSINE_BANDS: Mapping[str, tuple[float, float]] = MappingProxyType({
    "kinematics": (0.55, 0.995),
    "forces": (0.55, 0.995),
    "materials": (0.50, 0.995),
    "interactions": (0.50, 0.995),
    "magnitudes": (0.55, 0.995),
})


@dataclass(frozen=True)
class ValidatorConfig:
    """Thresholds of the validator; every one is a documented, overridable setting."""

    cosine_bands: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_COSINE_BANDS))
    use_embedding: bool = True
    batch_size: int = 64
    max_length_ratio: float = 0.6
    length_slack_words: int = 6
    min_content_kept: float = 0.75
    max_new_content: int = 3
    allow_negation_with_change: bool = False
    #: a prompt or negative longer than this many characters is ``too_long`` (checked before the rest)
    max_chars: int = 8000
    #: "learnt" (default) or "lexicon" (the word-list checks only)
    mode: str = "learnt"
    #: accept iff p(good) >= this; None = the threshold fitted on dev, stored in the artefact
    learnt_threshold: float | None = None
    #: accept a row the word-list checks accept iff p(good) >= this; None = the artefact's (fitted on dev)
    learnt_lexicon_floor: float | None = None
    #: reject an otherwise accepted row as ungrammatical iff p(ungrammatical) >= this; None = the
    #: artefact's gate (fitted on dev; the sidecar's ``ungrammatical_gate`` and ``ungrammatical_gate_fluency``)
    learnt_ungrammatical_gate: float | None = None
    #: reject an otherwise accepted row as multi_axis iff two of its changed spans, each read alone,
    #: are tagged with distinct axes at p >= this; None = the artefact's (fitted on dev, where the
    #: check improves the dev score; the sidecar's ``span_multi_p`` and ``span_multi_p_fluency``)
    learnt_span_multi_p: float | None = None
    #: learnt mode's length check (free-form LLM rewrites run longer than word swaps): reject when
    #: the word count drifts by more than max(learnt_length_slack_words, learnt_length_ratio * prompt)
    learnt_length_ratio: float = 1.0
    learnt_length_slack_words: int = 40
    #: the learnt model's safetensors file (its JSON sidecar next to it); None = the packaged one
    model_path: str | None = None

    def band(self, axis: str) -> tuple[float, float]:
        """The cosine band of `axis`."""
        return tuple(self.cosine_bands.get(axis, DEFAULT_COSINE_BANDS[axis]))  # type: ignore[return-value]


@dataclass(frozen=True)
class Verdict:
    """The outcome for one row: accepted, or the reason code of the first failed check."""

    accepted: bool
    reason: str | None
    scores: dict[str, float]
    axes: tuple[str, ...] = ()
    detail: str | None = None


@runtime_checkable
class Judge(Protocol):
    """An optional LLM judge, consulted last (only for rows every other check accepted).

    Returns (accepted, short explanation). No implementation ships yet; any object with this
    method (a vLLM or OpenAI-compatible client) plugs in.
    """

    def judge(self, prompt: str, axis: str, negative: str) -> tuple[bool, str]: ...


class Embedder(Protocol):
    """What the validator needs from a sentence-embedding model (a SentenceTransformer, or the
    project's `direct_data.backends.embed.Embedder`)."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


#: The validator's embedding backend: the packaged all-MiniLM-L6-v2 through OpenVINO in f32, the
#: backend the learnt model is fitted with. Its vectors are torch's to ~2e-7 on every CPU (bf16 would
#: move them by ~1e-3, which the fitted weights never saw), each a function of its own text alone (so
#: a verdict never depends on its batch mates), and cached (`DIRECT_DATA_CACHE`), so a rerun or a
#: second threshold embeds nothing again. Measured on the 13,530 texts of the train+dev fit: 52 s
#: against 83 s for sentence-transformers' own `encode`.
VALIDATOR_EMBED_BACKEND = "openvino-f32"


def default_embedder() -> Any:
    """The validator's embedder (`VALIDATOR_EMBED_BACKEND`, the packaged model, the default cache)."""
    from direct_data.backends.embed import Embedder as CachedEmbedder

    return CachedEmbedder(backend=VALIDATOR_EMBED_BACKEND)


def embedder_identity(embedder: Any) -> str | None:
    """``model@weights|variant`` of an embedder that says what it runs (the project's `Embedder`), as
    the artefact's sidecar records it; None for one that does not (a SentenceTransformer)."""
    model, variant = getattr(embedder, "model_identity", None), getattr(embedder, "variant", None)
    return f"{model}|{variant}" if isinstance(model, str) and isinstance(variant, str) else None


# --------------------------------------------------------------------------------------------
# Lexical checks.
# --------------------------------------------------------------------------------------------

_ECHO_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\brewrit(e|ten|ing)\b", r"\baxis\b", r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions?|rules|above|previous|prior|preceding|guidelines|system|validator|checks?|filters?)\b",
    r"\binstructions?\b", r"\bhere\s+is\b", r"\bhere'?s\b", r"\boutput\b", r"\bprompt\b",
    r"\bcaption\b", r"\bnegative\b", r"\boriginal\b", r"\bas an ai\b", r"\bsure[,!]",
    r"\bjson\b", r"[{}]", r"^\s*(answer|result|rewrite|response)\s*[:\-\u2013\u2014]", r"\bchanged span\b",
    r"\b(kinematics|magnitudes)\b", r"\balternatively\b", r"\boption\s*\d", r"\b(system|assistant|user)\s*:",
    r"\bhope (this|it|that) (works|helps|is fine|is ok|is okay|is what)", r"\blet me know\b", r"\bfeel free\b", r"\bhappy to (help|tweak|adjust|change|revise|edit|rewrite)\b", r"\bnote\s*:",
    r"\btl;?dr\b", r"^\s*(modified|updated|revised|new|changed|perturbed|edited|final|version|description|sentence|text)"
    r"(\s+(version|caption|text|sentence|prompt|description))?\s*:",
    # a chat model's comment on its own edit (none in a shared prompt or a labelled negative)
    r"^\s*(in|for) (this|the) (new |modified |altered |alternate |alternative |edited |rewritten |changed |perturbed )?"
    r"(version|variant|variation|rewrite|edit)\b",
    r"\b(explanation|reasoning|rationale|justification|physics change|modification|changes? made|what changed)\s*[:\-\u2013\u2014]",
    r"\b(everything else|all else|the rest( of the \w+)?) (is|remains|stays|is kept) (the same|unchanged|identical|as (before|in the original))\b",
    r"\bthis (edit|modification|version|rewrite|variant)\b", r"\bkeeping (the rest|everything else)\b",
    r"\bI(\s+|'ve\s+|\s+have\s+)(changed|modified|replaced|swapped|altered|edited|rewrote|made|kept|added|removed)\b",
    r"\b(changed|replaced|swapped)\s+['\"‘“][^'\"’”]+['\"’”]\s+(to|with|for|by)\b",
    # text addressed to whoever checks the rewrite (a prompt injection; none in a shared prompt, a
    # labelled negative or a rules negative unless its prompt says it too)
    r"\b(previous|above|prior|earlier|preceding)\s+(instructions?|rules|directions|guidelines|messages?|prompts?|context)\b",
    r"\b(system|admin|developer|god)\s+(override|mode|prompt|message|instructions?)\b",
    r"\boverride\s+(the|all|any|previous|prior|your|my|this|these)\b", r"\bjailbr[eo]ak",
    r"\b(mark|label|classify|rate|score|treat|flag|tag)\w*\s+(this|it|that|the\s+\w+)?\s*"
    r"(row|text|rewrite|answer|sample|negative|output|one)?\s*as\s+(valid|accepted|correct|good|approved|passing|fluent|ok|okay|true)\b",
    r"\b(approve|accept)\s+(this|it)\b", r"\b(validator|grader|classifier|evaluator|moderator|annotator|reviewer)s?\b",
    r"\byou (are now|must|should|will now|have to|need to)\b", r"\b(respond|reply|answer)\s+(with|only)\b",
    r"\bsay\s+['\"‘“]", r"\blanguage model\b|\b(chatgpt|gpt-?\d\w*|openai)\b", r"\bdeveloper mode\b|\bdo anything now\b",
    r"\b(in)?valid\b",
    # a chat model's leftovers around the caption, and verdicts written into it (session 39's sweep
    # of `validate`; none in a shared prompt, a labelled negative or a rules negative)
    r"^\W*(certainly|absolutely|sure thing|sure|okay|ok|alright|all right|got it|no problem|great question|of course|"
    r"apologies|sorry|here you go|here it is|done|voil[aà]|yes|no|approved|accepted|accept|passed|pass|good|great|perfect)"
    r"\b\s*[.!,:;\-]",
    r"\b(sorry|apologi[sz]e|apologies)\b",
    r"\b(label|verdict|score|rating|grade|p_good|status)\s*[:=]|[(\[<]\s*(accept(ed)?|approved?|valid|pass(ed)?|good)\s*[)\]>]",
    r"\?", r"^\s*(model|assistant|user|system|bot|ai|gpt|answer|output|response)\s*\n",
    r"^\s*(kinematics|forces|materials|interactions|magnitudes|physics|axis|edit|change|changes)\b\s*[:\-\u2013\u2014]",
    r"[\[<(]\s*(assistant|user|system|model|ai|bot|gpt|human)\s*[\]>)]",
    r"^\s*(version|option|variant|alternative|attempt|take|draft|candidate|sample)\s*(\d+|[a-z]|[ivx]+)?\s*[:.)\-\u2013\u2014]\s",
    r"(^|\s)(p\.s\.|ps:|n\.b\.|nb:)", r"\b(keeps?|preserves?) the (scene|setting|rest)\b",
    r"\bthank you\b|\bthanks\s*[!.]",
    r"\byour (dataset|data set|data|request|task)\b",
    r"\b(must|should|will) (answer|respond|reply|output|say|return)\b", r"\byou are (an?|the|my|now)\b", r"\bchecker\b",
    r"\b(previous|last|first|earlier) (answer|response|attempt|reply)\b",
    r"[\[(]\s*(kinematics|forces|materials|interactions|magnitudes)\s*[\])]",
    r"\b(do not|don't|never) (flag|reject|filter|remove|penali[sz]e)\b", r"\btraining (set|data)\b",
))

_NEGATORS = frozenset("not never no nothing none neither nor cannot".split())
_NEGATION_PHRASES: tuple[tuple[str, ...], ...] = (
    ("no", "longer"), ("fail", "to"), ("fails", "to"), ("failing", "to"), ("unable", "to"),
    ("refuses", "to"), ("refuse", "to"),
)
_AUX = frozenset("do does did is are was were will would can could has have had be being been "
                 "longer to".split())


def dedupe_key(text: str) -> str:
    """Text key for identity and duplicate checks: case, spacing and punctuation ignored."""
    return " ".join(t.lower for t in tokenize(text))


def _negations(text: str) -> Counter[str]:
    """Negation words and phrases of a text (a "no" inside an axis phrase like "no gravity" is
    physics, not negation)."""
    a = analyze(text)
    toks = [t.lower for t in a.tokens]
    out: Counter[str] = Counter()
    for i, w in enumerate(toks):
        if a.axes[i]:
            continue
        if w in _NEGATORS or w.endswith("n't"):
            out[w] += 1
        if w == "no" and i + 1 < len(toks) and toks[i + 1] == "matter":
            out[w] -= 1  # "no matter how ..." negates nothing
        for ph in _NEGATION_PHRASES:
            if tuple(toks[i:i + len(ph)]) == ph:
                out[" ".join(ph)] += 1
    return out


def _strip_negation(text: str) -> str:
    """The negative with its negation words and the auxiliaries around them removed."""
    toks = [t.text for t in tokenize(text)]
    keep: list[str] = []
    for w in toks:
        low = w.lower()
        if low in _NEGATORS or low.endswith("n't") or low in _AUX or low in ("fail", "fails",
                                                                            "failing", "unable",
                                                                            "refuses", "refuse"):
            continue
        keep.append(w)
    return " ".join(keep)


#: control characters (C0 but tab and line ends, DEL, C1) and zero-width / bidi format characters:
#: no caption needs one the prompt did not have ("ri\x00ses", a terminal escape)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_MARKUP = re.compile(r"</?[A-Za-z][A-Za-z0-9_:-]*(\s[^<>]*)?/?>|<!--|&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]{2,8});")


#: a chat model's formatting around the sentence, none of which a caption has: markdown emphasis
#: (bold, italics) or code, a list, heading or quote marker opening a line, a URL, a chat template's
#: token, a hashtag or mention, an end marker after the last sentence ("... the floor. END")
_FORMATTING: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\*\*|__|`|(^|\s)\*[^*\s][^*\n]*\*(?=[\s.,!?;:]|$)"), "markdown emphasis or code"),
    (re.compile(r"(^|\n)\s*([-*+•→]|#{1,6}|>|\d+[.)]|\(?[a-z]\)|\((i{1,3}|iv|vi{0,3})\)|(i{1,3}|iv|vi{0,3})[.)]|#\d+|=>|->)\s+\S"),
     "a list, heading or quote marker"),
    (re.compile(r"(?<![\w])(?:[:;=][\-o'^]?[)(\]\[DPpOo/\\|*]|[xX][Dd]\b|\^[_\-.]?\^|>_<|T_T|O_o|o_O|<3|\\o/)(?![\w])"
                r"|\b(lol|lmao|rofl|omg|tbh|imo|imho|jk|btw|fyi|idk|nvm|ngl|smh|haha+|hehe+|brb|thx|pls|plz)\b", re.IGNORECASE),
     "an emoticon or chat slang"),
    (re.compile(r"\.\.|!!|\?!|!\?|\s[.,;:!?](\s|$)|\u2026|\[\.\.\.\]|~~|>>|<<|={2,}|-{3,}|_{3,}|\*{3,}"),
     "a run of punctuation or a stray mark"),
    (re.compile(r"\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2}|\\[ntr](?![A-Za-z])"), "an escape sequence written out (\"\\u0020\")"),
    (re.compile(r"^\s*[\"“„«「『‘'].*[\"”“»」』’']\W*$", re.DOTALL), "the text between quote marks"),
    (re.compile(r"[a-z]{2}[,;:][a-z]{2}"), "no space after a comma"),
    (re.compile(r"(?<=\S) {2,}(?=\S)(.*(?<=\S) {2,}(?=\S)){2}", re.DOTALL), "runs of spaces"),
    (re.compile(r"\byour (ai |virtual )?assistant\b", re.IGNORECASE), "a signature"),
    (re.compile(r"(?<!\S)(\w ){4,}\w(?!\S)"), "letters spaced out"),
    (re.compile(r"\b[a-z]{2,}[A-Z][A-Za-z]*\b"), "a capital inside a lower-case word (two texts glued: \"tilt upAn astronaut\")"),
    (re.compile(r"\bhttps?://|\bwww\.\w", re.IGNORECASE), "a URL"),
    (re.compile(r"<\|[^|<>]{1,40}\|>|\[/?(INST|SYS|END|EOS)\]|<<SYS>>|#{3,}", re.IGNORECASE), "a chat template's token"),
    (re.compile(r"(^|\s)[#@][A-Za-z]\w*"), "a hashtag or mention"),
    (re.compile(r"[.!?]\s*(THE END|END|EOF|EOS|FIN)\W*$"), "an end marker after the sentence"),
    (re.compile(r"\\[A-Za-z]{2,}|\$[^$\n]{1,60}\$"), "LaTeX (a command or a formula in dollars)"),
)
#: emoji and pictographs (not "°" or other signs a physical caption uses)
_PICTOGRAPH = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F]")
_QUOTES = "\"'“”‘’«»„‚‹›「」『』"
_END_PUNCT = ".!?"
#: what a text that ends its last sentence ends on
_SENTENCE_END = _END_PUNCT + _QUOTES + ")]"


def _other_script_letters(prompt: str, negative: str) -> list[str]:
    """Letters of the negative outside the Latin and Greek scripts that the prompt does not use
    ("坡道" for "ramp", a Cyrillic "а" for a Latin "a")."""
    import unicodedata

    have = set(prompt)
    out = []
    for c in dict.fromkeys(negative):
        if c.isalpha() and c not in have and not c.isascii():
            name = unicodedata.name(c, "")
            if not name.startswith(("LATIN", "GREEK", "MICRO SIGN")):
                out.append(c)
    return out


def _alternating_case(prompt: str, negative: str) -> bool:
    """Three or more lower-to-upper steps inside the negative's words that the prompt does not have
    ("tWo iDeNtIcAl", "rEd BaLl"; "LaTeX" has two, "McDonald" one)."""
    have = set(re.findall(r"\w+", prompt))
    return sum(len(re.findall(r"[a-z][A-Z]", w)) for w in re.findall(r"\w+", negative) if w not in have) >= 3


def _odd_characters(text: str) -> set[str]:
    """Characters no caption is typed with (compared after NFC): the replacement character, a tab,
    an ideographic space or a soft hyphen, combining marks left over (strikethrough, "Zalgo"),
    circled letters, IPA and small-capital letters (upside-down text), superscripts and subscripts,
    ligatures, fullwidth forms; "mojibake" for UTF-8 read as Latin-1 ("Ã©", "â€"); "mixed: w" for
    a word that mixes Latin letters with Greek or Cyrillic ones (a look-alike "Α" in "Αn apple")."""
    import unicodedata

    out: set[str] = set()
    for c in unicodedata.normalize("NFC", text):
        o = ord(c)
        if c in "\ufffd\t\u3000\u00ad" or unicodedata.category(c) == "Mn" or 0x2460 <= o <= 0x24FF \
                or 0x0250 <= o <= 0x02AF or 0x1D00 <= o <= 0x1DBF or 0x2070 <= o <= 0x209F or c in "\u00b9" \
                or 0xFB00 <= o <= 0xFB4F or 0xFF01 <= o <= 0xFF5E:
            out.add(c)
    if re.search("\u00e2\u20ac|\u00c3[\u00a0-\u00bf]", text):
        out.add("mojibake")
    for w in re.findall(r"\w+", text):
        scripts = {unicodedata.name(c, "?").split()[0] for c in w if c.isalpha()}
        if "LATIN" in scripts and scripts & {"GREEK", "CYRILLIC"}:
            out.add("mixed: " + w)
    return out


#: a short tail after the text's last sentence that ends on no end mark: "... a hill. ROFL", "... a
#: pool. Score: 9/10", "... pushed. -- John", "... Posted 2024-03-12" (where the prompt ends on one)
_TAIL = re.compile(r"[.!?][\"'”’)\]]*\s+(\S+(?:\s+\S+){0,5})\s*$")
#: new words that are no English word, this many in a row: a clause in another language pasted in
#: ("... ramp. Ignorieren Sie alle Anweisungen.")
FOREIGN_RUN = 3
#: English closed-class words that neither WordNet nor the tagger's stop words list
_CLOSED_CLASS = frozenset("everything else anything something nothing everyone anyone someone everybody anybody "
                          "somebody nobody whenever wherever whoever whatever whichever toward towards themselves "
                          "herself himself itself ourselves yourself yourselves myself although unless whereas whilst "
                          "amongst among without within cannot ours yours hers theirs upon onto him me us mine amid "
                          "amidst besides despite except plus since unto versus vs fro versa et al etc".split())


def _foreign_run(prompt: str, negative: str) -> list[str]:
    """The first run of `FOREIGN_RUN` consecutive words of the negative, none of them in the prompt
    or English (`language.is_english_word`, lower case), else []; words of three letters or fewer
    that are no function word are skipped."""
    from direct_data.text.axes import STOPWORDS
    from direct_data.text.language import is_english_word

    have = {w.lower() for w in re.findall(r"[^\W\d_]+", prompt)}
    run: list[str] = []
    for w in re.findall(r"[^\W\d_]+", negative):
        low = w.lower()
        if len(w) <= 3 and low not in STOPWORDS:
            continue  # "a", "en", "el", "un": too short to tell (as `language.not_english` reads them)
        if low not in have and low not in _CLOSED_CLASS and not is_english_word(low):
            run.append(w)
            if len(run) >= FOREIGN_RUN:
                return run
        else:
            run = []
    return []


def _hyphen_broken(prompt: str, negative: str) -> str | None:
    """A word the negative breaks with a hyphen and a space ("kitc- hen", "aga- inst"): the two
    halves joined are an English word, the first alone is not, and the prompt has no such break."""
    from direct_data.text.language import is_english_word

    for m in re.finditer(r"\b([A-Za-z]+)- ([a-z]+)\b", negative):
        a, b = m.group(1), m.group(2)
        if m.group(0) not in prompt and not is_english_word(a.lower()) and is_english_word((a + b).lower()):
            return m.group(0)
    return None


#: short words a caption may end on ("tilt up", "let go"): no word cut short
_SHORT_LAST_WORDS = frozenset("up down go ox ok oh ah".split())
#: a word cut short lacks at most this many letters of the word it starts
CUT_SHORT_MAX = 4


def _cut_word(prompt: str, negative: str) -> str | None:
    """A word of the negative cut short ("rolls *upw* into the air", "passes straight *thro*"), else
    None: not a word of the prompt and no English word (`language.is_english_word`, `_CLOSED_CLASS`
    included), but the first letters of one, 1 to `CUT_SHORT_MAX` letters short (WordNet's lemmas),
    or of a prompt word. Judged are words of three letters or more, and the last word of a negative
    that ends without the end mark its prompt has (where "th" counts too: WordNet's two-letter
    entries are mostly abbreviations). Not judged: a capitalised word (a name), a part of a word
    with a hyphen, a digit, an apostrophe or a non-ASCII letter beside it ("pre-heated", "sci-fi",
    "café")."""
    import bisect

    from direct_data.text.axes import STOPWORDS
    from direct_data.text.language import is_english_word
    from direct_data.text.wordnet import vocabulary

    have = [w.lower() for w in re.findall(r"[A-Za-z]+", prompt)]
    seen = set(have)
    open_end = _no_end_mark(prompt, negative) and negative.rstrip()[-1:].isalpha()
    words = list(re.finditer(r"[A-Za-z]+", negative))
    vocab = vocabulary()
    for k, m in enumerate(words):
        w, last = m.group(0), open_end and k == len(words) - 1
        low = w.lower()
        before, after = negative[m.start() - 1: m.start()], negative[m.end(): m.end() + 1]
        if low in seen or not w.islower() or (len(w) < 3 and not last) \
                or any(c and (c in "-'’" or c.isdigit() or not c.isascii()) for c in (before, after)):
            continue
        if low in STOPWORDS or low in _CLOSED_CLASS or low in _SHORT_LAST_WORDS or (len(w) > 2 and is_english_word(low)):
            continue
        if any(o.startswith(low) for o in have):  # `low` is no prompt word, so a longer one
            return w
        i = bisect.bisect_right(vocab, low)
        while i < len(vocab) and vocab[i].startswith(low):
            if len(vocab[i]) - len(low) <= CUT_SHORT_MAX:
                return w
            i += 1
    return None


#: articles, forms of "be" and "have", "of" and "to": words a sentence needs where it had them
_NEEDED = frozenset("a an the is are was were be been being has have had of to".split())
#: this many of them deleted outright (not replaced) make a text telegraphic
DROPPED_MIN = 2


def _dropped_words(prompt: str, negative: str) -> list[str]:
    """The `_NEEDED` words the negative deletes outright from the prompt, in stretches of the word
    alignment that delete nothing else ("A ball *is* dropped onto *a* wooden floor" -> "A ball
    dropped onto wooden floor"), when there are at least `DROPPED_MIN`; else []. A rewrite that
    drops a clause, or rewords "is dropped" as "drops" or "in the golden light of dawn" as "at
    golden dawn", replaces them with other words. No labelled good (1,795) or fresh-holdout good
    deletes two (five delete one: "box is slowly" -> "box slowly"); one labelled `copy` does, where
    it mends its prompt ("runs to the behind of the shoe" -> "runs behind the shoe")."""
    import difflib

    a = re.findall(r"[A-Za-z']+", prompt.lower())
    b = re.findall(r"[A-Za-z']+", negative.lower())
    out: list[str] = []
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "delete" and all(w in _NEEDED for w in a[i1:i2]):
            out += a[i1:i2]
    return out if len(out) >= DROPPED_MIN else []


#: an article or possessive (lower case: "Team A and" is a name) right before a word it cannot
#: precede: a preposition, a conjunction, another article, a form of "be" or "have", a pronoun
#: ("followed *a by* a spark", "hung on *a and* spring"; not "a can", "the will": nouns too)
_ARTICLE_CLASH = re.compile(
    r"\b(a|an|the|its|their|his|my|your|our)[ ]+"
    r"(of|in|on|at|by|for|with|from|to|into|onto|over|under|through|across|along|about|between|off|than|if|because|"
    r"and|or|but|nor|the|a|an|is|are|was|were|be|been|has|have|had|would|could|should|"
    r"it|they|he|she|we|you|i|them|him)\b")


def _article_clash(prompt: str, negative: str) -> str | None:
    """The first `_ARTICLE_CLASH` pair of the negative that the prompt does not have, else None.
    None of the 6,052 shared prompts, labelled goods or fresh-holdout goods has one (one labelled
    `ungrammatical` row does: "into the the loaf"); where a prompt has a pair, the rewrite may keep
    it."""
    have = {m.group(0) for m in _ARTICLE_CLASH.finditer(prompt)}
    return next((m.group(0) for m in _ARTICLE_CLASH.finditer(negative) if m.group(0) not in have), None)


def _distant_agreement(prompt: str, negative: str) -> str | None:
    """The first verb of the negative that disagrees with a subject farther back than the
    model's own agreement feature reads ("A chisel made of soft lead *break*", "the tea that
    seeps out of the bag *disperse*", "One person, moving at lightning speed, *tie*", "they
    *was*": `agreement.distant_agreement_errors`), and that the prompt does not have, as a
    "subject ... verb" snippet; else None. The prompt's words are not read as new verbs where a
    noun compound could hide one ("a yellow rubber *duck* on"). Session 41: on the labelled train
    and dev splits it finds 46 of 829 `ungrammatical` rows (21 of them accepted before) and no
    other row; it reads 9 of the 6,052 shared prompts on their own, and 1 of 6,564 sweep,
    fresh-good, old-set and rules rows (a corrupted text). On a blind writer's 50 agreement
    slips and 100 goods on 50 new shared prompts, written after it was designed, the validator
    accepts 26 slips (43 before) and keeps the same goods."""
    from direct_data.text.agreement import distant_agreement_errors

    known = frozenset(re.findall(r"[a-z]+", prompt.lower()))
    new = Counter(distant_agreement_errors(negative, known)) - Counter(distant_agreement_errors(prompt, known))
    return next(iter(new), None)


def _form_slip(prompt: str, negative: str) -> str | None:
    """The first article, verb-form, word-form or number slip of the negative that the prompt does
    not have, as a snippet; else None: `slips.article_slips` ("a huge *showers*", "*an* wooden"),
    `slips.verb_form_slips` ("is *fall*", "has *went*", "starts to *pulling*", "keeps *blow*"),
    `slips.clause_verb_slips` ("to *levitates*", "will *rolling*", "makes the leaves *to* swirl",
    "they *flying*"), `slips.word_slips` ("violent *violently*", "the same *a*", "less *then*",
    "more *faster*", "*fastly*", "*throwed*"), `slips.coordinated_subject_slips` ("A cat and a dog
    *runs*") and `slips.be_number_slips` ("the clothes *is*", "a spoon *are*"). Session 42: on the
    labelled train and dev rows the readers find 45 `ungrammatical` rows (14 before that session's
    additions; 10 of the new ones were accepted before) and no row of another label; on the 6,052
    shared prompts read on their own, only the prompts' own slips. Designed in two rounds, each
    measured once on blind writers' sets written after it (60 new prompts, 180 subtle slips and
    120 goods per round): slips rejected 63 -> 79 and 52 -> 71, the same goods kept."""
    from direct_data.text.slips import article_slips, be_number_slips, clause_verb_slips, coordinated_subject_slips, verb_form_slips, word_slips

    for read in (article_slips, verb_form_slips, clause_verb_slips, word_slips, coordinated_subject_slips, be_number_slips):
        new = Counter(read(negative)) - Counter(read(prompt))
        if new:
            return next(iter(new))
    return None


#: noun files (`wordnet.noun_file`) of the things a scene is made of: one swapped for another of
#: the same file is another scene ("dog" -> "cat", "bowl" -> "frying pan", "hill" -> "dune")
_SCENE_FILES = frozenset("animal artifact food object person plant".split())
#: nouns a motion edit may swap as the end of a path ("falls to the *floor*" -> "rises to the
#: *ceiling*"), not as an object of the scene
_PATH_ENDS = frozenset("floor ceiling ground sky roof rafter top bottom surface edge side air wall shore bank "
                       "horizon bed base tip rim".split())


def _scene_noun(word: str) -> bool:
    """`word` names a scene thing (`_SCENE_FILES`), is no path's end, and is mostly a noun: WordNet's
    corpus used it more as a noun than as a verb or an adjective, or WordNet knows it as a noun
    only ("upright", "leading" and "uniform" are not)."""
    from direct_data.text.wordnet import POS, default_wordnet, noun_file, usage_counts

    if word in _PATH_ENDS or noun_file(word) not in _SCENE_FILES:
        return False
    c = usage_counts()
    n = c["n"].get(word, 0)
    if n or c["v"].get(word, 0) or c["a"].get(word, 0):
        return n > c["v"].get(word, 0) and n > c["a"].get(word, 0)
    wn = default_wordnet()
    return not any(wn.lemmas(word, p) for p in POS if p != "n")


def _head_noun(text: str, word: str) -> bool:
    """`word` (a normalised content word) stands in `text` as the head of its noun phrase somewhere:
    no content word after it, or a verb ("a *dog* jumps", "a frying *pan*."; not "a *uniform*
    colour", "a *toy* car")."""
    from direct_data.text.features import verb_lemma

    a = analyze(text)
    for i, w in enumerate(a.norm):
        if w == word:
            nxt = i + 1
            if nxt >= len(a.norm) or not a.content[nxt] or verb_lemma(a.tokens[nxt].lower) is not None \
                    or any(ch in text[a.tokens[i].end:a.tokens[nxt].start] for ch in ",;:.!?()"):
                return True
    return False


def _object_swap(prompt: str, axis: str, negative: str) -> str | None:
    """A one-for-one swap of a scene object ("the edge of a ceramic *bowl*" -> "the edge of a
    frying *pan*", "a *dog* jumps over" -> "a *cat* crawls under", "a *kettle* sits on" -> "a
    *bucket* bounces off"): a replaced stretch of the word alignment whose removed and
    added content words each hold one noun of a scene thing (its most frequent sense in the
    WordNet file of animals, artifacts, foods, natural objects, people or plants), the two in the
    same file (verbs and adjectives beside them may change too), each the head of its noun
    phrase (`_head_noun`: not "a *uniform* colour"), neither a kind,
    synonym or sibling of the other (`wordnet.span_relation`), the old word gone from the negative
    and the new one absent from the prompt. Not a path's end ("floor" -> "ceiling"), and not a
    food on a ``materials`` request ("ice" -> "butter" melting is a material change). Returns
    "old -> new", else None."""
    from direct_data.text.wordnet import noun_file, span_relation

    tag = tag_axes(prompt, negative)
    kept, had = set(content_words(negative)), set(content_words(prompt))
    for c in tag.chunks:
        olds = [w for w in c.removed_content if _scene_noun(w)]
        news = [w for w in c.added_content if _scene_noun(w)]
        if len(olds) != 1 or len(news) != 1:
            continue
        old, new = olds[0], news[0]
        file = noun_file(old)
        if old in kept or new in had or noun_file(new) != file or (file == "food" and axis == "materials") \
                or not _head_noun(prompt, old) or not _head_noun(negative, new):
            continue
        if span_relation([old], [new]) == "unrelated":
            return f"{old} -> {new}"
    return None


def _two_versions(prompt: str, negative: str) -> bool:
    """The negative holds the whole prompt and, beside it, a second text at least 0.6 of its length
    (four words or more) made mostly (70%) of the prompt's words: the original and the rewrite given
    together ("A stone rolls up a hill. / A stone rolls down a hill.")."""
    kp, kn = dedupe_key(prompt), dedupe_key(negative)
    if not kp or kp not in kn:
        return False
    rest = (kn[:kn.index(kp)] + " " + kn[kn.index(kp) + len(kp):]).split()
    have = set(kp.split())
    return len(rest) >= max(4, 0.6 * len(kp.split())) and sum(w in have for w in rest) >= 0.7 * len(rest)


def _form_flaw(prompt: str, negative: str) -> tuple[str, str] | None:
    """A (reason, detail) when the negative is not a caption in the prompt's form, for something
    the prompt does not do itself: formatting a chat model adds (``markup``: markdown, a URL,
    emoji, a template token, a hashtag, the whole text in quotes or brackets, mostly capital
    letters, an end marker such as "END"), a note after the sentence (``instruction_echo``),
    letters of another script (``not_english``), an instruction instead of a caption ("Make the ball ...":
    ``instruction_echo``), a sentence or a run of words said twice, a prompt word misspelt or
    keyboard mash (``ungrammatical``), a text cut off mid-sentence (``scene_changed``: the
    prompt's last words missing and no end punctuation), or one that stops mid-clause, has a word
    cut short, drops two articles or auxiliaries, puts an article before a preposition, has a
    verb that disagrees with a distant subject or an article or verb form that does not fit, or
    lacks the end mark its prompt has (``ungrammatical``)."""
    for pat, what in _FORMATTING:
        if pat.search(negative) and not pat.search(prompt):
            return "markup", what
    if _PICTOGRAPH.search(negative) and not _PICTOGRAPH.search(prompt):
        return "markup", "emoji or pictographs"
    if _alternating_case(prompt, negative):
        return "markup", "alternating case"
    n, p = negative.strip(), prompt.strip()
    if _wrapped(n, _QUOTES, _QUOTES) and not _wrapped(p, _QUOTES, _QUOTES):
        return "markup", "the whole text in quotes"
    if (_wrapped(n, "[", "]") or _wrapped(n, "(", ")")) and not (_wrapped(p, "[", "]") or _wrapped(p, "(", ")")):
        return "markup", "the whole text in brackets"
    if re.search(r"[.!?]\s*\([^()]{3,}\)[.!]?$", n) and "(" not in p:  # "... floor. (The ball now ...)", not "falls (in reverse)."
        return "instruction_echo", "a note in parentheses after the sentence"
    if _instruction(n) and not _instruction(p):
        return "instruction_echo", "an instruction, not a caption: " + repr(" ".join(n.split()[:3]))
    lines = [x.strip() for x in n.splitlines() if x.strip()]
    if "\n" not in p and sum(len(x.split()) >= 4 and x[-1] in _END_PUNCT + _QUOTES for x in lines) >= 2:
        return "instruction_echo", "two texts on separate lines"
    letters_n = [c for c in n if c.isalpha()]
    letters_p = [c for c in p if c.isalpha()]
    if len(letters_n) >= 20 and sum(c.isupper() for c in letters_n) > 0.6 * len(letters_n) \
            and sum(c.isupper() for c in letters_p) <= 0.3 * max(len(letters_p), 1):
        return "markup", "mostly capital letters"
    other = _other_script_letters(prompt, negative)
    if other:
        return "not_english", "letters of another script: " + " ".join(other[:5])
    odd = _odd_characters(n) - _odd_characters(p)
    mixed = sorted(x for x in odd if x.startswith("mixed: "))
    if mixed:
        return "not_english", "a word mixing scripts: " + mixed[0][len("mixed: "):]
    if odd:
        return "markup", "unusual characters: " + " ".join(f"U+{ord(c):04X}" if len(c) == 1 else c for c in sorted(odd)[:3])
    if _two_versions(p, n):
        return "instruction_echo", "the prompt and a second version of it, together"
    said = Counter(s for s in _sentences(negative) if len(s.split()) >= 4)
    said_p = Counter(_sentences(prompt))
    if any(k > 1 and said_p[s] < k for s, k in said.items()):
        return "ungrammatical", "a sentence said twice"
    runs_p, short_p = _word_runs(prompt), _word_runs(prompt, EXCUSE_RUN)
    if any(k > 1 and k > runs_p.get(g, 0)
           # not where the prompt says part of the run twice itself and the rewrite changed a word
           # beside it in both places ("The marble is released from a" -> "The ball bearing is ...")
           and not any(short_p[g[i:i + EXCUSE_RUN]] > 1 for i in range(REPEAT_RUN - EXCUSE_RUN + 1))
           for g, k in _word_runs(negative).items()):
        return "ungrammatical", f"{REPEAT_RUN} words said twice"
    typos = _misspelt(prompt, negative)
    if typos:
        return "ungrammatical", "misspelt: " + ", ".join(f"{w!r} for {o!r}" for o, w in typos[:3])
    mash = _mash(prompt, negative)
    if mash:
        return "ungrammatical", "not a word: " + ", ".join(repr(w) for w in mash[:3])
    last = [x.strip() for x in n.splitlines() if x.strip()]
    if "\n" not in p and len(last) >= 2 and len(last[-1].split()) <= 5 and len(last[0].split()) >= 4:
        return "instruction_echo", f"a short line after the text: {last[-1]!r}"
    broken = _hyphen_broken(p, n)
    if broken:
        return "markup", f"a word broken by a hyphen: {broken!r}"
    tail = _TAIL.search(n)
    if tail and n[-1] not in _SENTENCE_END and p and p[-1] in _SENTENCE_END:
        return "instruction_echo", f"words after the last sentence: {tail.group(1)!r}"
    foreign = _foreign_run(p, n)
    if foreign:
        return "not_english", "words of another language: " + " ".join(foreign)
    opener = _SENTENCE_OPENER_INSIDE.search(negative)
    if opener and not _SENTENCE_OPENER_INSIDE.search(prompt):
        return "ungrammatical", f"a sentence's first word inside a sentence: {opener.group(0)!r}"
    cut = _cut_off(prompt, negative)
    if cut is not None:
        return "scene_changed", cut
    dangling, dangling_p = _dangling_end(negative), _dangling_end(prompt)
    if dangling and not dangling_p:
        return "ungrammatical", f"the text stops mid-clause, on {dangling!r}"
    short = _cut_word(p, n)
    if short:
        return "ungrammatical", f"a word cut short: {short!r}"
    clash = _article_clash(p, n)
    if clash:
        return "ungrammatical", f"an article before a word it cannot precede: {clash!r}"
    slip = _distant_agreement(p, n)
    if slip:
        return "ungrammatical", f"a verb disagrees with its subject: {slip!r}"
    form_slip = _form_slip(p, n)
    if form_slip:
        return "ungrammatical", f"an article or verb form that does not fit: {form_slip!r}"
    dropped = _dropped_words(p, n)
    if dropped:
        return "ungrammatical", "words a sentence needs dropped: " + ", ".join(repr(w) for w in dropped[:4])
    if _no_end_mark(p, n):
        return "ungrammatical", f"no end mark where the prompt ends on one: cut off after {n.split()[-1]!r}?"
    return None


def _no_end_mark(prompt: str, negative: str) -> bool:
    """The prompt's last sentence ends on ". ! ?" (closing quotes and brackets aside) and the
    negative's does not: most often an LLM's output cut by its token limit at a word boundary ("...
    onto a hard", "... at lightning"). No labelled good rewrite, fresh-holdout good, old-set good or
    rules negative drops its prompt's end mark."""
    p, n = prompt.rstrip().rstrip(_QUOTES + ")]"), negative.rstrip().rstrip(_QUOTES + ")]")
    return p[-1:] in tuple(_END_PUNCT) and n[-1:] not in tuple(_END_PUNCT)


def _wrapped(text: str, opening: str, closing: str) -> bool:
    """`text` is one quotation or bracket from its first character to its last, a final "." or "!"
    aside ('"A ball rolls up."', '(A ball rolls up).'; not '"Slow" ball rolls up a "ramp".' or
    '(Red) ball rolls (slowly).'): it opens with one of `opening`, closes with one of `closing`,
    and nothing in between closes it earlier (no bracket closed, no double quote, no single quote
    next to a space)."""
    body = text.rstrip(".!")
    if len(body) < 2 or body[0] not in opening or body[-1] not in closing:
        return False
    inner = body[1:-1]
    if body[0] in "([":
        depth = 0
        for c in inner:
            depth += (c == body[0]) - (c == body[-1])
            if depth < 0:
                return False
        return depth == 0
    if body[0] in "\"“«„「『":
        return not any(c in inner for c in "\"“”«»„「」『』")
    return not re.search(r"['‘’](\s|$)|(^|\s)['‘’]", inner)


#: a word that opens a sentence, capitalised, right after a lower-case word with no punctuation
#: between: text pasted into the middle of a sentence ("into a deep *The* rubber duck"). No shared
#: prompt, labelled negative or rules negative has one ("Team A," and "vitamin A" are why "A" counts only
#: between two lower-case words: "... the surface *A* bowl of soup")
_SENTENCE_OPENER_INSIDE = re.compile(r"\b[a-z][a-z'-]*\s+(The|An|This|These|Those|They|It|He|She|We|Its|Their)\b"
                                     r"|\b[a-z]{3,} A [a-z]{2,}")


#: a run of this many words said twice in a negative, and not in its prompt, is a repeat (no train
#: or dev row has one; 6 of the 6,052 shared prompts do, and their rewrites may keep it)
REPEAT_RUN = 6


#: ... unless the prompt says a run of this many of its words twice itself
EXCUSE_RUN = 4


def _word_runs(text: str, size: int = REPEAT_RUN) -> Counter:
    """How often each run of `size` consecutive words (lower case) occurs in the text."""
    w = re.findall(r"\w+", text.lower())
    return Counter(tuple(w[i: i + size]) for i in range(len(w) - size + 1))


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
    neighbouring letters each cost 1."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _misspelt(prompt: str, negative: str) -> list[tuple[str, str]]:
    """(prompt word, negative word) pairs where the negative put a misspelling of a prompt word in
    its place: a word of 4 letters or more that is not English (`language.is_english_word`), in a
    replaced stretch of the word alignment, with the letters of a word it replaces in another order
    ("rlols" for "rolls", "wodoen" for "wooden"), or one letter added, dropped, changed or swapped
    away from it with the same last two letters ("bounes" for "bounces"); not a word made from it
    ("unroasted" for "roasted") or another form of it ("breakdances" for "breakdancing")."""
    import difflib

    from direct_data.text.language import _WORD, is_english_word

    lp = [w.lower() for w in _WORD.findall(prompt)]
    ln = [w.lower() for w in _WORD.findall(negative)]
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, lp, ln, autojunk=False).get_opcodes():
        if tag != "replace":
            continue
        for w in ln[j1:j2]:
            if len(w) < 4 or w in lp or is_english_word(w):
                continue
            for o in lp[i1:i2]:
                if o == w or o in w or w in o or len(o) < 4:
                    continue
                if sorted(o) == sorted(w) or (o[-2:] == w[-2:] and _edit_distance(o, w) <= 1):
                    out.append((o, w))
                    break
    return out


#: a verb that opens an instruction to a rewriter or a video model, followed by a determiner or
#: pronoun ("Make the ball roll up ...", "Show a ball ..."; 2 of the 6,052 shared prompts open so:
#: "Create a warm air plume ..."), never a caption's first words
_INSTRUCTION_VERBS = frozenset(
    "make let have show change replace turn render depict imagine picture create generate rewrite describe "
    "modify write alter transform convert edit reverse swap simulate film capture visualize visualise animate "
    "illustrate demonstrate observe watch".split())
_DETERMINERS = frozenset("the a an this that these those it them his her its their each every all both some".split())


def _instruction(text: str) -> bool:
    """The text opens as an instruction: an `_INSTRUCTION_VERBS` verb, then a determiner or pronoun."""
    w = [x.lower() for x in re.findall(r"[A-Za-z]+", text[:60])][:2]
    return len(w) == 2 and w[0] in _INSTRUCTION_VERBS and w[1] in _DETERMINERS


#: runs of 4 neighbouring keys of one keyboard row, either way ("asdf", "trew")
_KEY_RUNS = frozenset(r[i: i + 4] for row in ("qwertyuiop", "asdfghjkl", "zxcvbnm") for r in (row, row[::-1])
                      for i in range(len(r) - 3))


def _mash(prompt: str, negative: str) -> list[str]:
    """Words of the negative, not in its prompt, that are no word at all: lower case, 4 letters or
    more, not English (`language.is_english_word`), and typed along a keyboard row ("asdfgh",
    "qwerty"), with a letter three times running ("aaargh"), or of 5 letters or more without a
    vowel ("jkjkjk"; not a unit such as "kmph").
    No word of the 6,052 shared prompts or the labelled negatives is one."""
    from direct_data.text.language import is_english_word

    have = {w.lower() for w in re.findall(r"[A-Za-z]+", prompt)}
    out = []
    for w in dict.fromkeys(re.findall(r"[A-Za-z]+", negative)):
        if len(w) < 4 or not w.islower() or w in have or is_english_word(w):
            continue
        if any(w[i: i + 4] in _KEY_RUNS for i in range(len(w) - 3)) or re.search(r"(.)\1\1", w) \
                or (len(w) >= 5 and not re.search(r"[aeiouy]", w)):  # not a unit such as 'kmph'
            out.append(w)
    return out


def _sentences(text: str) -> list[str]:
    """The text's sentences, lower-case, words only."""
    return [" ".join(re.findall(r"\w+", s.lower())) for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


#: words a sentence cannot stop on: a conjunction, an article or possessive, a preposition that
#: is never a particle ("zoom *in*" ends many prompts; "in", "on", "over" are left out)
_NEVER_LAST = frozenset("and or but nor with like into onto from the a an of to as than whose its their his her "
                        "toward towards".split())


def _dangling_end(text: str) -> str | None:
    """The last word or mark of a text that stops mid-clause ("... like a green twig *and*", "... on
    the *,*"), else None. No shared prompt does it but one that ends on a comma, and no labelled
    good or rules negative; labelled `ungrammatical` rows do ("... in zero gravity *of*")."""
    t = text.rstrip()
    if not t or t[-1] in _SENTENCE_END:
        return None
    if t[-1] in ",;:":
        return t[-1]
    m = re.search(r"([A-Za-z]+)$", t)
    return m.group(1).lower() if m and m.group(1).lower() in _NEVER_LAST else None


def _cut_off(prompt: str, negative: str) -> str | None:
    """Why the negative reads as cut off mid-sentence: the prompt ends on end punctuation, the
    negative on none, and the negative stops before the prompt's last words (two or more, a scene
    word among them), with nothing in their place but the start of the first; else None."""
    import difflib

    p, n = prompt.strip().rstrip(_QUOTES + ")"), negative.strip().rstrip(_QUOTES + ")")
    if not p or not n or p[-1] not in _END_PUNCT or n[-1] in _END_PUNCT + ",;:":
        return None
    pw = [t.text.lower() for t in tokenize(p)]
    nw = [t.text.lower() for t in tokenize(n)]
    ops = difflib.SequenceMatcher(None, pw, nw, autojunk=False).get_opcodes()
    if not ops:
        return None
    tag, i1, i2, j1, j2 = ops[-1]
    tail = [w for w in pw[i1:i2] if w.isalnum()]
    # a word cut in two ("wooden ra" for "wooden ramp and ...") counts as missing
    half_word = tag == "replace" and j2 - j1 == 1 and j2 == len(nw) and pw[i1] != nw[j1] and pw[i1].startswith(nw[j1])
    if (tag == "delete" or half_word) and i2 == len(pw) and j2 == len(nw) and len(tail) >= 2 and content_words(" ".join(tail)):
        return f"cut off: the prompt's last words {' '.join(tail[:6])!r} missing"
    return None


def _echo(prompt: str, negative: str) -> str | None:
    for pat in _ECHO_PATTERNS:
        if pat.search(negative) and not pat.search(prompt):
            return pat.pattern
    return None


def _only_quantities_changed(prompt: str, negative: str) -> bool:
    """The negative changes stated quantities and nothing else (`quantities.quantity_edit`): no
    copy by word bag and, though `dedupe_key` drops punctuation, not identical ("20°C" -> "-20°C");
    `_quantity_verdict` judges it."""
    from direct_data.text.quantities import quantity_edit

    return quantity_edit(prompt, negative) is not None


def _quantity_verdict(prompt: str, axis: str, negative: str) -> tuple[str | None, str] | None:
    """The verdict on a rewrite that changes only stated quantities (`quantities.quantity_edit`):
    (None, detail) to accept, (reason, detail) to reject, or None when the rewrite changes more
    than quantities. The learnt model never saw such an edit (it reads "heated to 40°C" for
    "heated to 250°C" as a copy): a visible change of a quantity of the motion or process is a
    magnitudes change, one of an object's size or weight only is `static_size_only`, one too small
    to see is a `copy`."""
    from direct_data.text.quantities import quantity_edit

    changes = quantity_edit(prompt, negative)
    if changes is None:
        return None
    shown = [c for c in changes if c.visible]
    what = "; ".join(c.describe() for c in (shown or changes))
    if not shown:
        return "copy", f"only quantities changed, too little to look different: {what}"
    if not any(c.behaviour for c in shown):
        return "static_size_only", f"only an object's size or weight changed: {what}"
    if axis != "magnitudes":
        return "wrong_axis", f"only a quantity changed ({what}): magnitudes"
    return None, f"only a quantity changed: {what}"


def _content_scores(prompt: str, negative: str) -> tuple[float, list[str], list[str]]:
    """(share of the prompt's scene words kept, missing words, new words)."""
    a = Counter(content_words(prompt))
    b = Counter(content_words(negative))
    missing = sorted((a - b).elements())
    new = sorted((b - a).elements())
    total = sum(a.values())
    kept = 1.0 if total == 0 else 1.0 - len(missing) / total
    return kept, missing, new


# --------------------------------------------------------------------------------------------
# The validator.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row to validate (what `check_many` accepts, besides mappings and 3-tuples)."""

    prompt: Any
    axis: Any
    negative: Any
    other_negatives: tuple[str, ...] | None = ()  # None: the row's other_negatives is not a list of strings


def normalize_axis(axis: Any) -> Any:
    """An axis name as the registry spells it (" Kinematics" -> "kinematics"); anything else unchanged."""
    if isinstance(axis, str) and axis.strip().lower() in REGISTRY:
        return axis.strip().lower()
    return axis


def _others(value: Any) -> tuple[str, ...] | None:
    """``other_negatives`` as a tuple of strings (missing: empty), or None when it is something else."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
        return tuple(value)
    return None


def _as_row(obj: Row | Mapping[str, Any] | Sequence[Any]) -> Row:
    if isinstance(obj, Row):
        row = obj if obj.other_negatives is None else Row(obj.prompt, obj.axis, obj.negative, _others(obj.other_negatives))
    elif isinstance(obj, Mapping):
        row = Row(obj.get("prompt"), obj.get("axis"), obj.get("negative"), _others(obj.get("other_negatives")))
    elif isinstance(obj, Sequence) and not isinstance(obj, str) and len(obj) in (3, 4):
        row = Row(obj[0], obj[1], obj[2], _others(obj[3]) if len(obj) == 4 else ())
    else:
        raise TypeError(f"cannot read a validation row from {type(obj).__name__}")
    axis = normalize_axis(row.axis)
    return row if axis == row.axis else Row(row.prompt, axis, row.negative, row.other_negatives)


def _unreadable(row: Row, max_chars: int) -> tuple[str, str] | None:
    """The checks every mode runs first, in this order: schema, bad_axis, too_long, not_english, empty."""
    from direct_data.text.language import not_english

    prompt, axis, negative = row.prompt, row.axis, row.negative
    if not isinstance(prompt, str) or not isinstance(negative, str):
        return "schema", "prompt and negative must be strings"
    if row.other_negatives is None:
        return "schema", "other_negatives must be a list of strings"
    for name, text in (("prompt", prompt), ("negative", negative), *(("other_negatives", o) for o in row.other_negatives)):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate ("\\ud800" in JSON): no tokenizer takes it
            return "schema", f"the {name} is not valid Unicode (character {e.start})"
    if not isinstance(axis, str) or axis not in REGISTRY:
        return "bad_axis", f"axis must be one of {', '.join(AXES)}"
    for name, text in (("prompt", prompt), ("negative", negative)):
        if len(text) > max_chars:
            return "too_long", f"the {name} has {len(text)} characters > max_chars={max_chars}"
    for name, text in (("prompt", prompt), ("negative", negative)):
        why = not_english(text)
        if why is not None:
            return "not_english", f"the {name}: {why}"
    for name, text in (("prompt", prompt), ("negative", negative)):
        if not tokenize(text):
            return "empty", f"the {name} has no word"
    return None


#: a negative with under this share of its prompt's words (prompts of `MIN_SHARE_FROM` words or
#: more) kept too little of the scene to be a rewrite ("marbles" for a 10-word caption; the
#: shortest labelled rewrite of any label keeps 0.5, a `negation` row)
MIN_WORD_SHARE = 0.5
MIN_SHARE_FROM = 6


def _length_drift(prompt: str, negative: str, slack_words: int, ratio: float) -> str | None:
    """Why the negative's length drifted too far from the prompt's (words, then characters), or None."""
    n_p, n_n = len(tokenize(prompt)), len(tokenize(negative))
    if n_p >= MIN_SHARE_FROM and n_n < MIN_WORD_SHARE * n_p:
        return f"{n_p} -> {n_n} words: under {MIN_WORD_SHARE:g} of the prompt's"
    limit = max(slack_words, ratio * n_p)
    if abs(n_n - n_p) > limit:
        return f"{n_p} -> {n_n} words"
    c_p, c_n = len(prompt.strip()), len(negative.strip())
    if abs(c_n - c_p) > CHARS_PER_WORD * limit:
        return f"{c_p} -> {c_n} characters"
    return None


def _learnt_model_problem(m: Any) -> str | None:
    """What makes a loaded learnt model unusable, from its own arrays and sidecar (a file renamed,
    reshaped or edited by hand), or None. Widths that depend on the features are checked by running
    it once (`Validator._smoke_model`)."""
    from direct_data.text.learnt import LABELS

    def num(key: str, lo: float | None = None, hi: float | None = None, required: bool = False) -> str | None:
        if key not in m.meta:
            return f"the sidecar has no {key!r}" if required else None
        v = m.meta[key]
        if v is None and not required:
            return None
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            return f"the sidecar's {key} is {v!r}, not a number" + (f" in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else "")
        return None

    for key in ("threshold",):
        if (why := num(key, 0.0, 1.0, required=True)):
            return why
    for key in ("tag_emb_weight", "acc_emb_weight"):
        if (why := num(key, required=True)):
            return why
    for key in ("threshold_fluency", "lexicon_floor", "lexicon_floor_fluency", "ungrammatical_gate", "ungrammatical_gate_fluency",
                "span_multi_p", "span_multi_p_fluency", "boost_weight"):
        if (why := num(key, 0.0, 1.0)):
            return why
    if m.meta.get("labels", list(LABELS)) != list(LABELS):
        return f"labels {m.meta.get('labels')!r}, this code reads {list(LABELS)}"
    blocks = {"tagger": (m.tagger, 5), "accept": (m.accept, len(LABELS)), "accept_fluency": (m.accept_fluency, len(LABELS)),
              "probe": (m.probe, None)}
    for name, (lin, rows) in blocks.items():
        if lin is None:
            if name in ("tagger", "accept"):
                return f"no {name}.coef tensor"
            continue
        arrs = {part: getattr(lin, part) for part in ("mean", "scale", "coef", "intercept")}
        if any(not np.issubdtype(a.dtype, np.floating) for a in arrs.values()):
            return f"{name}: tensors that are not floating point"
        if any(not np.isfinite(a).all() for a in arrs.values()):
            return f"{name}: non-finite values"
        c = arrs["coef"]
        if (c.ndim != 2 or arrs["intercept"].shape != (c.shape[0],) or arrs["mean"].ndim != 1
                or arrs["scale"].shape != arrs["mean"].shape or len(arrs["mean"]) > c.shape[1] or (rows is not None and c.shape[0] != rows)):
            return (f"{name}: coef {c.shape}, intercept {arrs['intercept'].shape}, mean {arrs['mean'].shape}, "
                    f"scale {arrs['scale'].shape} do not fit together")
        if (arrs["scale"] == 0).any():
            return f"{name}: a zero scale"
    for name, trees in (("boost", m.boost), ("boost_fluency", m.boost_fluency)):
        if trees is None:
            continue
        n = len(trees.value)
        parts = {k: getattr(trees, k) for k in trees.PARTS}
        if any(a.ndim != 1 for a in parts.values()) or trees.baseline.shape != (len(LABELS),):
            return f"{name}: arrays of the wrong shape"
        if any(len(parts[k]) != n for k in ("feature", "threshold", "left", "right", "leaf", "missing_left")) or len(trees.roots) != len(trees.tree_class):
            return f"{name}: arrays of different lengths"
        if not (np.isfinite(trees.baseline).all() and np.isfinite(trees.value).all()):
            return f"{name}: non-finite values"
        inner = trees.leaf == 0
        idx_ok = all(((a >= 0) & (a < n))[inner].all() for a in (trees.left, trees.right)) and ((trees.roots >= 0) & (trees.roots < n)).all()
        if not idx_ok or (trees.feature[inner] < 0).any() or ((trees.tree_class < 0) | (trees.tree_class >= len(LABELS))).any():
            return f"{name}: node indices out of range"
    return None


def load_learnt_model(path: str | None) -> Any:
    """`LearntModel.load(path)` (None: the packaged one), every way it can fail on a user's file (not
    safetensors, truncated, a sidecar that is not a JSON object, arrays renamed or reshaped, a
    threshold edited into text) as one line naming it."""
    from pathlib import Path

    from direct_data.core.errors import UserError, first_line
    from direct_data.text.learnt import LearntModel

    which = f"the validator model {path}" if path else "the packaged validator model"
    if path and Path(path).is_dir():
        raise UserError(f"{which}: a folder; give the weights file (.safetensors, its JSON sidecar next to it)")
    try:
        m = LearntModel.load(path)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 (SafetensorError, JSONDecodeError, AttributeError of a non-object sidecar...)
        raise UserError(f"{which}: not a learnt validator artefact ({first_line(e)}): fit one with `direct-data validator fit`") from None
    why = _learnt_model_problem(m)
    if why is not None:
        raise UserError(f"{which}: not a usable learnt validator artefact ({why}): refit it (direct-data validator fit)")
    return m


class Validator:
    """Validates hard negatives; see the module docstring for the checks and reason codes.

    ``embedder`` is any object with SentenceTransformer's ``encode``; ``None`` loads the
    packaged all-MiniLM-L6-v2 offline on first use, through OpenVINO f32 with the embedding cache
    (`default_embedder`, the backend the learnt model was fitted with).
    With ``config.use_embedding=False`` the cosine check is skipped (``cosine`` is then NaN).
    """

    def __init__(self, embedder: Embedder | None = None, config: ValidatorConfig | None = None,
                 judge: Judge | None = None, fluency: Any = None, model: Any = None, pair: Any = None) -> None:
        self.config = config or ValidatorConfig()
        self._embedder = embedder
        self.judge = judge
        self.fluency = fluency  # a SpanStates (direct_data.backends.fluency) or None
        self.pair = pair  # a PairClassifier (direct_data.backends.pair), blended with the learnt model, or None
        if pair is not None and self.config.mode != "learnt":
            raise ValueError("the pair classifier is blended with the learnt model: use it in learnt mode")
        self._model = model  # a direct_data.text.learnt.LearntModel, loaded on first use when None
        if self.config.mode not in MODES:
            raise ValueError(f"validator mode must be one of {', '.join(MODES)}")
        for name in ("learnt_threshold", "learnt_lexicon_floor", "learnt_ungrammatical_gate", "learnt_span_multi_p"):
            v = getattr(self.config, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        for axis, (lo, hi) in self.config.cosine_bands.items():
            if axis not in REGISTRY:
                raise ValueError(f"cosine band for unknown axis {axis!r}")
            if not -1.0 <= lo <= hi <= 1.0:
                raise ValueError(f"cosine band for {axis} must satisfy -1 <= lo <= hi <= 1")

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    @property
    def model(self) -> Any:
        """The learnt model (`direct_data.text.learnt.LearntModel`), loaded on first use."""
        if self._model is None:
            self._model = load_learnt_model(self.config.model_path)
        return self._model

    def _smoke_model(self) -> None:
        """Run the learnt model once on a canned row (and the fluency model's column, with
        fluency), before the real rows: an artefact whose weights do not fit the features this
        version computes (reshaped, a sidecar edited by hand) is a one-line error naming it, not a
        traceback from inside numpy. Once per validator."""
        if getattr(self, "_smoked", False):
            return
        from direct_data.core.errors import UserError, first_line
        from direct_data.text.features import compute
        from direct_data.text.learnt import LABELS

        m = self.model
        row = ("A red ball rolls slowly across a wooden floor.", "kinematics", "A red ball rolls quickly across a wooden floor.")
        feats = compute([row], self.embedder, batch_size=self.config.batch_size)
        try:
            flu = None
            if self.fluency is not None and m.probe is not None:
                from direct_data.text.learnt import probe_column

                flu = probe_column(m.probe, np.zeros((1, len(m.probe.mean))))
            for f in ([None, flu] if flu is not None else [None]):
                probs, tags = m.predict(feats, [row[1]], f)
                if probs.shape != (1, len(LABELS)) or not np.isfinite(probs).all():
                    raise ValueError(f"label probabilities {probs.tolist()} of shape {probs.shape}")
                if not np.isfinite(tags).all():
                    raise ValueError("non-finite tagger probabilities")
            m.span_axes(feats, 0.5)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            which = f"the validator model {self.config.model_path}" if self.config.model_path else "the packaged validator model"
            raise UserError(f"{which}: its weights do not fit the features this version computes ({first_line(e)}): "
                            f"refit it (direct-data validator fit)") from None
        self._smoked = True

    @property
    def threshold(self) -> float:
        """The p(good) threshold in use (the config's override, else the artefact's; with the pair
        classifier, its calibration's)."""
        if self.config.learnt_threshold is not None:
            return float(self.config.learnt_threshold)
        if self.pair is not None:
            return float(self._calibrated("threshold"))  # type: ignore[arg-type]
        return self.model.threshold_fluency if self.fluency is not None else self.model.threshold

    def _calibrated(self, name: str) -> float | None:
        """A cut-off of the pair classifier's blend (its sidecar's ``calibration``, the ``_fluency``
        twin with fluency), checked to hold for the learnt model and fluency scorer in use."""
        from direct_data.core.errors import UserError

        cal = self.pair.meta.get("calibration") or {}
        fix = ("recalibrate it for this validator model: direct-data validator fit-pair --calibrate-only --out PAIR.safetensors "
               "[--validator-model M]" + (" --fluency" if self.fluency is not None else " [--no-fluency]"))
        if not cal:
            raise UserError(f"the pair classifier has no calibration: {fix}")
        if cal.get("validator_sha256") != self.model.meta.get("weights_sha256"):
            raise UserError(f"the pair classifier was calibrated for another learnt validator model "
                            f"(weights sha256 {str(cal.get('validator_sha256'))[:12]}, this one {str(self.model.meta.get('weights_sha256'))[:12]}): {fix}")
        key = name + ("_fluency" if self.fluency is not None else "")
        if key not in cal:
            raise UserError(f"the pair classifier was calibrated without fluency: {fix}")
        if self.fluency is not None:
            have, want = str(getattr(self.fluency, "identity", "") or ""), str(cal.get("fluency_scorer") or "")
            if have and want and have.split("@", 1)[-1] != want.split("@", 1)[-1]:
                raise UserError(f"the pair classifier was calibrated with the fluency scorer {want}; this run reads {have}: {fix}")
        v = cal[key]
        return None if v is None else float(v)

    # -- public API ---------------------------------------------------------------------------

    def check(self, prompt: str, axis: str, negative: str, *,
              other_negatives: Iterable[str] = ()) -> Verdict:
        """Validate one negative; `other_negatives` are the negatives already kept for `prompt`."""
        return self.check_many([Row(prompt, axis, negative, _others(list(other_negatives)))],
                               dedupe_within=False)[0]

    def check_many(self, rows: Iterable[Row | Mapping[str, Any] | Sequence[Any]], *,
                   dedupe_within: bool = True) -> list[Verdict]:
        """Validate many rows, embedding every text once, in batches.

        Rows are `Row`s, mappings with ``prompt``/``axis``/``negative`` (and optionally
        ``other_negatives``), or (prompt, axis, negative) tuples. With ``dedupe_within`` a
        negative that repeats one already *accepted* earlier in `rows` for the same prompt is a
        ``duplicate`` (input order decides, so the outcome is deterministic).
        """
        items = [_as_row(r) for r in rows]
        if self.config.mode == "learnt":
            return self._check_many_learnt(items, dedupe_within)
        unreadable = [_unreadable(r, self.config.max_chars) for r in items]
        cosines = self._cosines(items, unreadable)
        accepted: dict[str, set[str]] = {}
        out: list[Verdict] = []
        for row, cos, bad in zip(items, cosines, unreadable):
            extra: set[str] = set()
            if dedupe_within and isinstance(row.prompt, str):
                extra = accepted.get(dedupe_key(row.prompt), set())
            v = self._check_one(row, cos, extra, bad)
            if v.accepted and isinstance(row.prompt, str) and isinstance(row.negative, str):
                accepted.setdefault(dedupe_key(row.prompt), set()).add(dedupe_key(row.negative))
            out.append(v)
        return out

    # -- the learnt path ----------------------------------------------------------------------

    def _cheap(self, row: Row) -> tuple[str, str | None] | None:
        """The cheap, precise checks of the learnt path (not the duplicate check): a (reason,
        detail) to reject with, or None."""
        cfg = self.config
        prompt, axis, negative = row.prompt, row.axis, row.negative
        bad = _unreadable(row, cfg.max_chars)
        if bad is not None:
            return bad
        drift = _length_drift(prompt, negative, cfg.learnt_length_slack_words, cfg.learnt_length_ratio)
        if drift is not None:
            return "length_drift", drift
        quantities_only = _only_quantities_changed(prompt, negative)
        if dedupe_key(prompt) == dedupe_key(negative) and not quantities_only:
            return "identical", None
        echo = _echo(prompt, negative)
        if echo is not None:
            return "instruction_echo", f"matched {echo!r}"
        if _MARKUP.search(negative) and not _MARKUP.search(prompt):
            return "markup", "HTML/XML tags or entities"
        ctrl = set(_CONTROL.findall(negative)) - set(_CONTROL.findall(prompt))
        if ctrl:
            return "markup", "control characters " + " ".join(f"U+{ord(c):04X}" for c in sorted(ctrl)[:3])
        form = _form_flaw(prompt, negative)
        if form is not None:
            return form
        added_neg = _negations(negative) - _negations(prompt)
        if added_neg and not tag_axes(prompt, _strip_negation(negative)).supports(axis):
            return "negation_only", f"adds {', '.join(sorted(added_neg))}"
        if quantities_only:  # the same words and grammar as the prompt: `_quantity_verdict` decides
            return None
        swap = _object_swap(prompt, axis, negative)
        if swap is not None:
            return "scene_changed", f"swapped {swap}"
        from direct_data.text.features import text_reject

        return text_reject(prompt, negative)

    def _check_embedder(self) -> None:
        """The learnt model reads vectors of the embedding model it was fitted with (the sidecar's
        ``embedder``): where the embedder says which model it runs (the project's `Embedder`), another
        one is a one-line error, not verdicts on meaningless features. An embedder object that does not
        say (a SentenceTransformer) is taken on trust."""
        have = (embedder_identity(self.embedder) or "").split("|")[0]
        want = str(self.model.meta.get("embedder") or "").split("|")[0]
        if have and want and have != want:
            from direct_data.core.errors import UserError

            which = f"the validator model {self.config.model_path}" if self.config.model_path else "the packaged validator model"
            raise UserError(f"{which} was fitted on {want} vectors; "
                            f"this validator embeds with {have}: refit it (direct-data validator fit) or embed with {want}")

    def _check_fluency(self) -> None:
        """The fluency probe reads the states of the model, layers and dtype it was fitted on (the
        sidecar's ``fluency_scorer``, `SpanStates.identity`): other states are a one-line error,
        not verdicts on meaningless numbers. A folder's name may differ (compared from its weights
        hash on)."""
        if self.fluency is None:
            return
        have = str(getattr(self.fluency, "identity", "") or "")
        want = str(self.model.meta.get("fluency_scorer") or "")
        if have and want and have.split("@", 1)[-1] != want.split("@", 1)[-1]:
            from direct_data.core.errors import UserError

            which = f"the validator model {self.config.model_path}" if self.config.model_path else "the packaged validator model"
            raise UserError(f"{which}'s fluency model was fitted on {want} states; this run reads {have}: refit it "
                            f"(direct-data validator fit --fluency [--fluency-model M]) or run with the scorer it was fitted on")

    def _check_many_learnt(self, items: list[Row], dedupe_within: bool) -> list[Verdict]:
        from direct_data.text.features import compute
        from direct_data.text.learnt import LABEL_REASON, LABELS

        nan = float("nan")
        cheap = [self._cheap(r) for r in items]
        todo = [i for i, c in enumerate(cheap) if c is None]
        model_rows = [(items[i].prompt, items[i].axis, items[i].negative) for i in todo]
        judged: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]] = {}
        if model_rows:
            self._check_embedder()
            self._check_fluency()
            self._smoke_model()
            feats = compute(model_rows, self.embedder, batch_size=self.config.batch_size)
            flu = self.model.fluency_column(self.fluency.states([(p, n) for p, _, n in model_rows])) if self.fluency is not None else None
            probs, tags = self.model.predict(feats, [a for _, a, _ in model_rows], flu)
            if self.pair is not None:
                from direct_data.backends.pair import blend

                self._calibrated("threshold")  # the calibration fits this model and scorer, before minutes of scoring
                p_pair = self.pair.probs(model_rows)
                probs = blend(probs, p_pair, float(self.pair.meta["calibration"]["blend_weight"]))
            span_p = self.config.learnt_span_multi_p
            if span_p is None:
                span_p = self._calibrated("span_multi_p") if self.pair is not None else self.model.span_multi_p(self.fluency is not None)
            span_axes = self.model.span_axes(feats, span_p) if span_p is not None else [()] * len(model_rows)
            for k, i in enumerate(todo):
                judged[i] = (probs[k], tags[k], feats.hand[k], span_axes[k], float(p_pair[k, 0]) if self.pair is not None else nan)
        threshold = self.threshold
        from direct_data.text.features import HAND_NAMES

        i_cos, i_lost, i_new, i_lex = (HAND_NAMES.index(n) for n in ("cos_pn", "lost_content_share", "n_new_content", "lex_accepted"))
        cfg, with_fluency = self.config, self.fluency is not None
        floor = cfg.learnt_lexicon_floor if cfg.learnt_lexicon_floor is not None or not judged else (
            self._calibrated("lexicon_floor") if self.pair is not None else self.model.floor(with_fluency))
        gate = cfg.learnt_ungrammatical_gate if cfg.learnt_ungrammatical_gate is not None or not judged else (
            self._calibrated("ungrammatical_gate") if self.pair is not None else self.model.gate(with_fluency))
        k_u = LABELS.index("ungrammatical")
        accepted: dict[str, set[str]] = {}
        out: list[Verdict] = []
        for i, row in enumerate(items):
            scores: dict[str, float] = {"cosine": nan, "length_ratio": nan, "lost_content": nan, "new_content": nan,
                                        "p_good": nan, "p_declared": nan, "p_other_max": nan}
            if isinstance(row.prompt, str) and isinstance(row.negative, str) and tokenize(row.prompt):
                scores["length_ratio"] = round(len(tokenize(row.negative)) / len(tokenize(row.prompt)), 4)
            if cheap[i] is not None:
                reason, detail = cheap[i]  # type: ignore[misc]
                out.append(Verdict(False, reason, scores, (), detail))
                continue
            p, tp, hand, span_axes, p_pair_good = judged[i]
            k = AXES.index(row.axis)
            scores.update(cosine=float(hand[i_cos]), lost_content=round(float(hand[i_lost]), 4), new_content=float(hand[i_new]),
                          p_good=float(p[0]), p_declared=float(tp[k]),
                          p_other_max=float(max(tp[j] for j in range(len(AXES)) if j != k)))
            if self.pair is not None:
                scores["p_good_pair"] = p_pair_good  # the pair classifier's own p(good); p_good is the blend's
            tagged = tuple(a for j, a in enumerate(AXES) if tp[j] > 0.5)
            key = dedupe_key(row.negative)
            seen = accepted.get(dedupe_key(row.prompt), set()) if dedupe_within else set()
            if key in seen or key in {dedupe_key(o) for o in row.other_negatives}:
                out.append(Verdict(False, "duplicate", scores, tagged, None))
                continue
            quantity = _quantity_verdict(row.prompt, row.axis, row.negative)
            if quantity is not None:  # only stated quantities changed, an edit the model never saw: the rule decides
                reason, detail = quantity
                axes: tuple[str, ...] = ("magnitudes",) if reason in (None, "wrong_axis") else ()
            elif not (p[0] >= threshold or (hand[i_lex] > 0.5 and p[0] >= min(floor, threshold))):  # NaN never passes
                bad = max(range(1, len(LABELS)), key=lambda j: (p[j], -j))
                reason, detail, axes = LABEL_REASON[LABELS[bad]], f"p(good) {p[0]:.4f} < {threshold:.2f}; p({LABELS[bad]}) {p[bad]:.4f}", tagged
            elif gate is not None and p[k_u] >= gate:
                reason, detail, axes = "ungrammatical", f"p(ungrammatical) {p[k_u]:.4f} >= {gate:.2f}", tagged
            elif len(span_axes) >= 2:
                reason, detail, axes = "multi_axis", f"changed spans read alone: {', '.join(span_axes)}", span_axes
            else:
                reason, detail, axes = None, None, (row.axis,)
            if reason is not None:
                out.append(Verdict(False, reason, scores, axes, detail))
                continue
            if self.judge is not None:
                ok, why = self.judge.judge(row.prompt, row.axis, row.negative)
                if not ok:
                    out.append(Verdict(False, "judge_rejected", scores, tagged, why))
                    continue
            out.append(Verdict(True, None, scores, axes, detail))
            accepted.setdefault(dedupe_key(row.prompt), set()).add(key)
        return out

    # -- internals ----------------------------------------------------------------------------

    def _cosines(self, items: list[Row], unreadable: list[tuple[str, str] | None]) -> list[float | None]:
        """Prompt-negative cosine of each row that passed `_unreadable` (None for the others)."""
        if not self.config.use_embedding:
            return [None] * len(items)
        texts: list[str] = []
        for r, bad in zip(items, unreadable):
            if bad is None:
                texts += [r.prompt, r.negative]
        unique = sorted(set(texts))
        if not unique:
            return [None] * len(items)
        vecs = self.embedder.encode(unique, batch_size=self.config.batch_size,
                                    normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
        index = {t: i for i, t in enumerate(unique)}
        out: list[float | None] = []
        for r, bad in zip(items, unreadable):
            if bad is not None:
                out.append(None)
                continue
            c = float(vecs[index[r.prompt]] @ vecs[index[r.negative]])
            out.append(round(c, 4))
        return out

    def _check_one(self, row: Row, cosine: float | None, kept_before: set[str], bad: tuple[str, str] | None) -> Verdict:
        """The lexicon checks of one row; `bad` is its `_unreadable` verdict, computed once per row."""
        cfg = self.config
        prompt, axis, negative = row.prompt, row.axis, row.negative
        nan = float("nan")
        scores: dict[str, float] = {"cosine": nan if cosine is None else cosine,
                                    "length_ratio": nan, "content_kept": nan,
                                    "new_content": nan, "n_axes": nan}

        def reject(reason: str, detail: str | None = None, axes: tuple[str, ...] = ()) -> Verdict:
            return Verdict(False, reason, scores, axes, detail)

        if bad is not None:
            return reject(*bad)

        n_p, n_n = len(tokenize(prompt)), len(tokenize(negative))
        kept, missing, new = _content_scores(prompt, negative)
        tag = tag_axes(prompt, negative)
        resolved = tag.resolved_axes(axis)
        scores.update(length_ratio=round(n_n / max(n_p, 1), 4), content_kept=round(kept, 4),
                      new_content=float(len(new)), n_axes=float(len(resolved)))

        if dedupe_key(prompt) == dedupe_key(negative) and not _only_quantities_changed(prompt, negative):
            return reject("identical")
        echo = _echo(prompt, negative)
        if echo is not None:
            return reject("instruction_echo", f"matched {echo!r}")
        added_neg = _negations(negative) - _negations(prompt)
        if added_neg:
            bare = tag_axes(prompt, _strip_negation(negative))
            if not bare.supports(axis):
                return reject("negation_only", f"adds {', '.join(sorted(added_neg))}")
            if not cfg.allow_negation_with_change:
                return reject("negation", f"adds {', '.join(sorted(added_neg))}")
        key = dedupe_key(negative)
        if key in kept_before or key in {dedupe_key(o) for o in row.other_negatives}:
            return reject("duplicate")
        drift = _length_drift(prompt, negative, cfg.length_slack_words, cfg.max_length_ratio)
        if drift is not None:
            return reject("length_drift", drift)
        quantity = _quantity_verdict(prompt, axis, negative)
        if quantity is not None:  # only stated quantities changed: the word lists see no change, the rule decides
            reason, detail = quantity
            if reason is None and self.judge is not None:
                ok, why = self.judge.judge(prompt, axis, negative)
                reason, detail = (None, detail) if ok else ("judge_rejected", why)
            if reason is not None:
                return reject(reason, detail, ("magnitudes",) if reason == "wrong_axis" else ())
            return Verdict(True, None, scores, ("magnitudes",), detail)
        if kept < cfg.min_content_kept:
            return reject("scene_changed", f"missing {', '.join(missing)}", resolved)
        if tag.content_swapped:
            swapped = [f"{'/'.join(c.removed_content)} -> {'/'.join(c.added_content)}"
                       for c in tag.chunks if c.removed_content and c.added_content]
            return reject("scene_changed", f"swapped {'; '.join(swapped)}", resolved)
        if len(new) > cfg.max_new_content:
            return reject("scene_changed", f"adds {', '.join(new)}", resolved)
        if not tag.evidence:
            return reject("axis_not_changed", None, resolved)
        if not tag.supports(axis):
            return reject("wrong_axis", f"changed {', '.join(resolved)}", resolved)
        others = tag.other_axes(axis)
        if others:
            return reject("multi_axis", f"also {', '.join(a for a in AXES if a in others)}",
                          resolved)
        if cosine is not None:
            lo, hi = cfg.band(axis)
            if not lo <= cosine <= hi:
                return reject("cosine_out_of_band", f"{cosine:.4f} not in [{lo}, {hi}]", resolved)
        if self.judge is not None:
            ok, why = self.judge.judge(prompt, axis, negative)
            if not ok:
                return reject("judge_rejected", why, resolved)
        return Verdict(True, None, scores, resolved, None)


def summarize(verdicts: Iterable[Verdict]) -> dict[str, int]:
    """Counts per outcome: ``accepted`` plus one key per reason code seen (stable order)."""
    c = Counter("accepted" if v.accepted else str(v.reason) for v in verdicts)
    order = ("accepted",) + REASONS
    return {k: c[k] for k in order if c[k]} | {k: n for k, n in sorted(c.items()) if k not in order}

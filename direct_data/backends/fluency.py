"""Fluency of a rewrite, read by a small causal language model (no generation).

Two readers. `SpanStates` (what the learnt validator's ``--fluency`` path uses since session 27)
runs a rewrite through the model's first `PROBE_LAYERS` layers only and pools the states of the
edited span; a linear probe fitted on the labelled set (`direct_data.text.learnt.fit_probe`) turns
them into a logit of ``ungrammatical``. `FluencyScorer` (below, the path before session 27, kept
as the baseline `bench/bench_fluency.py` measures) scores token log-probs with the whole model
and its 262k-word output head, about ten times the work, for a weaker signal on the labelled
dev split (AUC of good against ``ungrammatical``: 0.89 for its best feature combination in the
acceptance model, 0.94 for the probe alone).

The log-prob scorer:

A rule-based or small-model rewriter breaks sentences in typical ways ("a height is gigantic and
lands", "falls into a pool bounces off", "rapidly rapidly", "... rubber is."). A language model
notices: the tokens of a broken edit, and the tokens right after it, are much less likely in
context than the tokens of the original there. `FluencyScorer.score` turns that into a few numbers
per (prompt, negative) pair, always *relative to the prompt*, so a rare but fluent subject matter
does not read as broken:

``span_logprob_delta``        mean token log-prob of the edited region, negative minus prompt
``min_token_logprob_delta``   min log-prob over the edited region and the 2 tokens after it,
                              negative minus prompt
``sent_logprob_delta``        mean per-token log-prob of the whole text (its end-of-text token
                              included), negative minus prompt
``sent_min_logprob_delta``    min token log-prob of the whole text, negative minus prompt
``span_logprob``              mean token log-prob of the negative's edited region (absolute)
``min_token_logprob``         min over the negative's edited region + 2 tokens (absolute)
``eos_logprob_delta``         log-prob that the text ends where it ends, negative minus prompt
                              (stray words appended: "... made of rubber is.")
``n_span_tokens``             tokens in the negative's edited region
``n_edits``                   edited regions (word-level difflib opcodes that are not `equal`)

Edited regions come from `difflib` on words (``\\w+('\\w+)?`` or one punctuation mark), mapped to
tokens through the tokenizer's character offsets: a token belongs to a region if its characters
overlap it. A region that is empty on one side (a pure insertion or deletion) is represented on that
side by the token that follows the gap (the end-of-text token at the end), so every edit is scored
on both sides. Identical texts score 0 everywhere.

Each text is scored once and cached: per text, its token offsets and log-probs (4 decimals), in
``<cache_dir>/<identity digest>.jsonl`` (``$DIRECT_DATA_CACHE/fluency`` or
``~/.cache/direct-data/fluency`` by default), keyed by sha256(identity + text). JSON lines only,
appended one record per write; a torn last line (a crash) is skipped on read. The model is loaded
only when some text is missing from the cache.

A text's numbers never depend on which other texts were scored with it: texts are run in batches of
one exact token length (no padding), a lone text next to a copy of itself, and log-probs are
rounded to 4 decimals. The output head runs on the token rows of a batch's texts together, in
slices of 256 rows x 16k words, and the log-sum-exp over the vocabulary is combined across the word
slices (Gemma's vocabulary is 262k: a batch's full logits would not fit in memory, and a slice's
stay in cache). A row of a matrix product does not depend on the rows beside it (bit for bit on the
CPU kernels; `tests/test_fluency.py` checks a text alone against the same text in a batch).

Cost. On a CPU the output head (262k x 640) was about two thirds of the work when it ran per text;
running a batch's rows through it together made scoring 1.57x faster with identical numbers (1,000
rules rows, 1,199 texts: 88.2 s -> 56.3 s). A text alone in its length group is run next to a copy
of itself (the body's numbers then match a batch of two), but the head runs only on the real
texts' rows. A negative is scored on its own, never reusing its prompt's log-probs over a shared
prefix: that saved ~2% (free-form edits start early) and made a negative's cached numbers depend on
which prompt first scored it.

dtype. ``auto`` (the default) runs the model in bfloat16 (the packaged Gemma's saved dtype, and
the scores session 26's fluency model was fitted on) where the CPU has bfloat16
instructions or the device is not the CPU, and in float32 on a CPU without them, where bf16 matrix
products are emulated (this 2-core AVX2 CPU: 1.55 texts/s in bf16, 6.43 in float32, 4.1x; on a CPU
with bf16 instructions bf16 was about 2.5x faster than float32). The two dtypes give slightly
different numbers; session 26's fluency model scored dev the same on either. Each dtype keeps its
own cache (the resolved dtype is part of the identity).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from direct_data.core.errors import UserError

log = logging.getLogger(__name__)

SCORER_VERSION = "fluency-v2"  # bump when the per-text numbers or the pair features change (v2: no prefix reuse, sliced head)
FEATURES: tuple[str, ...] = (
    "span_logprob_delta", "min_token_logprob_delta", "sent_logprob_delta", "sent_min_logprob_delta",
    "span_logprob", "min_token_logprob", "eos_logprob_delta", "n_span_tokens", "n_edits",
)
MAX_TOKENS = 1024  # longer texts are scored on their first MAX_TOKENS tokens
NEXT_TOKENS = 2  # tokens after an edited region that count in the min
_VOCAB_SLICE = 16384  # output-head words whose logits are materialised at once ...
_TOKEN_SLICE = 256  # ... for this many tokens of a text
#: the model dtypes a scorer can be asked for (``auto``: `scorer_dtype`)
DTYPES = ("auto", "bfloat16", "float32")
_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def default_cache_dir() -> Path:
    root = os.environ.get("DIRECT_DATA_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "direct-data") / "fluency"


# ---------------------------------------------------------------------------------------------
# Pair features from per-text token log-probs
# ---------------------------------------------------------------------------------------------


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def edited_regions(a: str, b: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Character ranges of the word-level edits from `a` to `b`: [((a_start, a_end), (b_start, b_end))].

    An empty range (start == end) marks the insertion point on the side that has no words there.
    Words are compared case-sensitively."""
    wa, wb = _words(a), _words(b)
    sm = difflib.SequenceMatcher(a=[w for w, _, _ in wa], b=[w for w, _, _ in wb], autojunk=False)

    def span(words: list[tuple[str, int, int]], i: int, j: int, text: str) -> tuple[int, int]:
        if i < j:
            return words[i][1], words[j - 1][2]
        pos = words[i][1] if i < len(words) else len(text)
        return pos, pos

    return [(span(wa, i1, i2, a), span(wb, j1, j2, b))
            for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal"]


def _region_tokens(offsets: Sequence[Sequence[int]], start: int, end: int) -> list[int]:
    """Indices of the tokens overlapping [start, end); for an empty range, the token after the gap.

    The last entry of `offsets` is the end-of-text token, at (len, len)."""
    last = len(offsets) - 1
    if start < end:
        idx = [i for i, (s, e) in enumerate(offsets[:-1]) if s < end and e > start]
        if idx:
            return idx
    for i, (_s, e) in enumerate(offsets[:-1]):
        if e > start:
            return [i]
    return [last]


def _side(rec: dict[str, Any], ranges: list[tuple[int, int]]) -> tuple[list[float], list[float]]:
    """(log-probs of the edited tokens, log-probs of edited tokens + the NEXT_TOKENS after each region)."""
    offsets, lp = rec["o"], rec["lp"]
    span: set[int] = set()
    ext: set[int] = set()
    for start, end in ranges:
        idx = _region_tokens(offsets, start, end)
        span.update(idx)
        ext.update(idx)
        ext.update(range(max(idx) + 1, min(max(idx) + 1 + NEXT_TOKENS, len(lp))))
    return [lp[i] for i in sorted(span)], [lp[i] for i in sorted(ext)]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def pair_features(prompt: str, negative: str, rec_p: dict[str, Any], rec_n: dict[str, Any]) -> dict[str, float]:
    """The features of one pair from its two texts' cached token records (see module docstring)."""
    regions = edited_regions(prompt, negative)
    sent_p, sent_n = _mean(rec_p["lp"]), _mean(rec_n["lp"])
    out = {
        "sent_logprob_delta": sent_n - sent_p,
        "sent_min_logprob_delta": min(rec_n["lp"]) - min(rec_p["lp"]),
        "eos_logprob_delta": rec_n["lp"][-1] - rec_p["lp"][-1],
        "n_edits": float(len(regions)),
    }
    if not regions:
        out.update(span_logprob_delta=0.0, min_token_logprob_delta=0.0, span_logprob=sent_n,
                   min_token_logprob=min(rec_n["lp"]), n_span_tokens=0.0)
    else:
        span_p, ext_p = _side(rec_p, [r[0] for r in regions])
        span_n, ext_n = _side(rec_n, [r[1] for r in regions])
        out.update(
            span_logprob_delta=_mean(span_n) - _mean(span_p),
            min_token_logprob_delta=min(ext_n) - min(ext_p),
            span_logprob=_mean(span_n),
            min_token_logprob=min(ext_n),
            n_span_tokens=float(len(span_n)),
        )
    return {k: round(float(out[k]), 4) for k in FEATURES}


def causal_lm_path(model: str | None) -> str:
    """The folder or hub id a scorer loads: `model`, or the packaged Gemma-3-270M base (converted
    once to a bf16 folder, `direct_data.backends.llm.prepare_gemma`) when it is None."""
    if model is not None:
        return model
    from direct_data.backends.llm import prepare_gemma

    return str(prepare_gemma())


class _ReadsCausalLM:
    """What both readers share: `model_name` (None: the packaged Gemma) resolved once to `model_path`."""

    model_name: str | None
    _path: str | None

    @property
    def model_path(self) -> str:
        if self._path is None:
            self._path = causal_lm_path(self.model_name)
        return self._path


# ---------------------------------------------------------------------------------------------
# The scorer
# ---------------------------------------------------------------------------------------------


class FluencyCache:
    """sha256(identity + text) -> {"o": token char offsets, "lp": token log-probs}, in one JSONL file."""

    def __init__(self, root: Path, identity: str) -> None:
        self.path = Path(root) / (hashlib.sha256(identity.encode()).hexdigest()[:24] + ".jsonl")
        self.identity = identity
        self._data: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def key(self, text: str) -> str:
        return hashlib.sha256((self.identity + "\x00" + text).encode("utf-8")).hexdigest()

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._data is None:
            self._data = {}
            if self.path.is_file():
                with open(self.path, encoding="utf-8") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                            self._data[rec["k"]] = {"o": rec["o"], "lp": rec["lp"]}
                        except (json.JSONDecodeError, KeyError, TypeError):
                            continue  # a torn line from a crashed writer
        return self._data

    def get(self, text: str) -> dict[str, Any] | None:
        return self._load().get(self.key(text))

    def put_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        with self._lock:
            data = self._load()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lines = []
            for text, rec in items:
                k = self.key(text)
                data[k] = rec
                lines.append(json.dumps({"k": k, "o": rec["o"], "lp": rec["lp"]}, separators=(",", ":")) + "\n")
            if not lines:
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                for line in lines:
                    os.write(fd, line.encode("utf-8"))  # one write per record: no interleaving
            finally:
                os.close(fd)


def scorer_dtype(dtype: str = "auto", device: str = "cpu") -> str:
    """The dtype a scorer runs in: `dtype` itself unless it is ``auto``, which is ``bfloat16``
    except on a CPU without bfloat16 instructions (`direct_data.backends.llm.cpu_has_bf16`), where
    it is ``float32`` (module docstring)."""
    if dtype != "auto":
        return dtype
    from direct_data.backends.llm import cpu_has_bf16

    return "float32" if str(device).startswith("cpu") and not cpu_has_bf16() else "bfloat16"


class FluencyScorer(_ReadsCausalLM):
    """Scores how natural a rewrite's edit is, in context, against the original (module docstring).

    `model`: a causal-LM folder or hub id; `None` means the packaged Gemma-3-270M base
    (`direct_data.backends.llm.prepare_gemma`). `cache_dir`: where per-text scores are kept
    (default `$DIRECT_DATA_CACHE/fluency` or `~/.cache/direct-data/fluency`). The model runs in
    `dtype` (``auto``: `scorer_dtype`; or ``bfloat16`` / ``float32``; `self.dtype` is the resolved
    one) under `torch.inference_mode()`; it is loaded on the first text that is not cached.
    """

    def __init__(self, model: str | None = None, *, batch_size: int = 16, cache_dir: str | os.PathLike | None = None,
                 device: str = "cpu", dtype: str = "auto") -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
        self.dtype = scorer_dtype(dtype, device)
        self.model_name = model
        self.batch_size = batch_size
        self.device = device
        self.cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._path: str | None = None
        self._identity: str | None = None
        self._cache: FluencyCache | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self.show_progress = False  # a rich bar on stderr while texts are scored
        self.texts_scored = 0  # texts run through the model (cache misses) by this object

    # -- model ----------------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """Model identity (name + weights hash for a folder) + scorer version, for cache keys."""
        if self._identity is None:
            from direct_data.backends.models import model_identity

            # float32 scorers keep the identity (and cache) they had before the dtype option existed
            suffix = "" if self.dtype == "float32" else f"|{self.dtype}"
            self._identity = f"{model_identity(self.model_path)}|{SCORER_VERSION}{suffix}"
        return self._identity

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    @property
    def cache(self) -> FluencyCache:
        if self._cache is None:
            self._cache = FluencyCache(self.cache_root, self.identity)
        return self._cache

    def _load(self) -> None:
        if self._model is None:
            self._tokenizer, self._model = load_causal_lm(self.model_path, self.device, self.dtype)

    def _encode(self, text: str) -> tuple[list[int], list[list[int]]]:
        """Token ids (start token, text tokens, end token) and the text tokens' char offsets + (len, len)."""
        return _encode(self._tokenizer, text, self.model_path)

    def _token_logprobs(self, batch: list[list[int]], n_real: int) -> list[list[float]]:
        """Log-prob of every token after the first, for equal-length id lists, for the first `n_real`
        of them (the rest are padding copies that only fill the body's batch). The head runs on
        their rows together; a row's numbers do not depend on the rows beside it."""
        import torch

        model = self._model
        ids = torch.tensor(batch, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            hidden = model.get_decoder()(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            head = model.get_output_embeddings()
            cap = getattr(model.config, "final_logit_softcapping", None)
            weight, bias = head.weight, getattr(head, "bias", None)
            vocab = weight.shape[0]
            # the head runs on the real texts' rows together (a row's numbers do not depend on the
            # rows next to it in a matrix product: tests/test_fluency.py checks it on this machine),
            # in slices of _TOKEN_SLICE rows x _VOCAB_SLICE words, so each slice's logits stay in cache
            # (materialising 262k-wide rows was a third of the head's time)
            steps = ids.shape[1] - 1
            h_all = hidden[:n_real, :steps].reshape(n_real * steps, -1)
            t_all = ids[:n_real, 1:].reshape(n_real * steps)
            out = []
            for t0 in range(0, h_all.shape[0], _TOKEN_SLICE):
                h = h_all[t0: t0 + _TOKEN_SLICE]
                target = t_all[t0: t0 + h.shape[0]]
                lse = torch.empty((h.shape[0], (vocab + _VOCAB_SLICE - 1) // _VOCAB_SLICE), dtype=torch.float32)
                picked = torch.empty(h.shape[0], dtype=torch.float32)
                for j, c0 in enumerate(range(0, vocab, _VOCAB_SLICE)):
                    logits = h @ weight[c0: c0 + _VOCAB_SLICE].T
                    if bias is not None:
                        logits = logits + bias[c0: c0 + _VOCAB_SLICE]
                    logits = logits.float()
                    if cap:
                        logits = torch.tanh(logits / cap) * cap
                    lse[:, j] = torch.logsumexp(logits, dim=-1)
                    hit = (target >= c0) & (target < c0 + _VOCAB_SLICE)
                    if hit.any():
                        picked[hit] = logits[hit, target[hit] - c0]
                out.append(picked - torch.logsumexp(lse, dim=-1))
            flat = torch.cat(out).cpu().tolist() if out else []
            rows = [flat[b * steps: (b + 1) * steps] for b in range(n_real)]
        return [[round(x, 4) for x in row] for row in rows]

    def _score_texts(self, texts: list[str]) -> None:
        """Run the model on `texts` (not cached) and cache their records."""
        from direct_data.core.progress import progress_bar

        self._load()
        encoded = {t: self._encode(t) for t in texts}
        with progress_bar("fluency", total=len(texts), enabled=self.show_progress) as bar:
            for chunk, ids in equal_length_batches(encoded, self.batch_size):
                lps = self._token_logprobs(ids, len(chunk))
                self.cache.put_many([(t, {"o": encoded[t][1], "lp": lp}) for t, lp in zip(chunk, lps)])
                self.texts_scored += len(chunk)
                bar.update(len(chunk))

    def records(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Per-text token records (`{"o": offsets, "lp": log-probs}`), from the cache or the model."""
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError("fluency texts must be non-empty strings")
        missing = sorted({t for t in texts if self.cache.get(t) is None})
        if missing:
            self._score_texts(missing)
        return [self.cache.get(t) for t in texts]  # type: ignore[misc]

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        """One feature dict per (prompt, negative) pair, in order (see the module docstring). Every
        distinct text is scored once, on its own, and cached."""
        texts = [t for pair in pairs for t in pair]
        recs = self.records(texts)
        return [pair_features(p, n, recs[2 * i], recs[2 * i + 1]) for i, (p, n) in enumerate(pairs)]


# ---------------------------------------------------------------------------------------------
# Span states: what the learnt validator's fluency model reads (session 27)
# ---------------------------------------------------------------------------------------------

#: decoder layers `SpanStates` runs (of Gemma-3-270M's 18), chosen on the dev split in session 27:
#: a probe on the states after 6, 8 or 10 layers separates good from ``ungrammatical`` dev rows
#: about equally (AUC 0.92-0.94), and the fluency acceptance model scored dev best after 8
#: (balanced score 0.9081; 6: 0.9011, 10: 0.8984, probe C 0.01 each)
PROBE_LAYERS = 8
STATES_VERSION = "span-states-v1"  # bump when the pooled states change


class SpanStates(_ReadsCausalLM):
    """A rewrite's edited span as a causal LM's hidden states: the input of the learnt validator's
    fluency probe (`direct_data.text.learnt.LearntModel.fluency_column`).

    Each negative runs through the first `layers` decoder layers only (no output head, no later
    layers: about a tenth of the log-prob scorer's work on Gemma-3-270M) in float32, and its final-
    normed states are averaged over the tokens of its edited regions (`edited_regions` against the
    prompt, a pure deletion standing for the token after the gap) and the `NEXT_TOKENS` after each
    region: where a broken edit shows, in what the model makes of the words and of the words right
    after them. The prompt itself is not run. States are rounded to 4 decimals.

    A pair's states never depend on the other pairs: texts run in batches of one exact token length
    (no padding), a text alone in its group next to a copy of itself, as `FluencyScorer` does. No
    cache: on this 2-core CPU 1,000 rules rows take ~15 s. `model`: a causal-LM folder or hub id
    (None: the packaged Gemma-3-270M base); its layers beyond `layers` are dropped after loading.
    """

    dtype = "float32"

    def __init__(self, model: str | None = None, *, layers: int = PROBE_LAYERS, batch_size: int = 16, device: str = "cpu") -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if layers < 1:
            raise ValueError("layers must be >= 1")
        self.model_name = model
        self.layers = layers
        self.batch_size = batch_size
        self.device = device
        self._path: str | None = None
        self._identity: str | None = None
        self._tokenizer: Any = None
        self._decoder: Any = None
        self.show_progress = False
        self.texts_scored = 0  # texts run through the model by this object

    @property
    def identity(self) -> str:
        """Model identity (name + weights hash for a folder), version, layers and dtype."""
        if self._identity is None:
            from direct_data.backends.models import model_identity

            self._identity = f"{model_identity(self.model_path)}|{STATES_VERSION}|layers={self.layers}|{self.dtype}"
        return self._identity

    @property
    def model_loaded(self) -> bool:
        return self._decoder is not None

    def _load(self) -> None:
        if self._decoder is not None:
            return
        # a copy of its own (not `load_causal_lm`'s shared one): its layers are cut below
        self._tokenizer, model = read_causal_lm(self.model_path, self.device, self.dtype)
        decoder = decoder_stack(model, self.model_path)
        n = len(decoder.layers)
        if self.layers > n:
            raise TooFewLayersError(f"causal LM {self.model_path}: it has {n} decoder layers; the fluency model reads the states after "
                                    f"{self.layers}: give a model with at least {self.layers} layers")
        decoder.layers = decoder.layers[: self.layers]
        decoder.config.num_hidden_layers = self.layers
        self._decoder = decoder

    def states(self, pairs: Sequence[tuple[str, str]]) -> Any:
        """(n, hidden size) float32: per (prompt, negative) pair, the mean final-normed state of the
        negative's edited tokens and the `NEXT_TOKENS` after each region (class docstring)."""
        import numpy as np

        for pair in pairs:
            if len(pair) != 2 or not all(isinstance(t, str) and t.strip() for t in pair):
                raise ValueError("span states need (prompt, negative) pairs of non-empty strings")
        if not pairs:
            return np.zeros((0, 0), dtype=np.float32)
        self._load()
        import torch

        from direct_data.core.progress import progress_bar

        encoded = {n: _encode(self._tokenizer, n, self.model_path) for n in {n for _, n in pairs}}
        of_text: dict[str, list[int]] = {}
        for i, (_, n) in enumerate(pairs):
            of_text.setdefault(n, []).append(i)
        out: np.ndarray | None = None
        with progress_bar("span states", total=len(encoded), enabled=self.show_progress) as bar, torch.inference_mode():
            for chunk, ids in equal_length_batches(encoded, self.batch_size):
                x = torch.tensor(ids, dtype=torch.long, device=self.device)
                hidden = self._decoder(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
                hidden = hidden[: len(chunk), 1:].float().cpu().numpy()  # the text's tokens and its end token
                if out is None:
                    out = np.zeros((len(pairs), hidden.shape[-1]), dtype=np.float32)
                for b, t in enumerate(chunk):
                    offsets = encoded[t][1]
                    for i in of_text[t]:
                        idx = _pooled_tokens(offsets, [r[1] for r in edited_regions(pairs[i][0], t)])
                        out[i] = np.round(hidden[b, idx].astype(np.float64).mean(axis=0), 4)
                self.texts_scored += len(chunk)
                bar.update(len(chunk))
        assert out is not None
        return out


def equal_length_batches(encoded: dict[str, tuple[list[int], Any]], batch_size: int) -> Any:
    """(texts, id rows) batches of `encoded` (text -> (token ids, ...)) in which every text has one
    exact token length (no padding, so no text's numbers depend on its batch mates), in a fixed
    order (length, then text); a text alone in its batch is sent next to a copy of itself (its id
    rows then hold it twice: the body's numbers match a batch of two)."""
    groups: dict[int, list[str]] = {}
    for t in sorted(encoded):
        groups.setdefault(len(encoded[t][0]), []).append(t)
    for length in sorted(groups):
        group = groups[length]
        for k in range(0, len(group), batch_size):
            chunk = group[k: k + batch_size]
            ids = [encoded[t][0] for t in chunk]
            yield chunk, ids * 2 if len(ids) == 1 else ids


def _pooled_tokens(offsets: Sequence[Sequence[int]], ranges: list[tuple[int, int]]) -> list[int]:
    """Token indices of the edited `ranges` and the `NEXT_TOKENS` after each (every token, the end
    token included, when nothing was edited)."""
    if not ranges:
        return list(range(len(offsets)))
    idx: set[int] = set()
    for start, end in ranges:
        span = _region_tokens(offsets, start, end)
        idx.update(span)
        idx.update(range(max(span) + 1, min(max(span) + 1 + NEXT_TOKENS, len(offsets))))
    return sorted(idx)


def _encode(tok: Any, text: str, model_path: str) -> tuple[list[int], list[list[int]]]:
    """Token ids (start token, text tokens, end token) and the text tokens' char offsets + (len, len),
    the first `MAX_TOKENS` tokens of the text."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])[: MAX_TOKENS]
    offsets = [list(o) for o in enc["offset_mapping"]][: MAX_TOKENS]
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    end = tok.eos_token_id
    if start is None or end is None:
        raise ValueError(f"the tokenizer of {model_path} has neither a bos nor an eos token")
    n = len(text) if len(ids) == len(enc["input_ids"]) else offsets[-1][1]
    return [start, *ids, end], [*offsets, [n, n]]


class TooFewLayersError(UserError, ValueError):
    """A model with fewer decoder layers than asked for: the user's model (a `UserError`, one line on
    the CLI), and a bad value to callers (a `ValueError`, as it was before)."""


def decoder_stack(model: Any, path: str) -> Any:
    """The decoder of a causal LM whose layers the readers cut (``model.get_decoder()`` with a
    ``layers`` list, as Gemma, Llama, Qwen, Mistral have); a one-line error for any other model
    (an encoder such as BERT loaded as a causal LM, a model whose blocks are named otherwise)."""
    from direct_data.core.errors import UserError

    try:
        decoder = model.get_decoder()
        n = len(decoder.layers)
    except (AttributeError, TypeError, NotImplementedError):
        decoder, n = None, 0
    if decoder is None or n < 1 or not hasattr(decoder, "config"):
        raise UserError(f"causal LM {path}: a {type(model).__name__} has no decoder layer stack (`get_decoder().layers`) "
                        f"to read states from: give a decoder-only causal LM folder (e.g. Gemma, Llama, Qwen)")
    return decoder


def _check_tokenizer(tok: Any, path: str) -> None:
    """A tokenizer that reads no word of a plain English sentence (every token unknown: a folder
    without its tokenizer files gives one, silently) would feed the model nothing but unknown
    tokens: a one-line error instead of scores of nothing."""
    from direct_data.core.errors import UserError

    probe = "A red ball rolls across the wooden floor and bounces off the wall."
    try:
        ids = list(tok(probe, add_special_tokens=False)["input_ids"])
    except Exception as e:  # noqa: BLE001 (any library failure on a plain sentence: the tokenizer is unusable)
        from direct_data.core.errors import first_line

        raise UserError(f"causal LM {path}: its tokenizer cannot encode text ({first_line(e)})") from None
    unk = getattr(tok, "unk_token_id", None)
    if not ids or (unk is not None and all(i == unk for i in ids)):
        raise UserError(f"causal LM {path}: its tokenizer knows no word of a plain English sentence "
                        f"(missing or empty tokenizer files, e.g. tokenizer.json)")


@contextlib.contextmanager
def _quiet_transformers() -> Any:
    """transformers' own warnings while loading (a tokenizer regex notice, "add is_decoder=True", a
    weights report) are errors' preambles here: the error says in one line what is wrong."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:  # pragma: no cover
        yield
        return
    level = tlog.get_verbosity()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(level)


@lru_cache(maxsize=2)
def load_causal_lm(path: str, device: str = "cpu", dtype: str = "bfloat16") -> tuple[Any, Any]:
    """`read_causal_lm`, shared by every log-prob scorer in the process."""
    return read_causal_lm(path, device, dtype)


def read_causal_lm(path: str, device: str = "cpu", dtype: str = "bfloat16") -> tuple[Any, Any]:
    """(tokenizer, model in eval mode) of a causal LM folder or hub id, offline for a folder, no
    remote code; in `dtype` ("bfloat16" or "float32"); a new copy on every call."""
    from direct_data.backends.models import _prefer_passive_openmp, check_hub_reachable
    from direct_data.core.errors import UserError, cannot_load

    check_hub_reachable(path, "causal LM")
    _prefer_passive_openmp()  # idle OpenMP threads sleep instead of spinning (a shared CPU); numerics unchanged
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # not a model folder, no tokenizer, corrupt weights (OSError, ValueError), weights of other shapes
    # than its config.json says (RuntimeError), a truncated or foreign weights file (SafetensorError),
    # a config missing a key its model class reads (AttributeError, KeyError, TypeError): one line
    catch = (OSError, ValueError, RuntimeError, KeyError, AttributeError, TypeError, IndexError, _safetensor_error())
    with _quiet_transformers(), cannot_load(f"causal LM {path}", UserError, catch=catch):
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), trust_remote_code=False)
        except RuntimeError as e:
            if "mismatched" not in str(e):
                raise
            # transformers' report of the mismatched tensors is a warning we silenced: say what it means
            raise UserError(f"causal LM {path}: cannot load it (its weights do not have the shapes its config.json "
                            f"gives: a config.json from another model?)") from None
    _check_tokenizer(tokenizer, path)
    return tokenizer, model.to(device).eval()


def _safetensor_error() -> type[BaseException]:
    try:
        from safetensors import SafetensorError

        return SafetensorError
    except ImportError:  # pragma: no cover
        return OSError


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(a random `pos` value > a random `neg` value), ties half (Mann-Whitney)."""
    if not pos or not neg:
        return math.nan
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))

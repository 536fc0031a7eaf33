"""The fluency scorers on the real packaged Gemma-3-270M (base), no mocks: the log-prob scorer
(dtype `auto`: bfloat16, or float32 on a CPU without bfloat16 instructions) and the span states
the learnt validator's fluency model reads (float32, the first layers).

A few dozen short texts are scored. Asserts: the word alignment, that broken edits in the styles
of docs/labelling-guide.md score below fluent edits of the same prompt (log-probs, and the
packaged probe on span states), that a text's numbers do not depend on its batch, and that the
log-prob cache answers without loading the model.
"""

from __future__ import annotations

import json

import pytest

from direct_data.backends.fluency import (
    FEATURES,
    PROBE_LAYERS,
    SCORER_VERSION,
    FluencyScorer,
    SpanStates,
    auc,
    edited_regions,
    scorer_dtype,
)
from direct_data.backends.llm import cpu_has_bf16

PROMPT = "A red ball falls into a swimming pool and bounces off the surface of the water."
FLUENT = [
    "A red ball falls slowly into a swimming pool and bounces off the surface of the water.",
    "A red ball falls into a swimming pool and sinks below the surface of the water.",
    "A red ball falls into a swimming pool and bounces high off the surface of the water.",
]
BROKEN = [
    "A red ball falls into a swimming pool bounces off the surface of the water.",  # two finite verbs
    "A red ball falls into a swimming pool and bounces off the surface of the water rubber is.",  # stray words
    "A red ball falls into a swimming pool and bounces bounces off the surface of the water.",  # duplicated word
]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> FluencyScorer:
    return FluencyScorer(cache_dir=tmp_path_factory.mktemp("fluency"))


def test_edited_regions_align_words():
    a = "A ball falls into a pool."
    assert edited_regions(a, a) == []
    # replacement: the word's characters on both sides
    (ra, rb), = edited_regions(a, "A ball rolls into a pool.")
    assert a[ra[0]:ra[1]] == "falls" and "A ball rolls into a pool."[rb[0]:rb[1]] == "rolls"
    # insertion: an empty range on the prompt's side, at the next word
    b = "A ball falls slowly into a pool."
    (ra, rb), = edited_regions(a, b)
    assert ra[0] == ra[1] == a.index("into") and b[rb[0]:rb[1]] == "slowly"
    # deletion at the end: the empty range sits at the end of the text
    (ra, rb), = edited_regions("A ball falls into a pool fast", "A ball falls into a pool")
    assert rb == (len("A ball falls into a pool"),) * 2
    # punctuation is its own word
    assert len(edited_regions("It falls, then stops.", "It falls then stops.")) == 1


def test_features_and_identity(scorer):
    out = scorer.score([(PROMPT, PROMPT), (PROMPT, FLUENT[0])])
    assert all(set(d) == set(FEATURES) for d in out)
    same, edit = out
    assert same["n_edits"] == 0 and same["n_span_tokens"] == 0
    assert same["span_logprob_delta"] == same["sent_logprob_delta"] == same["min_token_logprob_delta"] == 0.0
    assert edit["n_edits"] == 1 and edit["n_span_tokens"] >= 1
    assert all(isinstance(v, float) for d in out for v in d.values())
    # `auto`: bfloat16 where the CPU has bf16 instructions (or off the CPU), float32 where bf16 is emulated
    assert scorer.dtype == ("bfloat16" if cpu_has_bf16() else "float32") == scorer_dtype("auto", "cpu")
    assert scorer_dtype("auto", "cuda") == scorer_dtype("bfloat16") == "bfloat16"
    assert "@" in scorer.identity
    # each dtype has numbers (and a cache) of its own; `auto` shares the one of the dtype it resolves to
    bf16 = FluencyScorer(cache_dir=scorer.cache_root, dtype="bfloat16")
    f32 = FluencyScorer(cache_dir=scorer.cache_root, dtype="float32")
    assert bf16.identity.endswith(f"|{SCORER_VERSION}|bfloat16") and f32.identity.endswith("|" + SCORER_VERSION)
    assert bf16.cache.path != f32.cache.path
    assert scorer.identity == (bf16 if scorer.dtype == "bfloat16" else f32).identity
    with pytest.raises(ValueError):
        FluencyScorer(dtype="int4")
    with pytest.raises(ValueError):
        scorer.score([(PROMPT, "  ")])


def test_broken_edits_score_below_fluent_ones(scorer):
    feats = scorer.score([(PROMPT, n) for n in FLUENT + BROKEN])
    good, bad = feats[: len(FLUENT)], feats[len(FLUENT):]
    for f in ("span_logprob_delta", "sent_logprob_delta"):
        assert auc([d[f] for d in good], [d[f] for d in bad]) == 1.0, (f, good, bad)
    mean = lambda ds, f: sum(d[f] for d in ds) / len(ds)  # noqa: E731
    assert mean(bad, "min_token_logprob_delta") < mean(good, "min_token_logprob_delta") - 3
    assert mean(bad, "sent_min_logprob_delta") < mean(good, "sent_min_logprob_delta") - 3
    # the two finite verbs: the jammed verb itself is far less likely than the original's "and"
    assert bad[0]["span_logprob_delta"] < -3


def test_scores_do_not_depend_on_the_batch(scorer, tmp_path):
    pairs = [(PROMPT, n) for n in (FLUENT[0], FLUENT[2], BROKEN[0], BROKEN[2])]
    together = scorer.score(pairs)  # scored (or cached) in batches of equal-length texts
    alone_scorer = FluencyScorer(cache_dir=tmp_path, batch_size=4)
    alone = [alone_scorer.score([p])[0] for p in reversed(pairs)][::-1]  # one new text per call
    assert alone_scorer.texts_scored == len(pairs) + 1
    assert together == alone


def test_a_texts_head_rows_do_not_depend_on_its_batch_mates(scorer, tmp_path):
    """Texts of one token length run through the body and the output head together: each text's
    log-probs are the same, bit for bit, as when it is scored alone (next to a copy of itself)."""
    texts = [PROMPT.replace("water.", w) for w in ("lake.", "pond.", "river.", "sea.")] + [BROKEN[0]]
    together = FluencyScorer(cache_dir=tmp_path / "together", batch_size=8)
    together._load()
    lengths = [len(together._encode(t)[0]) for t in texts]
    assert len(set(lengths[:4])) == 1 and lengths[4] != lengths[0]  # four share one batch, one is alone
    recs = together.records(texts)
    assert together.texts_scored == len(texts)
    for t, rec in zip(texts, recs):
        alone = FluencyScorer(cache_dir=tmp_path / f"alone{texts.index(t)}")
        assert alone.records([t]) == [rec]


def test_a_negatives_numbers_do_not_depend_on_its_prompt_or_the_cache(scorer, tmp_path):
    """A negative is scored on its own: the same record whether it was first scored next to its own
    prompt, next to another prompt, or alone (a cached negative never carries its first prompt's
    numbers), and its features are a pure function of the two texts."""
    negs = [FLUENT[2], BROKEN[1]]  # edits near the end: a long token prefix shared with the prompt
    paired = scorer.score([(PROMPT, n) for n in negs])
    other = FluencyScorer(cache_dir=tmp_path / "other")
    other.score([("A red ball falls into a swimming pool.", n) for n in negs])  # scored next to another prompt
    alone = FluencyScorer(cache_dir=tmp_path / "alone")
    alone.records(list(reversed(negs)))  # each negative on its own, no prompt at all
    assert alone.texts_scored == 2
    for n in negs:
        assert scorer.records([n]) == other.records([n]) == alone.records([n])
    assert alone.score([(PROMPT, n) for n in negs]) == paired


def test_cache_hit_needs_no_model_and_survives_a_torn_line(tmp_path):
    pairs = [(PROMPT, FLUENT[1]), (PROMPT, BROKEN[2])]
    first = FluencyScorer(cache_dir=tmp_path)
    want = first.score(pairs)
    assert first.texts_scored == 3  # the prompt once
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 3
    rec = json.loads(files[0].read_text().splitlines()[0])
    assert set(rec) == {"k", "o", "lp"}
    with open(files[0], "a", encoding="utf-8") as f:
        f.write('{"k": "torn')  # a writer killed mid-line
    again = FluencyScorer(cache_dir=tmp_path)
    assert again.score(pairs) == want
    assert not again.model_loaded and again.texts_scored == 0
    # a user's own model folder (here the same weights, named explicitly) shares the identity
    explicit = FluencyScorer(first.model_path, cache_dir=tmp_path)
    assert explicit.identity == first.identity and explicit.score(pairs) == want and not explicit.model_loaded


@pytest.fixture(scope="module")
def span_states() -> SpanStates:
    return SpanStates()


def test_span_states_do_not_depend_on_the_batch_or_the_prompt(span_states):
    """A pair's pooled states are the same, bit for bit, whether its negative runs alone (next to a
    copy of itself) or in a batch of equal-length texts; the prompt only says where the edit is."""
    pairs = [(PROMPT, n) for n in FLUENT + BROKEN] + [(PROMPT, PROMPT)]
    together = span_states.states(pairs)
    assert together.shape == (len(pairs), span_states._decoder.config.hidden_size) and together.dtype.name == "float32"
    alone = SpanStates(batch_size=1)
    for i, pair in enumerate(pairs):
        assert alone.states([pair])[0].tobytes() == together[i].tobytes(), pair[1]
    assert alone.texts_scored == len(pairs)
    # the same negative against another prompt: other edited tokens, other states
    other = span_states.states([("A red ball falls into a swimming pool.", FLUENT[2])])
    assert other[0].tobytes() != together[2].tobytes()
    assert f"|layers={PROBE_LAYERS}|float32" in span_states.identity and "@" in span_states.identity
    with pytest.raises(ValueError):
        span_states.states([(PROMPT, " ")])
    with pytest.raises(ValueError):
        SpanStates(layers=0)
    with pytest.raises(ValueError, match="decoder layers"):
        SpanStates(layers=1000).states([(PROMPT, FLUENT[0])])


def test_the_packaged_probe_reads_broken_edits_as_ungrammatical(span_states):
    """The packaged validator's fluency probe, on Gemma's span states: every broken edit of the
    prompt (two finite verbs, stray words, a doubled word) has a higher logit of ``ungrammatical``
    than every fluent edit of it. An artefact without a probe is a one-line user error."""
    import dataclasses

    from direct_data.core.errors import UserError
    from direct_data.text.learnt import LearntModel

    model = LearntModel.load()
    z = model.fluency_column(span_states.states([(PROMPT, n) for n in FLUENT + BROKEN]))[:, 0]
    good, bad = list(z[: len(FLUENT)]), list(z[len(FLUENT):])
    assert auc(bad, good) == 1.0, (good, bad)
    with pytest.raises(UserError, match="refit"):
        dataclasses.replace(model, probe=None).fluency_column(span_states.states([(PROMPT, FLUENT[0])]))


def test_a_probe_never_reads_another_scorers_states():
    """The packaged fluency model was fitted on 8-layer span states of the packaged Gemma: a scorer
    that gives other states (here 6 layers) is a one-line user error before any state is computed,
    naming the refit; the CLI's `validator fit --fluency-model` without `--fluency` is exit 2."""
    import subprocess
    import sys

    from direct_data.core.errors import UserError
    from direct_data.text.validator import Validator

    six = SpanStates(layers=6)
    with pytest.raises(UserError, match="validator fit --fluency"):
        Validator(fluency=six).check_many([("A ball rolls.", "kinematics", "A ball rolls backward.")])
    assert not six.model_loaded
    r = subprocess.run([sys.executable, "-m", "direct_data.cli", "validator", "fit", "--fluency-model", "x", "--out", "/nonexistent/v.safetensors"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--fluency" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_validate_and_perturb_take_the_fluency_scorer_as_an_option(tmp_path):
    """`direct-data validate --fluency`: the learnt validator runs with Gemma's span states (the
    config and the manifest record the scorer); with the word-list validator it is a one-line error."""
    import os
    import subprocess
    import sys

    from direct_data.core.manifest import Manifest

    rows = [{"prompt": "A ball rolls slowly across the wooden floor.", "axis": "magnitudes",
             "negative": "A ball races across the wooden floor at high speed."},
            {"prompt": "A ball rolls slowly across the wooden floor.", "axis": "magnitudes",
             "negative": "A ball is gigantic rolls slowly across the wooden floor."}]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "DIRECT_DATA_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "direct_data.cli", *args], env=env, capture_output=True, text=True, timeout=600)

    r = cli("validate", str(f), "--out", str(tmp_path / "v"), "--fluency")
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    m = Manifest.read(tmp_path / "v")
    assert m.config["fluency"] is True and m.counts["rows"] == 2
    # the scorer that decided is in the manifest
    assert m.stats["fluency_scorers"] == [SpanStates().identity]
    for bad, needle in ((["--validator", "lexicon"], "--fluency"), (["--no-fluency", "--fluency-model", "x"], "--fluency")):
        args = ["--fluency"] if bad[0] != "--no-fluency" else []
        r = cli("perturb", str(f), "--out", str(tmp_path / "p"), *args, *bad)
        assert r.returncode == 2 and needle in r.stderr + r.stdout and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_units_scored_by_different_fluency_scorers_are_named(caplog):
    """A run resumed on a CPU of another kind (`auto` resolving to the other dtype) mixes scorers:
    the manifest names both and the log says how to recompute; without fluency nothing is added."""
    from direct_data.stages.validate import fluency_stats

    one = {"counts": {"rows": 3, "fluency": "gemma|v3"}}
    other = {"counts": {"rows": 2, "fluency": "gemma|v3|bfloat16"}}
    assert fluency_stats([{"counts": {"rows": 1}}]) == {}
    with caplog.at_level("WARNING"):
        assert fluency_stats([one, one]) == {"fluency_scorers": ["gemma|v3"]}
        assert not caplog.records
        assert fluency_stats([one, other, one]) == {"fluency_scorers": ["gemma|v3", "gemma|v3|bfloat16"]}
    assert "--force" in caplog.text and "2 fluency scorers" in caplog.text

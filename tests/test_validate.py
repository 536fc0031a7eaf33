"""The hard-negative validator: real embedder, a hand-labelled set, every reason code.

Most tests here pin the word-list path (``mode="lexicon"``), kept so the comparison with the learnt
default is reproducible; the learnt path is in tests/test_validator_learnt.py. The old regression
set is checked for both."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from direct_data.text.validator import (
    REASONS,
    Row,
    Validator,
    ValidatorConfig,
    Verdict,
    summarize,
)

LABELLED = Path(__file__).parent / "data" / "labelled_rewrites.jsonl"
LEXICON = ValidatorConfig(mode="lexicon")
#: reason codes only the learnt path gives (tested in tests/test_validator_learnt.py)
LEARNT_ONLY = {"markup", "copy", "ungrammatical", "static_size_only"}


@pytest.fixture(scope="module")
def validator() -> Validator:
    v = Validator(config=LEXICON)
    _ = v.embedder  # the packaged all-MiniLM-L6-v2, loaded once for the module
    return v


@pytest.fixture(scope="module")
def labelled() -> list[dict[str, str]]:
    with open(LABELLED, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def labelled_verdicts(validator: Validator, labelled: list[dict[str, str]]) -> list[Verdict]:
    return validator.check_many(labelled, dedupe_within=False)


def test_labelled_set_is_well_formed(labelled: list[dict[str, str]]) -> None:
    assert len(labelled) >= 120
    kinds = Counter(r["kind"] for r in labelled)
    assert set(kinds) == {"single_axis", "multi_axis", "scene_changed", "negation_only", "copy",
                          "instruction_echo", "wrong_axis"}
    assert all(n >= 10 for n in kinds.values())
    for r in labelled:
        assert r["label"] == ("good" if r["kind"] == "single_axis" else "bad")
        assert r["axis"] in ("kinematics", "forces", "materials", "interactions", "magnitudes")
    assert len({(r["prompt"], r["axis"], r["negative"]) for r in labelled}) == len(labelled)
    assert Counter(r["axis"] for r in labelled if r["label"] == "good").most_common()[-1][1] >= 10


def test_precision_and_recall_on_labelled_set(labelled: list[dict[str, str]],
                                             labelled_verdicts: list[Verdict]) -> None:
    tp = sum(v.accepted and r["label"] == "good" for r, v in zip(labelled, labelled_verdicts))
    fp = sum(v.accepted and r["label"] == "bad" for r, v in zip(labelled, labelled_verdicts))
    fn = sum(not v.accepted and r["label"] == "good" for r, v in zip(labelled, labelled_verdicts))
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    # measured: precision 0.984 (63/64), recall 0.955 (63/66)
    assert precision >= 0.93, precision
    assert recall >= 0.88, recall


def test_learnt_default_on_the_old_regression_set(validator: Validator, labelled: list[dict[str, str]]) -> None:
    """The learnt default on the old set (short word swaps, labelled before the labelling guide).

    Measured: precision 0.843 (59/70), recall 0.894 (59/66), below the word lists' 0.984 / 0.955
    (session 19's artefact, no ungrammatical gate: one more bad row kept and one more good row than
    session 18's 0.853 (58/68) / 0.879; session 13's artefact with the grammar checks and labelled batches 14 and 15; the same figures
    as the one before; with the grammar checks and batches 1-13 only: 0.851 / 0.864, rejecting
    "... onto the pavement with gravity reversed" and "... spills orange juice upward" by its
    ungrammatical gate; the linear artefact before labelled batches 10-13 and the boosted trees: 0.843 (59/70) /
    0.894 (59/66); the blend with batches 10 and 11 only: 0.859 / 0.833, rejecting appended stock
    phrases ("... onto the pavement with gravity reversed") and one-word antonym swaps ("stretched"
    -> "compressed") as ungrammatical or copy; the artefact before labelled batches 8
    and 9: 0.870 / 0.909; it rejected "stretched by a small
    child" and a new garage scene, and kept "a cork sinks below the surface"; with session 8's WordNet features:
    0.853 / 0.879; before them: 0.871 / 0.924; the artefact before batch 4 of the labelled set:
    0.850 / 0.773): the learnt model was fitted mostly on
    free-form rewrites and misreads some one-word swaps; three of the old set's "good" rows are
    size-only edits ("A tiny anvil falls"), which the labelling guide now calls static_size_only. `--validator lexicon`
    keeps the old figures (tests/test_perturb.py). Here to catch a further drop; see
    bench/results/validator.md."""
    learnt = Validator(embedder=validator.embedder)
    assert learnt.config.mode == "learnt"
    got = learnt.check_many(labelled, dedupe_within=False)
    tp = sum(v.accepted and r["label"] == "good" for r, v in zip(labelled, got))
    fp = sum(v.accepted and r["label"] == "bad" for r, v in zip(labelled, got))
    fn = sum(not v.accepted and r["label"] == "good" for r, v in zip(labelled, got))
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    assert precision >= 0.84, precision
    assert recall >= 0.87, recall


def test_labelled_rejections_name_the_right_defect(labelled: list[dict[str, str]],
                                                   labelled_verdicts: list[Verdict]) -> None:
    by_kind: dict[str, Counter[str]] = {}
    for r, v in zip(labelled, labelled_verdicts):
        by_kind.setdefault(r["kind"], Counter())[v.reason or "accepted"] += 1
    assert set(by_kind["negation_only"]) == {"negation_only"}
    assert set(by_kind["wrong_axis"]) == {"wrong_axis"}
    assert set(by_kind["multi_axis"]) == {"multi_axis"}
    assert by_kind["instruction_echo"]["accepted"] == 0
    assert by_kind["instruction_echo"]["instruction_echo"] >= 10
    assert by_kind["copy"]["accepted"] == 0
    assert by_kind["scene_changed"]["scene_changed"] >= 15


def test_scores_are_recorded_for_every_row(labelled_verdicts: list[Verdict]) -> None:
    for v in labelled_verdicts:
        assert set(v.scores) == {"cosine", "length_ratio", "content_kept", "new_content", "n_axes"}
        assert -1.0 <= v.scores["cosine"] <= 1.0
        if v.accepted:
            assert v.reason is None and len(v.axes) == 1
        else:
            assert v.reason in REASONS


class _KeywordJudge:
    """A minimal real judge: rejects negatives that mention a banned word."""

    def __init__(self, banned: str) -> None:
        self.banned = banned

    def judge(self, prompt: str, axis: str, negative: str) -> tuple[bool, str]:
        ok = self.banned not in negative
        return ok, "ok" if ok else f"mentions {self.banned}"


BALL = "A rubber ball is dropped onto a wooden floor and bounces twice."

#: one real row per reason code (prompt, axis, negative, expected reason)
REASON_CASES: list[tuple[object, object, object, str]] = [
    (BALL, "kinematics", None, "schema"),
    (BALL, "gravity", "A rubber ball is dropped onto a wooden floor and rolls away.", "bad_axis"),
    (BALL, "materials", "   ", "empty"),
    (BALL, "materials", "a rubber ball is dropped onto a wooden floor, and bounces twice", "identical"),
    (BALL, "materials", "Here is the rewrite: A glass ball is dropped onto a wooden floor and "
                        "bounces twice.", "instruction_echo"),
    (BALL, "interactions", "A rubber ball is dropped onto a wooden floor and does not bounce twice.",
     "negation_only"),
    (BALL, "interactions", "A rubber ball is dropped onto a wooden floor and does not bounce but "
                           "sinks into it.", "negation"),
    (BALL, "kinematics", "A rubber ball is dropped onto a wooden floor and rolls upward, then "
                         "keeps rolling up along the walls and across the ceiling of the big "
                         "room for a long time.", "length_drift"),
    (BALL, "materials", "A glass marble is dropped onto a wooden floor and bounces twice.",
     "scene_changed"),
    (BALL, "kinematics", "The rubber ball is dropped onto a wooden floor and bounces twice.",
     "axis_not_changed"),
    (BALL, "magnitudes", "A glass ball is dropped onto a wooden floor and bounces twice.",
     "wrong_axis"),
    (BALL, "materials", "A glass ball is dropped onto a wooden floor and shatters twice.",
     "multi_axis"),
    ("Ink billowing into water.", "materials", "Honey billowing into water.", "cosine_out_of_band"),
    (BALL, "kinematics", "Una pelota de goma cae sobre un suelo de madera y rebota hacia arriba.", "not_english"),
    (BALL, "kinematics", "A rubber ball rolls up a wooden floor. " * 250, "too_long"),
    (BALL, "kinematics", BALL.replace("dropped onto", "lifted off") + "x" * 200, "length_drift"),
]


@pytest.mark.parametrize("prompt,axis,negative,reason", REASON_CASES,
                         ids=[c[3] for c in REASON_CASES])
def test_each_reason_code(validator: Validator, prompt: object, axis: object, negative: object,
                          reason: str) -> None:
    v = validator.check(prompt, axis, negative)  # type: ignore[arg-type]
    assert not v.accepted
    assert v.reason == reason, (v.reason, v.detail)


def test_duplicate_and_judge_reasons(validator: Validator) -> None:
    good = "A glass ball is dropped onto a wooden floor and bounces twice."
    assert validator.check(BALL, "materials", good).accepted
    dup = validator.check(BALL, "materials", good.upper(), other_negatives=[good])
    assert dup.reason == "duplicate"
    judged = Validator(embedder=validator.embedder, config=LEXICON, judge=_KeywordJudge("glass"))
    v = judged.check(BALL, "materials", good)
    assert v.reason == "judge_rejected" and v.detail == "mentions glass"
    assert judged.check(BALL, "materials", good.replace("glass", "steel")).accepted


def test_other_negatives_must_be_a_list_of_strings(validator: Validator) -> None:
    up = BALL.replace("dropped onto", "lifted off")
    for others in (5, "a string", [1, None], {"a": 1}):
        v = validator.check_many([{"prompt": BALL, "axis": "kinematics", "negative": up, "other_negatives": others}])[0]
        assert (v.reason, v.detail) == ("schema", "other_negatives must be a list of strings"), others
    assert validator.check_many([{"prompt": BALL, "axis": "kinematics", "negative": up, "other_negatives": [up.upper()]}])[0].reason == "duplicate"


def test_every_reason_code_is_exercised() -> None:
    covered = {c[3] for c in REASON_CASES} | {"duplicate", "judge_rejected"}
    assert covered | LEARNT_ONLY == set(REASONS)


def test_method_examples_are_accepted(validator: Validator) -> None:
    """The five worked examples of METHOD.md pass on their declared axis."""
    rows = [
        (BALL, "kinematics", "A rubber ball is dropped onto a wooden floor and rolls upward into "
                             "the air."),
        (BALL, "forces", "A rubber ball is released above a wooden floor and floats up to the "
                         "ceiling."),
        (BALL, "materials", "A glass ball is dropped onto a wooden floor and bounces twice."),
        (BALL, "interactions", "A rubber ball is dropped onto a wooden floor and sinks through it."),
        (BALL, "magnitudes", "A rubber ball is dropped onto a wooden floor and bounces as high as "
                             "a house."),
    ]
    verdicts = validator.check_many(rows)
    assert [v.reason for v in verdicts] == [None] * 5
    assert [v.axes for v in verdicts] == [(r[1],) for r in rows]


def test_check_many_matches_check_and_is_deterministic(validator: Validator,
                                                       labelled: list[dict[str, str]]) -> None:
    rows = labelled[::7]
    many = validator.check_many(rows, dedupe_within=False)
    again = validator.check_many(list(reversed(rows)), dedupe_within=False)[::-1]
    one = [validator.check(r["prompt"], r["axis"], r["negative"]) for r in rows[::4]]
    one = [one[i // 4] if i % 4 == 0 else many[i] for i in range(len(rows))]
    for a, b, c in zip(many, again, one):
        assert (a.accepted, a.reason, a.axes) == (b.accepted, b.reason, b.axes) \
            == (c.accepted, c.reason, c.axes)
        assert a.scores == b.scores == c.scores


def test_check_many_row_forms_and_in_batch_duplicates(validator: Validator) -> None:
    neg = "A glass ball is dropped onto a wooden floor and bounces twice."
    rows = [
        {"prompt": BALL, "axis": "materials", "negative": neg},
        (BALL, "materials", neg),  # same negative again for the same prompt
        Row(BALL, "kinematics", "A rubber ball is dropped onto a wooden floor and rolls upward "
                                "into the air."),
        (BALL, "materials", None),
    ]
    got = validator.check_many(rows)
    assert [v.reason for v in got] == [None, "duplicate", None, "schema"]
    assert math.isnan(got[3].scores["cosine"])
    assert summarize(got) == {"accepted": 2, "schema": 1, "duplicate": 1}
    with pytest.raises(TypeError):
        validator.check_many([42])  # type: ignore[list-item]


def test_cosine_band_is_configurable_per_axis(validator: Validator) -> None:
    neg = "A glass ball is dropped onto a wooden floor and bounces twice."
    strict = Validator(embedder=validator.embedder,
                       config=ValidatorConfig(mode="lexicon", cosine_bands={"materials": (0.99, 1.0)}))
    v = strict.check(BALL, "materials", neg)
    assert v.reason == "cosine_out_of_band" and v.scores["cosine"] < 0.99
    # other axes keep their defaults
    assert strict.check(BALL, "magnitudes", "A rubber ball is dropped onto a wooden floor and "
                                             "bounces forty times.").accepted
    lexical = Validator(config=ValidatorConfig(mode="lexicon", use_embedding=False))
    v = lexical.check("Ink billowing into water.", "materials", "Honey billowing into water.")
    assert v.accepted and math.isnan(v.scores["cosine"])
    with pytest.raises(ValueError, match="unknown axis"):
        Validator(config=ValidatorConfig(cosine_bands={"colour": (0.5, 0.9)}))
    with pytest.raises(ValueError, match="lo <= hi"):
        Validator(config=ValidatorConfig(cosine_bands={"forces": (0.9, 0.5)}))


def test_negation_with_change_can_be_allowed(validator: Validator) -> None:
    neg = "A rubber ball is dropped onto a wooden floor and does not bounce but sinks into it."
    lenient = Validator(embedder=validator.embedder,
                        config=ValidatorConfig(mode="lexicon", allow_negation_with_change=True))
    assert lenient.check(BALL, "interactions", neg).accepted
    # a bare negation stays rejected either way
    bare = "A rubber ball is dropped onto a wooden floor and never bounces twice."
    assert lenient.check(BALL, "interactions", bare).reason == "negation_only"
    # "no gravity" is physics, not negation
    assert lenient.check("A feather falls to the floor.", "forces",
                         "A feather falls to the floor with no gravity.").reason != "negation_only"

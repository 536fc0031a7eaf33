"""`direct-data validate`: verdicts on hard negatives made elsewhere (prompt, axis, negative rows).

One verdict row per input row, in input order: accepted, or the reason (`schema` for a row that
cannot be read). Units are contiguous ranges of rows, written through the stage runner (manifest,
resume, dataset card, per-reason counts). A negative that repeats one accepted earlier for the same
prompt is a `duplicate` whatever the chunking: each unit first re-checks the earlier rows (in other
units) that carry the same (prompt, negative), which the validator decides as a pure function.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from datasets import Features, Value

from direct_data.backends.judge import judge_api_key_env_option, judge_api_option, judge_model_option, judge_option, judge_url_option
from direct_data.core.config import StageConfig, check_model_path, check_url, option, register
from direct_data.core.errors import ConfigError, InputError
from direct_data.core.executors import executor_option, ray_actors_option, ray_address_option
from direct_data.core.read import iter_raw_rows
from direct_data.core.runner import FinalWriter, Inputs, Stage, Unit, UnitWriter, unit_name
from direct_data.core.schema import register as register_table
from direct_data.core.shards import DEFAULT_MAX_ROWS

STAGE = "validate"
log = logging.getLogger(__name__)

VERDICTS = Features(
    {
        "row": Value("int64"),  # 0-based row of the input file
        "prompt": Value("string"),
        "axis": Value("string"),
        "negative": Value("string"),
        "accepted": Value("bool"),
        "reason": Value("string"),  # "" when accepted
        "detail": Value("string"),
        "scores": Value("string"),  # every validator score, sorted-key JSON
    }
)
register_table("verdicts", VERDICTS)


# --------------------------------------------------------------------------- validator options
# declared once, used by `validate` and `perturb` (the CLI flags, the TOML keys and the config hash)


def validator_option() -> Any:
    return option("learnt", choices=("learnt", "lexicon"),
                  help="learnt: cheap checks + the fitted model (alignment, lexicon, MiniLM); lexicon: the word-list checks only.")


def learnt_threshold_option() -> Any:
    return option(None, min=0.0, max=1.0, help="Accept iff p(good) >= this (learnt validator).",
                  default_help="the threshold fitted on the dev split (in the model's sidecar)")


def learnt_lexicon_floor_option() -> Any:
    return option(None, min=0.0, max=1.0, help="Accept a row the word-list checks accept iff p(good) >= this (learnt validator).",
                  default_help="the floor fitted on the dev split (in the model's sidecar)")


def learnt_ungrammatical_gate_option() -> Any:
    return option(None, min=0.0, max=1.0, help="Reject an accepted row as ungrammatical iff p(ungrammatical) >= this (learnt validator).",
                  default_help="the gate fitted on the dev split (in the model's sidecar; none without --fluency)")


def learnt_span_multi_p_option() -> Any:
    return option(None, min=0.0, max=1.0, help="Reject an accepted row as multi_axis iff two of its changed spans, read alone, are "
                                               "tagged with distinct axes at p >= this (learnt validator).",
                  default_help="the p fitted on the dev split (in the model's sidecar; none where dev gains nothing)")


def validator_model_option() -> Any:
    return option(None, help="The learnt validator's weights (.safetensors, JSON sidecar next to it).",
                  default_help="the packaged direct_data/text/data/validator.safetensors")


def fluency_option() -> Any:
    return option(False, help="Learnt validator: add the fluency model, a probe of a language model's states over the edit (and "
                              "the sidecar's *_fluency thresholds). About 29 rows/s on 2 AVX2 cores with the packaged Gemma (its first 8 "
                              "layers, float32).")


def fluency_model_option() -> Any:
    return option(None, help="The fluency scorer's causal LM (a folder or hub id); the validator model's fluency probe must be fitted "
                             "on it (direct-data validator fit --fluency --fluency-model M).", default_help="the packaged Gemma-3-270M base")


def pair_classifier_option() -> Any:
    return option(False, help="Learnt validator: blend in the pair classifier (Gemma's first 8 layers, LoRA-tuned to read the "
                              "prompt and the rewrite together) with its dev-calibrated cut-offs. Slower: about 2-3x the fluency "
                              "model's work per row.")


def pair_model_option() -> Any:
    return option(None, help="The pair classifier's weights (.safetensors, JSON sidecar next to it), calibrated for the validator model "
                             "in use (direct-data validator fit-pair).", default_help="the packaged direct_data/text/data/pair_classifier.safetensors")


def check_validator_options(cfg: Any) -> None:
    """The validator, fluency and judge options that validate and perturb share, checked once."""
    for flag, value in (("--validator-model", cfg.validator_model), ("--fluency-model", cfg.fluency_model),
                        ("--pair-model", cfg.pair_model), ("--judge-model", cfg.judge_model)):
        if isinstance(value, str) and not value.strip():
            # "" is not "the default": a model path of "" is the current folder (its weights hashed, then loaded)
            raise ConfigError(f"{flag}: empty; leave it out for the default")
    if cfg.fluency and cfg.validator != "learnt":
        raise ConfigError("--fluency adds features to the learnt validator: use it with --validator learnt")
    if cfg.pair_classifier and cfg.validator != "learnt":
        raise ConfigError("--pair-classifier is blended with the learnt validator: use it with --validator learnt")
    if cfg.pair_model and not cfg.pair_classifier:
        raise ConfigError("--pair-model is the pair classifier's weights: add --pair-classifier")
    for flag, value in (("--validator-model", cfg.validator_model), ("--pair-model", cfg.pair_model)):
        if value and Path(value).is_dir():
            raise ConfigError(f"{flag} {value}: a folder; give the weights file (.safetensors, its JSON sidecar next to it)")
    if cfg.pair_model and not Path(cfg.pair_model).is_file():
        raise ConfigError(f"--pair-model {cfg.pair_model}: no such file")
    if cfg.fluency_model and not cfg.fluency:
        raise ConfigError("--fluency-model is the fluency scorer's model: add --fluency")
    check_model_path("--fluency-model", cfg.fluency_model)
    if cfg.judge != "none" and not cfg.judge_model:
        raise ConfigError(f"the {cfg.judge} judge needs --judge-model")
    if cfg.judge == "openai" and not cfg.judge_url:
        raise ConfigError("the openai judge needs --judge-url (an OpenAI-compatible endpoint, e.g. `vllm serve`)")
    check_url("--judge-url", cfg.judge_url)
    if cfg.judge == "vllm":
        check_model_path("--judge-model", cfg.judge_model)


@register
@dataclass
class ValidateConfig(StageConfig):
    SECTION = "validate"

    use_embedding: bool = option(True, help="Lexicon validator: check the sentence-embedding cosine band (the learnt one always embeds).")
    chunk_rows: int = option(2048, min=1, help="Rows per committed unit (whole prompts; the resume unit).")
    shard_rows: int = option(DEFAULT_MAX_ROWS, min=1, help="Rows per output shard.")
    validator: str = validator_option()
    learnt_threshold: float | None = learnt_threshold_option()
    learnt_lexicon_floor: float | None = learnt_lexicon_floor_option()
    learnt_ungrammatical_gate: float | None = learnt_ungrammatical_gate_option()
    learnt_span_multi_p: float | None = learnt_span_multi_p_option()
    validator_model: str | None = validator_model_option()
    fluency: bool = fluency_option()
    fluency_model: str | None = fluency_model_option()
    pair_classifier: bool = pair_classifier_option()
    pair_model: str | None = pair_model_option()
    judge: str = judge_option()
    judge_model: str | None = judge_model_option()
    judge_url: str | None = judge_url_option()
    judge_api: str = judge_api_option()
    judge_api_key_env: str = judge_api_key_env_option()
    executor: str = executor_option()
    ray_address: str = ray_address_option()
    ray_actors: int | None = ray_actors_option()

    def check(self) -> None:
        check_validator_options(self)


def stage_judge(config: Any):
    """The LLM judge a stage config asks for (its ``judge*`` fields), or None; nothing loads until
    the first judgement that is not cached."""
    if getattr(config, "judge", "none") == "none":
        return None
    from direct_data.backends.judge import make_judge

    return make_judge(config.judge, model=config.judge_model, url=config.judge_url, api=config.judge_api,
                      api_key_env=config.judge_api_key_env, seed=getattr(config, "seed", 0))


def default_validator(use_embedding: bool, config: Any = None, *, with_judge: bool = True):
    """The project's validator (loaded on first use, so a dry run or an up-to-date rerun loads nothing).

    `config`: any stage config; its ``validator`` / ``learnt_threshold`` / ``learnt_lexicon_floor`` /
    ``learnt_ungrammatical_gate`` / ``learnt_span_multi_p`` /
    ``validator_model`` / ``fluency`` / ``fluency_model`` fields, where it has them, choose the mode,
    thresholds, weights and the fluency scorer (default: learnt, fitted thresholds, packaged weights,
    no fluency)."""
    from direct_data.text.validator import Validator, ValidatorConfig

    fluency = None
    if getattr(config, "fluency", False):
        from direct_data.backends.fluency import SpanStates

        fluency = SpanStates(getattr(config, "fluency_model", None))
    pair = None
    if getattr(config, "pair_classifier", False):
        from direct_data.backends.pair import PairClassifier

        pair = PairClassifier.load(getattr(config, "pair_model", None))
    return Validator(config=ValidatorConfig(use_embedding=use_embedding, mode=getattr(config, "validator", "learnt"),
                                            learnt_threshold=getattr(config, "learnt_threshold", None),
                                            learnt_lexicon_floor=getattr(config, "learnt_lexicon_floor", None),
                                            learnt_ungrammatical_gate=getattr(config, "learnt_ungrammatical_gate", None),
                                            learnt_span_multi_p=getattr(config, "learnt_span_multi_p", None),
                                            model_path=getattr(config, "validator_model", None)),
                     judge=stage_judge(config) if with_judge else None, fluency=fluency, pair=pair)


#: the text side's code that decides a verdict: an edit to it (within one package version) changes
#: the verdicts, so it is hashed like weights (`Stage.weights`)
VALIDATOR_CODE = ("align.py", "axes.py", "features.py", "learnt.py", "tagger.py", "validator.py")


def text_code(names: tuple[str, ...]) -> list[Path]:
    import direct_data.text as text

    return [Path(text.__file__).resolve().parent / n for n in names]


def validator_weights(validator: Any, config: Any) -> list[Path]:
    """What a stage's verdicts depend on besides its config and inputs (`Stage.weights`): the
    validator's code and, in learnt mode, its weights and sidecar (the given validator's, else the
    ones `default_validator(config)` would load)."""
    vc = getattr(validator, "config", None) if validator is not None else None
    mode = getattr(vc, "mode", None) if validator is not None else getattr(config, "validator", "learnt")
    code = text_code(VALIDATOR_CODE)
    if mode != "learnt":
        return code
    from direct_data.text.learnt import ARTEFACT

    path = getattr(vc, "model_path", None) if validator is not None else getattr(config, "validator_model", None)
    w = Path(path or ARTEFACT)
    out = [w, w.with_suffix(".json"), *code]
    if (validator is not None and getattr(validator, "pair", None) is not None) or (validator is None and getattr(config, "pair_classifier", False)):
        import direct_data.backends.pair as pair

        pw = Path(getattr(config, "pair_model", None) or pair.ARTEFACT)
        out += [pw, pw.with_suffix(".json"), Path(pair.__file__).resolve()]
    return out


def fluency_identity(validator: Any) -> str | None:
    """The identity of the fluency scorer a loaded validator runs (`SpanStates.identity`: model,
    version, layers and dtype), or None."""
    f = getattr(validator, "fluency", None)
    return None if f is None else f.identity


def fluency_stats(done: list[dict]) -> dict:
    """The units' fluency scorers for a manifest's stats (``{}`` without fluency). Units scored by
    different scorers (a run resumed on a CPU of another kind, where `auto` resolves to the other
    dtype) are named and logged: `--force` recomputes them on one."""
    seen = sorted({m["counts"]["fluency"] for m in done if m["counts"].get("fluency")})
    if len(seen) > 1:
        log.warning("the units were scored by %d fluency scorers (%s): --force recomputes them on one", len(seen), "; ".join(seen))
    return {"fluency_scorers": seen} if seen else {}


def scores_json(scores: dict) -> str:
    """Validator scores as strict JSON (NaN, e.g. a cosine that was not computed, becomes null)."""
    return json.dumps({k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in scores.items()}, sort_keys=True, default=str)


def _key(rec: dict) -> tuple | None:
    """The validator's own duplicate key of a row's (prompt, negative)."""
    from direct_data.text.validator import dedupe_key

    p, n = rec.get("prompt"), rec.get("negative")
    return (dedupe_key(p), dedupe_key(n)) if isinstance(p, str) and isinstance(n, str) else None


def _str(v: Any) -> str:
    """A cell as writable text: JSON for a non-string, a lone surrogate ("\\ud800" in JSON) escaped."""
    s = v if isinstance(v, str) else ("" if v is None else json.dumps(v, default=str))
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


class ValidateStage(Stage):
    name = STAGE
    config_cls = ValidateConfig
    tables = ("verdicts",)
    rejects_table = "verdicts"  # its `reason` column is counted ("" = accepted)
    title = "Validator verdicts on hard negatives"

    def __init__(self, config: ValidateConfig, *, show_progress: bool = False, validator=None):
        super().__init__(config, show_progress=show_progress)
        self._validator = validator

    @cached_property
    def validator(self):
        return self._validator or default_validator(self.config.use_embedding, self.config)

    def weights(self) -> list[Path]:
        return validator_weights(self._validator, self.config)

    def read(self, inputs: Inputs) -> None:
        self.raws = [r for f in inputs.files for r in iter_raw_rows(f)]
        if not self.raws:  # as partition and perturb: an empty file is a mistake, not zero verdicts
            raise InputError(f"{', '.join(map(str, inputs.files))}: the input has no rows")
        self.same: dict[tuple, list[int]] = {}  # (prompt, negative) key -> the rows that carry it
        for i in range(len(self.raws)):
            key = _key(self._record(i))
            if key is not None:
                self.same.setdefault(key, []).append(i)
        n = self.config.chunk_rows
        self.chunks = [list(range(s, min(s + n, len(self.raws)))) for s in range(0, len(self.raws), n)]

    def units(self) -> list[Unit]:
        return [Unit(unit_name("rows", j, (str(i) for i in c)), c, size=len(c)) for j, c in enumerate(self.chunks)]

    def plan(self) -> dict:
        return {"rows": len(self.raws)}

    def _record(self, i: int) -> dict:
        r = self.raws[i].record
        return r if isinstance(r, dict) else {}

    def compute(self, unit: Unit, out: UnitWriter) -> dict:
        from direct_data.text.validator import normalize_axis

        rows = unit.payload
        start = rows[0]
        # earlier rows (before this unit) repeating a (prompt, negative) of this unit: those accepted
        # as fresh rows go first, so the duplicate check sees exactly what a single pass would
        ghosts = sorted({j for i in rows for j in self.same.get(_key(self._record(i)), []) if j < start})
        fresh = self.validator.check_many([self._record(j) for j in ghosts], dedupe_within=True) if ghosts else []
        kept = [self._record(j) for j, v in zip(ghosts, fresh) if v.accepted]
        recs = [self._record(i) for i in rows]
        verdicts = self.validator.check_many(kept + recs, dedupe_within=True)[len(kept):]
        accepted = 0
        per_axis: dict[str, dict] = {}
        for i, rec, v in zip(rows, recs, verdicts):
            raw = self.raws[i]
            readable = isinstance(raw.record, dict)
            ok = bool(v.accepted and readable)
            reason = "" if ok else ((v.reason if readable else "schema") or "rejected")
            axis = _str(normalize_axis(rec.get("axis")))
            out.write("verdicts", {"row": raw.row, "prompt": _str(rec.get("prompt")), "axis": axis,
                                   "negative": _str(rec.get("negative")), "accepted": ok, "reason": reason,
                                   "detail": (v.detail if readable else raw.detail or v.detail) or "", "scores": scores_json(v.scores)})
            accepted += ok
            d = per_axis.setdefault(axis or "?", {"rows": 0, "accepted": 0, "reasons": {}})
            d["rows"] += 1
            d["accepted"] += ok
            if not ok:
                d["reasons"][reason] = d["reasons"].get(reason, 0) + 1
        return {"rows": len(rows), "accepted": accepted, "per_axis": per_axis,
                **({"fluency": f} if (f := fluency_identity(self.validator)) else {})}

    def finish(self, done: list[dict], out: FinalWriter) -> None:
        rows = sum(m["counts"]["rows"] for m in done)
        accepted = sum(m["counts"]["accepted"] for m in done)
        assert rows == len(self.raws)
        out.counts = {"rows": rows, "accepted": accepted, "rejected": rows - accepted}
        per_axis: dict[str, dict] = {}
        for m in done:
            for a, d in m["counts"]["per_axis"].items():
                t = per_axis.setdefault(a, {"rows": 0, "accepted": 0, "reasons": {}})
                t["rows"] += d["rows"]
                t["accepted"] += d["accepted"]
                for r, n in d["reasons"].items():
                    t["reasons"][r] = t["reasons"].get(r, 0) + n
        out.stats = {"per_axis": {a: {**d, "reasons": dict(sorted(d["reasons"].items()))} for a, d in sorted(per_axis.items())},
                     **fluency_stats(done)}

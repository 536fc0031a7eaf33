"""`manifest.json`: what a stage read, how it was configured, and what it wrote.

The manifest is written last and atomically: it is the commit record of a stage. A stage whose
manifest matches the current inputs and config, and whose shards still hash to what it lists, is
up to date and is not recomputed. No timestamps are stored, so reruns give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from direct_data import __version__
from direct_data.core.schema import SCHEMA_VERSION
from direct_data.core.shards import ShardInfo, atomic_write_bytes, sha256_file

MANIFEST = "manifest.json"


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def describe_inputs(paths: list[str | Path]) -> list[dict]:
    """Each input with its sha256; a folder (a `datasets` save) is hashed file by file."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(str(f.relative_to(p)).encode())
                h.update(sha256_file(f).encode())
            out.append({"path": str(p), "sha256": h.hexdigest(), "kind": "dir"})
        else:
            out.append({"path": str(p), "sha256": sha256_file(p), "kind": "file"})
    return out


@dataclass
class Manifest:
    stage: str
    config: dict
    inputs: list[dict]
    model: str | None = None
    seed: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    shards: dict[str, list[dict]] = field(default_factory=dict)  # table -> shard infos
    files: list[dict] = field(default_factory=list)  # other artefacts (centroids, card, plots)
    stats: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    package_version: str = __version__
    config_sha256: str = ""

    def __post_init__(self) -> None:
        self.config_sha256 = config_hash(self.config)

    def add_shards(self, table: str, shards: list[ShardInfo]) -> None:
        self.shards[table] = [s.to_dict() for s in shards]

    def add_file(self, out_dir: str | Path, name: str) -> None:
        self.files.append({"path": name, "sha256": sha256_file(Path(out_dir) / name)})

    def write(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / MANIFEST
        atomic_write_bytes(path, (json.dumps(asdict(self), indent=2, sort_keys=True, default=str) + "\n").encode())
        return path

    @classmethod
    def read(cls, out_dir: str | Path) -> "Manifest | None":
        path = Path(out_dir) / MANIFEST
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        sha = data.pop("config_sha256", "")
        m = cls(**data)
        m.config_sha256 = sha or m.config_sha256
        return m

    def listed_paths(self) -> set[str]:
        return {s["path"] for shards in self.shards.values() for s in shards} | {f["path"] for f in self.files}


def up_to_date(out_dir: str | Path, *, stage: str, config: dict, inputs: list[dict]) -> tuple[bool, str]:
    """Is the stage output in `out_dir` the result of exactly these inputs and this config?

    Returns (answer, reason) so the CLI can say why something is recomputed.
    """
    m = Manifest.read(out_dir)
    if m is None:
        return False, "no manifest"
    if m.stage != stage:
        return False, f"folder holds stage {m.stage!r}"
    if m.schema_version != SCHEMA_VERSION or m.package_version != __version__:
        return False, "written by another version"
    if m.config_sha256 != config_hash(config):
        return False, "config changed"
    if [(i["path"], i["sha256"]) for i in m.inputs] != [(i["path"], i["sha256"]) for i in inputs]:
        return False, "inputs changed"
    for shards in m.shards.values():
        for s in shards:
            p = Path(out_dir) / s["path"]
            if not p.exists() or sha256_file(p) != s["sha256"]:
                return False, f"shard {s['path']} missing or modified"
    for f in m.files:
        p = Path(out_dir) / f["path"]
        if not p.exists() or sha256_file(p) != f["sha256"]:
            return False, f"{f['path']} missing or modified"
    return True, "up to date"


def remove_stale(out_dir: str | Path, manifest: Manifest, *, patterns: tuple[str, ...] = ("*.parquet",)) -> list[str]:
    """Delete shards in `out_dir` that the new manifest does not list (left by an older, larger run)."""
    keep = manifest.listed_paths()
    removed = []
    for pat in patterns:
        for p in Path(out_dir).glob(pat):
            if p.name not in keep:
                p.unlink()
                removed.append(p.name)
    for p in Path(out_dir).glob(".*.tmp"):
        p.unlink(missing_ok=True)
    return sorted(removed)


class ChunkLog:
    """Commit markers of a chunked stage: `<dir>/<name>.json`, written atomically after the chunk's
    shards. A marker counts only if its key matches (same config and inputs), so a changed run never
    reuses a stale chunk. A killed run, rerun, skips the committed chunks and redoes the rest."""

    def __init__(self, directory: str | Path, key: str, *, force: bool = False):
        self.dir = Path(directory)
        self.key = key
        self.force = force
        self._fresh: set[str] = set()  # committed by this process (still valid under --force)

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def committed(self, name: str) -> dict | None:
        p = self._path(name)
        if not p.exists() or (self.force and name not in self._fresh):
            return None
        d = json.loads(p.read_text())
        return d if d.get("key") == self.key else None

    def commit(self, name: str, payload: dict) -> None:
        atomic_write_bytes(self._path(name), json.dumps({**payload, "key": self.key}, sort_keys=True).encode())
        self._fresh.add(name)

    def prune(self, keep: set[str]) -> None:
        for p in self.dir.glob("*.json"):
            if p.stem not in keep:
                p.unlink()

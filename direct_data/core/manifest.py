"""`manifest.json`: what a stage read, how it was configured, and what it wrote; and the verified
reader of a stage output.

The manifest is written last and atomically: it is the commit record of a stage. It carries a
`digest` (sha256 of its own canonical JSON without that key), so a hand-edited manifest is noticed.
No timestamps are stored, so reruns give the same bytes.

`open_output(path, stages=...)` is how every downstream consumer (a stage, the trainer) reads an
upstream output: the manifest's digest is checked, every listed shard and file must exist with
the listed sha256, and a Parquet file the manifest does not list is an error. Its `identity` (the
listed files with their sha256) is what the downstream up-to-date check compares.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from direct_data import __version__
from direct_data.core.config import config_hash
from direct_data.core.errors import InputError, first_line
from direct_data.core.schema import SCHEMA_VERSION, arrow_schema
from direct_data.core.shards import ShardInfo, atomic_write_bytes, sha256_file

MANIFEST = "manifest.json"


def _digest(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def describe_files(paths: Iterable[str | Path]) -> list[dict]:
    """Each input file with its sha256; a folder (a `datasets` save) is hashed file by file."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(str(f.relative_to(p)).encode())
                h.update(sha256_file(f).encode())
            out.append({"path": str(p), "sha256": h.hexdigest(), "kind": "dir"})
        elif p.is_file():
            out.append({"path": str(p), "sha256": sha256_file(p), "kind": "file"})
        else:
            raise InputError(f"{p}: no such file or folder")
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
    digest: str = ""

    def __post_init__(self) -> None:
        self.config_sha256 = config_hash(self.config)

    def add_shards(self, table: str, shards: list[ShardInfo] | list[dict]) -> None:
        self.shards[table] = [s.to_dict() if isinstance(s, ShardInfo) else dict(s) for s in shards]

    def add_file(self, out_dir: str | Path, name: str) -> None:
        self.files = [f for f in self.files if f["path"] != name]
        self.files.append({"path": name, "sha256": sha256_file(Path(out_dir) / name)})

    def to_json(self) -> dict:
        d = asdict(self)
        d["digest"] = _digest(d)
        return d

    def write(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / MANIFEST
        d = self.to_json()
        self.digest = d["digest"]
        atomic_write_bytes(path, (json.dumps(d, indent=2, sort_keys=True, default=str) + "\n").encode())
        return path

    @classmethod
    def read(cls, out_dir: str | Path, *, check_digest: bool = True) -> Manifest | None:
        """The manifest of a folder (None if there is none). A manifest that is not valid JSON, or
        whose digest does not match its content, is an `InputError`."""
        path = Path(out_dir) / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not an object")
            sha = data.pop("config_sha256", "")
            digest = data.get("digest", "")
            m = cls(**data)
            _check_structure(m)
        except (ValueError, TypeError) as e:
            raise InputError(f"{path}: not a direct-data manifest ({e})") from None
        m.config_sha256 = sha or m.config_sha256
        if check_digest and digest != _digest({**asdict(m), "config_sha256": m.config_sha256}):
            raise InputError(f"{path}: the manifest was edited after it was written (digest mismatch); "
                             f"rerun `direct-data {m.stage}` to rebuild this folder")
        return m

    def listed(self) -> list[dict]:
        """Every shard and file the manifest lists, as {path, sha256}."""
        return [{"path": s["path"], "sha256": s["sha256"]} for t in sorted(self.shards) for s in self.shards[t]] + [
            {"path": f["path"], "sha256": f["sha256"]} for f in self.files]

    def listed_paths(self) -> set[str]:
        return {x["path"] for x in self.listed()}


def _plain_name(x: Any) -> bool:
    """A file name inside the folder itself: no folder part, no way out of it."""
    return isinstance(x, str) and x not in ("", ".", "..") and "/" not in x and "\\" not in x and "\0" not in x


def _check_structure(m: Manifest) -> None:
    """The shape every reader relies on, checked once (a hand-built manifest with a recomputed
    digest must fail here, with a reason, not deep inside a reader)."""
    if not isinstance(m.stage, str) or not m.stage:
        raise ValueError("'stage' must be a stage name")
    if not isinstance(m.schema_version, int) or isinstance(m.schema_version, bool):
        raise ValueError(f"'schema_version' must be a whole number, got {m.schema_version!r}")
    for key in ("config", "counts", "stats", "shards"):
        if not isinstance(getattr(m, key), dict):
            raise ValueError(f"{key!r} must be an object")
    if not isinstance(m.inputs, list) or not isinstance(m.files, list):
        raise ValueError("'inputs' and 'files' must be lists")
    entries = [(f"files[{i}]", f) for i, f in enumerate(m.files)]
    for table, shards in m.shards.items():
        if not isinstance(shards, list):
            raise ValueError(f"shards of {table!r} must be a list")
        entries += [(f"{table}[{i}]", sh) for i, sh in enumerate(shards)]
        for i, sh in enumerate(shards):
            if isinstance(sh, dict) and (not isinstance(sh.get("rows"), int) or isinstance(sh.get("rows"), bool) or sh["rows"] < 0):
                raise ValueError(f"{table}[{i}]: 'rows' must be a whole number >= 0")
    for where, e in entries:
        if not isinstance(e, dict):
            raise ValueError(f"{where} must be an object")
        if not _plain_name(e.get("path")):
            raise ValueError(f"{where}: 'path' must name a file in the folder itself, got {e.get('path')!r}")
        if not isinstance(e.get("sha256"), str):
            raise ValueError(f"{where}: no 'sha256'")


# --------------------------------------------------------------------------- verified reading


@dataclass
class StageOutput:
    """A verified upstream stage output: read its tables through here, never by globbing."""

    path: Path
    manifest: Manifest

    @property
    def stage(self) -> str:
        return self.manifest.stage

    @property
    def identity(self) -> dict:
        """What a downstream manifest records of this input: a digest over every listed file's sha256."""
        listed = self.manifest.listed()
        h = hashlib.sha256(json.dumps(listed, sort_keys=True).encode()).hexdigest()
        return {"path": str(self.path), "stage": self.stage, "sha256": h, "kind": "stage", "files": len(listed)}

    def shard_paths(self, table: str) -> list[Path]:
        return [self.path / s["path"] for s in self.manifest.shards.get(table, [])]

    def table(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """All rows of `table`, from exactly the shards the manifest lists, in order."""
        paths = self.shard_paths(table)
        if not paths:
            t = arrow_schema(table).empty_table()
            return t.select(columns) if columns else t
        parts = []
        for p, info in zip(paths, self.manifest.shards[table]):
            try:
                t = pq.read_table(p, columns=columns)
            except (pa.ArrowException, OSError) as e:  # e.g. a column this table must have is not in the shard
                raise InputError(f"{self.path}: {p.name} is not a `{table}` shard this version reads ({first_line(e)}); "
                                 f"rerun `direct-data {self.stage}`") from None
            if t.num_rows != info["rows"]:
                raise InputError(f"{self.path}: {p.name} holds {t.num_rows} rows, its manifest says {info['rows']}; rerun `direct-data {self.stage}`")
            parts.append(t)
        try:
            return pa.concat_tables(parts)
        except pa.ArrowException as e:
            raise InputError(f"{self.path}: the `{table}` shards do not share one schema ({first_line(e)}); rerun `direct-data {self.stage}`") from None

    def rows(self, table: str, columns: list[str] | None = None) -> list[dict]:
        return self.table(table, columns).to_pylist()

    def file(self, name: str) -> Path:
        if name not in {f["path"] for f in self.manifest.files}:
            raise InputError(f"{self.path}: its manifest lists no {name}")
        return self.path / name


def open_output(path: str | Path, *, stages: tuple[str, ...], role: str = "input") -> StageOutput:
    """Open and verify a stage output folder.

    Checks, each a one-line `InputError` naming what is wrong: the folder has a manifest, written by
    one of `stages`; the manifest's digest matches its content; every listed shard and file exists
    with its listed sha256; no Parquet file in the folder is unlisted (an extra shard would be read
    by a glob, and we never glob)."""
    p = Path(path)
    want = " or ".join(f"`{s}`" for s in stages)
    if not p.is_dir():
        raise InputError(f"{p}: {'no such folder' if not p.exists() else 'not a folder'}; the {role} must be a {want} output folder")
    m = Manifest.read(p)
    if m is None:
        raise InputError(f"{p}: not a direct-data output (no {MANIFEST}); the {role} must be a {want} output folder")
    if m.stage not in stages:
        raise InputError(f"{p}: holds a `{m.stage}` output; the {role} must be a {want} output folder")
    if m.schema_version != SCHEMA_VERSION:
        raise InputError(f"{p}: written with schema v{m.schema_version}, this version reads v{SCHEMA_VERSION}; rerun `direct-data {m.stage}`")
    for item in m.listed():
        f = p / item["path"]
        if not f.is_file():
            raise InputError(f"{p}: {item['path']} is listed in its manifest but missing; rerun `direct-data {m.stage}`")
        if sha256_file(f) != item["sha256"]:
            raise InputError(f"{p}: {item['path']} changed after its manifest was written (sha256 mismatch); rerun `direct-data {m.stage}`")
    extra = sorted(x.name for x in p.glob("*.parquet") if x.name not in m.listed_paths())
    if extra:
        raise InputError(f"{p}: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''} not listed in its manifest "
                         f"(a shard copied in by hand?); remove it or rerun `direct-data {m.stage}`")
    return StageOutput(p, m)


ALL_STAGES = ("partition", "perturb", "validate", "encode")


def read_table(path: str | Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """One table of a stage output folder, verified (`open_output`), from the shards its manifest lists."""
    return open_output(path, stages=ALL_STAGES).table(table, columns)

"""The one stage runner. A stage says what it computes; this module alone decides everything else.

    Stage.read(inputs)        -> load what the stage needs (upstream outputs come verified)
    Stage.units()             -> the resume units (chunks), each with a content-addressed name
    Stage.compute(unit, out)  -> rows of one unit, written through `out` (never a file path)
    Stage.finish(done, out)   -> the global part (after every unit): tables, files, counts, stats

The runner owns, for every stage:

* **the output folder**: a stage writes only into an empty folder or one that holds its own earlier
  output; it deletes only files it wrote there (its earlier manifest and its journal list them);
  anything else in the folder, an output equal to (or inside, or holding) an input, a file where
  the folder should be, or a folder it cannot write, is a clear error before any work, `--force`
  included;
  one process writes it at a time (`OutputFolder.lock`: a second writer is refused at once);
* **input identity**: files by sha256, upstream outputs by the sha256 of every file their manifest
  lists (verified on open, see `manifest.open_output`);
* **the up-to-date check** and the reason for a recompute ("config changed: k 8 -> 12");
* **the dry run**, **chunking and resume** (a commit marker per unit, written after its shards: a
  run killed at any moment and rerun gives the same bytes), and **rank / world_size** (unit j runs
  on rank j mod world_size; whichever rank finds every unit committed finishes);
* **shard writing, the rejects table and per-reason counts, the manifest, the dataset card, cleanup**;
* **where the units run**: an executor (`core.executors`: `local`, or `ray` with `--executor ray`)
  computes units and hands each one's rows back; the runner writes and commits them either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from direct_data import __version__
from direct_data.core.config import StageConfig, config_hash
from direct_data.core.errors import InputError, OutputError
from direct_data.core.manifest import MANIFEST, Manifest, StageOutput, describe_files
from direct_data.core.progress import progress_bar
from direct_data.core.schema import SCHEMA_VERSION
from direct_data.core.shards import DEFAULT_MAX_ROWS, ShardWriter, atomic_write_bytes, hold_lock, sha256_file

log = logging.getLogger(__name__)

STATE_DIR = ".direct-data"  # the runner's own bookkeeping inside an output folder
LEGACY_MARKERS = "chunks"  # where direct-data 0.1 kept its chunk markers (before the runner)


# --------------------------------------------------------------------------- what a stage declares


@dataclass
class Unit:
    """One resume unit. `name` must change whenever what the unit computes changes (e.g. carry a
    hash of its rows); `payload` is whatever `Stage.compute` needs."""

    name: str
    payload: Any = None
    size: int = 1  # for the progress bar


@dataclass
class Inputs:
    """What a stage reads: plain files (hashed) and verified upstream outputs, by role."""

    files: list[Path] = field(default_factory=list)
    outputs: dict[str, StageOutput] = field(default_factory=dict)  # role -> verified output

    def describe(self) -> list[dict]:
        return describe_files(self.files) + [{"role": r, **o.identity} for r, o in sorted(self.outputs.items())]

    def paths(self) -> list[Path]:
        return list(self.files) + [o.path for o in self.outputs.values()]


class Stage:
    """Base class of a stage: subclasses set the class attributes and implement the four methods."""

    name: ClassVar[str]
    config_cls: ClassVar[type[StageConfig]]
    tables: ClassVar[tuple[str, ...]]  # output tables, in manifest order
    rejects_table: ClassVar[str | None] = "rejects"  # the table whose `reason` column the runner counts
    title: ClassVar[str] = ""  # the dataset card's title

    def __init__(self, config: StageConfig, *, show_progress: bool = False):
        self.config = config
        self.show_progress = show_progress

    # -- to implement
    def read(self, inputs: Inputs) -> None:
        """Load the inputs (cheap enough for the dry run: no model loads)."""

    def units(self) -> list[Unit]:
        return []

    def compute(self, unit: Unit, out: UnitWriter) -> dict[str, Any]:
        """Write the unit's rows through `out`; return small JSON-able counts (kept in its marker)."""
        raise NotImplementedError

    def finish(self, done: list[dict[str, Any]], out: FinalWriter) -> None:
        """Everything after the units: global tables and files, `out.counts`, `out.stats`."""

    def plan(self) -> dict[str, Any]:
        """The dry run's numbers (nothing is computed or written)."""
        return {}

    def model_identity(self) -> str | None:
        return None

    def weights(self) -> list[Path]:
        """Files outside the config and the inputs whose content changes the output (a learnt model's
        weights): listed among the manifest's inputs with their sha256 (role `weights`), so new
        weights recompute the output. Paths only: nothing is loaded."""
        return []

    def input_fingerprints(self, inputs: Inputs) -> list[dict]:
        """Files the stage reads that neither the config, the upstream outputs nor `weights` name,
        such as the clips a column of the rows points to: manifest input entries ({role, path,
        sha256}) that change when those files do, so a changed file recomputes the output. Called
        before the up-to-date check, so it must be cheap (`encode` digests each clip's size and
        modification time, not its bytes)."""
        return []

    def card_sections(self, manifest: Manifest) -> tuple[str, dict[str, bytes]]:
        """Stage-specific markdown for the dataset card, and PNG files it embeds."""
        return "", {}

    @property
    def seed(self) -> int | None:
        return getattr(self.config, "seed", None)


# --------------------------------------------------------------------------- writers handed to a stage


class _Writer:
    def __init__(self, folder: OutputFolder, stage: Stage, prefix: str):
        self._folder, self._stage, self._prefix = folder, stage, prefix
        self._writers: dict[str, ShardWriter] = {}
        self.reasons: dict[str, int] = {}

    def table(self, name: str) -> ShardWriter:
        if name not in self._stage.tables:
            raise KeyError(f"stage {self._stage.name} declares no table {name!r}")
        if name not in self._writers:
            rows = getattr(self._stage.config, "shard_rows", DEFAULT_MAX_ROWS)
            self._writers[name] = ShardWriter(self._folder.path, name, max_rows=rows, prefix=self._prefix,
                                              before_write=self._folder.journal_add)
        return self._writers[name]

    def write(self, table: str, row: dict) -> None:
        if table == self._stage.rejects_table and row.get("reason"):
            self.reasons[row["reason"]] = self.reasons.get(row["reason"], 0) + 1
        self.table(table).write(row)

    def write_many(self, table: str, rows: Iterable[dict]) -> None:
        for r in rows:
            self.write(table, r)

    def close(self) -> dict[str, list[dict]]:
        return {t: [s.to_dict() for s in w.close()] for t, w in self._writers.items()}


class UnitWriter(_Writer):
    """Rows of one unit, into shards named `<table>-c<unit>-NNNNN.parquet`."""


class FinalWriter(_Writer):
    """The `finish` step's writer: tables, extra files, counts and stats for the manifest."""

    def __init__(self, folder: OutputFolder, stage: Stage):
        super().__init__(folder, stage, prefix="")
        self.counts: dict[str, int] = {}
        self.stats: dict[str, Any] = {}
        self.files: list[str] = []
        self.model: str | None = None

    def write_file(self, name: str, data: bytes) -> None:
        self._folder.journal_add(name)
        atomic_write_bytes(self._folder.path / name, data)
        self.files.append(name)


# --------------------------------------------------------------------------- the output folder


class OutputFolder:
    """A stage's `--out`: ownership, journal, commit markers, cleanup."""

    def __init__(self, path: Path, stage: str):
        self.path = path
        self.stage = stage
        self.state = path / STATE_DIR
        self._journal: set[str] | None = None
        self._legacy: list[str] = []  # folders of an older layout of our own output, removed on success

    # -- ownership
    def check(self, input_paths: Sequence[Path]) -> Manifest | None:
        """Check that this stage may write here (see the module docstring); returns the earlier
        manifest of this stage, if any. Writes nothing."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise OutputError(f"--out {p}: is a file; give a folder (empty, or one this stage wrote)")
        rp = _resolved(p, "--out")
        for inp in input_paths:
            ri = _resolved(Path(inp), "input")
            if ri == rp:
                raise OutputError(f"--out {p}: is also an input; write to another folder")
            if rp in ri.parents:
                raise OutputError(f"--out {p}: holds the input {inp}; write to another folder")
            if ri in rp.parents and ri.is_dir():
                raise OutputError(f"--out {p}: is inside the input folder {inp}; write to another folder")
        earlier = None
        if p.is_dir() and any(p.iterdir()):
            owner = self._owner()
            try:
                earlier = Manifest.read(p, check_digest=False)
            except InputError:  # unreadable: the journal still says what we wrote
                earlier = None
            ours = owner == self.stage or (owner is None and earlier is not None and earlier.stage == self.stage)
            if not ours:
                what = f"a `{owner}` output" if owner else (f"a `{earlier.stage}` output" if earlier else "files direct-data did not write")
                raise OutputError(f"--out {p}: holds {what}; `{self.stage}` writes only into an empty folder or its own earlier output")
            known = self.journal() | (earlier.listed_paths() if earlier and earlier.stage == self.stage else set())
            if owner is None and (p / LEGACY_MARKERS).is_dir():  # written by direct-data 0.1 before the runner
                known.add(LEGACY_MARKERS)
                self._legacy = [LEGACY_MARKERS]
            foreign = sorted(x.name for x in p.iterdir() if x.name not in known and x.name not in (MANIFEST, STATE_DIR)
                             and not _our_temp(x.name, known))
            if foreign:
                raise OutputError(f"--out {p}: holds {len(foreign)} file{'s' if len(foreign) > 1 else ''} `{self.stage}` did not write "
                                  f"({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); move them or use another folder")
        if earlier is not None and earlier.stage != self.stage:
            earlier = None
        return earlier

    def take(self) -> None:
        """Create the folder and mark it as this stage's (after `check`, before the first write)."""
        p = self.path
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            owner_file = self.state / "owner.json"
            if not owner_file.exists():
                atomic_write_bytes(owner_file, json.dumps({"stage": self.stage}).encode())
            for name in self._legacy:
                self.journal_add(name)
        except PermissionError:
            raise OutputError(f"--out {p}: cannot write there (permission denied)") from None
        except OSError as e:
            raise OutputError(f"--out {p}: cannot write there ({e.strerror or e})") from None

    def lock(self, rank: int = 0, world_size: int = 1) -> int:
        """Hold this folder for one writer (rank) until the returned descriptor is closed
        (`shards.hold_lock`); the ranks of one distributed run each hold their own lock file."""
        return hold_lock(self.state / (f"lock-{rank}-of-{world_size}" if world_size > 1 else "lock"), self.path)

    def _owner(self) -> str | None:
        f = self.state / "owner.json"
        try:
            return json.loads(f.read_text()).get("stage")
        except (OSError, ValueError, AttributeError):
            return None

    # -- journal: every file name this stage ever created here (appended before the file is made)
    def journal(self) -> set[str]:
        if self._journal is None:
            f = self.state / "journal.txt"
            self._journal = set(f.read_text().split()) if f.is_file() else set()
        return self._journal

    def journal_add(self, name: str) -> None:
        j = self.journal()
        if name in j:
            return
        j.add(name)
        with open(self.state / "journal.txt", "a") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # -- commit markers of units
    def _marker(self, name: str) -> Path:
        return self.state / "chunks" / f"{name}.json"

    def committed(self, name: str, key: str) -> dict | None:
        try:
            d = json.loads(self._marker(name).read_text())
        except (OSError, ValueError):
            return None
        return d if d.get("key") == key else None

    def intact(self, marker: dict) -> bool:
        """Whether every shard a unit's commit marker lists is here with the sha256 it was written
        with (a unit whose shard was deleted or changed since is run again, not skipped)."""
        for shards in marker.get("shards", {}).values():
            for s in shards:
                f = self.path / str(s.get("path", ""))
                if not f.is_file() or sha256_file(f) != s.get("sha256"):
                    return False
        return True

    def commit(self, name: str, key: str, payload: dict) -> None:
        atomic_write_bytes(self._marker(name), json.dumps({**payload, "key": key}, sort_keys=True).encode())

    def forget(self, names: Iterable[str]) -> None:
        for n in names:
            self._marker(n).unlink(missing_ok=True)

    # -- cleanup: delete what we wrote that the new manifest does not list
    def cleanup(self, manifest: Manifest, keep_markers: set[str]) -> list[str]:
        keep = manifest.listed_paths()
        removed = []
        for name in sorted(self.journal() - keep):
            f = self.path / name
            if f.is_file():
                f.unlink()
                removed.append(name)
            elif name == LEGACY_MARKERS and f.is_dir() and all(x.suffix == ".json" for x in f.iterdir()):
                shutil.rmtree(f)
                removed.append(name)
        for f in self.path.glob(".*.tmp"):  # our atomic writes' temp files, left by a killed run
            if _our_temp(f.name, self.journal() | keep):
                f.unlink(missing_ok=True)
        atomic_write_bytes(self.state / "journal.txt", "".join(n + "\n" for n in sorted(keep)).encode())
        self._journal = set(keep)
        chunks = self.state / "chunks"
        if chunks.is_dir():
            for m in chunks.glob("*.json"):
                if m.stem not in keep_markers:
                    m.unlink()
        return removed


def _resolved(p: Path, what: str) -> Path:
    try:
        return p.resolve()
    except (RuntimeError, OSError) as e:  # a symlink loop (RuntimeError before Python 3.13)
        raise (OutputError if what == "--out" else InputError)(f"{what} {p}: cannot be resolved ({e})") from None


def _our_temp(name: str, known: set[str]) -> bool:
    """A temp file of our atomic writes (`.<name>.<random>.tmp`) for a file this stage writes."""
    return name.startswith(".") and name.endswith(".tmp") and any(name.startswith(f".{k}.") for k in known | {MANIFEST})


# --------------------------------------------------------------------------- the run


@dataclass
class StageResult:
    stage: str
    out_dir: Path
    status: str  # "up_to_date" | "computed" | "dry_run" | "waiting" (other ranks' units missing)
    reason: str  # why it was (or would be) recomputed, or why it is up to date
    manifest: Manifest | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)  # what this invocation did (not part of the output)

    @property
    def up_to_date(self) -> bool:
        return self.status == "up_to_date"

    @property
    def stats(self) -> dict[str, Any]:
        return self.manifest.stats if self.manifest else {}


def describe_weights(paths: Iterable[Path]) -> list[dict]:
    """`describe_files` of a stage's weights; files shipped in the package are named relative to it
    (the same weights in another install are the same input)."""
    import direct_data

    pkg = Path(direct_data.__file__).resolve().parent
    out = []
    for d in describe_files(paths):
        p = Path(d["path"]).resolve()
        if p.is_relative_to(pkg):
            d["path"] = f"{pkg.name}/{p.relative_to(pkg).as_posix()}"
        out.append({"role": "weights", **d})
    return out


def _why_recompute(earlier: Manifest | None, stage: Stage, described: list[dict], folder: Path) -> str | None:
    """None when the earlier output is exactly what this run would write; otherwise the reason."""
    if earlier is None:
        return "no earlier output"
    try:
        Manifest.read(folder)  # the digest
    except Exception:
        return "its manifest was edited or is unreadable"
    if earlier.schema_version != SCHEMA_VERSION or earlier.package_version != __version__:
        return "written by another version of direct-data"
    if earlier.config_sha256 != config_hash(stage.config.hashed()):
        diff = stage.config.changes(earlier.config)
        return "config changed: " + ("; ".join(diff[:4]) + (" ..." if len(diff) > 4 else "") if diff else "?")
    old_in = [(i.get("path"), i.get("sha256")) for i in earlier.inputs]
    new_in = [(i.get("path"), i.get("sha256")) for i in described]
    if old_in != new_in:
        changed = [p for (p, s) in new_in if (p, s) not in old_in] or [p for p, _ in old_in]
        return f"input changed: {', '.join(map(str, changed[:3]))}"
    for item in earlier.listed():
        f = folder / item["path"]
        if not f.is_file() or sha256_file(f) != item["sha256"]:
            return f"{item['path']} is missing or was modified"
    return None


def run_stage(
    stage: Stage,
    inputs: Inputs,
    out_dir: str | Path,
    *,
    force: bool = False,
    dry_run: bool = False,
    rank: int = 0,
    world_size: int = 1,
    executor=None,
) -> StageResult:
    """Run `stage` on `inputs` into `out_dir` (see the module docstring for what this owns).
    ``executor``: where the units run (`core.executors`); by default the one the stage's config
    names (`executor = "local"` or `"ray"`), local when it names none."""
    if world_size < 1 or not 0 <= rank < world_size:
        from direct_data.core.errors import ConfigError

        raise ConfigError(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank}, world_size={world_size}")
    out = OutputFolder(Path(out_dir), stage.name)
    earlier = out.check(inputs.paths())  # before any work, and in a dry run too
    described = inputs.describe() + describe_weights(stage.weights()) + stage.input_fingerprints(inputs)
    why = _why_recompute(earlier, stage, described, out.path)
    if why is None and not force:
        return StageResult(stage.name, out.path, "up_to_date", "up to date", earlier)
    reason = "forced (--force)" if why is None else why
    stage.read(inputs)  # user errors in the inputs surface here, before anything is written
    if dry_run:
        return _run_units(stage, out, earlier, described, reason, force=force, dry_run=True, rank=rank, world_size=world_size,
                          executor=executor)
    out.take()
    lock = out.lock(rank, world_size)
    try:
        return _run_units(stage, out, earlier, described, reason, force=force, dry_run=False, rank=rank, world_size=world_size,
                          executor=executor)
    finally:
        os.close(lock)


def _run_units(stage: Stage, out: OutputFolder, earlier: Manifest | None, described: list[dict], reason: str, *, force: bool,
               dry_run: bool, rank: int, world_size: int, executor) -> StageResult:
    """`run_stage` after the checks: the units, then (once every unit is committed) the finish."""
    units = stage.units()
    key = config_hash({"stage": stage.name, "config": stage.config.hashed(), "inputs": [i.get("sha256") for i in described]})
    if force and not dry_run:
        out.forget(u.name for u in units)
    done_before = set()
    for u in units:
        m = out.committed(u.name, key)
        if m is not None and out.intact(m):
            done_before.add(u.name)
        elif m is not None and not dry_run:
            out.forget([u.name])  # a shard of it was deleted or changed: run it again
    if dry_run:
        plan = {**stage.plan(), "units": len(units), "units_done": len(done_before), "would_recompute_because": reason}
        return StageResult(stage.name, out.path, "dry_run", reason, None, plan=plan)

    log.info("%s -> %s: %s", stage.name, out.path, reason)
    if executor is None:
        from direct_data.core.executors import make_executor

        executor = make_executor(stage.config)
    stage.executor = executor  # `finish` may use it too (partition: map-side assignment)
    todo = [(j, u) for j, u in enumerate(units) if j % world_size == rank and u.name not in done_before]
    mine = [u for _, u in todo]
    with progress_bar(stage.name, total=sum(u.size for u in mine), enabled=stage.show_progress) as bar:
        def commit(j: int, u: Unit, fill) -> None:  # a unit's rows -> its shards -> its marker
            w = UnitWriter(out, stage, prefix=f"c{j:05d}-")
            counts = fill(w)
            shards = w.close()
            out.commit(u.name, key, {"index": j, "counts": counts, "reasons": w.reasons, "shards": shards})
            bar.update(u.size)

        executor.run_units(stage, todo, commit)
    markers = [out.committed(u.name, key) for u in units]
    run = {"units": len(units), "units_run": len(mine), "units_skipped": len(done_before), **executor.describe()}
    if any(m is None for m in markers):
        return StageResult(stage.name, out.path, "waiting", f"rank {rank}: units of other ranks are not committed yet", run=run)

    fw = FinalWriter(out, stage)
    stage.finish(markers, fw)
    final_shards = fw.close()
    manifest = Manifest(stage=stage.name, config=stage.config.hashed(), inputs=described, model=fw.model or stage.model_identity(), seed=stage.seed)
    for t in stage.tables:
        listed = [s for m in markers for s in m["shards"].get(t, [])] + final_shards.get(t, [])
        manifest.add_shards(t, listed)
    reasons: dict[str, int] = {}
    for m in markers:
        for r, n in m.get("reasons", {}).items():
            reasons[r] = reasons.get(r, 0) + n
    for r, n in fw.reasons.items():
        reasons[r] = reasons.get(r, 0) + n
    manifest.counts = dict(fw.counts)
    if stage.rejects_table:
        manifest.counts.setdefault("rejected", sum(reasons.values()))
    manifest.stats = {**fw.stats, "reject_reasons": dict(sorted(reasons.items()))}
    for name in fw.files:
        manifest.add_file(out.path, name)
    _write_card(out, stage, manifest)
    manifest.write(out.path)
    removed = out.cleanup(manifest, keep_markers={u.name for u in units})
    run.update(getattr(stage, "run_stats", {}))
    run["removed"] = removed
    return StageResult(stage.name, out.path, "computed", reason, manifest, run=run)


# --------------------------------------------------------------------------- the dataset card


def _write_card(out: OutputFolder, stage: Stage, m: Manifest) -> None:
    extra, pngs = stage.card_sections(m)
    for name, data in sorted(pngs.items()):
        out.journal_add(name)
        atomic_write_bytes(out.path / name, data)
        m.add_file(out.path, name)
    tables = "\n".join(f"  - split: {t}\n    path: {t}-*.parquet" for t in stage.tables if m.shards.get(t))
    counts = "\n".join(f"| {k} | {v} |" for k, v in m.counts.items())
    reasons = ", ".join(f"{k}={v}" for k, v in m.stats.get("reject_reasons", {}).items()) or "none"
    shards = "\n".join(f"| `{t}` | {len(m.shards.get(t, []))} | {sum(s['rows'] for s in m.shards.get(t, []))} |" for t in stage.tables)
    inputs = "\n".join(f"- `{i['path']}` ({i.get('stage', i.get('kind'))}, sha256 `{i['sha256'][:16]}`)" for i in m.inputs)
    text = f"""---
pretty_name: direct-data {stage.name}
configs:
- config_name: default
  data_files:
{tables}
---
# {stage.title or stage.name}

Written by `direct-data {stage.name}` (direct-data {m.package_version}, schema v{m.schema_version}); model `{m.model}`, seed {m.seed}; units ran on the `{getattr(getattr(stage, "executor", None), "name", "local")}` executor.
Load a table with `datasets.load_dataset("parquet", data_files="<folder>/<table>-*.parquet")`; `manifest.json` lists every
shard with its sha256.

Inputs:
{inputs}

| count | value |
|---|---:|
{counts}

| table | shards | rows |
|---|---:|---:|
{shards}

Rejection reasons: {reasons}.
{extra}
Config (sha256 `{m.config_sha256[:16]}`): `{json.dumps(m.config, sort_keys=True)}`
"""
    out.journal_add("README.md")
    atomic_write_bytes(out.path / "README.md", text.encode())
    m.add_file(out.path, "README.md")


def unit_name(prefix: str, index: int, keys: Iterable[str]) -> str:
    """A unit name that changes when its content changes: prefix, index and a hash of its row keys."""
    h = hashlib.sha256("\x00".join(keys).encode()).hexdigest()[:12]
    return f"{prefix}-{index:05d}-{h}"


__all__ = ["Stage", "Unit", "Inputs", "UnitWriter", "FinalWriter", "StageResult", "run_stage", "unit_name"]

"""The one shard writer every stage uses.

Shards are Parquet files of bounded size, written atomically (temp file in the same folder, fsync,
rename), with a fixed layout so that the same rows give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from direct_data.core.schema import arrow_schema

DEFAULT_MAX_ROWS = 50_000
ROW_GROUP_ROWS = 10_000


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def hold_lock(lock_file: Path, folder: Path) -> int:
    """Take an exclusive, non-blocking `flock` on ``lock_file`` (created if needed) for one writer of
    ``folder``, and return its descriptor: the lock lasts until it is closed or the process ends.
    Another process holding it is an `OutputError` at once (never two writers interleaving files)."""
    import fcntl

    from direct_data.core.errors import OutputError

    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"--out {folder}: cannot write its lock file {lock_file.name} ({e.strerror or e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OutputError(f"another direct-data process is writing {folder}; wait for it to finish, or give another --out") from None
    return fd


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table_atomic(table: pa.Table, path: str | Path) -> None:
    """Write one Parquet file atomically with settings fixed for byte-identical output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            row_group_size=ROW_GROUP_ROWS,
            use_dictionary=True,
            write_statistics=True,
        )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the stage's output folder
    rows: int
    sha256: str
    bytes: int

    def to_dict(self) -> dict:
        return {"path": self.path, "rows": self.rows, "sha256": self.sha256, "bytes": self.bytes}


class ShardWriter:
    """Accumulates rows of one table and writes `<table>-NNNNN.parquet` shards of at most `max_rows`.

    `prefix` lets a sharded (rank/world_size) or chunked stage keep its files apart:
    ``rejects-r0003-00000.parquet``. Rows are written in the order they are given.
    """

    def __init__(self, out_dir: str | Path, table: str, *, max_rows: int = DEFAULT_MAX_ROWS, prefix: str = "",
                 before_write: Callable[[str], None] | None = None):
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.before_write = before_write  # told each file name before the file is created (the runner's journal)
        self.out_dir = Path(out_dir)
        self.table = table
        self.schema = arrow_schema(table)
        self.max_rows = max_rows
        self.prefix = prefix
        self._buffer: list[dict] = []
        self.shards: list[ShardInfo] = []

    def write(self, row: dict) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.max_rows:
            self._flush()

    def write_many(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.write(row)

    def write_table(self, table: pa.Table) -> None:
        """Write an already-columnar table, cut into shards of `max_rows`."""
        table = table.select(self.schema.names).cast(self.schema)
        for start in range(0, table.num_rows, self.max_rows):
            self._write_shard(table.slice(start, self.max_rows))

    def _flush(self) -> None:
        if self._buffer:
            self._write_shard(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []

    def _write_shard(self, table: pa.Table) -> None:
        name = f"{self.table}-{self.prefix}{len(self.shards):05d}.parquet"
        path = self.out_dir / name
        if self.before_write is not None:
            self.before_write(name)
        write_table_atomic(table, path)
        self.shards.append(ShardInfo(name, table.num_rows, sha256_file(path), path.stat().st_size))

    def close(self) -> list[ShardInfo]:
        """Flush what is left. A table with no rows gets no shard (`datasets` cannot read empty Parquet
        files); the manifest then lists none and a reader gets an empty table."""
        self._flush()
        return self.shards

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

"""Row-streamed vector matrices for partitioning at scale (10M x 384 does not fit in memory as float32).

`VectorFile` opens a `.npy` file (float32 or float16, C order) read-only through mmap and behaves, for
`partition_vectors`, like the in-memory float32 matrix: `len`, `.shape`, `x[a:b]` and `x[index_array]`
return float32 copies. After each read it drops the pages it touched from the process's mapping
(madvise DONTNEED; they stay in the page cache), so the resident memory is the copies, never the file.
The time spent reading and converting to float32 is counted (`read_s`, `rows_read`).
"""

from __future__ import annotations

import mmap
import time
from pathlib import Path

import numpy as np

GATHER_BLOCK = 65_536  # rows per fancy-index gather (bounds the pages touched between two madvise calls)


class VectorFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
        if fortran or len(shape) != 2 or dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"{self.path}: want a C-order 2-d float32/float16 .npy, got shape {shape} dtype {dtype} fortran={fortran}")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self._f = open(self.path, "rb")  # noqa: SIM115 - lives as long as the mapping
        self._mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        self._arr = np.frombuffer(self._mm, dtype=dtype, count=self.shape[0] * self.shape[1], offset=offset).reshape(self.shape)
        self.read_s = 0.0
        self.rows_read = 0

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 2

    def _drop(self) -> None:
        if hasattr(mmap, "MADV_DONTNEED"):
            self._mm.madvise(mmap.MADV_DONTNEED)

    def __getitem__(self, key) -> np.ndarray:
        t0 = time.perf_counter()
        if isinstance(key, slice):
            out = np.array(self._arr[key], dtype=np.float32)
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            out = np.empty((len(idx), self.shape[1]), dtype=np.float32)
            for s in range(0, len(idx), GATHER_BLOCK):
                out[s : s + GATHER_BLOCK] = self._arr[idx[s : s + GATHER_BLOCK]]
                self._drop()
        self._drop()
        self.read_s += time.perf_counter() - t0
        self.rows_read += len(out)
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype)

    def close(self) -> None:
        self._arr = None
        self._mm.close()
        self._f.close()


def write_npy_rows(path: str | Path, n: int, d: int, dtype, blocks) -> Path:
    """Write an (n, d) `.npy` of `dtype` from an iterable of float blocks (in order), never holding it all."""
    path = Path(path)
    tmp = path.with_suffix(".tmp.npy")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, d))
    s = 0
    for b in blocks:
        mm[s : s + len(b)] = b
        s += len(b)
        mm.flush()
        if hasattr(mmap, "MADV_DONTNEED"):
            mm._mmap.madvise(mmap.MADV_DONTNEED)  # noqa: SLF001 - keep the writer's memory flat
    if s != n:
        raise ValueError(f"write_npy_rows: got {s} rows, want {n}")
    del mm
    tmp.replace(path)
    return path

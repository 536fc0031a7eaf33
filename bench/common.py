"""Helpers shared by the bench/bench_*.py scripts: machine info, child processes, result files.

Every measured side runs in its own fresh Python process (`run_child`), so its peak memory is its
own: the child reports `VmHWM` from /proc/self/status and `ru_maxrss` (RUSAGE_SELF, plus
RUSAGE_CHILDREN should it have started processes of its own) right before it exits.
"""

from __future__ import annotations

import datetime as _dt
import glob
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = Path(os.environ.get("DIRECT_DATA_BENCH_RESULTS", BENCH_DIR / "results"))
PROMPTS_DIR = Path(os.environ.get("DIRECT_DATA_PROMPTS", "/work/shared/data/prompts"))


# --------------------------------------------------------------------------- machine


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "?")
    except Exception:  # noqa: BLE001 - a missing optional package is just "absent"
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on. Call at the start of a benchmark (it records the load)."""
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gib": _mem_total_gib(),
        "load_average_start": load_average(),
        "versions": {m: _version(m) for m in ("numpy", "torch", "faiss", "sentence_transformers", "transformers", "datasets", "pyarrow")},
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(k)},
    }


def finish_machine_info(info: dict[str, Any], t0: float) -> dict[str, Any]:
    info["load_average_end"] = load_average()
    info["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    info["note"] = (
        "load averages are (1, 5, 15)-minute; the machine is shared with other jobs, so wall times "
        "include contention when the load exceeds the core count"
    )
    return info


# --------------------------------------------------------------------------- measuring in a child


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (and of any children it waited for), MiB."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["vmhwm_mib"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    out["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if children:
        out["children_ru_maxrss_mib"] = round(children / 1024, 1)
    return out


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Timer:
    """`with Timer() as t: ...` -> t.wall, t.cpu (seconds, process CPU time)."""

    def __enter__(self) -> Timer:
        self._w, self._c = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = cpu_seconds() - self._c


def run_child(script: str | Path, side: str, params: dict[str, Any], *, env: dict[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run `python <script> --child <side> <params.json> <result.json>` in a fresh process and return
    the dict the child wrote, plus its captured stdout/stderr tails and load averages around it.
    Raises RuntimeError (with the stderr tail) when the child fails."""
    with tempfile.TemporaryDirectory(prefix="dd-bench-") as tmp:
        pfile, rfile = Path(tmp) / "params.json", Path(tmp) / "result.json"
        pfile.write_text(json.dumps(params))
        load_before = load_average()
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, str(script), "--child", side, str(pfile), str(rfile)],
            capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout, cwd=str(REPO),
        )
        wall = time.perf_counter() - t0
        if p.returncode != 0 or not rfile.exists():
            raise RuntimeError(f"child {side!r} failed (rc={p.returncode}):\n{p.stderr[-4000:]}\n{p.stdout[-2000:]}")
        res = json.loads(rfile.read_text())
    res["process_wall_s"] = round(wall, 2)
    res["load_average_before"] = load_before
    res["load_average_after"] = load_average()
    res["_stdout"] = p.stdout
    res["_stderr_tail"] = p.stderr[-2000:]
    return res


def child_main(argv: list[str], sides: dict[str, Callable[[dict], dict]]) -> bool:
    """If argv is a `--child SIDE PARAMS RESULT` call, run that side, write its result and return True."""
    if len(argv) < 2 or argv[1] != "--child":
        return False
    side, pfile, rfile = argv[2], argv[3], argv[4]
    params = json.loads(Path(pfile).read_text())
    res = sides[side](params)
    res["peak_memory"] = peak_memory()
    Path(rfile).write_text(json.dumps(res))
    return True


# --------------------------------------------------------------------------- data and results


def real_prompts() -> tuple[list[str], dict[str, Any]]:
    """The distinct real prompts: every *.jsonl under PROMPTS_DIR, field `prompt`, normalised the way
    the reader does it (NFC, whitespace folded), de-duplicated in first-seen order (files sorted)."""
    from direct_data.core.read import normalize_text

    files = sorted(glob.glob(str(PROMPTS_DIR / "*.jsonl")))
    if not files:
        raise FileNotFoundError(f"no *.jsonl prompts under {PROMPTS_DIR} (set DIRECT_DATA_PROMPTS)")
    rows, seen = 0, {}
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rows += 1
                t = json.loads(line).get("prompt")
                if isinstance(t, str):
                    t = normalize_text(t)
                    if t:
                        seen.setdefault(t, None)
    texts = list(seen)
    return texts, {"dir": str(PROMPTS_DIR), "files": [os.path.basename(f) for f in files], "rows": rows, "distinct": len(texts)}


def bench_cache_root() -> Path:
    """Persistent cache for benchmark inputs (embeddings of the 100k set, synthetic data): reruns are fast."""
    return Path(os.environ.get("DIRECT_DATA_BENCH_CACHE", Path.home() / ".cache" / "direct-data" / "bench"))


def write_result(name: str, data: dict[str, Any], out: str | Path | None = None) -> Path:
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

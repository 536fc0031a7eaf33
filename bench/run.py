"""`make bench`: run every bench/bench_*.py script in turn, each as its own subprocess.

Scripts are discovered by glob (sorted by name), so a new bench_<name>.py is picked up without
editing this file. A failing script does not stop the others; the exit status is non-zero at the end
if any failed. Each script writes its own JSON under bench/results/.

    python bench/run.py                 # all of them
    python bench/run.py partition train # only bench_partition.py and bench_train.py
    python bench/run.py --list
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[Path]:
    return sorted(BENCH_DIR.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the bench/bench_*.py scripts, each in its own process.")
    ap.add_argument("names", nargs="*", help="run only these (bench_<name>.py); default: all")
    ap.add_argument("--list", action="store_true", help="list the scripts and exit")
    a = ap.parse_args(argv)
    scripts = discover()
    if a.list:
        for s in scripts:
            print(s.name)
        return 0
    if a.names:
        wanted = {n.removeprefix("bench_").removesuffix(".py") for n in a.names}
        found = {s.stem.removeprefix("bench_") for s in scripts}
        missing = wanted - found
        if missing:
            ap.error(f"no bench script for: {', '.join(sorted(missing))} (have: {', '.join(sorted(found))})")
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    if not scripts:
        print(f"no bench_*.py scripts under {BENCH_DIR}", file=sys.stderr)
        return 1
    summary: list[tuple[str, int, float]] = []
    for s in scripts:
        print(f"=== {s.name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run([sys.executable, str(s)], cwd=str(BENCH_DIR.parent)).returncode
        except KeyboardInterrupt:
            raise
        except OSError as e:  # could not even start it
            print(f"{s.name}: {e}", file=sys.stderr)
            rc = 127
        summary.append((s.name, rc, time.perf_counter() - t0))
        print(f"=== {s.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    failed = [n for n, rc, _ in summary if rc != 0]
    print("\nbenchmarks:", file=sys.stderr)
    for n, rc, dt in summary:
        print(f"  {n:<28} {'ok' if rc == 0 else f'FAILED ({rc})':<12} {dt:7.0f} s", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(summary)} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

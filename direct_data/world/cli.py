"""`direct-data world`: the physics-world experiment (thin commands over `direct_data.world.experiment`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console

from direct_data.core.errors import UserError

world_app = typer.Typer(
    help="The physics world: generate -> partition -> perturb -> encode -> pretrain a tiny Wan base -> "
    "post-train sft / deltafm / direct (+ ablations) at equal compute -> sample -> judge -> report.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, however long


def _fail(msg: str) -> NoReturn:
    err.print(f"error: {msg}", markup=False, highlight=False)
    raise typer.Exit(2)


@world_app.command()
def run(
    out: Path = typer.Option(Path("out/world"), "--out", help="Output folder (data, stages, runs, samples, report.md)."),
    quick: bool = typer.Option(False, "--quick/--full", help="Quick smoke run (minutes) or the full experiment."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, max=1000, help="Number of post-training seeds (0..N-1; 1..1000) [full: 3, quick: 1]."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", envvar="LLM_MODEL",
                                            help="Perturb with the vLLM backend and this model (folder) instead of the rules backend."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, max=1024, help="Processes for the post-training jobs (1..1024) [full: 2, quick: 1]."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, max=1024, help="Torch threads per process (1..1024) [1]."),
    variant: Optional[list[str]] = typer.Option(None, "--variant", help="Post-training variants (repeatable) [sft, deltafm, direct; `make ablations`: sft, direct and the three direct ablations]."),
    stop_after: Optional[str] = typer.Option(None, "--stop-after", help="Last step to run: generate, partition, perturb, encode, pretrain or evaluate (the report needs evaluate)."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Any experiment setting as KEY=VALUE (JSON value), e.g. --set n_train=200 --set pretrain_steps=500 (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Pretrain the base again even if a cached base has the same config and data."),
) -> None:
    """Run the whole experiment and write OUT/report.md, OUT/results.json and OUT/plots/*.png."""
    from direct_data.world.experiment import STEPS, full_config, parse_overrides, quick_config

    if stop_after is not None and stop_after not in STEPS:
        _fail(f"--stop-after must be one of {', '.join(STEPS)}, got {stop_after!r}")
    try:
        over: dict = parse_overrides(settings or [])
    except UserError as e:
        _fail(str(e))
    if seeds is not None:
        over["seeds"] = tuple(range(seeds))
    if llm_model:
        over["llm_model"] = llm_model
    if workers is not None:
        over["workers"] = workers
    if threads is not None:
        over["threads"] = threads
    if variant:
        over["variants"] = tuple(variant)
    if out.exists() and not out.is_dir():
        _fail(f"--out {out}: is a file; give a folder")
    try:  # every value is checked here, before any work (`ExperimentConfig.__post_init__`)
        cfg = (quick_config if quick else full_config)(**over)
    except UserError as e:
        _fail(str(e))
    from direct_data.world.experiment import run_experiment

    try:
        res = run_experiment(cfg, out, progress=lambda name, s: console.print(f"[green]{name}[/] done in {s:.0f} s"),
                             stop_after=stop_after, force=force)
    except UserError as e:
        _fail(str(e))
    if "summary" not in res:
        console.print(f"stopped after {stop_after}: {out / 'results.json'}")
        return
    console.print(f"report: {out / 'report.md'}")
    for r in res["summary"]["table"]:
        console.print(f"  {r['model']:<16} physics {100 * r['physics']['mean']:5.1f} ± {100 * r['physics']['std']:4.1f}   "
                      f"semantic {100 * r['semantic']['mean']:5.1f} ± {100 * r['semantic']['std']:4.1f}", highlight=False)
    v = res["summary"]["verdict"]
    if v:
        never = "; sft never passes" if v["physics_ratio"] != v["physics_ratio"] else ""  # nan
        short = (f", shortcut rate ratio {v['shortcut_ratio']:.2f} (target <= 0.5)" if "shortcut_ratio" in v else "")
        console.print(f"direct / sft physics = {v['physics_ratio']:.2f} (target 1.15{never}; difference "
                      f"{100 * v['physics_diff']:+.1f} points, {'outside' if v['physics_significant'] else 'within'} the noise), "
                      f"semantic drop {100 * v['semantic_drop']:.1f} points (target <= 2){short}: {'met' if v['met'] else 'not met'}")
    console.print(f"total {res['timings']['total']:.0f} s")


@world_app.command()
def report(out: Path = typer.Argument(..., help="An experiment folder of `direct-data world run` (with results.json).")) -> None:
    """Rewrite OUT/report.md and the plots from OUT/results.json (only in a folder `world run` wrote)."""
    from direct_data.core.errors import InputError
    from direct_data.world.experiment import WORLD_MARKER, is_world_out
    from direct_data.world.report import prepare_report, write_prepared

    path = out / "results.json"
    if not out.is_dir():
        _fail(f"{out}: {'is a file' if out.exists() else 'not found'}; give the --out folder of `direct-data world run`")
    if not is_world_out(out):  # it overwrites report.md and plots/*.png: only ours
        _fail(f"{out}: not a folder `direct-data world run` wrote (no {WORLD_MARKER}); the report is written only into "
              f"its own folder: run `direct-data world run --out DIR` and report on DIR")
    if not path.is_file():
        _fail(f"{path} not found: run `direct-data world run --out {out}` first")
    try:
        res = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(f"{path}: not a results file of `direct-data world run` ({e})")
    if not isinstance(res, dict) or "evaluate" not in res:
        _fail(f"{path}: holds no evaluation (a run stopped before `evaluate`, or not a `direct-data world run` results file)")
    try:  # every input is read before anything is written
        rep = prepare_report(out, res)
    except InputError as e:
        _fail(str(e))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as e:
        _fail(f"{path}: not a complete results file of `direct-data world run` ({type(e).__name__}: {e})")
    console.print(f"wrote {write_prepared(rep)}")


#: the largest --jitter: beyond the largest frame (--size 256) a larger jitter means nothing more
MAX_JITTER = 256.0


@world_app.command("validate-judge")
def validate_judge_cmd(n: int = typer.Option(400, "--n", min=1, max=1_000_000, help="Rendered rows (1..1,000,000)."),
                       seed: int = typer.Option(0, "--seed", min=0, max=2**63 - 1, help="Seed of the rows and the jitter (0..2**63 - 1)."),
                       size: int = typer.Option(16, "--size", min=16, max=256, help="Frame size in pixels (16..256)."),
                       frames: int = typer.Option(9, "--frames", min=9, max=256, help="Frames per clip (9..256)."),
                       jitter: float = typer.Option(1.0, "--jitter", min=0.0,
                                                    help="Position jitter (pixels) of the third condition (0..256: "
                                                         "beyond the largest frame it means nothing more).")) -> None:
    """Agreement of the judge with the ground truth on rendered clips: clean, with 1 px of position
    jitter per frame, and blurred + noisy; true, shuffled and one-axis counterfactual captions."""
    import math

    if not math.isfinite(jitter) or jitter > MAX_JITTER:  # nan passes a range check: say "finite" for it
        _fail(f"--jitter: expected a finite number of pixels in 0..{MAX_JITTER:g}, got {jitter}")
    from direct_data.world import validate_judge
    from direct_data.world.experiment import check_clip_memory

    try:  # the rows' clips are all held at once: a size that cannot fit is one line, not a MemoryError
        check_clip_memory(n, frames, size, "--n, --frames, --size")
    except UserError as e:
        _fail(str(e))

    res = {name: validate_judge(n, seed=seed, size=size, frames=frames, **kw)
           for name, kw in (("clean", {}), ("jitter", {"jitter": jitter}), ("noise_blur", {"noise": 10.0, "blur": 0.6}))}
    console.print_json(json.dumps(res))

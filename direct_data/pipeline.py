"""The composition of the stages, in one place.

    partition -> perturb -> encode -> train (-> sample)

Each function below opens its inputs (upstream outputs verified against their manifests), builds
the stage and hands it to the one runner (`core.runner.run_stage`). `run_pipeline(toml)` runs the
fixed sequence from one TOML file (`direct-data run pipelines/NAME.toml`): a `[pipeline]` table
(inputs, output root, where to stop) and one table per stage. Every step is resumable: a stage
whose output is up to date is skipped, a killed stage resumes from its committed units, training
resumes from its latest checkpoint.

Example:
    >>> from direct_data import pipeline
    >>> p = pipeline.partition(["prompts.jsonl"], "out/p")              # doctest: +SKIP
    >>> n = pipeline.perturb("out/p", "out/n")                          # doctest: +SKIP
    >>> e = pipeline.encode("out/p", "out/e", negatives="out/n")        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from direct_data.core.config import StageConfig, load_toml, option, read_toml, register
from direct_data.core.errors import ConfigError, InputError
from direct_data.core.manifest import MANIFEST, open_output
from direct_data.core.runner import Inputs, StageResult, run_stage

log = logging.getLogger(__name__)

STEPS = ("partition", "perturb", "encode", "train", "sample")


def _files(paths: Sequence[str | Path]) -> list[Path]:
    out = [Path(p) for p in paths]
    if not out:
        raise InputError("no input given")
    for p in out:
        if p.is_dir() and (p / MANIFEST).is_file():
            raise InputError(f"{p}: is a direct-data stage output, not a prompt file; give the prompt files")
    return out


def partition(inputs: Sequence[str | Path], out: str | Path, config=None, *, force: bool = False, dry_run: bool = False,
              show_progress: bool = False, rank: int = 0, world_size: int = 1) -> StageResult:
    """Embed prompt files, cluster them, draw macro negatives (`stages.partition`)."""
    from direct_data.stages.partition import PartitionConfig, PartitionStage

    stage = PartitionStage(config or PartitionConfig(), show_progress=show_progress)
    return run_stage(stage, Inputs(files=_files(inputs)), out, force=force, dry_run=dry_run, rank=rank, world_size=world_size)


def perturb(source: str | Path | Sequence[str | Path], out: str | Path, config=None, *, force: bool = False, dry_run: bool = False,
            show_progress: bool = False, rank: int = 0, world_size: int = 1, rewriter=None, validator=None) -> StageResult:
    """Single-axis hard negatives of a partition output (or of prompt files) (`stages.perturb`)."""
    from direct_data.stages.perturb import PerturbConfig, PerturbStage

    srcs = [source] if isinstance(source, (str, Path)) else list(source)
    if len(srcs) == 1 and Path(srcs[0]).is_dir() and (Path(srcs[0]) / MANIFEST).is_file():
        inputs = Inputs(outputs={"partition": open_output(srcs[0], stages=("partition",))})
    else:
        inputs = Inputs(files=_files(srcs))
    stage = PerturbStage(config or PerturbConfig(), show_progress=show_progress, rewriter=rewriter, validator=validator)
    return run_stage(stage, inputs, out, force=force, dry_run=dry_run, rank=rank, world_size=world_size)


def validate(path: str | Path, out: str | Path, config=None, *, force: bool = False, dry_run: bool = False,
             show_progress: bool = False, rank: int = 0, world_size: int = 1, validator=None) -> StageResult:
    """Verdicts on (prompt, axis, negative) rows made elsewhere (`stages.validate`)."""
    from direct_data.stages.validate import ValidateConfig, ValidateStage

    stage = ValidateStage(config or ValidateConfig(), show_progress=show_progress, validator=validator)
    return run_stage(stage, Inputs(files=_files([path])), out, force=force, dry_run=dry_run, rank=rank, world_size=world_size)


def encode(partition_dir: str | Path, out: str | Path, config=None, *, negatives: str | Path | None = None, force: bool = False,
           dry_run: bool = False, show_progress: bool = False, rank: int = 0, world_size: int = 1) -> StageResult:
    """Text states of captions and hard negatives, latents of clips (`stages.encode`)."""
    from direct_data.stages.encode import EncodeConfig, EncodeStage

    cfg = config or EncodeConfig()
    outputs = {"partition": open_output(partition_dir, stages=("partition",), role="input")}
    if negatives is not None:
        outputs["negatives"] = open_output(negatives, stages=("perturb",), role="--negatives")
    files = [Path(cfg.latents)] if cfg.latents else []
    if cfg.latents and not Path(cfg.latents).is_file():
        raise InputError(f"--latents {cfg.latents}: no such file")
    stage = EncodeStage(cfg, show_progress=show_progress)
    return run_stage(stage, Inputs(files=files, outputs=outputs), out, force=force, dry_run=dry_run, rank=rank, world_size=world_size)


# --------------------------------------------------------------------------- the TOML pipeline


@register
@dataclass
class PipelineConfig(StageConfig):
    """The `[pipeline]` table of `direct-data run FILE.toml`."""

    SECTION = "pipeline"

    inputs: list[str] = option([], help="Prompt files for `partition` (paths relative to the working folder).")
    out: str = option("out/pipeline", help="Output root: OUT/partition, OUT/perturb, OUT/encode, OUT/train, OUT/samples.")
    stop_after: str = option("sample", choices=STEPS, help="Last step to run.")
    objective: str = option("direct", choices=("sft", "deltafm", "direct"), help="Training objective.")
    sample_prompts: list[str] = option([], help="Prompts to sample after training (none: the first 4 captions).")

    def check(self) -> None:
        if not self.inputs:
            raise ConfigError("[pipeline] inputs: give at least one prompt file")
        empty = [i for i, p in enumerate(self.sample_prompts) if not p.strip()]
        if empty:  # found now, not after training
            raise ConfigError(f"[pipeline] sample_prompts: prompt {empty[0]} is empty; give text to sample, or leave the list out "
                              f"(the first 4 captions)")


def run_pipeline(path: str | Path, *, force: bool = False, show_progress: bool = False,
                 report: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
    """Run partition -> perturb -> encode -> train (-> sample) from one TOML file; returns what each
    step did. `report(step, result)` is called after each step."""
    from direct_data.stages.encode import EncodeConfig
    from direct_data.stages.partition import PartitionConfig
    from direct_data.stages.perturb import PerturbConfig

    read_toml(path)  # the sections check
    pc = PipelineConfig.build(toml=load_toml(path, PipelineConfig))
    part_cfg = PartitionConfig.build(toml=load_toml(path, PartitionConfig))
    pert_cfg = PerturbConfig.build(toml=load_toml(path, PerturbConfig))
    enc_cfg = EncodeConfig.build(toml=load_toml(path, EncodeConfig))
    from direct_data.training.config import TrainConfig, preset
    from direct_data.training.sample import SampleConfig

    train_over = load_toml(path, TrainConfig)
    sample_cfg = SampleConfig.build(toml=load_toml(path, SampleConfig))
    root = Path(pc.out)
    # every table is checked before any work, the [train] one too (not only once training is reached)
    tcfg = preset(pc.objective, **{**train_over, "out_dir": str(root / "train"), "progress": show_progress})
    last = STEPS.index(pc.stop_after)
    if last >= STEPS.index("train") and not (enc_cfg.vae or enc_cfg.latents):
        raise ConfigError(f"{path}: [encode] names no vae (with video_column) nor latents, and training needs a latent per clip; "
                          f"add one, or set stop_after = \"encode\" in [pipeline]")
    done: dict[str, Any] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        res = fn()
        done[name] = res
        if report:
            report(name, res)
        return res

    step("partition", lambda: partition(pc.inputs, root / "partition", part_cfg, force=force, show_progress=show_progress))
    if last >= 1:
        step("perturb", lambda: perturb(root / "partition", root / "perturb", pert_cfg, force=force, show_progress=show_progress))
    if last >= 2:
        step("encode", lambda: encode(root / "partition", root / "encode", enc_cfg, negatives=root / "perturb" if last >= 1 else None,
                                      force=force, show_progress=show_progress))
    if last >= 3:
        step("train", lambda: train_run(root / "partition", root / "encode", tcfg))
    if last >= 4:
        prompts = list(pc.sample_prompts)
        if not prompts:
            rows = open_output(root / "partition", stages=("partition",)).rows("partitions", ["prompt"])
            prompts = [r["prompt"] for r in rows[:4]]
        step("sample", lambda: sample_run(root / "train", prompts, root / "samples", sample_cfg))
    return done


def train_run(partition_dir: str | Path, encode_dir: str | Path, cfg, *, val_rows: int = 8, resume: bool = True):
    """Train on verified stage outputs (`training.inputs.load_train_data`); resumes from the run folder."""
    from direct_data.training.checkpoint import check_run_folder
    from direct_data.training.data import make_val_batch
    from direct_data.training.inputs import load_train_data
    from direct_data.training.loop import train

    if cfg.out_dir:
        check_run_folder(cfg.out_dir, [partition_dir, encode_dir])
    data, acct = load_train_data(partition_dir, encode_dir)
    val = make_val_batch(data, list(range(min(val_rows, len(data))))) if val_rows else None
    res = train(cfg, data, val=val, resume=resume)
    res.accounting = acct
    return res


def sample_run(checkpoint: str | Path, prompts: list[str], out: str | Path, cfg) -> dict[str, Any]:
    from direct_data.training.sample import run_sample

    return run_sample(checkpoint, prompts, out, cfg)


def describe(result: Any) -> str:
    """One line about a step's result (for the CLI and logs)."""
    if isinstance(result, StageResult):
        if result.up_to_date:
            return f"{result.stage}: up to date ({result.out_dir})"
        return f"{result.stage}: computed ({result.reason}) -> {result.out_dir}"
    if isinstance(result, dict):
        return json.dumps(result, default=str)[:200]
    return f"trained to step {getattr(result, 'step', '?')} -> {getattr(result, 'checkpoint', '?')}"

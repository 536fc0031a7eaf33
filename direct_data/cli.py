"""The `direct-data` command line. Each command parses, calls the library, prints.

The options of `partition`, `perturb`, `validate`, `encode`, `train` and `sample` are generated from
their config declarations (`core.config.option`): there is no second list of options here. A
`UserError` (bad value, bad input, refused output folder) is printed as one line on stderr with exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import inspect
import json
import logging
import os
import sys
import typing
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.table import Table

try:  # recent typer vendors its own click (typer._click)
    from typer._click.exceptions import UsageError as _UsageError
except ImportError:  # pragma: no cover - older typer on a user's machine
    from click.exceptions import UsageError as _UsageError
from typer.core import TyperGroup

from direct_data import __version__
from direct_data.core.config import StageConfig, _unwrap, load_toml
from direct_data.core.errors import ConfigError, UserError


class _OneLineUsageError(_UsageError):
    """A usage error (unknown option, value out of a flag's range, missing argument) as one line."""

    def show(self, file: Any = None) -> None:
        err.print(f"error: {self.message}", markup=False, soft_wrap=True)


def _one_line(e: _UsageError, ctx: Any) -> _UsageError:
    if isinstance(e, _OneLineUsageError) or type(e).__name__ == "NoArgsIsHelpError":  # that one prints the help
        return e
    path = (e.ctx or ctx).command_path
    return _OneLineUsageError(f"{path}: {' '.join(e.format_message().split())} (see {path} --help)")


class OneLineErrors(TyperGroup):
    """Click prints a usage error as usage, hint and message (three lines); every user error here is one."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _UsageError as e:
            raise _one_line(e, ctx) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageError as e:  # raised while parsing a (sub)command's own arguments
            raise _one_line(e, ctx) from None
        except OSError as e:  # the machine, not the code: a full disk, a read-only or looping path
            if e.errno not in _ENVIRONMENT_ERRNOS:
                raise
            where = f"{e.filename}: " if e.filename else ""
            fail(f"{where}{e.strerror or e}" + (" (free some space and rerun: a stage resumes)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""))


#: OS errors that say something about the machine or the paths given, shown as one line (exit 2)
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ELOOP,
                                 errno.ENAMETOOLONG, errno.EMFILE})


app = typer.Typer(
    cls=OneLineErrors,
    name="direct-data",
    help="Mine contrastive negatives (macro: distant semantic partitions; micro: single-axis physics rewrites) "
    "for DiReCT post-training of text-to-video models, and train Wan 2.1 on them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(msg: str) -> None:
    """A user error: one line on stderr, exit code 2."""
    err.print(f"error: {msg}", markup=False, soft_wrap=True)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        console.print(f"direct-data {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what each stage does (INFO) on stderr."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not sys.stderr.isatty():  # as our own progress: no library bars ("Loading weights") in logs and pipes
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
        if "transformers" in sys.modules:  # it reads the hub's setting once, at import (in-process callers)
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def stats_table(title: str, rows: list[tuple[str, object]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("", style="bold")
    t.add_column("", justify="right")
    for k, v in rows:
        t.add_row(k, str(v))
    return t


# --------------------------------------------------------------------------- options from declarations


def _cli_type(tp: Any, multiple: bool = True) -> Any:
    base, none_ok = _unwrap(tp)
    if typing.get_origin(base) in (tuple, list) and not multiple:
        return Optional[str]  # a comma list: --latent-shape 16,21,60,104
    if typing.get_origin(base) in (tuple, list):
        (item, *_r) = typing.get_args(base) or (str,)
        return List[item]  # noqa: UP006  (typer needs typing.List)
    return Optional[base] if none_ok else base


def declared_options(cls: type[StageConfig], *, only_cli: bool = True) -> list[inspect.Parameter]:
    """One typer option per declared field of `cls` (fields with `cli=False` are left to TOML / --set)."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in cls.declared():
        meta = f.metadata
        if only_cli and not meta.get("cli", True):
            continue
        default = cls.default_of(f)
        flag = meta.get("multiple_flag") or meta.get("flag") or "--" + f.name.replace("_", "-")
        is_list = typing.get_origin(_unwrap(hints[f.name])[0]) in (tuple, list)
        comma = is_list and not meta.get("multiple_flag")
        decls = [flag] + ([meta["short"]] if meta.get("short") else [])
        base, _ = _unwrap(hints[f.name])
        if base is bool:
            decls = [f"{flag}/--no-{flag[2:]}"]
        show: Any = True
        if default is None:
            show = meta.get("default_help") or "none"
        elif isinstance(default, (list, tuple)):
            show = ", ".join(map(str, default)) or "none"
            default = ",".join(map(str, default)) if comma else list(default)
        rng = ""
        if meta.get("choices"):
            rng = f" One of: {', '.join(map(str, meta['choices']))}."
        elif meta.get("min") is not None or meta.get("max") is not None:
            lo, hi = meta.get("min"), meta.get("max")
            rng = f" Range: {'>= ' + str(lo) if hi is None else ('<= ' + str(hi) if lo is None else f'{lo}..{hi}')}."
        opt = typer.Option(default, *decls, help=meta["help"] + rng, show_default=show)
        if comma:
            opt.help += " A comma-separated list."
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=_cli_type(hints[f.name], multiple=not comma)))
    return params


def typed_by_user(ctx: typer.Context) -> set[str]:
    """Parameters the user actually gave (typer vendors its own click, so compare enum names)."""
    return {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}


def build_config(cls: type[StageConfig], ctx: typer.Context, config: Path | None, **extra: Any) -> StageConfig:
    """Defaults < TOML (`--config`) < flags the user typed < `extra`."""
    given = typed_by_user(ctx)
    cli = {k: _comma_list(cls, k, v) for k, v in ctx.params.items() if k in given and k in cls.keys()}
    return cls.build(toml=load_toml(config, cls), cli=cli, **extra)


def _comma_list(cls: type[StageConfig], key: str, value: Any) -> Any:
    """A list field given on the command line as "a,b,c": items parsed as JSON where they can be."""
    tp = typing.get_type_hints(cls)[key]
    if isinstance(value, str) and typing.get_origin(_unwrap(tp)[0]) in (tuple, list):
        items = []
        for part in value.split(","):
            try:
                items.append(json.loads(part))
            except json.JSONDecodeError:
                items.append(part.strip())
        return items
    return value


def _param(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def command(name: str, *, help: str, head: list[inspect.Parameter], config_cls: type[StageConfig] | None,
            tail: list[inspect.Parameter], body: Callable[..., None]) -> None:
    """Register `direct-data NAME` with `head` (arguments), the options declared by `config_cls`,
    then `tail`; `body(ctx, **values)` does the work. `UserError`s become one line and exit 2."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context), *head]
    params += declared_options(config_cls) if config_cls else []
    params += tail

    def cmd(ctx: typer.Context, **values: Any) -> None:
        try:
            body(ctx, **values)
        except UserError as e:
            fail(str(e))

    cmd.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    cmd.__annotations__ = {p.name: p.annotation for p in params}
    cmd.__doc__ = help
    cmd.__name__ = name.replace("-", "_")
    app.command(name, help=help)(cmd)


OUT = _param("out", typer.Option(..., "--out", "-o", help="Output folder: empty, or this stage's own earlier output."), Path)


def _config_opt(section: str) -> inspect.Parameter:
    return _param("config", typer.Option(None, "--config", help=f"TOML file: its top-level keys and its [{section}] table set defaults, flags override."),
                  Optional[Path])


RUN_OPTS = [
    _param("force", typer.Option(False, "--force", help="Recompute even if the output is up to date (never deletes files the stage did not write)."), bool),
    _param("dry_run", typer.Option(False, "--dry-run", help="Print the plan and write nothing."), bool),
    _param("rank", typer.Option(0, "--rank", min=0, help="This worker's rank (unit j runs on rank j mod world-size)."), int),
    _param("world_size", typer.Option(1, "--world-size", min=1, help="Number of workers sharing --out."), int),
]


def _print_units(res) -> None:
    if res.run.get("units"):
        console.print(f"units: {res.run['units_run']} run now, {res.run['units_skipped']} already committed, of {res.run['units']}")


def _print_status(res, title: str) -> None:
    """Up to date, or recomputed and why: one line whatever its length (paths in it are never folded)."""
    line = f"up to date: {res.out_dir} (use --force to recompute)" if res.up_to_date else f"{title}: recomputed because {res.reason}"
    console.print(line, markup=False, soft_wrap=True)


def _print_result(res, title: str, rows: Callable[[Any], list[tuple[str, object]]]) -> None:
    if res.status == "dry_run":
        console.print(stats_table(f"{title}: plan (nothing written)", list(res.plan.items())))
        return
    if res.status == "waiting":
        console.print(res.reason)
        return
    _print_status(res, title)
    if not res.up_to_date:
        _print_units(res)
    console.print(stats_table(f"{title} -> {res.out_dir}", rows(res.manifest)))


# --------------------------------------------------------------------------- partition


def _partition(ctx, *, inputs, out, config, force, dry_run, rank, world_size, **_) -> None:
    from direct_data import pipeline
    from direct_data.stages.partition import PartitionConfig

    cfg = build_config(PartitionConfig, ctx, config)
    res = pipeline.partition(inputs, out, cfg, force=force, dry_run=dry_run, show_progress=sys.stderr.isatty(), rank=rank, world_size=world_size)

    def rows(m):
        s, c, cert = m.stats, m.counts, m.stats["certificate"]
        return [("read", c["read"]), ("kept", c["kept"]), ("merged duplicates", c["merged"]), ("rejected", c["rejected"]),
                ("reject reasons", ", ".join(f"{k}={v}" for k, v in s["reject_reasons"].items()) or "-"),
                ("k", s["k"]), ("sizes (min..max)", f"{s['size_min']}..{s['size_max']}"), ("imbalance factor", s["imbalance_factor"]),
                ("macro negatives", cert["negatives"]), ("exclusivity violations", cert["violations"]),
                ("shortfall prompts", cert["shortfall_prompts"]),
                ("anchor-negative cos (median)", cert["anchor_negative_cos"].get("p50", "-")),
                ("same-partition cos (median)", cert["same_partition_cos"].get("p50", "-"))]

    _print_result(res, "partition", rows)


def _register_partition() -> None:
    from direct_data.stages.partition import PartitionConfig

    command("partition", config_cls=PartitionConfig, body=_partition,
            help="Embed prompts, cluster them into semantic partitions, and draw macro negatives from distant partitions.",
            head=[_param("inputs", typer.Argument(..., help="Prompt files (.jsonl .json .csv .parquet .txt) or `datasets` save_to_disk folders."), List[Path]),
                  OUT, _config_opt("partition")],
            tail=RUN_OPTS)


# --------------------------------------------------------------------------- perturb


def _perturb(ctx, *, inputs, out, config, force, dry_run, rank, world_size, **_) -> None:
    from direct_data import pipeline
    from direct_data.stages.perturb import PerturbConfig

    cfg = build_config(PerturbConfig, ctx, config)
    res = pipeline.perturb(inputs, out, cfg, force=force, dry_run=dry_run, show_progress=sys.stderr.isatty(), rank=rank, world_size=world_size)
    if res.status != "computed" and res.status != "up_to_date":
        _print_result(res, "perturb", lambda m: [])
        return
    m = res.manifest
    _print_status(res, "perturb")
    _print_units(res)
    t = Table(title=f"perturb ({m.config['backend']}) -> {out}", title_justify="left")
    for col in ("axis", "requests", "accepted", "rate", "rejection reasons"):
        t.add_column(col, justify="right" if col in ("requests", "accepted", "rate") else "left")
    for a, d in m.stats["per_axis"].items():
        t.add_row(a, str(d["requests"]), str(d["accepted"]), f"{d['acceptance']:.1%}", ", ".join(f"{k}={v}" for k, v in d["reasons"].items()) or "-")
    console.print(t)
    console.print(f"{m.counts['requests']} requests = {m.counts['accepted']} negatives + {m.counts['rejected']} rejects")
    if m.counts.get("input_rejected"):
        console.print(f"{m.counts['input_rejected']} of {m.counts['input_read']} input rows are not a usable prompt "
                      f"({', '.join(f'{k}={v}' for k, v in m.stats.get('input_rejects', {}).items())}): table rejects")
    if not res.up_to_date:
        console.print(f"run: {json.dumps(res.run, sort_keys=True)}", soft_wrap=True, markup=False)


def _register_perturb() -> None:
    from direct_data.stages.perturb import PerturbConfig

    command("perturb", config_cls=PerturbConfig, body=_perturb,
            help="Rewrite each prompt along exactly one physics axis, keeping the scene: validated micro (hard) negatives.",
            head=[_param("inputs", typer.Argument(..., help="A `partition` output folder, or prompt files (any format `partition` reads)."), List[Path]),
                  OUT, _config_opt("perturb")],
            tail=RUN_OPTS)


# --------------------------------------------------------------------------- validate


def _validate(ctx, *, path, out, config, force, dry_run, rank, world_size, **_) -> None:
    from direct_data import pipeline
    from direct_data.stages.validate import ValidateConfig

    cfg = build_config(ValidateConfig, ctx, config)
    res = pipeline.validate(path, out, cfg, force=force, dry_run=dry_run, show_progress=sys.stderr.isatty(), rank=rank, world_size=world_size)
    if res.status not in ("computed", "up_to_date"):
        _print_result(res, "validate", lambda m: [])
        return
    _print_status(res, "validate")
    m = res.manifest
    t = Table(title=f"validate {path} -> {out}", title_justify="left")
    for col in ("axis", "rows", "accepted", "rejection reasons"):
        t.add_column(col)
    for a, d in m.stats["per_axis"].items():
        t.add_row(a, str(d["rows"]), str(d["accepted"]), ", ".join(f"{k}={v}" for k, v in d["reasons"].items()) or "-")
    console.print(t)
    console.print(f"{m.counts['rows']} rows: {m.counts['accepted']} accepted, {m.counts['rejected']} rejected")


def _register_validate() -> None:
    from direct_data.stages.validate import ValidateConfig

    command("validate", config_cls=ValidateConfig, body=_validate,
            help="Validate hard negatives made elsewhere: each row's verdict (accepted or the reason) and scores.",
            head=[_param("path", typer.Argument(..., help="Rows of (prompt, axis, negative) in any supported format."), Path),
                  OUT, _config_opt("validate")],
            tail=RUN_OPTS)


# --------------------------------------------------------------------------- encode


def _encode(ctx, *, partition_dir, out, negatives, config, force, dry_run, rank, world_size, **_) -> None:
    from direct_data import pipeline
    from direct_data.stages.encode import EncodeConfig

    cfg = build_config(EncodeConfig, ctx, config)
    res = pipeline.encode(partition_dir, out, cfg, negatives=negatives, force=force, dry_run=dry_run, show_progress=sys.stderr.isatty(),
                          rank=rank, world_size=world_size)
    _print_result(res, "encode", lambda m: list(m.counts.items()) + [("encoder", m.model), ("latents from", m.stats.get("latents_from") or "none")])


def _register_encode() -> None:
    from direct_data.stages.encode import EncodeConfig

    command("encode", config_cls=EncodeConfig, body=_encode,
            help="Text-encoder states of every caption and hard negative, and latents of every clip.",
            head=[_param("partition_dir", typer.Argument(..., help="A `partition` output folder (captions; video paths in `meta`)."), Path),
                  OUT,
                  _param("negatives", typer.Option(None, "--negatives", help="A `perturb` output folder: its accepted hard negatives are encoded too."), Optional[Path]),
                  _config_opt("encode")],
            tail=RUN_OPTS)


# --------------------------------------------------------------------------- train


def parse_set(items: list[str]) -> dict:
    """`--set key=value` pairs; values parsed as JSON when they can be (numbers, true/false, lists)."""
    out = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--set expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k.strip().replace("-", "_")] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip().replace("-", "_")] = v
    return out


def _train(ctx, *, partition_dir, encode_dir, out, objective, config, set_, val_rows, resume, **_) -> None:
    from direct_data import pipeline
    from direct_data.training.config import TrainConfig, preset
    from direct_data.training.loop import NonFiniteLossError

    given = typed_by_user(ctx)
    over = load_toml(config, TrainConfig)
    over.update({k: v for k, v in ctx.params.items() if k in given and k in TrainConfig.keys()})
    over.update({k: _comma_list(TrainConfig, k, v) if k in TrainConfig.keys() else v for k, v in parse_set(set_).items()})
    for k in ("objective", "out_dir"):
        if k in over and k in parse_set(set_):
            raise ConfigError(f"--set {k}=...: use --{k.replace('_dir', '')} instead")
    name = over.pop("objective", objective) if "objective" not in given else objective
    over.pop("objective", None)
    over["out_dir"] = str(out)
    over.setdefault("progress", sys.stderr.isatty())
    cfg = preset(name, **over)
    try:
        res = pipeline.train_run(partition_dir, encode_dir, cfg, val_rows=val_rows, resume=resume)
    except NonFiniteLossError as e:
        fail(str(e))
        return
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun: rank 0 reports
        return
    last = res.records[-1] if res.records else {}
    rows = [("objective", cfg.objective), ("steps", res.step), ("nan/inf steps skipped", res.nan_skips), ("data", res.accounting)]
    rows += [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in last.items() if k in ("loss", "fm", "macro", "micro", "reg") or k.startswith("conflict")]
    if res.val_fm:
        rows.append(("validation FM loss (first -> last)", f"{res.val_fm[0][1]:.4f} -> {res.val_fm[-1][1]:.4f}"))
    rows.append(("checkpoint", res.checkpoint))
    console.print(stats_table(f"train -> {out}", rows))


def _register_train() -> None:
    from direct_data.training.config import PRESETS, TrainConfig

    others = ", ".join(f.name for f in TrainConfig.declared() if not f.metadata.get("cli", True) and f.name not in ("objective", "out_dir"))
    command("train", config_cls=TrainConfig, body=_train,
            help="Post-train a Wan 2.1 transformer with flow matching plus DiReCT's macro, micro and regulariser terms.",
            head=[_param("partition_dir", typer.Argument(..., help="A `partition` output folder (partitions, macro negatives)."), Path),
                  _param("encode_dir", typer.Argument(..., help="An `encode` output folder (text states, hard negatives, latents)."), Path),
                  _param("out", typer.Option(..., "--out", "-o", help="Run folder: log.jsonl, checkpoints/ (safetensors), resumed if present."), Path),
                  _param("objective", typer.Option("direct", help=f"Preset of loss terms: {', '.join(PRESETS)}."), str),
                  _config_opt("train")],
            tail=[_param("set_", typer.Option([], "--set", help=f"Any other TrainConfig field, key=value (repeatable): {others}."), List[str]),
                  _param("val_rows", typer.Option(8, min=0, max=10**6, help="Rows held as the fixed validation batch (flow-matching loss logged on it; 0..1,000,000)."), int),
                  _param("resume", typer.Option(True, "--resume/--no-resume", help="Continue from the latest checkpoint in --out."), bool)])


# --------------------------------------------------------------------------- sample


def _sample(ctx, *, checkpoint, out, prompt, prompts_file, config, **_) -> None:
    from direct_data.core.read import read_prompts
    from direct_data.training.sample import SampleConfig, run_sample

    cfg = build_config(SampleConfig, ctx, config)
    texts = list(prompt)
    if prompts_file:
        rr = read_prompts([prompts_file])
        rr.require_prompts(None)
        texts += [p.prompt for p in rr.prompts]
        if rr.rejects or rr.merged:  # every row accounted for: say what was not sampled, and why
            why = ", ".join(f"{k} {v}" for k, v in sorted(rr.reasons().items()))
            err.print(f"warning: {prompts_file}: {rr.read} rows, {rr.kept} sampled, {rr.merged} duplicates merged, "
                      f"{len(rr.rejects)} rejected{f' ({why})' if why else ''}", markup=False, soft_wrap=True)
    if not texts:
        raise ConfigError("give --prompt TEXT (repeatable) or --prompts FILE")
    s = run_sample(checkpoint, texts, out, cfg)
    console.print(stats_table(f"sample -> {out}", list(s.items())))


def _register_sample() -> None:
    from direct_data.training.sample import SampleConfig

    command("sample", config_cls=SampleConfig, body=_sample,
            help="Sample clips from a checkpoint (or a run folder's latest) for a list of prompts: arrays (safetensors) and GIF/MP4 files.",
            head=[_param("checkpoint", typer.Argument(..., help="A `direct-data train` run folder (its latest checkpoint) or a checkpoint folder."), Path),
                  _param("out", typer.Option(..., "--out", "-o", help="Folder for samples.safetensors, prompts.json and the clips."), Path),
                  _param("prompt", typer.Option([], "--prompt", "-p", help="A prompt (repeatable)."), List[str]),
                  _param("prompts_file", typer.Option(None, "--prompts", help="A file of prompts (any format `partition` reads)."), Optional[Path]),
                  _config_opt("sample")],
            tail=[])


# --------------------------------------------------------------------------- run, make-sample


@app.command("run")
def run_cmd(
    pipeline_file: Path = typer.Argument(..., help="A pipeline TOML: a [pipeline] table (inputs, out, stop_after, objective) and one table per stage."),
    force: bool = typer.Option(False, "--force", help="Recompute every stage (never deletes files a stage did not write)."),
) -> None:
    """Run partition -> perturb -> encode -> train (-> sample) from one TOML file; every step resumes."""
    from direct_data import pipeline

    try:
        pipeline.run_pipeline(pipeline_file, force=force, show_progress=sys.stderr.isatty(),
                              report=lambda name, res: console.print(pipeline.describe(res), markup=False))
    except UserError as e:
        fail(str(e))


@app.command("make-sample")
def make_sample(
    out: Path = typer.Option(Path("out/sample.jsonl"), "--out", "-o", help="Where to write the JSONL sample: a new file, or make-sample's own earlier output (nothing else is overwritten)."),
    n: int = typer.Option(400, min=1, max=10**7, help="Rows to generate (1..10,000,000)."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Grammar seed (0..2**63 - 1)."),
    clips: bool = typer.Option(False, "--clips/--no-clips", help="Also render a small procedural clip per prompt (GIF in <stem>-clips/ next to the JSONL, its absolute path in the `video` column)."),
) -> None:
    """Write the embedded default input: prompts generated from the project's own grammar."""
    from direct_data.samples import write_sample

    try:
        rows = write_sample(out, n, seed=seed, clips=clips)
    except UserError as e:
        fail(str(e))
    console.print(f"wrote {rows} prompts to {out}")


for _register in (_register_partition, _register_perturb, _register_validate, _register_encode, _register_train, _register_sample):
    _register()

from direct_data.world.cli import world_app  # noqa: E402

app.add_typer(world_app, name="world")

from direct_data.text.validator_cli import validator_app  # noqa: E402

app.add_typer(validator_app, name="validator")


def run() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

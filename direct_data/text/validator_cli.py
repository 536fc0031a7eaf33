"""`direct-data validator fit | eval`: fit the learnt validator, score it on a labelled split."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from direct_data.backends.pair import PairSettings
from direct_data.core.errors import UserError

validator_app = typer.Typer(help="The learnt hard-negative validator: fit it on the labelled rewrites, evaluate it.", no_args_is_help=True)
console = Console()
log = logging.getLogger(__name__)
_PAIR = PairSettings()  # the fit-pair options' defaults: declared once, in PairSettings


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _fluency_scorer(enabled: bool, model: str | None = None):
    """The span-state scorer of the fluency model (`direct_data.backends.fluency.SpanStates`: the
    first layers of `model`, default the packaged Gemma, float32 on every machine, for the fit as
    for `eval`), or None."""
    if model is not None and not model.strip():
        raise UserError("--fluency-model: empty; leave it out for the default")
    if not enabled:
        if model is not None:
            raise UserError("--fluency-model is the fluency scorer's model: add --fluency")
        return None
    try:
        from direct_data.backends.fluency import SpanStates
    except ImportError as e:
        raise UserError(f"the fluency scorer is not available: {e}") from e
    if model is not None:
        from direct_data.core.config import check_model_path

        check_model_path("--fluency-model", model)
    return SpanStates(model)


@validator_app.command("fit")
def fit_cmd(
    out: Path | None = typer.Option(None, "--out", "-o", help="Where to write the weights (.safetensors; the JSON sidecar goes next to it).",
                             show_default="the packaged direct_data/text/data/validator.safetensors"),
    labelled: Path | None = typer.Option(None, "--labelled", help="Labelled rewrites (JSONL).", show_default="data/rewrites/labelled.jsonl"),
    prompts_dir: Path | None = typer.Option(None, "--prompts-dir", help="Folder of the prompt files the rows join to.", show_default="../shared/data/prompts"),
    grid: bool = typer.Option(True, "--grid/--no-grid", help="Search the hyper-parameter grid on dev, or reuse the settings in the packaged sidecar."),
    fluency: bool = typer.Option(False, "--fluency/--no-fluency", help="Also fit the fluency model (a probe of a causal LM's span states)."),
    fluency_model: str | None = typer.Option(None, "--fluency-model", help="The causal LM whose span states the fluency model reads (a folder or hub id).",
                                             show_default="the packaged Gemma-3-270M base"),
) -> None:
    """Fit on the train split, choose settings and the p(good) threshold on dev, write the artefact."""
    from direct_data.text import learnt

    if out is not None and (out.is_dir() or out.suffix != ".safetensors"):  # before minutes of fitting, not after
        _fail(f"--out {out}: give a .safetensors file path (its JSON sidecar goes next to it)")
    try:
        model = learnt.fit_artefact(out or learnt.ARTEFACT, labelled=labelled, prompts_dir=prompts_dir,
                                    grid=learnt.GRID if grid else None, fluency=_fluency_scorer(fluency, fluency_model))
    except UserError as e:
        _fail(str(e))
    m = model.meta
    console.print(f"wrote {out or learnt.ARTEFACT}: threshold {m['threshold']:.2f}, dev balanced score {m['dev_balanced']:.4f}"
                  + (f"; fluency threshold {m['threshold_fluency']:.2f}, dev {m['dev_balanced_fluency']:.4f}" if "threshold_fluency" in m else ""),
                  markup=False)


@validator_app.command("fit-pair")
def fit_pair_cmd(
    out: Path | None = typer.Option(None, "--out", "-o", help="Where to write the pair classifier (.safetensors; the JSON sidecar goes next to it).",
                                    show_default="the packaged direct_data/text/data/pair_classifier.safetensors"),
    labelled: Path | None = typer.Option(None, "--labelled", help="Labelled rewrites (JSONL).", show_default="data/rewrites/labelled.jsonl"),
    prompts_dir: Path | None = typer.Option(None, "--prompts-dir", help="Folder of the prompt files the rows join to.", show_default="../shared/data/prompts"),
    validator_model: Path | None = typer.Option(None, "--validator-model", help="The learnt validator model the blend is calibrated for.",
                                                show_default="the packaged one"),
    model: str | None = typer.Option(None, "--model", help="The causal LM whose first layers are tuned (a folder or hub id).",
                                     show_default="the packaged Gemma-3-270M base"),
    fluency: bool = typer.Option(True, "--fluency/--no-fluency", help="Also calibrate the blend with the fluency model (the *_fluency cut-offs)."),
    calibrate_only: bool = typer.Option(False, "--calibrate-only", help="Keep the fitted weights at --out; only choose the blend's cut-offs on dev "
                                                                        "again (after the learnt model is refitted)."),
    layers: int = typer.Option(_PAIR.layers, "--layers", min=1, help="Decoder layers kept."),
    epochs: float = typer.Option(_PAIR.epochs, "--epochs", min=0.001, help="Passes over the train split."),
    seed: int = typer.Option(_PAIR.seed, "--seed", min=0, help="Seed of the LoRA init, dropout and shuffle."),
    threads: int = typer.Option(_PAIR.threads, "--threads", min=1, help="torch threads during the fit (the result depends on it)."),
    compose: bool = typer.Option(_PAIR.compose_multi_axis, "--compose/--no-compose",
                                 help="Add multi_axis rows made by joining two train goods' edits on different axes (learnt.composed_multi_axis)."),
) -> None:
    """Fit the pair classifier on the train split (LoRA on a causal LM's first layers; 40 min on 2 CPU
    cores for the default), then calibrate its blend with the learnt validator on dev."""
    from direct_data.backends import pair

    if out is not None and (out.is_dir() or out.suffix != ".safetensors"):
        _fail(f"--out {out}: give a .safetensors file path (its JSON sidecar goes next to it)")
    try:
        if model is not None:
            from direct_data.core.config import check_model_path

            check_model_path("--model", model)
        flu = _fluency_scorer(fluency)
        if calibrate_only:
            pc = pair.calibrate_artefact(out, validator_model=validator_model, model=model, labelled=labelled,
                                         prompts_dir=prompts_dir, fluency=flu)
        else:
            s = pair.PairSettings(layers=layers, epochs=epochs, seed=seed, threads=threads, compose_multi_axis=compose)
            pc = pair.fit_pair_classifier(out, settings=s, model=model, labelled=labelled, prompts_dir=prompts_dir,
                                          validator_model=validator_model, fluency=flu)
    except UserError as e:
        _fail(str(e))
    c = pc.meta["calibration"]
    # one line, never wrapped (a script greps it)
    typer.echo(f"wrote {out or pair.ARTEFACT}: blended threshold {c['threshold']:.2f}, dev balanced score {c['dev_balanced']:.4f} "
               f"(learnt model alone {c['dev_balanced_alone']:.4f})"
               + (f"; with fluency {c['threshold_fluency']:.2f}, dev {c['dev_balanced_fluency']:.4f} (alone {c['dev_balanced_alone_fluency']:.4f})"
                  if "threshold_fluency" in c else ""))


def _pair(enabled: bool, path: Path | None):
    if not enabled:
        if path is not None:
            raise UserError("--pair-model is the pair classifier's weights: add --pair-classifier")
        return None
    from direct_data.backends.pair import PairClassifier

    return PairClassifier.load(path)


def eval_table(result: dict, title: str) -> Table:
    t = Table(title=title)
    for c in ("label", "rows", "decided right", "rate", "outcomes"):
        t.add_column(c)
    for lab, d in result["per_label"].items():
        what = "kept" if lab == "good" else "rejected"
        t.add_row(lab, str(d["rows"]), f"{d['right']} {what}", f"{d['rate']:.1%}", ", ".join(f"{k}={v}" for k, v in d["reasons"].items()))
    return t


@validator_app.command("eval")
def eval_cmd(
    split: str = typer.Option("dev", "--split", help="Which split to score: train, dev or test (aggregate numbers only)."),
    mode: str = typer.Option("learnt", "--mode", help="learnt or lexicon."),
    model: Path | None = typer.Option(None, "--model", help="Weights of the learnt model.", show_default="the packaged one"),
    threshold: float | None = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Override the fitted p(good) threshold."),
    fluency: bool = typer.Option(False, "--fluency/--no-fluency", help="Use the fluency model (a probe of Gemma's span states)."),
    fluency_model: str | None = typer.Option(None, "--fluency-model", help="The causal LM the fluency model was fitted on (a folder or hub id).",
                                             show_default="the packaged Gemma-3-270M base"),
    pair_classifier: bool = typer.Option(False, "--pair-classifier/--no-pair-classifier", help="Blend in the pair classifier (its calibrated cut-offs)."),
    pair_model: Path | None = typer.Option(None, "--pair-model", help="The pair classifier's weights.", show_default="the packaged one"),
    labelled: Path | None = typer.Option(None, "--labelled", help="Labelled rewrites (JSONL)."),
    prompts_dir: Path | None = typer.Option(None, "--prompts-dir", help="Folder of the prompt files the rows join to."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Per-label keep / reject rates and the reasons given, on one split of the labelled set."""
    from direct_data.text import learnt
    from direct_data.text.validator import MODES, Validator, ValidatorConfig

    if split not in ("train", "dev", "test"):
        _fail("--split must be train, dev or test")
    if mode not in MODES:
        _fail(f"--mode must be one of {', '.join(MODES)}")
    try:
        rows = learnt.load_labelled(labelled, prompts_dir, splits=(split,))
        if not rows:
            raise UserError(f"no {split} rows")
        cfg = ValidatorConfig(mode=mode, learnt_threshold=threshold, model_path=str(model) if model else None)
        if pair_classifier and mode != "learnt":
            raise UserError("--pair-classifier is blended with the learnt validator: use --mode learnt")
        v = Validator(config=cfg, fluency=_fluency_scorer(fluency, fluency_model), pair=_pair(pair_classifier, pair_model))
        res = learnt.evaluate(v, rows)
    except UserError as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(res, indent=1, sort_keys=True))
        return
    console.print(eval_table(res, f"validator ({mode}{', fluency' if fluency else ''}{', pair classifier' if pair_classifier else ''}) on the {split} split: {res['rows']} rows"))
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    console.print(f"good kept {pct(res['good_kept'])}; bad rejected {pct(res['bad_rejected'])} (lowest label {pct(res['min_bad_rejected'])})",
                  markup=False)

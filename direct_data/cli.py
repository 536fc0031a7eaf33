"""The `direct-data` command line. Each command parses, calls the library, prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from direct_data import __version__
from direct_data.core.config import ConfigError, build_config, load_toml
from direct_data.core.read import InputError

app = typer.Typer(
    name="direct-data",
    help="Mine contrastive negatives (macro: distant semantic partitions; micro: single-axis physics rewrites) "
    "for DiReCT post-training of text-to-video models, and train Wan 2.1 on them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err = Console(stderr=True)


def _explicit(ctx: typer.Context) -> set[str]:
    """Parameters the user actually typed (typer vendors its own click, so compare enum names)."""
    return {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}


def _fail(msg: str) -> None:
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        console.print(f"direct-data {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    pass


def _stats_table(title: str, rows: list[tuple[str, object]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("", style="bold")
    t.add_column("", justify="right")
    for k, v in rows:
        t.add_row(k, str(v))
    return t


from direct_data.stages.partition import PartitionConfig  # noqa: E402

_P = PartitionConfig()


@app.command()
def partition(
    ctx: typer.Context,
    inputs: list[Path] = typer.Argument(..., help="Prompt files (.jsonl .json .csv .parquet .txt) or `datasets` save_to_disk folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (shards, manifest.json, README.md card)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file; its [partition] table sets defaults, flags override."),
    text_column: Optional[str] = typer.Option(_P.text_column, help="Text column [default: prompt, else caption, else text]."),
    max_chars: int = typer.Option(_P.max_chars, help="Reject prompts longer than this (after whitespace folding)."),
    model: Optional[str] = typer.Option(_P.model, help="sentence-transformers folder or name [default: packaged all-MiniLM-L6-v2]."),
    batch_size: int = typer.Option(_P.batch_size, help="Embedding batch size."),
    max_seq_length: Optional[int] = typer.Option(_P.max_seq_length, help="Embedder max tokens [default: the model's]."),
    k: Optional[int] = typer.Option(_P.k, "--k", help="Number of partitions [default: round(sqrt(N/4)), clamped to [2, min(4096, N/10)]]."),
    niter: int = typer.Option(_P.niter, help="k-means iterations."),
    seed: int = typer.Option(_P.seed, help="Seed of the k-means sample, init and the negative draw."),
    balanced: bool = typer.Option(_P.balanced, "--balanced/--no-balanced", help="Rebalance partition sizes (FAISS contrib penalties)."),
    max_points_per_centroid: int = typer.Option(_P.max_points_per_centroid, help="k-means trains on at most k * this many vectors."),
    macro_negatives: int = typer.Option(_P.macro_negatives, help="Macro negatives per prompt."),
    exclude_nearest: int = typer.Option(_P.exclude_nearest, help="Also exclude the M partitions nearest to the prompt's own."),
    shard_rows: int = typer.Option(_P.shard_rows, help="Rows per output shard."),
    cache_dir: Optional[str] = typer.Option(_P.cache_dir, help="Embedding cache [default: $DIRECT_DATA_CACHE/embeddings or ~/.cache/direct-data/embeddings]."),
    embed_chunk: int = typer.Option(_P.embed_chunk, help="Texts embedded and committed to the cache at a time (the resume unit)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the output is up to date."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and write nothing."),
    rank: int = typer.Option(0, help="This worker's rank (embedding is sharded; rank 0 partitions)."),
    world_size: int = typer.Option(1, help="Number of workers."),
) -> None:
    """Embed prompts, cluster them into semantic partitions, and draw macro negatives from distant partitions."""
    from direct_data.stages.partition import run_partition

    try:
        cfg = build_config(PartitionConfig, toml=load_toml(config, "partition"), cli=ctx.params, explicit=_explicit(ctx))
        res = run_partition(inputs, out, cfg, force=force, dry_run=dry_run, show_progress=sys.stderr.isatty(), rank=rank, world_size=world_size)
    except (InputError, ConfigError, ValueError) as e:
        _fail(str(e))
        return
    if dry_run:
        console.print(_stats_table("partition: plan (nothing written)", list(res.plan.items())))
        return
    if res.up_to_date:
        console.print(f"[green]up to date[/]: {out} (use --force to recompute)")
    if res.manifest is None:
        console.print(res.reason)
        return
    m = res.manifest
    s, c, cert = m.stats, m.counts, m.stats["certificate"]
    console.print(
        _stats_table(
            f"partition -> {out}",
            [
                ("read", c["read"]), ("kept", c["kept"]), ("merged duplicates", c["merged"]), ("rejected", c["rejected"]),
                ("reject reasons", ", ".join(f"{k}={v}" for k, v in s["reject_reasons"].items()) or "-"),
                ("k", s["k"]), ("sizes (min..max)", f"{s['size_min']}..{s['size_max']}"), ("imbalance factor", s["imbalance_factor"]),
                ("macro negatives", cert["negatives"]), ("exclusivity violations", cert["violations"]),
                ("shortfall prompts", cert["shortfall_prompts"]),
                ("anchor-negative cos (median)", cert["anchor_negative_cos"].get("p50", "-")),
                ("same-partition cos (median)", cert["same_partition_cos"].get("p50", "-")),
                ("embedded / from cache", f"{res.run['embedded']} / {res.run['cached']}" if res.run else "-"),
            ],
        )
    )


from direct_data.stages.perturb import PerturbConfig  # noqa: E402

_Q = PerturbConfig()


@app.command()
def perturb(
    ctx: typer.Context,
    inputs: list[Path] = typer.Argument(..., help="A `partition` output folder, or prompt files (any format `partition` reads)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (negatives and rejects shards, manifest.json, README.md)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file; its [perturb] table sets defaults, flags override."),
    axes: list[str] = typer.Option(list(_Q.axes), "--axis", "-a", help="Physics axis to rewrite along (repeatable, or `all`): kinematics, forces, materials, interactions, magnitudes."),
    backend: str = typer.Option(_Q.backend, help="rules (offline, deterministic) | vllm (offline engine) | openai (any OpenAI-compatible server)."),
    model: Optional[str] = typer.Option(_Q.model, help="LLM folder or hub id; `gemma3-270m` = the packaged test model."),
    base_url: Optional[str] = typer.Option(_Q.base_url, help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1."),
    api_key_env: str = typer.Option(_Q.api_key_env, help="openai backend: environment variable holding the API key."),
    num_candidates: int = typer.Option(_Q.num_candidates, help="Candidates per (prompt, axis); the first valid one is kept."),
    temperature: float = typer.Option(_Q.temperature, help="Sampling temperature (LLM backends)."),
    seed: int = typer.Option(_Q.seed, help="Base seed; each request gets its own seed derived from it."),
    max_tokens: Optional[int] = typer.Option(_Q.max_tokens, help="Max new tokens [default: enough to close the JSON object]."),
    max_model_len: int = typer.Option(_Q.max_model_len, help="vllm backend: context length."),
    max_concurrency: int = typer.Option(_Q.max_concurrency, help="openai backend: requests in flight."),
    chunk_prompts: int = typer.Option(_Q.chunk_prompts, help="Prompts per chunk (with all their axes): the resume unit."),
    shard_rows: int = typer.Option(_Q.shard_rows, help="Rows per output shard."),
    text_column: Optional[str] = typer.Option(_Q.text_column, help="Text column of plain prompt files."),
    max_chars: int = typer.Option(_Q.max_chars, help="Reject prompts longer than this (plain prompt files)."),
    use_embedding: bool = typer.Option(_Q.use_embedding, "--use-embedding/--no-use-embedding", help="Check the sentence-embedding cosine band."),
    prompts_dir: Optional[str] = typer.Option(_Q.prompts_dir, help="Folder of the axis templates [default: prompts/]."),
    cache_dir: Optional[str] = typer.Option(_Q.cache_dir, help="LLM request cache [default: ~/.cache/direct-data/requests]."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the output is up to date."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (requests, tokens, chunks done) and write nothing."),
    rank: int = typer.Option(0, help="This worker's rank (chunk j goes to rank j mod world-size)."),
    world_size: int = typer.Option(1, help="Number of workers."),
) -> None:
    """Rewrite each prompt along exactly one physics axis, keeping the scene: validated micro (hard) negatives."""
    from direct_data.stages.perturb import run_perturb

    try:
        cfg = build_config(PerturbConfig, toml=load_toml(config, "perturb"), cli=ctx.params, explicit=_explicit(ctx))
        res = run_perturb(inputs, out, cfg, force=force, dry_run=dry_run, show_progress=sys.stderr.isatty(), rank=rank, world_size=world_size)
    except (InputError, ConfigError, ValueError, ImportError, FileNotFoundError) as e:
        _fail(str(e))
        return
    if dry_run:
        console.print(_stats_table("perturb: plan (nothing written)", list(res.plan.items())))
        return
    if res.up_to_date:
        console.print(f"[green]up to date[/]: {out} (use --force to recompute)")
    if res.manifest is None:
        console.print(res.reason)
        return
    m = res.manifest
    t = Table(title=f"perturb ({m.config['backend']}) -> {out}", title_justify="left")
    for col in ("axis", "requests", "accepted", "rate", "rejection reasons"):
        t.add_column(col, justify="right" if col in ("requests", "accepted", "rate") else "left")
    for a, d in m.stats["per_axis"].items():
        t.add_row(a, str(d["requests"]), str(d["accepted"]), f"{d['acceptance']:.1%}", ", ".join(f"{k}={v}" for k, v in d["reasons"].items()) or "-")
    console.print(t)
    console.print(f"{m.counts['requests']} requests = {m.counts['accepted']} negatives + {m.counts['rejected']} rejects")
    console.print(f"run: {json.dumps(res.run, sort_keys=True)}", soft_wrap=True, highlight=False)


@app.command()
def validate(
    path: Path = typer.Argument(..., help="Rows of (prompt, axis, negative) in any supported format."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the verdict shards."),
    use_embedding: bool = typer.Option(True, "--use-embedding/--no-use-embedding", help="Check the sentence-embedding cosine band."),
) -> None:
    """Validate hard negatives made elsewhere: each row's verdict (accepted or the reason) and scores."""
    from direct_data.stages.perturb import run_validate

    try:
        s = run_validate(path, out, use_embedding=use_embedding)
    except (InputError, ValueError) as e:
        _fail(str(e))
        return
    t = Table(title=f"validate {path} -> {out}", title_justify="left")
    for col in ("axis", "rows", "accepted", "rejection reasons"):
        t.add_column(col)
    for a, d in sorted(s["per_axis"].items()):
        t.add_row(a, str(d["rows"]), str(d["accepted"]), ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("rows", "accepted")) or "-")
    console.print(t)
    console.print(f"{s['rows']} rows: {s['accepted']} accepted, {s['rows'] - s['accepted']} rejected")


from direct_data.stages.encode import EncodeConfig  # noqa: E402

_E = EncodeConfig()


@app.command()
def encode(
    ctx: typer.Context,
    partition_dir: Path = typer.Argument(..., help="A `partition` output folder (the captions and, in `meta`, the video paths)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (text_states and latents shards, manifest.json)."),
    negatives: Optional[Path] = typer.Option(None, "--negatives", help="A `perturb` output folder: its accepted hard negatives are encoded too."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file; its [encode] table sets defaults, flags override."),
    text_encoder: Optional[str] = typer.Option(_E.text_encoder, help="Wan 2.1 diffusers checkpoint folder (its umT5) or any transformers encoder folder [default: packaged MiniLM]."),
    max_text_tokens: Optional[int] = typer.Option(_E.max_text_tokens, help="Max tokens [default: 512 for umT5, 128 otherwise]."),
    text_dtype: str = typer.Option(_E.text_dtype, help="float16 | bfloat16 | float32."),
    vae: Optional[str] = typer.Option(_E.vae, help="Wan 2.1 diffusers checkpoint folder (vae/) or an AutoencoderKLWan folder."),
    video_column: Optional[str] = typer.Option(_E.video_column, help="Column of the input rows holding each clip's video path."),
    latents: Optional[str] = typer.Option(_E.latents, help="safetensors file of precomputed latents, one tensor per prompt_id."),
    latent_dtype: str = typer.Option(_E.latent_dtype, help="float32 | bfloat16 | float16."),
    batch_size: int = typer.Option(_E.batch_size, help="Texts per encoder batch."),
    chunk_rows: int = typer.Option(_E.chunk_rows, help="Rows per committed chunk (the resume unit)."),
    shard_rows: int = typer.Option(_E.shard_rows, help="Rows per output shard."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the output is up to date."),
    rank: int = typer.Option(0, help="This worker's rank (chunk j goes to rank j mod world-size)."),
    world_size: int = typer.Option(1, help="Number of workers."),
) -> None:
    """Text-encoder states of every caption and hard negative, and VAE latents of every clip."""
    from direct_data.stages.encode import run_encode

    try:
        cfg = build_config(EncodeConfig, toml=load_toml(config, "encode"), cli=ctx.params, explicit=_explicit(ctx))
        res = run_encode(partition_dir, out, cfg, negatives_dir=negatives, force=force, show_progress=sys.stderr.isatty(), rank=rank, world_size=world_size)
    except (InputError, ConfigError, ValueError, FileNotFoundError, OSError) as e:
        _fail(str(e))
        return
    if res.up_to_date:
        console.print(f"[green]up to date[/]: {out} (use --force to recompute)")
    if res.manifest is None:
        console.print(res.reason)
        return
    console.print(_stats_table(f"encode -> {out}", list(res.manifest.counts.items()) + [("encoder", res.manifest.model), ("run", res.run)]))


def _parse_set(items: list[str]) -> dict:
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


@app.command()
def train(
    ctx: typer.Context,
    partition_dir: Path = typer.Argument(..., help="A `partition` output folder (partitions, macro negatives)."),
    encode_dir: Path = typer.Argument(..., help="An `encode` output folder (text states of captions and hard negatives, latents)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: log.jsonl, checkpoints/ (safetensors), resumed if present."),
    objective: str = typer.Option("direct", help="sft (flow matching) | deltafm (random in-batch negatives) | direct (FM + macro + micro + regulariser)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file; its [train] table overrides the preset, flags override it."),
    model_config: Optional[str] = typer.Option(None, help="tiny | mid | wan2.1-1.3b (random init) [default: tiny]."),
    pretrained: Optional[str] = typer.Option(None, help="A local diffusers Wan checkpoint folder (its transformer/)."),
    lora_rank: Optional[int] = typer.Option(None, help="LoRA rank; 0 = full fine-tuning [default: 16]."),
    max_steps: Optional[int] = typer.Option(None, help="Optimiser steps [default: 1000]."),
    batch_size: Optional[int] = typer.Option(None, help="Rows per batch (every batch spans >= 2 partitions) [default: 4]."),
    lr: Optional[float] = typer.Option(None, help="AdamW learning rate [default: 1e-4]."),
    seed: Optional[int] = typer.Option(None, help="Seed of init, sampler and noise [default: 0]."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda [default: auto]."),
    set_: list[str] = typer.Option([], "--set", help="Any other TrainConfig field, key=value (repeatable): lam_macro, lam_micro, micro_variant (triplet|push|repel), micro_fraction, micro_margin, reg (none|moments|moments-target|mmd|l2), lam_reg, lam_naive, macro_source (batch|dataset), exclude_nearest, shift, noise_dist, grad_clip, warmup_steps, lr_schedule, ckpt_every, val_every, max_nan_skips, bf16, grad_checkpointing, text_len, prediction (v|x0), cond_dropout, ..."),
    val_rows: int = typer.Option(8, help="Rows held as the fixed validation batch (flow-matching loss logged on it)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from the latest checkpoint in --out."),
) -> None:
    """Post-train a Wan 2.1 transformer with flow matching plus DiReCT's macro, micro and regulariser terms."""
    from direct_data.stages.encode import load_train_data
    from direct_data.training.train import NonFiniteLossError, make_val_batch, preset
    from direct_data.training.train import train as run_train

    try:
        over = load_toml(config, "train")
        over.update({k: v for k, v in ctx.params.items() if k in _explicit(ctx) and k in {"model_config", "pretrained", "lora_rank", "max_steps", "batch_size", "lr", "seed", "device"}})
        over.update(_parse_set(set_))
        over["out_dir"] = str(out)
        over.setdefault("progress", sys.stderr.isatty())
        cfg = preset(objective, **over)
        data, acct = load_train_data(partition_dir, encode_dir)
        val = make_val_batch(data, list(range(min(val_rows, len(data))))) if val_rows else None
        res = run_train(cfg, data, val=val, resume=resume)
    except NonFiniteLossError as e:
        _fail(str(e))
        return
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
        return
    last = res.records[-1] if res.records else {}
    rows = [("objective", cfg.objective), ("steps", res.step), ("nan/inf steps skipped", res.nan_skips), ("data", acct)]
    rows += [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in last.items() if k in ("loss", "fm", "macro", "micro", "reg") or k.startswith("conflict")]
    if res.val_fm:
        rows.append(("validation FM loss (first -> last)", f"{res.val_fm[0][1]:.4f} -> {res.val_fm[-1][1]:.4f}"))
    rows.append(("checkpoint", res.checkpoint))
    console.print(_stats_table(f"train -> {out}", rows))


@app.command()
def sample(
    checkpoint: Path = typer.Argument(..., help="A checkpoint folder of `direct-data train` (out/checkpoints/step-N)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for samples.safetensors, prompts.json and the clips."),
    prompt: list[str] = typer.Option([], "--prompt", "-p", help="A prompt (repeatable)."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts", help="A file of prompts (any format `partition` reads)."),
    latent_shape: Optional[str] = typer.Option(None, help="C,F,H,W of the latents, e.g. 16,21,60,104 for 480p x 81 frames [default: the run's]."),
    text_encoder: Optional[str] = typer.Option(None, help="The encoder used by `encode` [default: packaged MiniLM]."),
    max_text_tokens: Optional[int] = typer.Option(None, help="As in `encode`."),
    vae: Optional[str] = typer.Option(None, help="Wan checkpoint or AutoencoderKLWan folder to decode latents (omit for pixel-space latents)."),
    steps: int = typer.Option(20, help="Sampling steps."),
    shift: Optional[float] = typer.Option(None, help="Noise-level shift [default: the run's]."),
    seed: int = typer.Option(0, help="Noise seed (prompt i always gets the same noise)."),
    guidance: float = typer.Option(1.0, "--guidance", help="Classifier-free guidance scale (1 = none; the run needs --set cond_dropout=0.1 or so)."),
    fmt: str = typer.Option("gif", "--format", help="gif | mp4."),
) -> None:
    """Sample clips from a checkpoint for a list of prompts: arrays (safetensors) and GIF/MP4 files."""
    from direct_data.core.read import read_prompts
    from direct_data.training.sample import run_sample

    texts = list(prompt)
    try:
        if prompts_file:
            texts += [p.prompt for p in read_prompts([prompts_file]).prompts]
        if not texts:
            raise ValueError("give --prompt or --prompts")
        shape = [int(x) for x in latent_shape.split(",")] if latent_shape else None
        s = run_sample(checkpoint, texts, out, latent_shape=shape, text_encoder=text_encoder, max_text_tokens=max_text_tokens, vae=vae, steps=steps, shift=shift, seed=seed, fmt=fmt,
                       guidance_scale=guidance)
    except (InputError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
        return
    console.print(_stats_table(f"sample -> {out}", list(s.items())))


@app.command("make-sample")
def make_sample(
    out: Path = typer.Option(Path("out/sample.jsonl"), "--out", "-o", help="Where to write the JSONL sample."),
    n: int = typer.Option(400, help="Rows to generate."),
    seed: int = typer.Option(0, help="Grammar seed."),
) -> None:
    """Write the embedded default input: prompts generated from the project's own grammar."""
    from direct_data.text.samples import write_sample

    rows = write_sample(out, n, seed=seed)
    console.print(f"wrote {rows} prompts to {out}")


from direct_data.world.cli import world_app  # noqa: E402

app.add_typer(world_app, name="world")


def run() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

"""End to end through the CLI: partition -> perturb (rules) -> encode -> train -> sample, real components."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from direct_data.cli import app
from direct_data.samples import generate_sample

runner = CliRunner()


def _clip(prompt: str, t: int = 9, size: int = 32) -> np.ndarray:
    """A small moving square whose colour and direction follow the caption (deterministic)."""
    h = hashlib.sha256(prompt.encode()).digest()
    colour = np.array([h[0], h[1], h[2]], np.uint8) | 64
    clip = np.full((t, size, size, 3), 20, np.uint8)
    down = "fall" in prompt or "drop" in prompt
    for i in range(t):
        y = (4 + 2 * i) % (size - 8) if down else 12
        x = 12 if down else (2 + 3 * i) % (size - 8)
        clip[i, y : y + 8, x : x + 8] = colour
    return clip


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    from diffusers import AutoencoderKLWan

    root = tmp_path_factory.mktemp("vae")
    torch.manual_seed(0)
    AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
                     latents_mean=[0.0] * 16, latents_std=[1.0] * 16).save_pretrained(root / "vae")
    return root


def test_end_to_end_cli(tmp_path, tiny_vae, session_cache):
    import imageio.v3 as iio

    rows = generate_sample(64, seed=3)
    (tmp_path / "clips").mkdir()
    for i, r in enumerate(rows):
        path = tmp_path / "clips" / f"{i}.gif"
        iio.imwrite(path, _clip(r["prompt"]), loop=0)
        r["video"] = str(path)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def ok(args):
        import time

        t0 = time.time()
        r = runner.invoke(app, args, env={"COLUMNS": "200"})
        print(args[0], f"{time.time() - t0:.1f}s")
        assert r.exit_code == 0, r.output
        return r.output

    ok(["partition", str(data), "--out", str(tmp_path / "part"), "--k", "4", "--exclude-nearest", "1"])
    ok(["perturb", str(tmp_path / "part"), "--axis", "kinematics", "--axis", "materials", "--out", str(tmp_path / "neg")])
    out = ok(["encode", str(tmp_path / "part"), "--negatives", str(tmp_path / "neg"), "--vae", str(tiny_vae),
              "--video-column", "video", "--out", str(tmp_path / "enc")])
    assert "latents" in out
    run = tmp_path / "run"
    out = ok(["train", str(tmp_path / "part"), str(tmp_path / "enc"), "--objective", "direct", "--out", str(run),
              "--model-config", "tiny", "--lora-rank", "8", "--max-steps", "300", "--batch-size", "4", "--lr", "3e-3",
              "--set", "micro_fraction=0.5", "--set", "val_every=100", "--set", "ckpt_every=150"])
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 300 and log[-1]["step"] == 300
    # every DiReCT term and the conflict diagnostics are logged
    keys = set().union(*log)
    assert {"loss", "fm", "macro", "micro", "reg", "conflict_naive", "conflict_macro", "conflict_micro"} <= keys
    assert all(r["macro"] <= 0 for r in steps)  # the macro term pushes away: never positive
    val = [(r["step"], r["val_fm"]) for r in log if r.get("val_fm") is not None]
    assert val and "validation FM loss" in out
    first, last = out.split("validation FM loss (first -> last)")[1].split("\n")[0].split("->")
    assert float(last.strip(" │|")) < float(first.strip(" │|")), out
    ckpts = sorted((run / "checkpoints").glob("step-*"))
    assert ckpts and (ckpts[-1] / "pytorch_lora_weights.safetensors").exists()

    out = ok(["sample", str(ckpts[-1]), "--prompt", rows[0]["prompt"], "--prompt", rows[1]["prompt"], "--latent-shape", "16,3,4,4",
              "--vae", str(tiny_vae), "--steps", "8", "--out", str(tmp_path / "samples")])
    from safetensors.torch import load_file

    s = load_file(str(tmp_path / "samples" / "samples.safetensors"))
    assert s["frames"].shape == (2, 9, 32, 32, 3) and s["frames"].dtype == torch.uint8
    assert (tmp_path / "samples" / "0000.gif").exists() and iio.imread(tmp_path / "samples" / "0001.gif", index=None).shape[0] == 9
    # the same seed gives the same clip, alone or in a batch (up to batched-matmul float noise)
    ok(["sample", str(ckpts[-1]), "--prompt", rows[0]["prompt"], "--vae", str(tiny_vae), "--steps", "8", "--out", str(tmp_path / "s2")])
    assert torch.allclose(load_file(str(tmp_path / "s2" / "samples.safetensors"))["latents"][0], s["latents"][0], atol=1e-3)


def _readme_block(tag: str) -> list[str]:
    """The shell commands of the README block fenced by `<!-- tag -->` ... `<!-- /tag -->`."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split(f"<!-- {tag} -->")[1].split(f"<!-- /{tag} -->")[0]
    lines = block.split("```bash")[1].split("```")[0].splitlines()
    return [ln.split("  #")[0].strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_readme_cpu_path_from_prompts_to_clips(tmp_path, session_cache):
    """Runs exactly the README's CPU path (prompt file -> sampled clip, no external weights)."""
    import shutil
    import subprocess
    import sys

    import imageio.v3 as iio

    cmds = _readme_block("cpu-path")
    assert 1 <= len(cmds) <= 5 and all(c.startswith("direct-data ") for c in cmds), cmds
    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "pipelines", tmp_path / "pipelines")
    env = {**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}", "COLUMNS": "200"}
    for c in cmds:
        r = subprocess.run(["bash", "-c", c], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, (c, r.stdout[-2000:], r.stderr[-3000:])
    out = tmp_path / "out" / "demo"
    for stage in ("partition", "perturb", "encode"):
        assert json.loads((out / stage / "manifest.json").read_text())["stage"] == stage
    gifs = sorted((out / "samples").glob("*.gif"))
    assert len(gifs) == 2
    clip = iio.imread(gifs[0], index=None)
    assert clip.shape == (9, 16, 16, 3)
    # a second run is resumable: every stage is up to date, training does not restart
    r = subprocess.run(["bash", "-c", cmds[-1]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.count("up to date") >= 3, r.stdout

"""Smoke test of the physics-world experiment: `direct-data world run --quick` end to end, real stages."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from direct_data.world.cli import world_app
from direct_data.world.experiment import VARIANTS, equal_compute_steps, quick_config, step_cost

runner = CliRunner()


def test_equal_compute_gives_dearer_steps_fewer_steps():
    cfg = quick_config(sft_steps=100, post_batch=16, micro_fraction=0.5, variants=tuple(VARIANTS))
    assert equal_compute_steps("sft", cfg) == 100 == equal_compute_steps("deltafm", cfg)
    # direct: 16 rows + 8 micro rows with backward (3 units each) + 16 reference rows (1 unit) = 88 vs 48
    assert step_cost("direct", cfg) == 3 * 24 + 16
    assert equal_compute_steps("direct", cfg) == round(100 * 48 / 88)
    assert equal_compute_steps("direct-no-micro", cfg) > equal_compute_steps("direct", cfg)
    assert equal_compute_steps("direct-no-reg", cfg) > equal_compute_steps("direct", cfg)


def test_quick_run_end_to_end(tmp_path, session_cache):
    out = tmp_path / "world"
    app = typer.Typer()
    app.add_typer(world_app, name="world")
    r = runner.invoke(app, ["world", "run", "--out", str(out), "--quick"], env={"COLUMNS": "200", "LLM_MODEL": ""})
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    cfg = res["config"]

    # every stage ran and accounted for its rows
    for name in ("generate", "partition", "perturb", "encode", "pretrain", "evaluate", "report"):
        assert res["timings"][name] >= 0
    assert res["partition"]["train"]["counts"]["kept"] == res["generate"]["train"]["kept"]
    assert res["perturb"]["backend"] == "rules" and res["perturb"]["counts"]["accepted"] > 0
    assert res["encode"]["train"]["latents"] == res["generate"]["train"]["kept"]
    assert res["encode"]["train"]["negatives"] == res["perturb"]["counts"]["accepted"]
    assert res["pretrain"]["steps"] == cfg["pretrain_steps"]
    assert (out / "runs" / "base" / "checkpoints").is_dir()
    runs = res["evaluate"]["runs"]
    assert sorted(j["run"]["variant"] for j in runs) == sorted(cfg["variants"])
    for j in runs:
        assert (out / "runs" / f"{j['run']['variant']}-s0" / "log.jsonl").is_file()
        assert j["eval"]["n"] == res["generate"]["eval"]["kept"]
    direct_log = [json.loads(x) for x in (out / "runs" / "direct-s0" / "log.jsonl").read_text().splitlines()]
    assert {"macro", "micro", "reg", "conflict_macro", "conflict_micro"} <= set().union(*direct_log)

    # the report: table rows for base and every variant, numbers in [0, 1], plots on disk
    table = res["summary"]["table"]
    assert [row["model"] for row in table] == ["base", *cfg["variants"]]
    for row in table:
        for key in ("physics", "semantic"):
            assert 0.0 <= row[key]["min"] <= row[key]["mean"] <= row[key]["max"] <= 1.0
        for c in row.get("conflict", {}).values():
            assert c is None or 0.0 <= c <= 1.0
    report = (out / "report.md").read_text()
    for model in ["base", *cfg["variants"]]:
        assert re.search(rf"^\| {re.escape(model)} \| \d", report, re.M), model
    assert "pixel space is the latent space" in report
    for row in table:  # the semantic verdict is the AND of its three checks, so no check passes less often
        parts = row["semantic_parts"]
        assert set(parts) == {"kind", "colour", "setting"}
        assert all(row["semantic"]["mean"] <= v <= 1.0 for v in parts.values()), row
    assert "Semantic adherence by check" in report
    for png in ("loss_curves.png", "adherence.png", "shortcut.png", "samples.png"):
        p = out / "plots" / png
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the shortcut metrics: a rate per model, a confusion table over every eval caption, paired CIs
    n_eval = res["generate"]["eval"]["kept"]
    for row in table:
        assert sum(sum(c.values()) for c in row["confusion"].values()) == n_eval * len(row["seeds"])
        assert row["shortcut_rate"] is None or 0.0 <= row["shortcut_rate"]["mean"] <= 1.0
    pairs = {(c["a"], c["b"]) for c in res["summary"]["paired"]}
    assert {("base", "sft"), ("sft", "direct"), ("sft", "deltafm")} <= pairs
    assert "pilot" in res["summary"]["verdict"] and "Paired differences" in report and "Confusion" in report
    assert res["summary"]["base_unseen"]["n"] == n_eval
    verdicts = (out / "samples" / "sft-s0-eval" / "verdicts.jsonl").read_text().splitlines()
    assert {"observed", "matches", "shows_preferred", "shortcut_eligible"} <= set(json.loads(verdicts[0]))

    # the jobs run in a process pool (post-training first, the base evaluations after them) and
    # give byte-identical clips and verdicts to the serial run
    from direct_data.world.experiment import evaluate

    dirs = ["sft-s0-eval", "base-s0-eval", "base-s0-broad"]
    before = {d: [(out / "samples" / d / f).read_bytes() for f in ("clips.safetensors", "verdicts.jsonl")] for d in dirs}
    pooled = evaluate(quick_config(workers=2, variants=("sft",)), out, res["pretrain"]["checkpoint"])
    assert [j["run"]["variant"] for j in pooled["runs"]] == ["sft"] and pooled["base_check"]["split"] == "broad"
    for d in dirs:
        assert [(out / "samples" / d / f).read_bytes() for f in ("clips.safetensors", "verdicts.jsonl")] == before[d], d
    assert pooled["runs"][0]["eval"]["physics"] == runs[[j["run"]["variant"] for j in runs].index("sft")]["eval"]["physics"]

    # `world report` rewrites the report of its own folder only, and reads every input before writing
    _check_world_report(app, out, tmp_path)

    # the base is cached by its config and data: a second pretrain copies it, untrained; it replaces
    # runs/base only when that holds nothing but an earlier pretrain's files
    from direct_data.core.errors import OutputError
    from direct_data.world.experiment import pretrain, run_experiment

    for mine in ("mynotes.txt", "checkpoints/mine/notes.txt"):
        (out / "runs" / "base" / mine).parent.mkdir(parents=True, exist_ok=True)
        (out / "runs" / "base" / mine).write_text("notes")
        with pytest.raises(OutputError, match=f"did not write .*{mine.split('/')[0]}"):
            pretrain(quick_config(), out)
        results_before = (out / "results.json").read_bytes()
        with pytest.raises(OutputError, match="did not write"):  # `world run` refuses before any work
            run_experiment(quick_config(), out)
        assert (out / "results.json").read_bytes() == results_before
        assert (out / "runs" / "base" / mine).read_text() == "notes" and (out / "runs" / "base" / "checkpoints").is_dir()
        (out / "runs" / "base" / mine).unlink()
        if "/" in mine:
            (out / "runs" / "base" / mine).parent.rmdir()
    again = pretrain(quick_config(), out)
    assert again["cached"] and again["key"] == res["pretrain"]["key"] and again["steps"] == cfg["pretrain_steps"]
    assert sorted(p.name for p in (out / "runs" / "base" / "checkpoints").iterdir())


def _check_world_report(app, out: Path, tmp_path: Path) -> None:
    """`world report` on a quick run's folder `out`: rewrites it byte for byte; refuses a folder
    `world run` did not write and a missing input, in one line, before writing anything; draws the
    curves and the sample strip of the run's first seed (not always seed 0)."""
    import shutil

    from direct_data.world.experiment import WORLD_MARKER

    def body() -> str:  # the report without its timings (`world run` writes them before its last ones)
        return (out / "report.md").read_text().split("## Timings")[0]

    before = {p: (out / p).read_bytes() for p in ("plots/loss_curves.png", "plots/samples.png", "plots/adherence.png")}
    text = body()
    r = runner.invoke(app, ["world", "report", str(out)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert {p: (out / p).read_bytes() for p in before} == before and body() == text  # same inputs, same bytes

    user = tmp_path / "user"  # a user's folder with a copied results.json and eval.jsonl and their own report
    (user / "plots").mkdir(parents=True)
    (user / "data").mkdir()
    shutil.copy(out / "results.json", user / "results.json")
    shutil.copy(out / "data" / "eval.jsonl", user / "data" / "eval.jsonl")
    (user / "report.md").write_text("my report")
    (user / "plots" / "adherence.png").write_text("my plot")
    r = runner.invoke(app, ["world", "report", str(user)], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "not a folder `direct-data world run` wrote" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert (user / "report.md").read_text() == "my report" and (user / "plots" / "adherence.png").read_text() == "my plot"
    assert sorted(p.name for p in (user / "plots").iterdir()) == ["adherence.png"]

    ours = tmp_path / "ours"  # a run's folder without data/eval.jsonl: refused before any plot is written
    ours.mkdir()
    for name in ("results.json", "config.json", WORLD_MARKER):
        shutil.copy(out / name, ours / name)
    r = runner.invoke(app, ["world", "report", str(ours)], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "eval.jsonl not found" in r.output and "Traceback" not in r.output, r.output
    assert sorted(p.name for p in ours.iterdir()) == sorted(["results.json", "config.json", WORLD_MARKER])
    (ours / "results.json").write_text(json.dumps({"evaluate": {}}))
    r = runner.invoke(app, ["world", "report", str(ours)], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "not a complete results file" in r.output, r.output

    # a run whose only seed is 7: the loss curves and the sample strip show seed 7's runs
    s7 = tmp_path / "seed7"
    shutil.copytree(out, s7, ignore=shutil.ignore_patterns("*.png", "report.md", "checkpoints"))
    for d in [*(s7 / "runs").glob("*-s0"), *(s7 / "samples").glob("*-s0-*")]:
        d.rename(d.with_name(d.name.replace("-s0", "-s7")))
    res = json.loads((s7 / "results.json").read_text())
    res["config"]["seeds"] = [7]
    for e in [*res["evaluate"]["base"], res["evaluate"]["base_check"], *(x for j in res["evaluate"]["runs"] for x in j.values())]:
        e["seed"] = 7
    for j in res["evaluate"]["runs"]:
        j["run"]["checkpoint"] = j["run"]["checkpoint"].replace(str(out), str(s7)).replace("-s0", "-s7")
    (s7 / "results.json").write_text(json.dumps(res))
    r = runner.invoke(app, ["world", "report", str(s7)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert (s7 / "plots" / "samples.txt").read_text() == (out / "plots" / "samples.txt").read_text()
    assert "every post-trained model (seed 7)" in (s7 / "report.md").read_text()


def test_generate_is_byte_identical_and_pixels_round_trip(tmp_path):
    import numpy as np
    from safetensors.torch import load_file

    from direct_data.core.read import normalize_text, prompt_id
    from direct_data.training.sample import to_frames
    from direct_data.world import make_split
    from direct_data.world.experiment import generate

    cfg = quick_config(n_broad=12, n_train=8, n_eval=4)
    a, b = generate(cfg, tmp_path / "a"), generate(cfg, tmp_path / "b")
    assert a == b and a["train"]["kept"] + a["train"]["duplicates"] == 8
    for name in ("broad.jsonl", "train.jsonl", "eval.jsonl", "broad_latents.safetensors", "train_latents.safetensors"):
        assert (tmp_path / "a" / "data" / name).read_bytes() == (tmp_path / "b" / "data" / name).read_bytes(), name
    lat = load_file(str(tmp_path / "a" / "data" / "train_latents.safetensors"))
    row = make_split(8, "train", cfg.data_seed)[0]
    x = lat[prompt_id(normalize_text(row["prompt"]))]
    assert tuple(x.shape) == (3, 9, 16, 16) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert np.array_equal(to_frames(x[None])[0], row["clip"])  # pixels in [-1, 1] read back exactly


def test_settings_parse_typed_and_bad_ones_are_refused(tmp_path):
    from direct_data.world.experiment import WORLD_MODEL, parse_overrides

    over = parse_overrides(["n_train=8", "shift=2.5", "seeds=[0, 4]", "llm-model=/models/x", "model={\"num_layers\": 1}"])
    assert over["n_train"] == 8 and over["shift"] == 2.5 and over["seeds"] == (0, 4) and over["llm_model"] == "/models/x"
    assert over["model"] == {**WORLD_MODEL, "num_layers": 1}
    cfg = quick_config(**over)
    assert cfg.seeds == (0, 4) and cfg.model["num_layers"] == 1
    app = typer.Typer()
    app.add_typer(world_app, name="world")
    for args, msg in ((["--set", "n_trian=8"], "unknown setting 'n_trian'"), (["--set", "n_train"], "KEY=VALUE"),
                      (["--stop-after", "judge"], "--stop-after must be one of"),
                      # checked with the settings, not when pretraining begins after the data stages
                      (["--set", "size=18"], "size: 18 is not a multiple of the model's patch size 4"),
                      (["--set", "frames=10", "--set", 'model={"patch_size": [3, 4, 4]}'], "frames: 10 is not a multiple"),
                      (["--set", 'model={"patch_size": [1, 0, 4]}'], "model.patch_size: expected three integers"),
                      # in the world's settings: k is at least 2, and `world run` has no --k
                      (["--set", "n_broad=1"], "n_broad: the broad split has 1 distinct caption; partitioning needs at least 2"),
                      (["--set", "n_train=3"], "k_train: 4 partitions for the 3 distinct captions of the train split; "
                                               "give k_train in 2..3")):
        r = runner.invoke(app, ["world", "run", "--quick", "--out", str(tmp_path / "w"), *args], env={"COLUMNS": "200"})
        assert r.exit_code == 2 and msg in r.output and "--k" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "w").exists()
    # repeated captions are merged after `generate`: the count is checked again then, in the same words
    from direct_data.core.errors import ConfigError
    from direct_data.world.experiment import check_partition_count

    with pytest.raises(ConfigError, match=r"k_broad: 4 partitions for the 3 distinct captions of the broad split \(n_broad = 5 drew 2 repeated captions\)"):
        check_partition_count("broad", 5, 4, 3)
    check_partition_count("broad", 5, None, 2)


def test_paired_bootstrap_is_deterministic_and_sees_real_differences():
    import numpy as np

    from direct_data.world.report import paired_bootstrap

    rng = np.random.default_rng(0)
    hard = rng.random((3, 256)) < 0.5                 # captions of varying difficulty, shared by both models
    a = hard & (rng.random((3, 256)) < 0.6)
    b = hard & (rng.random((3, 256)) < 0.9)           # b passes more of the same captions
    r = paired_bootstrap(a, b)
    assert r == paired_bootstrap(a, b) and r["n"] == 3 * 256
    assert r["lo"] < r["diff"] < r["hi"] and r["excludes_zero"] and r["diff"] > 0
    same = paired_bootstrap(a, a)
    assert same["diff"] == 0.0 and not same["excludes_zero"]
    # a mask keeps only some captions; an empty one gives no difference
    m = np.zeros(256, bool)
    m[:10] = True
    assert paired_bootstrap(a, b, m)["n"] == 30
    assert paired_bootstrap(a, b, np.zeros(256, bool))["diff"] is None
    # noise alone: 2 of 768 vs 4 of 768 is within it
    z = np.zeros((3, 256))
    z1, z2 = z.copy(), z.copy()
    z1[0, :2] = 1
    z2[1, 10:14] = 1
    assert not paired_bootstrap(z1, z2)["excludes_zero"]


def test_verdict_needs_a_difference_outside_the_noise():
    from direct_data.world.report import physics_noise

    def row(rates):
        import numpy as np

        a = np.asarray(rates)
        return {"physics": {"mean": float(a.mean()), "std": float(a.std()), "n": len(a)}, "n_per_seed": 64}

    # 2 vs 4 passing clips of 192: a ratio of 2, inside the noise
    small = physics_noise(row([0.0, 1 / 64, 1 / 64]), row([1 / 64, 2 / 64, 1 / 64]))
    assert small["clips_per_model"] == 192 and not small["physics_significant"]
    assert 0.01 < small["physics_se"] < 0.02
    # 10% vs 30%, steady over seeds: outside it
    big = physics_noise(row([0.10, 0.11, 0.09]), row([0.30, 0.31, 0.29]))
    assert big["physics_significant"] and abs(big["physics_diff"] - 0.2) < 1e-9
    # the same means with a wild seed spread: inside again
    wild = physics_noise(row([0.0, 0.3, 0.0]), row([0.6, 0.0, 0.3]))
    assert not wild["physics_significant"]


def test_validate_judge_command_reports_three_conditions():
    app = typer.Typer()
    app.add_typer(world_app, name="world")
    r = runner.invoke(app, ["world", "validate-judge", "--n", "8", "--seed", "3"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert set(res) == {"clean", "jitter", "noise_blur"} and res["jitter"]["jitter"] == 1.0
    assert res["clean"]["size"] == 16 and res["clean"]["true_physics"] == 1.0
    bad = runner.invoke(app, ["world", "validate-judge", "--size", "8"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_pool_workers_die_with_a_killed_run(tmp_path: Path) -> None:
    """`world run` trains in spawned pool workers; killing the run kills them too (before, a killed
    run's workers went on training, orphaned, on both cores)."""
    import os
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "pool.py"
    script.write_text(
        "import multiprocessing as mp, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from direct_data.world.experiment import die_with_parent\n"
        "def job(path):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n"
        "if __name__ == '__main__':\n"
        "    with ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'), initializer=die_with_parent,\n"
        "                             initargs=(os.getpid(),)) as pool:\n"
        "        pool.submit(job, sys.argv[1]).result()\n")
    run = subprocess.Popen([sys.executable, str(script), str(pid_file)])

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return False
        return state not in ("Z", "X")  # a zombie has exited

    deadline = time.time() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    assert alive(worker)
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.time() + 20
    while alive(worker) and time.time() < deadline:
        time.sleep(0.1)
    gone = not alive(worker)
    if not gone:
        os.kill(worker, signal.SIGKILL)
    assert gone, "the pool worker outlived its killed parent"

"""Bad inputs to the real CLI: each is a one-line error on stderr with exit code 2 (no traceback), or
rows accounted for with a reason. Regression tests of the cases the bad-input sweep found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from direct_data import pipeline
from direct_data.cli import app
from direct_data.core.manifest import read_table
from direct_data.core.read import read_prompts
from direct_data.stages.partition import PartitionConfig

runner = CliRunner()
PROMPTS = ["A red ball falls from a shelf onto a wooden floor.", "A glass of water tips over on a table.",
           "A wooden cube slides down a steep ramp.", "A kite rises into a windy sky.", "A rubber ball bounces on a concrete floor."]


def user_error(args: list[str], *needles: str) -> str:
    """Run `direct-data ARGS`: exit code 2, one line on stderr naming what is wrong, no traceback."""
    r = runner.invoke(app, args)
    err = r.stderr
    assert r.exit_code == 2, (r.exit_code, r.output, repr(r.exception))
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), repr(r.exception)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def jsonl(path: Path, rows: list[dict], prefix: bytes = b"") -> Path:
    path.write_bytes(prefix + "".join(json.dumps(r) + "\n" for r in rows).encode())
    return path


# --------------------------------------------------------------------------- usage errors, values


@pytest.mark.parametrize("args,needles", [
    (["train", "p", "e", "--out", "o", "--val-rows", "-1"], ("direct-data train", "--val-rows")),
    (["partition"], ("direct-data partition", "Missing argument")),
    (["partition", "x.jsonl", "--out", "o", "--no-such-flag"], ("No such option", "--no-such-flag")),
    (["no-such-command"], ("No such command",)),
    (["make-sample", "--n", "0"], ("--n",)),
    (["world", "run", "--seeds", "0"], ("direct-data world run", "--seeds")),
    (["world", "validate-judge", "--seed", "-1"], ("--seed",)),
])
def test_click_usage_errors_are_one_line(args, needles):
    # Click prints usage, a hint and the message (three lines): here one line, as every user error
    user_error(args, *needles)


@pytest.mark.parametrize("args,needles", [
    (["train", "p", "e", "--out", "o", "--lr", "nan"], ("lr", "finite", "nan")),
    (["train", "p", "e", "--out", "o", "--lr", "inf"], ("lr", "finite")),
    (["train", "p", "e", "--out", "o", "--set", "lr=NaN"], ("lr", "finite")),
    (["perturb", "x.jsonl", "--out", "o", "--temperature", "nan"], ("temperature", "finite")),
    (["perturb", "x.jsonl", "--out", "o", "--learnt-threshold", "nan"], ("learnt_threshold", "finite")),
    (["sample", "ck", "--prompt", "a", "--out", "o", "--shift", "nan"], ("shift", "finite")),
    (["sample", "ck", "--prompt", "a", "--out", "o", "--guidance", "nan"], ("guidance", "finite")),
    (["world", "validate-judge", "--n", "1", "--jitter", "inf"], ("--jitter", "finite")),
])
def test_non_finite_numbers_are_rejected(args, needles):
    # nan passed every range check (and inf every minimum): training crashed in torch, sampling in the scheduler
    user_error(args, *needles)


def test_model_overrides_sizes_are_checked():
    user_error(["train", "p", "e", "--out", "o", "--set", 'model_overrides={"num_layers": 0}'], "model_overrides", "num_layers", ">= 1")


@pytest.mark.parametrize("args,needles", [
    (["partition", "x.jsonl", "--out", "o", "--model", "/nonexistent/embedder"], ("--model /nonexistent/embedder", "no such folder")),
    (["encode", "p", "--out", "o", "--text-encoder", "/nonexistent/enc"], ("--text-encoder", "no such folder")),
    (["encode", "p", "--out", "o", "--video-column", "video", "--vae", "./no/such/vae"], ("--vae", "no such folder")),
    (["perturb", "x.jsonl", "--out", "o", "--backend", "vllm", "--model", "/nonexistent/llm"], ("--model", "no such folder")),
    (["validate", "x.jsonl", "--out", "o", "--fluency", "--fluency-model", "/nonexistent/lm"], ("--fluency-model", "no such folder")),
])
def test_missing_local_model_folder_is_a_config_error(args, needles):
    # a path that cannot be a hub id (absolute, ./, several slashes) and does not exist: before any work
    user_error(args, *needles)


def test_run_checks_the_train_table_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jsonl(tmp_path / "in.jsonl", [{"prompt": p} for p in PROMPTS])
    (tmp_path / "p.toml").write_text('[pipeline]\ninputs = ["in.jsonl"]\nout = "out"\nstop_after = "partition"\n[train]\nlr = nan\n')
    user_error(["run", "p.toml"], "lr", "finite")
    assert not (tmp_path / "out").exists()
    # a pipeline that reaches training with no latents configured fails before partition, not after encode
    (tmp_path / "p.toml").write_text('[pipeline]\ninputs = ["in.jsonl"]\nout = "out"\nstop_after = "train"\n')
    user_error(["run", "p.toml"], "[encode] names no vae", 'stop_after = "encode"')
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- input files


def test_utf8_bom_does_not_cost_the_first_row(tmp_path):
    rows = [{"prompt": p} for p in PROMPTS]
    plain = read_prompts([jsonl(tmp_path / "plain.jsonl", rows)])
    for name, data in (("bom.jsonl", b"\xef\xbb\xbf" + (tmp_path / "plain.jsonl").read_bytes()),
                       ("bom.txt", ("\ufeff" + "\n".join(PROMPTS) + "\n").encode()),
                       ("bom.json", ("\ufeff" + json.dumps(rows)).encode())):
        (tmp_path / name).write_bytes(data)
        rr = read_prompts([tmp_path / name])
        assert (rr.read, rr.kept, rr.rejects) == (5, 5, []), (name, rr.reasons())
        assert [p.prompt_id for p in rr.prompts] == [p.prompt_id for p in plain.prompts], name  # no \ufeff in the first prompt
    (tmp_path / "one.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(rows[0]).encode() + b"\n")  # was "cannot parse as JSON Lines"
    assert read_prompts([tmp_path / "one.jsonl"]).kept == 1


def test_compressed_text_files_read_as_their_plain_form(tmp_path):
    import bz2
    import gzip
    import lzma

    rows = [{"prompt": p} for p in PROMPTS] + [{"prompt": ""}, "not an object"]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    plain = read_prompts([jsonl(tmp_path / "plain.jsonl", rows)])
    assert (plain.kept, len(plain.rejects)) == (5, 2)
    for name, data in (("p.jsonl.gz", gzip.compress(body)), ("p.jsonl.bz2", bz2.compress(body)),
                       ("p.json.xz", lzma.compress(json.dumps(rows[:-1] + [7]).encode())),
                       ("p.csv.gz", gzip.compress(("prompt\n" + "\n".join(PROMPTS) + "\n").encode()))):
        (tmp_path / name).write_bytes(data)
        rr = read_prompts([tmp_path / name])
        assert [p.prompt_id for p in rr.prompts] == [p.prompt_id for p in plain.prompts], name
        assert rr.accounted() and len(rr.rejects) == (0 if name.endswith("csv.gz") else 2), (name, rr.reasons())
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(body)[:40])
    (tmp_path / "fake.jsonl.gz").write_bytes(body)
    (tmp_path / "p.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    for name, needle in (("cut.jsonl.gz", "cannot read"), ("fake.jsonl.gz", "cannot read"), ("p.parquet.gz", "Parquet compresses itself")):
        user_error(["validate", str(tmp_path / name), "--out", str(tmp_path / "o")], name, needle)


def test_lone_surrogates_and_textless_prompts_are_rejects_not_crashes(tmp_path):
    """A JSON "\\ud800" decodes to a string no UTF-8 writer or tokenizer takes: a reject row in the
    prompt's column, escaped JSON in another column; a prompt of control or zero-width characters is empty."""
    lines = ['{"prompt": "A ball \\ud800 rolls down a hill."}', '{"prompt": "\\u0000\\u0001\\u0002"}', '{"prompt": "\\u200b\\u200b"}',
             '{"prompt": "A ball rolls down a hill.", "note": "x \\ud800 y"}'] + [json.dumps({"prompt": p}) for p in PROMPTS[:3]]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    rr = read_prompts([tmp_path / "p.jsonl"])
    assert sorted((r.row, r.reason) for r in rr.rejects) == [(0, "not_utf8"), (1, "empty"), (2, "empty")]
    out = tmp_path / "part"
    r = runner.invoke(app, ["partition", str(tmp_path / "p.jsonl"), "--out", str(out), "--k", "2"])
    assert r.exit_code == 0, r.output
    meta = [json.loads(x["meta"]) for x in read_table(out, "partitions").to_pylist() if x["meta"] != "{}"]
    assert meta == [{"note": "x \ud800 y"}]  # written as ASCII-escaped JSON, read back as it came
    rows = [{"prompt": "A ball \ud800 rolls down a hill.", "axis": "kinematics", "negative": "A ball rolls up a hill."},
            {"prompt": "A ball rolls down a hill.", "axis": "kinematics", "negative": "A ball \udfff rolls up a hill."}]
    (tmp_path / "v.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    for mode in ("learnt", "lexicon"):
        r = runner.invoke(app, ["validate", str(tmp_path / "v.jsonl"), "--validator", mode, "--out", str(tmp_path / mode)])
        assert r.exit_code == 0, r.output
        got = read_table(tmp_path / mode, "verdicts").to_pylist()
        assert [(x["reason"], x["detail"]) for x in got] == [("schema", "the prompt is not valid Unicode (character 7)"),
                                                            ("schema", "the negative is not valid Unicode (character 7)")]
        assert got[0]["prompt"] == "A ball \\ud800 rolls down a hill."


def test_an_unreachable_ray_address_is_one_error_at_once(tmp_path, monkeypatch):
    """Ray itself retries for minutes before it gives up on an address nobody listens at."""
    import socket
    import time

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in PROMPTS])
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        t0 = time.perf_counter()
        user_error(["partition", str(tmp_path / "p.jsonl"), "--executor", "ray", "--ray-address", address, "--out", str(tmp_path / "o")],
                   address, "no Ray cluster answers there")
        assert time.perf_counter() - t0 < 30


def test_json_nested_too_deeply_is_a_reject_or_one_error(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "p.jsonl").write_text("\n".join([json.dumps({"prompt": PROMPTS[0]}), deep, json.dumps({"prompt": PROMPTS[1]})]) + "\n")
    rr = read_prompts([tmp_path / "p.jsonl"])
    assert (rr.kept, [(r.row, r.reason, r.detail) for r in rr.rejects]) == (2, [(1, "invalid_json", "JSON nested too deeply")])
    (tmp_path / "p.json").write_text(deep)
    user_error(["partition", str(tmp_path / "p.json"), "--out", str(tmp_path / "o")], "p.json", "nested too deeply")
    (tmp_path / "l.jsonl").write_text(deep + "\n")
    user_error(["validator", "eval", "--labelled", str(tmp_path / "l.jsonl")], "l.jsonl:1", "not a labelled row")


def test_a_csv_field_over_128_kb_is_one_too_long_row(tmp_path):
    import csv

    with open(tmp_path / "p.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["prompt"], ["word " * 40_000], *([p] for p in PROMPTS)])
    rr = read_prompts([tmp_path / "p.csv"])
    assert (rr.kept, [(r.row, r.reason) for r in rr.rejects]) == (5, [(1, "too_long")])


def test_validate_of_an_empty_file_is_an_error(tmp_path):
    for content in (b"", b"\n  \n\r\n"):
        (tmp_path / "e.jsonl").write_bytes(content)
        user_error(["validate", str(tmp_path / "e.jsonl"), "--out", str(tmp_path / "o")], "e.jsonl", "no rows")
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("out,needles", [("s.csv", ("s.csv", ".jsonl")), ("f/s.jsonl", ("f/s.jsonl", "cannot create"))])
def test_make_sample_refuses_an_unusable_out(tmp_path, out, needles):
    (tmp_path / "f").write_text("a file, not a folder")
    user_error(["make-sample", "--n", "2", "--out", str(tmp_path / out)], *needles)


# --------------------------------------------------------------------------- encode (a real partition output)


@pytest.fixture(scope="module")
def part_dir(tmp_path_factory, session_cache) -> Path:
    d = tmp_path_factory.mktemp("bad_encode")
    rows = [{"prompt": p, "video": str(d / f"{i}.gif")} for i, p in enumerate(PROMPTS)]
    pipeline.partition([jsonl(d / "in.jsonl", rows)], d / "part", PartitionConfig(k=2, macro_negatives=1))
    return d / "part"


def test_encode_garbage_latents_file_is_one_error(tmp_path, part_dir):
    (tmp_path / "l.safetensors").write_bytes(b"garbage")
    user_error(["encode", str(part_dir), "--latents", str(tmp_path / "l.safetensors"), "--out", str(tmp_path / "o")],
               "--latents", "not a safetensors file")


def test_encode_unloadable_models_are_one_error(tmp_path, part_dir):
    (tmp_path / "empty").mkdir()
    user_error(["encode", str(part_dir), "--text-encoder", str(tmp_path / "empty"), "--out", str(tmp_path / "o1")],
               "--text-encoder", "cannot load it")
    # a VAE that cannot load is one error, not a `latent_unavailable` reject for every clip (exit 0)
    user_error(["encode", str(part_dir), "--video-column", "video", "--vae", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")],
               "--vae", "cannot load it")


# --------------------------------------------------------------------------- world


def test_world_bad_settings_and_results(tmp_path):
    for setting, needle in (("n_train=-1", "n_train"), ('n_train="x"', "n_train"), ("pretrain_lr=NaN", "pretrain_lr"),
                            ("seeds=[]", "seeds")):
        user_error(["world", "run", "--quick", "--set", setting, "--out", str(tmp_path / "w")], needle)
    long = user_error(["world", "run", "--set", "no_such_setting=1", "--out", str(tmp_path / "w")], "no_such_setting")
    assert len(long) > 200  # the list of known settings, still one line
    (tmp_path / "f").write_text("x")
    user_error(["world", "run", "--quick", "--stop-after", "generate", "--out", str(tmp_path / "f")], "is a file")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{oops")
    user_error(["world", "report", str(tmp_path / "bad")], "results.json", "not a results file")
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "results.json").write_text('{"config": {}, "generate": {}}')
    user_error(["world", "report", str(tmp_path / "stopped")], "no evaluation")
    assert not (tmp_path / "w").exists()


def test_library_progress_bars_are_off_without_a_terminal():
    # "Loading weights: 100%|..." on a piped stderr made a one-line error three lines (and filled logs)
    import transformers
    from huggingface_hub.utils import are_progress_bars_disabled

    transformers.utils.logging.enable_progress_bar()  # transformers reads the hub's flag once, at import
    runner.invoke(app, ["make-sample", "--n", "0"])
    assert are_progress_bars_disabled()
    assert not transformers.utils.logging.is_progress_bar_enabled()


def test_a_folder_that_is_not_an_embedding_model_is_one_error(tmp_path):
    data = jsonl(tmp_path / "in.jsonl", [{"prompt": p} for p in PROMPTS])
    (tmp_path / "m").mkdir()
    user_error(["partition", str(data), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "m")], "embedding model", "cannot load it")


@pytest.mark.parametrize("text", ["{oops\n", "[1, 2]\n", '{"id": "x"}\n'])
def test_validator_eval_on_a_malformed_labelled_file_is_one_error(tmp_path, text):
    bad = tmp_path / "labelled.jsonl"
    bad.write_text(text)
    user_error(["validator", "eval", "--labelled", str(bad)], "labelled.jsonl:1", "not a labelled row")

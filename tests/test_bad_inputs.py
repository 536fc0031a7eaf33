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
    user_error(["train", "p", "e", "--out", "o", "--set", 'model_overrides={"num_layers": 0}'], "model_overrides", "num_layers", "1..65536")
    user_error(["train", "p", "e", "--out", "o", "--set", f'model_overrides={{"ffn_dim": {10**11}}}'], "model_overrides", "ffn_dim", "1..65536")


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


@pytest.mark.parametrize("args,needles", [
    (["validate", "x.jsonl", "--out", "o", "--judge", "openai", "--judge-model", "m", "--judge-url", "notaurl"],
     ("--judge-url notaurl", "http:// or https://")),
    (["validate", "x.jsonl", "--out", "o", "--judge", "openai", "--judge-model", "m", "--judge-url", "http://[::1"],
     ("--judge-url", "not a URL")),
    (["validate", "x.jsonl", "--out", "o", "--judge", "openai", "--judge-model", "m", "--judge-url", "http://h:99999/v1"],
     ("--judge-url", "not a URL")),
    (["perturb", "x.jsonl", "--out", "o", "--backend", "openai", "--model", "m", "--base-url", "localhost:8000"],
     ("--base-url localhost:8000", "http:// or https://")),
    (["perturb", "x.jsonl", "--out", "o", "--judge", "openai", "--judge-model", "m", "--judge-url", "ftp://h/v1"],
     ("--judge-url ftp://h/v1", "http:// or https://")),
])
def test_a_server_url_that_cannot_work_is_a_config_error(args, needles):
    # before any work, not after the client's five tries (a URL with no scheme) or a traceback (a bad host or port)
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
    # so are the [pipeline] sample prompts and the [sample] table's vae, which only the last step reads
    (tmp_path / "p.toml").write_text('[pipeline]\ninputs = ["in.jsonl"]\nout = "out"\nsample_prompts = ["A ball.", " "]\n')
    user_error(["run", "p.toml"], "sample_prompts", "prompt 1 is empty")
    (tmp_path / "p.toml").write_text('[pipeline]\ninputs = ["in.jsonl"]\nout = "out"\n[encode]\nvae = "pixels"\nvideo_column = "video"\n'
                                     '[sample]\nvae = "/nonexistent/vae"\n')
    user_error(["run", "p.toml"], "vae /nonexistent/vae", "no such folder")
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


def test_json_numbers_past_the_digit_limit_and_repeated_keys_are_rejects(tmp_path):
    """An integer of 5,000 digits (past Python's int-from-string limit) or a key named twice in one
    object (the json module would keep the last value, silently) is an `invalid_json` reject in
    JSON Lines, and one error in a `.json` file."""
    rows = [json.dumps({"prompt": PROMPTS[0]}), '{"prompt": "A stone falls.", "id": ' + "9" * 5000 + "}",
            '{"prompt": "a", "prompt": "A kite rises."}', json.dumps({"prompt": PROMPTS[1]})]
    (tmp_path / "p.jsonl").write_text("\n".join(rows) + "\n")
    rr = read_prompts([tmp_path / "p.jsonl"])
    assert rr.kept == 2 and rr.accounted(), rr
    assert [(r.row, r.reason) for r in rr.rejects] == [(1, "invalid_json"), (2, "invalid_json")]
    assert "4300 digits" in rr.rejects[0].detail and "'prompt' appears twice" in rr.rejects[1].detail
    (tmp_path / "p.json").write_text('[{"prompt": "x", "id": ' + "9" * 5000 + "}]")
    user_error(["partition", str(tmp_path / "p.json"), "--out", str(tmp_path / "o")], "p.json", "4300 digits")
    (tmp_path / "q.json").write_text('[{"prompt": "x", "prompt": "y"}]')
    user_error(["perturb", str(tmp_path / "q.json"), "--out", str(tmp_path / "o")], "q.json", "appears twice")


def test_validate_says_why_a_row_could_not_be_read(tmp_path):
    # the reader's own message (a JSON error, a repeated key), not a generic "must be strings"
    good = {"prompt": PROMPTS[0], "axis": "kinematics", "negative": PROMPTS[0].replace("falls from", "rises from")}
    (tmp_path / "v.jsonl").write_text(json.dumps(good) + "\n" + '{"prompt": "x", "prompt": "y", "axis": "forces", "negative": "z"}\n'
                                      + '{"prompt": "broken\n')
    r = runner.invoke(app, ["validate", str(tmp_path / "v.jsonl"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    got = read_table(tmp_path / "o", "verdicts").to_pylist()
    assert [(x["row"], x["reason"]) for x in got[1:]] == [(1, "schema"), (2, "schema")]
    assert "'prompt' appears twice" in got[1]["detail"] and got[2]["detail"].startswith("JSON error"), got


def test_a_parquet_column_named_twice_is_one_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_arrays([pa.array(PROMPTS[:3]), pa.array(PROMPTS[2:])], names=["prompt", "prompt"]), tmp_path / "d.parquet")
    user_error(["partition", str(tmp_path / "d.parquet"), "--out", str(tmp_path / "o")], "d.parquet", "'prompt' more than once")


def test_a_text_file_with_cr_only_line_ends_keeps_its_lines(tmp_path):
    # an old-Mac file: a lone CR ends a line, as in the CSV reader; the lines are not fused into one prompt
    (tmp_path / "p.txt").write_bytes("\r".join(PROMPTS[:3]).encode() + b"\r\n" + "\n".join(PROMPTS[3:]).encode() + b"\n")
    rr = read_prompts([tmp_path / "p.txt"])
    assert [p.prompt for p in rr.prompts] == PROMPTS and rr.accounted()


def test_a_datasets_folder_saved_with_no_rows_reads_as_no_rows(tmp_path):
    # `datasets` itself fails on these (IndexError) and the message was "list index out of range"
    import datasets

    datasets.Dataset.from_dict({"prompt": []}).save_to_disk(str(tmp_path / "empty"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": PROMPTS[:2]}),
                          "test": datasets.Dataset.from_dict({"prompt": []})}).save_to_disk(str(tmp_path / "dd"))
    rr = read_prompts([tmp_path / "empty", tmp_path / "dd"])
    assert [p.prompt for p in rr.prompts] == PROMPTS[:2] and rr.accounted()
    user_error(["partition", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], "no rows")
    (tmp_path / "dd" / "dataset_dict.json").write_text('{"splits": ["../elsewhere"]}')
    user_error(["partition", str(tmp_path / "dd"), "--out", str(tmp_path / "o")], "dataset_dict.json", "splits")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,value", [("--seed", str(2**31)), ("--niter", str(2**31)), ("--max-points-per-centroid", str(2**31)),
                                        ("--macro-negatives", str(10**20))])
def test_partition_numbers_past_what_faiss_takes_are_one_line(tmp_path, flag, value):
    jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in PROMPTS])
    user_error(["partition", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "o"), flag, value], flag[2:].replace("-", "_"), "must be <=")
    assert not (tmp_path / "o").exists()


def test_a_second_writer_of_the_same_out_is_refused_at_once(tmp_path):
    """Two processes writing one `--out` would interleave their shards and manifests: while one holds
    the folder (the runner's lock), another is refused in one line and writes nothing; after it, the
    folder is usable again."""
    import fcntl
    import os

    jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in PROMPTS])
    out = tmp_path / "o"
    assert runner.invoke(app, ["partition", str(tmp_path / "p.jsonl"), "--out", str(out), "--k", "2"]).exit_code == 0
    before = {p: p.read_bytes() for p in out.iterdir() if p.is_file()}
    fd = os.open(out / ".direct-data" / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a run in progress holds
    try:
        user_error(["partition", str(tmp_path / "p.jsonl"), "--out", str(out), "--k", "3"], str(out), "another direct-data process")
        assert {p: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    finally:
        os.close(fd)
    assert runner.invoke(app, ["partition", str(tmp_path / "p.jsonl"), "--out", str(out), "--k", "3"]).exit_code == 0


def test_validator_eval_of_one_kind_of_row_has_no_rate_for_the_other(tmp_path):
    # a labelled file of good rows only (or bad rows only): the other side's rate is "-", not a crash
    from direct_data.text import learnt

    rows = [json.loads(x) for x in learnt.DEFAULT_LABELLED.read_text(encoding="utf-8").splitlines() if '"split": "dev"' in x]
    for label, keep in (("good", lambda r: r["label"] == "good"), ("bad", lambda r: r["label"] != "good")):
        (tmp_path / f"{label}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [r for r in rows if keep(r)][:2]))
        r = runner.invoke(app, ["validator", "eval", "--labelled", str(tmp_path / f"{label}.jsonl")])
        assert r.exit_code == 0 and r.exception is None, (r.output, repr(r.exception))
        assert ("bad rejected -" if label == "good" else "good kept -") in r.stdout, r.stdout
        res = json.loads(runner.invoke(app, ["validator", "eval", "--labelled", str(tmp_path / f"{label}.jsonl"), "--json"]).stdout)
        assert (res["bad_rejected"] is None) == (label == "good") and (res["good_kept"] is None) == (label == "bad")


def test_a_stage_reading_a_shared_toml_checks_every_table(tmp_path):
    # `partition --config f.toml` with a typo in f.toml's [perturb] table: found now, as `run` finds it
    jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in PROMPTS])
    (tmp_path / "f.toml").write_text("[partition]\nniter = 5\n[perturb]\nbogus = 1\n")
    user_error(["partition", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "f.toml")],
               "f.toml", "unknown key in [perturb]: bogus")


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
    from direct_data.world.experiment import WORLD_MARKER

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{oops")
    user_error(["world", "report", str(tmp_path / "bad")], "bad", "not a folder `direct-data world run` wrote")
    (tmp_path / "bad" / WORLD_MARKER).write_text("{}")  # a world run's folder (its marker) with a broken results.json
    user_error(["world", "report", str(tmp_path / "bad")], "results.json", "not a results file")
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / WORLD_MARKER).write_text("{}")
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


def test_validator_eval_refuses_a_labelled_row_id_given_twice(tmp_path):
    # the same row pasted twice counted twice in every rate
    from direct_data.text.learnt import DEFAULT_LABELLED

    lines = [x for x in DEFAULT_LABELLED.read_text().splitlines() if '"split": "dev"' in x][:3]
    bad = tmp_path / "labelled.jsonl"
    bad.write_text("\n".join([*lines, lines[1]]) + "\n")
    rid = json.loads(lines[1])["id"]
    user_error(["validator", "eval", "--labelled", str(bad), "--mode", "lexicon"], "labelled.jsonl:4", repr(rid), "line 2")


# --------------------------------------------------------------------------- a later sweep: absurd numbers, NaN meta, make-sample


@pytest.mark.parametrize("args,needles", [
    (["world", "validate-judge", "--n", "1", "--frames", "10000000000"], ("--frames", "256")),
    (["world", "validate-judge", "--n", "1", "--size", "100000000"], ("--size", "256")),
    (["world", "validate-judge", "--n", str(10**20)], ("--n", "1000000")),
    (["world", "validate-judge", "--n", "1", "--seed", str(2**63)], ("--seed", str(2**63 - 1))),
    (["world", "validate-judge", "--n", "1", "--jitter", "1e308"], ("--jitter", "0..256")),
    (["world", "validate-judge", "--n", "1000000", "--frames", "256", "--size", "256"], ("GiB in memory", "at most 8 GiB")),
    (["world", "run", "--seeds", "100000"], ("--seeds", "1000")),
    (["world", "run", "--workers", str(10**12)], ("--workers", "1024")),
    (["world", "run", "--threads", str(10**12)], ("--threads", "1024")),
    (["world", "run", "--quick", "--set", "frames=10000000000"], ("frames", "1..256")),
    (["world", "run", "--quick", "--set", f"pretrain_steps={10**20}"], ("pretrain_steps", "1..1000000000")),
    (["world", "run", "--quick", "--set", "shift=1e308"], ("shift", "0..1000")),
    (["world", "run", "--quick", "--set", "pretrain_lr=1e300"], ("pretrain_lr", "0..10")),
    (["world", "run", "--quick", "--set", "n_train=900000000"], ("n_train", "GiB in memory")),
    (["world", "run", "--quick", "--set", f"seeds=[0, {2**64}]"], ("seeds", "2**63 - 1")),
    (["world", "run", "--quick", "--set", "seeds=5"], ("seeds", "a non-empty list", "got 5")),  # was a TypeError
    (["world", "run", "--quick", "--set", "variants=5"], ("variants", "a list of variant names")),  # a TypeError too
    (["world", "run", "--quick", "--set", "model=5"], ("model", "an object")),  # and this one
    (["world", "run", "--quick", "--set", f'model={{"num_layers": {10**11}}}'], ("model", "num_layers", "1..65536")),
])
def test_world_absurd_numbers_are_one_line(tmp_path, args, needles):
    # a traceback before (numpy's OverflowError or MemoryError), or a run that would never end
    if args[1] == "run":
        args = [*args, "--out", str(tmp_path / "w")]
    user_error(args, *needles)
    assert not (tmp_path / "w").exists()


def test_world_validate_judge_takes_its_largest_jitter():
    r = runner.invoke(app, ["world", "validate-judge", "--n", "2", "--jitter", "256"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["jitter"]["jitter"] == 256.0


@pytest.mark.parametrize("args,needles", [
    (["train", "p", "e", "--out", "o", "--max-steps", str(10**20)], ("max_steps", "<= 1000000000")),
    (["train", "p", "e", "--out", "o", "--batch-size", str(10**10)], ("batch_size", "<= 1000000")),
    (["train", "p", "e", "--out", "o", "--set", f"warmup_steps={10**10}"], ("warmup_steps", "<= 1000000000")),
    (["train", "p", "e", "--out", "o", "--set", f"ckpt_every={10**10}"], ("ckpt_every", "<= 1000000000")),
    (["train", "p", "e", "--out", "o", "--val-rows", str(10**10)], ("--val-rows", "1000000")),
    (["sample", "ck", "--prompt", "a", "--out", "o", "--fps", str(10**10)], ("fps", "<= 1000")),
    (["sample", "ck", "--prompt", "a", "--out", "o", "--batch-size", str(10**10)], ("batch_size", "<= 1000000")),
    (["make-sample", "--n", str(10**10)], ("--n", "10000000")),
])
def test_absurd_step_and_batch_counts_are_one_line(args, needles):
    # `train --max-steps 1e20` ran (a run that never ends): every count has a declared maximum
    user_error(args, *needles)


def test_train_help_says_the_step_bound():
    r = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    line = next(x for x in r.stdout.splitlines() if "--max-steps" in x)
    assert "Range: 1..1000000000" in line, line


@pytest.mark.parametrize("value,needles", [
    ("1,1", ("betas must be two values in [0, 1)", "--set betas=0.9,0.999", "got [1.0, 1.0]")),
    ("[1,1]", ("betas must be two values in [0, 1)", "e.g. betas = [0.9, 0.999]", "got [1.0, 1.0]")),
    ("0.5", ("betas: expected list of 2 numbers", "on the command line a,b", "got 0.5")),
    ("0.9,0.99,0.5", ("betas: expected list of 2 numbers", "got [0.9, 0.99, 0.5]")),
    ("a,b", ("betas: expected list of 2 numbers", "got ['a', 'b']")),
])
def test_set_betas_says_what_is_expected(value, needles):
    # was "betas: expected number, got '1,1'": neither a list nor the bounds were mentioned
    user_error(["train", "p", "e", "--out", "o", "--set", f"betas={value}"], *needles)


def test_set_betas_takes_the_comma_form_of_the_flags():
    # accepted: the run gets as far as its first input (which does not exist here)
    user_error(["train", "p", "e", "--out", "o", "--set", "betas=0.9,0.99", "--set", "lora_targets=to_q,to_v"], "p: no such folder")


def test_non_finite_meta_values_are_null_in_strict_json(tmp_path):
    """NaN / inf in an extra column (Parquet floats, JSON's NaN) were written into `meta` as `NaN`,
    which is not JSON: now null, and every row is kept (the value is not the prompt)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    nan, inf = float("nan"), float("inf")
    pq.write_table(pa.table({"prompt": PROMPTS, "score": [1.0, nan, inf, -inf, None], "v": [[0.5, nan]] * 5}), tmp_path / "p.parquet")
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": p, "x": {"s": s}}) + "\n" for p, s in zip(PROMPTS, [nan, inf, 2, -inf, 0.5])))

    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}"))

    for name, want in (("p.parquet", [{"score": 1.0, "v": [0.5, None]}] + [{"score": None, "v": [0.5, None]}] * 4),
                       ("p.jsonl", [{"x": {"s": v}} for v in (None, None, 2, None, 0.5)])):
        out = tmp_path / f"o-{name}"
        r = runner.invoke(app, ["partition", str(tmp_path / name), "--out", str(out), "--k", "2"])
        assert r.exit_code == 0, r.output
        rows = {x["prompt"]: strict(x["meta"]) for x in read_table(out, "partitions").to_pylist()}
        assert [rows[p] for p in PROMPTS] == want, name  # all five rows kept


def test_make_sample_clip_paths_resolve_from_any_working_directory(tmp_path, monkeypatch, session_cache):
    """The `video` column held paths relative to the working directory of make-sample: the sample
    broke when read from anywhere else. Now absolute; `encode` still reads older, relative ones."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    r = runner.invoke(app, ["make-sample", "--clips", "--n", "4", "--out", "s.jsonl"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "a" / "s.jsonl").read_text().splitlines()]
    assert [Path(x["video"]) for x in rows] == [tmp_path.resolve() / "a" / "s-clips" / f"{i:05d}.gif" for i in range(4)]
    # an older sample: the same rows with the paths relative to where make-sample ran
    jsonl(tmp_path / "a" / "old.jsonl", [{**x, "video": f"s-clips/{i:05d}.gif"} for i, x in enumerate(rows)])
    for cwd, name in ((tmp_path / "b", "../a/s.jsonl"), (tmp_path / "a", "old.jsonl")):
        monkeypatch.chdir(cwd)
        for cmd in (["partition", name, "--out", "part", "--k", "2"],
                    ["encode", "part", "--video-column", "video", "--vae", "pixels", "--out", "enc"]):
            r = runner.invoke(app, cmd)
            assert r.exit_code == 0, (cwd, cmd, r.output)
        assert read_table("enc", "rejects").num_rows == 0, (cwd, read_table("enc", "rejects").to_pylist())
        assert read_table("enc", "latents").num_rows == len(read_table("part", "partitions")), cwd


def test_make_sample_never_overwrites_a_file_it_did_not_write(tmp_path):
    mine = tmp_path / "notes.jsonl"
    mine.write_text('{"prompt": "my own prompt"}\n')
    user_error(["make-sample", "--n", "2", "--out", str(mine)], "notes.jsonl", "not a sample make-sample wrote")
    assert mine.read_text() == '{"prompt": "my own prompt"}\n'
    # its own earlier output is rewritten (a shorter sample drops its own stale clips)
    out = tmp_path / "s.jsonl"
    for n in (3, 2):
        r = runner.invoke(app, ["make-sample", "--clips", "--n", str(n), "--out", str(out)])
        assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 2
    assert sorted(x.name for x in (tmp_path / "s-clips").iterdir()) == ["00000.gif", "00001.gif"]
    # a user's file in the clips folder, or a clips folder beside no sample of its own: refused, untouched
    (tmp_path / "s-clips" / "keep.txt").write_text("mine")
    user_error(["make-sample", "--clips", "--n", "2", "--out", str(out)], "s-clips", "did not write (keep.txt)")
    assert (tmp_path / "s-clips" / "keep.txt").read_text() == "mine"
    (tmp_path / "s-clips" / "keep.txt").unlink()
    edited = out.read_text() + '{"prompt": "a line the user added"}\n'
    out.write_text(edited)
    user_error(["make-sample", "--n", "2", "--out", str(out)], "not a sample make-sample wrote")
    assert out.read_text() == edited
    out.unlink()
    user_error(["make-sample", "--clips", "--n", "2", "--out", str(out)], "s-clips", "not make-sample's own earlier output")
    assert not out.exists()


def _hub_unreachable(tmp_path: Path, args: list[str], what: str, hub_id: str) -> None:
    """Run `direct-data ARGS` with `HF_ENDPOINT` at a closed local port and an empty hub cache: exit
    2, the last line names the model and the endpoint, no traceback, no retries."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "hub"))
    r = subprocess.run([sys.executable, "-m", "direct_data.cli", *args], env=env, capture_output=True, text=True, timeout=600)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
    assert lines[-1].startswith(f"error: {what} {hub_id}: ") and "http://127.0.0.1:9 cannot be reached" in lines[-1], lines
    assert not any("Retrying" in x for x in lines), lines


def test_a_hub_id_nobody_can_fetch_is_one_error_at_once(tmp_path, part_dir):
    """A model named by hub id, not cached, when the hub cannot be reached (here `HF_ENDPOINT` is a
    closed local port; on a machine without internet, the DNS lookup fails): one line naming the
    model and the endpoint, exit 2, from one request without retries. Before, huggingface_hub
    retried for over a minute and printed its warnings first."""
    hub_id = "nobody/no-such-model"
    prompts = jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in PROMPTS])
    _hub_unreachable(tmp_path, ["partition", str(prompts), "--out", str(tmp_path / "o1"), "--k", "2", "--model", hub_id], "embedding model", hub_id)
    _hub_unreachable(tmp_path, ["encode", str(part_dir), "--out", str(tmp_path / "o2"), "--text-encoder", hub_id], "text encoder", hub_id)
    _hub_unreachable(tmp_path, ["encode", str(part_dir), "--out", str(tmp_path / "o3"), "--video-column", "video", "--vae", hub_id], "vae", hub_id)


@pytest.mark.vllm
def test_an_llm_hub_id_nobody_can_fetch_is_one_error_at_once(tmp_path):
    """The same for `perturb --backend vllm --model HUB_ID`, before the engine starts."""
    hub_id = "nobody/no-such-llm"
    prompts = jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in PROMPTS])
    _hub_unreachable(tmp_path, ["perturb", str(prompts), "--out", str(tmp_path / "o"), "--backend", "vllm", "--model", hub_id], "LLM", hub_id)


@pytest.mark.vllm
def test_a_folder_that_holds_no_llm_is_one_error(tmp_path):
    """`perturb --backend vllm --model DIR` with an empty folder, and `validate --judge vllm
    --judge-model DIR` with a folder that has a config but no weights: exit 2, the last line names
    the folder, no traceback (before: vLLM's pydantic ValidationError, or its RuntimeError from the
    weight loader, reached the user)."""
    import subprocess
    import sys

    empty, no_weights = tmp_path / "empty", tmp_path / "config_only"
    empty.mkdir()
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    prompts = jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in PROMPTS])
    rows = jsonl(tmp_path / "v.jsonl", [{"prompt": PROMPTS[0], "axis": "kinematics", "negative": PROMPTS[0] + " It rolls backwards."}])
    for args, folder in ((["perturb", str(prompts), "--out", str(tmp_path / "o1"), "--backend", "vllm", "--model", str(empty)], empty),
                         (["validate", str(rows), "--out", str(tmp_path / "o2"), "--judge", "vllm", "--judge-model", str(no_weights)], no_weights)):
        r = subprocess.run([sys.executable, "-m", "direct_data.cli", *args], capture_output=True, text=True, timeout=600)
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
        assert lines[-1].startswith(f"error: vLLM model {folder}: "), lines[-1]

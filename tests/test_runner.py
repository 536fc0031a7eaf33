"""The stage runner: ownership of --out, verified inputs, up-to-date reasons, config checks, and the
CLI's one-line user errors. Real stages on real prompts (MiniLM, FAISS, rules backend), no mocks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from direct_data import pipeline
from direct_data.cli import app
from direct_data.core.errors import ConfigError, InputError, OutputError
from direct_data.core.manifest import Manifest, read_table
from direct_data.stages.partition import PartitionConfig
from direct_data.stages.perturb import PerturbConfig

from .conftest import PHYSICS_SOURCES, SHARED_PROMPTS

runner = CliRunner()


def _prompts(path: Path, n: int, offset: int = 0) -> Path:
    rows = [json.loads(x) for x in (SHARED_PROMPTS / PHYSICS_SOURCES[2]).read_text().splitlines()][offset : offset + n]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": r.get("prompt") or r.get("caption")}) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def stages(tmp_path_factory, session_cache):
    """A partition and a perturb output of 40 real prompts, made once (tests copy them to modify)."""
    d = tmp_path_factory.mktemp("stages")
    data = _prompts(d / "in" / "prompts.jsonl", 40)
    pipeline.partition([data], d / "part", PartitionConfig(k=4))
    pipeline.perturb(d / "part", d / "neg", PerturbConfig(axes=("kinematics", "forces")))
    return d


def _cli(*args: str) -> tuple[int, str, str]:
    r = subprocess.run([sys.executable, "-m", "direct_data.cli", *args], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
    return r.returncode, r.stdout, r.stderr


def _user_error(code: int, err: str, *needles: str) -> None:
    """Exit code 2, one line on stderr, no traceback, and the line says what is wrong."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


# --------------------------------------------------------------------------- ownership of --out


def test_an_input_inside_out_is_refused_and_nothing_is_deleted(tmp_path, session_cache):
    d = tmp_path / "dir"
    data = _prompts(d / "prompts.jsonl", 20)
    (d / "other.parquet").write_bytes(b"not ours")
    code, _, err = _cli("partition", str(data), "--out", str(d), "--k", "2")
    _user_error(code, err, "holds the input")
    assert data.is_file() and (d / "other.parquet").read_bytes() == b"not ours"
    assert sorted(p.name for p in d.iterdir()) == ["other.parquet", "prompts.jsonl"]


def test_output_equal_to_input_is_refused(stages, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(stages / "part", part)
    before = {p.name: p.read_bytes() for p in part.iterdir() if p.is_file()}
    for extra in ([], ["--force"]):
        code, _, err = _cli("perturb", str(part), "--out", str(part), *extra)
        _user_error(code, err, "also an input")
    assert {p.name: p.read_bytes() for p in part.iterdir() if p.is_file()} == before


def test_another_stage_output_is_never_overwritten_even_with_force(stages, tmp_path):
    neg = tmp_path / "neg"
    shutil.copytree(stages / "neg", neg)
    data = _prompts(tmp_path / "p.jsonl", 20)
    before = sorted(p.name for p in neg.iterdir())
    for extra in ([], ["--force"]):
        code, _, err = _cli("partition", str(data), "--out", str(neg), "--k", "2", *extra)
        _user_error(code, err, "`perturb` output")
    assert sorted(p.name for p in neg.iterdir()) == before
    assert read_table(neg, "negatives").num_rows > 0


def test_a_foreign_file_in_an_owned_folder_is_refused_and_survives(stages, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(stages / "part", part)
    (part / "notes.txt").write_text("mine")
    data = stages / "in" / "prompts.jsonl"
    for extra in ([], ["--force"]):
        code, _, err = _cli("partition", str(data), "--out", str(part), "--k", "3", *extra)
        _user_error(code, err, "notes.txt")
    assert (part / "notes.txt").read_text() == "mine"


def test_out_is_a_file_or_unwritable(tmp_path, session_cache):
    data = _prompts(tmp_path / "p.jsonl", 20)
    f = tmp_path / "afile"
    f.write_text("x")
    code, _, err = _cli("partition", str(data), "--out", str(f), "--k", "2")
    _user_error(code, err, "is a file")
    code, _, err = _cli("partition", str(data), "--out", str(f / "sub"), "--k", "2")  # a file as the parent folder
    _user_error(code, err, "cannot write")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        code, _, err = _cli("partition", str(data), "--out", str(ro / "o"), "--k", "2")
        _user_error(code, err, "cannot write")
    assert f.read_text() == "x"


def test_rerun_deletes_only_its_own_stale_shards(stages, tmp_path):
    """A smaller rerun (shard_rows changed) removes the shards of the earlier run, nothing else."""
    part = tmp_path / "part"
    data = stages / "in" / "prompts.jsonl"
    a = pipeline.partition([data], part, PartitionConfig(k=4, shard_rows=10))
    assert len(a.manifest.shards["partitions"]) == 4
    b = pipeline.partition([data], part, PartitionConfig(k=4, shard_rows=100))
    assert b.reason.startswith("config changed: shard_rows 10 -> 100")
    assert sorted(b.run["removed"]) == [s["path"] for s in a.manifest.shards["partitions"]][1:]
    assert sorted(p.name for p in part.glob("*.parquet")) == ["partitions-00000.parquet"]


# --------------------------------------------------------------------------- verified inputs

def test_a_deleted_or_changed_own_shard_is_written_again(stages, tmp_path):
    """A rerun whose own committed shard was deleted or changed runs that unit again: the shard is
    back with the bytes its manifest lists, and the downstream stage reads it."""
    neg = tmp_path / "neg"
    shutil.copytree(stages / "neg", neg)
    m = Manifest.read(neg)
    shard = neg / m.shards["negatives"][0]["path"]
    good = shard.read_bytes()
    for spoil in (lambda: shard.unlink(), lambda: shard.write_bytes(good + b"x")):
        spoil()
        res = pipeline.perturb(stages / "part", neg, PerturbConfig(axes=("kinematics", "forces")))
        assert res.status == "computed" and "is missing or was modified" in res.reason
        assert res.run["units_run"] >= 1
        assert shard.read_bytes() == good
        assert pipeline.perturb(stages / "part", neg, PerturbConfig(axes=("kinematics", "forces"))).up_to_date
    enc = pipeline.encode(stages / "part", tmp_path / "enc", negatives=neg)
    assert enc.manifest.counts["negatives"] == m.counts["accepted"]




def test_an_extra_shard_in_the_upstream_folder_is_an_error(stages, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(stages / "part", part)
    shutil.copy(part / "partitions-00000.parquet", part / "partitions-00001.parquet")
    with pytest.raises(InputError, match="partitions-00001.parquet not listed"):
        pipeline.perturb(part, tmp_path / "neg", PerturbConfig(axes=("kinematics",)))
    assert not (tmp_path / "neg").exists()


def test_a_missing_or_changed_shard_and_an_edited_manifest_are_errors(stages, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(stages / "part", part)
    shard = part / "partitions-00000.parquet"
    good = shard.read_bytes()
    shard.write_bytes(good[:-8] + b"\0" * 8)
    with pytest.raises(InputError, match="changed after its manifest was written"):
        pipeline.encode(part, tmp_path / "enc")
    shard.unlink()
    with pytest.raises(InputError, match="listed in its manifest but missing"):
        pipeline.encode(part, tmp_path / "enc")
    shard.write_bytes(good)
    m = json.loads((part / "manifest.json").read_text())
    m["counts"]["kept"] += 1
    (part / "manifest.json").write_text(json.dumps(m))
    code, _, err = _cli("perturb", str(part), "--out", str(tmp_path / "neg2"))
    _user_error(code, err, "edited")


def test_a_rebuilt_manifest_of_the_wrong_shape_is_refused(stages, tmp_path):
    """A manifest edited by hand and its digest recomputed (written through `Manifest.write`) still
    cannot point outside its folder, drop a sha256, change types or miscount a shard's rows."""
    def spoiled(name: str, edit) -> Path:
        d = tmp_path / name
        shutil.copytree(stages / "part", d)
        m = Manifest.read(d)
        edit(m)
        m.write(d)
        return d

    cases = [
        (lambda m: m.shards["partitions"][0].update(path="../part/partitions-00000.parquet"), "must name a file in the folder itself"),
        (lambda m: m.shards["partitions"][0].pop("sha256"), "no 'sha256'"),
        (lambda m: setattr(m, "schema_version", str(m.schema_version)), "'schema_version' must be a whole number"),
        (lambda m: setattr(m, "files", None), "must be lists"),
    ]
    for i, (edit, needle) in enumerate(cases):
        with pytest.raises(InputError, match=needle):
            pipeline.perturb(spoiled(f"p{i}", edit), tmp_path / f"neg{i}", PerturbConfig(axes=("kinematics",)))
    d = spoiled("rows", lambda m: m.shards["partitions"][0].update(rows=m.shards["partitions"][0]["rows"] + 1))
    with pytest.raises(InputError, match="holds 40 rows, its manifest says 41"):
        pipeline.perturb(d, tmp_path / "neg_rows", PerturbConfig(axes=("kinematics",)))


def test_negatives_of_another_partition_are_refused(stages, tmp_path):
    other = _prompts(tmp_path / "other.jsonl", 30, offset=200)
    pipeline.partition([other], tmp_path / "part", PartitionConfig(k=3))
    with pytest.raises(InputError, match="none of its .* negatives belongs to a prompt of"):
        pipeline.encode(tmp_path / "part", tmp_path / "enc", negatives=stages / "neg")
    assert not (tmp_path / "enc").exists()


def test_a_symlink_loop_is_a_one_line_error(stages, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    code, _, err = _cli("perturb", str(loop), "--out", str(tmp_path / "neg"))
    _user_error(code, err, "cannot be resolved")
    code, _, err = _cli("partition", str(stages / "in" / "prompts.jsonl"), "--out", str(loop))
    _user_error(code, err, "--out", "cannot be resolved")
    code, _, err = _cli("run", str(loop))
    _user_error(code, err, "symbolic links")


def test_the_wrong_kind_of_input_folder_is_refused(stages, tmp_path):
    code, _, err = _cli("encode", str(stages / "neg"), "--out", str(tmp_path / "enc"))
    _user_error(code, err, "holds a `perturb` output", "`partition`")
    code, _, err = _cli("encode", str(stages / "part"), "--negatives", str(stages / "part"), "--out", str(tmp_path / "enc"))
    _user_error(code, err, "`perturb`")
    assert not (tmp_path / "enc").exists()


def test_encode_reruns_when_the_partition_output_changes(stages, tmp_path, session_cache):
    part = tmp_path / "part"
    data = stages / "in" / "prompts.jsonl"
    pipeline.partition([data], part, PartitionConfig(k=4))
    first = pipeline.encode(part, tmp_path / "enc")
    assert first.status == "computed" and (tmp_path / "enc" / "README.md").is_file()
    assert pipeline.encode(part, tmp_path / "enc").up_to_date
    pipeline.partition([data], part, PartitionConfig(k=3))  # the partition shard is rewritten
    again = pipeline.encode(part, tmp_path / "enc")
    assert again.status == "computed" and again.reason.startswith("input changed"), again.reason


def test_outputs_do_not_depend_on_the_cache_history(tmp_path):
    """The same 40 prompts give the same bytes with an empty cache and with a cache filled by a bigger run."""
    small = _prompts(tmp_path / "small.jsonl", 40)
    big = _prompts(tmp_path / "big.jsonl", 200, offset=20)
    cfg = PartitionConfig(k=4, cache_dir=str(tmp_path / "c1"))
    a = pipeline.partition([small], tmp_path / "a", cfg)
    pipeline.partition([big], tmp_path / "warm", PartitionConfig(k=8, cache_dir=str(tmp_path / "c2")))
    b = pipeline.partition([small], tmp_path / "b", PartitionConfig(k=4, cache_dir=str(tmp_path / "c2")))
    assert b.run["embedded"] < 40  # most of it came from the bigger run's cache
    for item in a.manifest.listed():
        assert (tmp_path / "b" / item["path"]).read_bytes() == (tmp_path / "a" / item["path"]).read_bytes(), item["path"]


# --------------------------------------------------------------------------- config values


@pytest.mark.parametrize("args,needle", [
    (["--k", "0"], "k: must be >= 2"),
    (["--k", "-3"], "k: must be >= 2"),
    (["--k", "1000"], "k: 1000 partitions for 20 distinct prompts"),
    (["--macro-negatives", "-1"], "macro_negatives: must be >= 0"),
    (["--niter", "0"], "niter: must be >= 1"),
    (["--max-seq-length", "100000"], "reads at most 512 tokens"),  # MiniLM's positions: before any text is embedded
])
def test_bad_partition_values_are_one_line_errors(tmp_path, args, needle, session_cache):
    data = _prompts(tmp_path / "p.jsonl", 20)
    code, _, err = _cli("partition", str(data), "--out", str(tmp_path / "o"), *args)
    _user_error(code, err, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("toml,needle", [
    ("[partiton]\nk = 3\n", "unknown section [partiton]"),
    ("[partition]\nniter = \"twenty\"\n", "niter: expected integer"),
    ("[partition]\nkk = 3\n", "unknown key in [partition]: kk"),
    ("colour = 3\n", "unknown top-level key colour"),
    ("[partition\n", "invalid TOML"),
])
def test_bad_toml_is_a_one_line_error(tmp_path, toml, needle, session_cache):
    data = _prompts(tmp_path / "p.jsonl", 20)
    (tmp_path / "c.toml").write_text(toml)
    code, _, err = _cli("partition", str(data), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "c.toml"))
    _user_error(code, err, needle)


def test_toml_values_apply_and_flags_override(tmp_path):
    (tmp_path / "c.toml").write_text("seed = 3\n[partition]\nk = 5\nniter = 7\n")
    from direct_data.core.config import load_toml

    cfg = PartitionConfig.build(toml=load_toml(tmp_path / "c.toml", PartitionConfig), cli={"k": 6})
    assert (cfg.seed, cfg.k, cfg.niter) == (3, 6, 7)
    assert "cache_dir" not in cfg.hashed() and "k" in cfg.hashed()  # output-neutral fields stay out of the hash
    with pytest.raises(ConfigError, match="niter: expected integer"):
        PartitionConfig(niter="twenty")


def test_wrong_train_toml_type_is_a_one_line_error(stages, tmp_path):
    (tmp_path / "t.toml").write_text("[train]\nmax_steps = \"ten\"\n")
    code, _, err = _cli("train", str(stages / "part"), str(stages / "part"), "--config", str(tmp_path / "t.toml"), "--out", str(tmp_path / "run"))
    _user_error(code, err, "max_steps")


# --------------------------------------------------------------------------- clear messages


def test_empty_input_and_wrong_text_column_say_why(tmp_path, session_cache):
    (tmp_path / "empty.jsonl").write_text("")
    code, _, err = _cli("partition", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "o"))
    _user_error(code, err, "no rows")
    (tmp_path / "blank.jsonl").write_text('{"prompt": "   "}\n{"prompt": ""}\n')
    code, _, err = _cli("partition", str(tmp_path / "blank.jsonl"), "--out", str(tmp_path / "o"))
    _user_error(code, err, "all rejected", "empty=")
    data = _prompts(tmp_path / "p.jsonl", 5)
    code, _, err = _cli("partition", str(data), "--out", str(tmp_path / "o"), "--text-column", "caption")
    _user_error(code, err, "'caption'", "columns: prompt")
    assert not (tmp_path / "o").exists()


def test_recompute_says_why_and_dry_run_writes_nothing(stages, tmp_path, session_cache):
    data = stages / "in" / "prompts.jsonl"
    out = tmp_path / "o"
    code, so, err = _cli("partition", str(data), "--out", str(out), "--k", "4", "--dry-run")
    assert code == 0, err
    assert "would_recompute_because" in so and not out.exists()
    code, so, _ = _cli("partition", str(data), "--out", str(out), "--k", "4")
    assert "recomputed because no earlier output" in so
    code, so, _ = _cli("partition", str(data), "--out", str(out), "--k", "4")
    assert "up to date" in so
    code, so, _ = _cli("partition", str(data), "--out", str(out), "--k", "3")
    assert "recomputed because config changed: k 4 -> 3" in so


def test_perturb_defaults_to_every_axis(stages, tmp_path):
    m = Manifest.read(stages / "neg")
    assert PerturbConfig().axes == ("kinematics", "forces", "materials", "interactions", "magnitudes")
    assert m.config["axes"] == ["kinematics", "forces"]  # what the fixture asked for


def test_validate_writes_a_manifest_a_card_and_resumes(tmp_path, session_cache):
    rows = [{"prompt": "A ball falls onto the floor.", "axis": "kinematics", "negative": "A ball rises from the floor."},
            {"prompt": "A ball falls onto the floor.", "axis": "kinematics", "negative": "A ball rises from the floor."},
            {"prompt": "A glass cup falls and shatters.", "axis": "materials", "negative": ""}]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    res = pipeline.validate(f, tmp_path / "v")
    m = res.manifest
    assert m.stage == "validate" and m.counts["rows"] == 4 and (tmp_path / "v" / "README.md").is_file()
    v = read_table(tmp_path / "v", "verdicts").to_pylist()
    assert [x["row"] for x in v] == [0, 1, 2, 3]
    assert v[1]["reason"] == "duplicate" and v[2]["reason"] == "empty" and v[3]["reason"] == "schema"
    assert m.counts["accepted"] + m.counts["rejected"] == 4
    assert pipeline.validate(f, tmp_path / "v").up_to_date


def test_new_validator_weights_recompute_the_verdicts(tmp_path, session_cache):
    """The learnt validator's weights are inputs of `validate` (role `weights`, with their sha256):
    a rerun with the same weights is up to date, a refit (here: its sidecar's thresholds moved)
    recomputes and says why; the packaged weights are named inside the package; lexicon mode has none."""
    from direct_data.text.learnt import ARTEFACT

    w = tmp_path / "mine" / "validator.safetensors"
    w.parent.mkdir()
    shutil.copy(ARTEFACT, w)
    shutil.copy(ARTEFACT.with_suffix(".json"), w.with_suffix(".json"))
    rows = [{"prompt": "A ball falls onto the floor.", "axis": "kinematics", "negative": "A ball rises slowly up from the floor."},
            {"prompt": "A glass cup falls and shatters on the tiles.", "axis": "materials",
             "negative": "A rubber cup falls and bounces on the tiles."}]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "v"
    args = ["validate", str(f), "--out", str(out), "--validator-model", str(w)]
    r = runner.invoke(app, args, env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    weights = [i for i in Manifest.read(out).inputs if i.get("role") == "weights"]
    assert [Path(i["path"]).name for i in weights][:2] == ["validator.safetensors", "validator.json"]
    # and the text side's code that decides a verdict, named inside the package
    assert {i["path"] for i in weights[2:]} >= {"direct_data/text/validator.py", "direct_data/text/learnt.py"}
    before = Manifest.read(out).counts["accepted"]
    r = runner.invoke(app, args, env={"COLUMNS": "400"})
    assert r.exit_code == 0 and "up to date" in r.output, r.output
    meta = json.loads(w.with_suffix(".json").read_text())
    meta["threshold"] = meta["lexicon_floor"] = 0.999999
    w.with_suffix(".json").write_text(json.dumps(meta))
    r = runner.invoke(app, args, env={"COLUMNS": "400"})
    said = next(line for line in r.output.splitlines() if line.startswith("validate: "))  # one line, however long its paths
    assert r.exit_code == 0 and "input changed" in said and "validator.json" in said, r.output
    assert Manifest.read(out).counts["accepted"] == 0 <= before
    r = runner.invoke(app, ["validate", str(f), "--out", str(tmp_path / "packaged")])
    assert r.exit_code == 0, r.output
    assert "direct_data/text/data/validator.safetensors" in [i["path"] for i in Manifest.read(tmp_path / "packaged").inputs]
    r = runner.invoke(app, ["validate", str(f), "--out", str(tmp_path / "lex"), "--validator", "lexicon"])
    lex = [i["path"] for i in Manifest.read(tmp_path / "lex").inputs if i.get("role") == "weights"]
    assert r.exit_code == 0 and lex and all(p.endswith(".py") for p in lex)  # code only, no learnt weights
    # perturb with the rules backend also depends on the rewriter's code
    r = runner.invoke(app, ["perturb", str(SHARED_PROMPTS / "phycobench.jsonl"), "--axis", "forces", "--validator", "lexicon",
                            "--out", str(tmp_path / "neg")])
    assert r.exit_code == 0, r.output
    assert "direct_data/text/rules.py" in [i["path"] for i in Manifest.read(tmp_path / "neg").inputs if i.get("role") == "weights"]


def test_help_shows_every_default(tmp_path):
    for cmd, needles in (("train", ["[default: tiny]", "[default: 16]", "[default: 1000]"]),
                         ("partition", ["[default: (round(sqrt(N/4))", "[default: 5]"]),
                         ("perturb", ["[default: (kinematics, forces, materials, interactions, magnitudes)]"])):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0
        text = " ".join(r.output.split())  # unwrapped
        for n in needles:
            assert n in text, (cmd, n)


# --------------------------------------------------------------------------- a new stage is only what it computes


def test_a_new_stage_is_written_as_what_it_computes(tmp_path):
    """A toy stage (40 lines: config, read, units, compute, finish) gets ownership, resume after a
    crash, up-to-date checks, stale-file cleanup and a manifest and card from the runner alone."""
    from dataclasses import dataclass

    from datasets import Features, Value

    from direct_data.core.config import StageConfig, option
    from direct_data.core.runner import Inputs, Stage, Unit, run_stage
    from direct_data.core.schema import register

    register("upper", Features({"line": Value("int64"), "text": Value("string")}))

    @dataclass
    class UpperConfig(StageConfig):
        SECTION = "upper"
        chunk: int = option(3, min=1, help="Lines per unit.")

    class Crash(Exception):
        pass

    class UpperStage(Stage):
        name, config_cls, tables, title = "upper", UpperConfig, ("upper", "rejects"), "Upper-cased lines"
        crash_at: int | None = None

        def read(self, inputs: Inputs) -> None:
            self.lines = inputs.files[0].read_text().splitlines()

        def units(self) -> list[Unit]:
            n = self.config.chunk
            return [Unit(f"u{s}", list(range(s, min(s + n, len(self.lines))))) for s in range(0, len(self.lines), n)]

        def compute(self, unit: Unit, out) -> dict:
            if unit.payload[0] == self.crash_at:
                out.write("upper", {"line": unit.payload[0], "text": "half-written"})
                out.close()  # a shard on disk, its unit never committed: what a kill leaves
                raise Crash
            for i in unit.payload:
                if self.lines[i].strip():
                    out.write("upper", {"line": i, "text": self.lines[i].upper()})
                else:
                    out.write("rejects", {"stage": "upper", "source": "in.txt", "row": i, "reason": "empty", "detail": "", "raw": ""})
            return {"lines": len(unit.payload)}

        def finish(self, done, out) -> None:
            out.counts = {"lines": sum(d["counts"]["lines"] for d in done)}

    src = tmp_path / "in.txt"
    src.write_text("a ball\n\nfalls\nfrom\nthe\nshelf\n\nand\nbounces\n")
    ref = run_stage(UpperStage(UpperConfig()), Inputs(files=[src]), tmp_path / "ref")
    assert ref.manifest.counts == {"lines": 9, "rejected": 2} and ref.manifest.stats["reject_reasons"] == {"empty": 2}
    crashing = UpperStage(UpperConfig())
    crashing.crash_at = 6
    with pytest.raises(Crash):
        run_stage(crashing, Inputs(files=[src]), tmp_path / "out")
    again = run_stage(UpperStage(UpperConfig()), Inputs(files=[src]), tmp_path / "out")
    assert (again.run["units_run"], again.run["units_skipped"]) == (1, 2)
    for item in ref.manifest.listed():
        assert (tmp_path / "out" / item["path"]).read_bytes() == (tmp_path / "ref" / item["path"]).read_bytes(), item["path"]
    assert run_stage(UpperStage(UpperConfig()), Inputs(files=[src]), tmp_path / "out").up_to_date
    # a different chunking: the old unit shards are the stage's own, so they are cleaned up
    bigger = run_stage(UpperStage(UpperConfig(chunk=9)), Inputs(files=[src]), tmp_path / "out")
    assert bigger.reason == "config changed: chunk 3 -> 9"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.parquet")) == ["rejects-c00000-00000.parquet", "upper-c00000-00000.parquet"]
    with pytest.raises(OutputError, match="`partition` output"):  # another stage's folder
        run_stage(UpperStage(UpperConfig()), Inputs(files=[src]), _partition_copy(tmp_path))


def _partition_copy(tmp_path: Path) -> Path:
    d = tmp_path / "looks-like-partition"
    d.mkdir()
    (d / ".direct-data").mkdir()
    (d / ".direct-data" / "owner.json").write_text('{"stage": "partition"}')
    (d / "partitions-00000.parquet").write_bytes(b"x")
    return d


def test_train_never_writes_into_a_stage_folder(stages, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(stages / "part", part)
    before = sorted(p.name for p in part.iterdir())
    code, _, err = _cli("train", str(stages / "part"), str(stages / "part"), "--out", str(part), "--max-steps", "1")
    _user_error(code, err, "did not write")
    code, _, err = _cli("train", str(part), str(part), "--out", str(part / "run"), "--max-steps", "1")
    _user_error(code, err, "overlaps the input")
    assert sorted(p.name for p in part.iterdir()) == before
    # checkpoint rotation deletes old step-* folders: one holding a file training never writes (or
    # one named otherwise) makes the run folder foreign, before any work, and it survives
    from direct_data.training.checkpoint import check_run_folder

    for name in ("step-00000002", "keep-me"):
        run = tmp_path / f"run-{name}"
        (run / "checkpoints" / name).mkdir(parents=True)
        (run / "checkpoints" / name / "mine.txt").write_text("keep")
        with pytest.raises(OutputError, match=f"did not write .*checkpoints/{name}"):
            check_run_folder(run, [part])
        assert (run / "checkpoints" / name / "mine.txt").read_text() == "keep"


def test_an_output_of_the_previous_layout_is_taken_over(stages, tmp_path):
    """A partition folder written before the runner (no owner file, markers in chunks/) is this stage's own."""
    part = tmp_path / "part"
    shutil.copytree(stages / "part", part)
    shutil.rmtree(part / ".direct-data")
    (part / "chunks").mkdir()
    (part / "chunks" / "chunk-00000-abc.json").write_text("{}")
    res = pipeline.partition([stages / "in" / "prompts.jsonl"], part, PartitionConfig(k=3))
    assert res.status == "computed" and "chunks" in res.run["removed"] and not (part / "chunks").exists()
    assert pipeline.partition([stages / "in" / "prompts.jsonl"], part, PartitionConfig(k=3)).up_to_date


def test_a_stage_table_with_no_shard_reads_as_empty_in_a_fresh_process():
    """Every request of a perturb run can be rejected: its `negatives` table then has no shard, and
    reading it gives an empty table with the stage's columns even in a process that never imported
    the perturb stage (the schema registry imports the stages that declare tables); an unknown
    table is a clear error."""
    code = ("from direct_data.core.schema import arrow_schema\n"
            "import sys\n"
            "assert 'direct_data.stages.perturb' not in sys.modules\n"
            "t = arrow_schema('negatives').empty_table()\n"
            "assert t.num_rows == 0 and {'prompt_id', 'axis', 'negative'} <= set(t.column_names), t.column_names\n"
            "assert arrow_schema('verdicts').names and arrow_schema('latents').names\n"
            "try:\n    arrow_schema('no_such_table')\nexcept ValueError as e:\n    assert 'negatives' in str(e)\nelse:\n    raise SystemExit(1)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

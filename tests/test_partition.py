"""`direct-data partition` on the real prompt sets: partitions, macro negatives, shards, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from direct_data import pipeline
from direct_data.cli import app
from direct_data.core.manifest import Manifest, read_table
from direct_data.core.schema import PARTITIONS
from direct_data.stages.partition import PartitionConfig, choose_k, draw_macro_negatives, excluded_partitions, load_centroids

from .conftest import GENERAL_SOURCES, PHYSICS_SOURCES, ROOT

runner = CliRunner()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, prompt_files, session_cache):
    out = tmp_path_factory.mktemp("partition-full")
    res = pipeline.partition(prompt_files, out, PartitionConfig(seed=0))
    return out, res


def _table(out: Path):
    return read_table(out, "partitions").to_pylist()


def test_every_row_accounted_and_duplicates_merged(full_run, prompt_files):
    out, res = full_run
    c = res.manifest.counts
    assert c["read"] == sum(1 for f in prompt_files for line in f.read_bytes().splitlines() if line.strip()) == 6052
    assert c["read"] == c["kept"] + c["merged"] + c["rejected"]
    rows = _table(out)
    assert len(rows) == c["kept"]
    assert len({r["prompt_id"] for r in rows}) == len(rows)
    # the shared README says ~5,300 distinct prompts after exact de-duplication
    assert 5000 < c["kept"] < 5600 and c["merged"] > 400
    assert sum(r["n_duplicates"] for r in rows) == c["merged"]
    # Physics-IQ repeats its descriptions across views and takes: they must collapse to the distinct texts
    iq_file = next(f for f in prompt_files if f.name == "physics_iq_descriptions.jsonl")
    distinct = {" ".join(json.loads(l)["prompt"].split()) for l in iq_file.read_text().splitlines()}
    iq = [r for r in rows if r["source"] == "physics_iq_descriptions.jsonl"]
    assert len(iq) == len(distinct) < 100


def test_every_prompt_has_a_partition_and_stats_are_saved(full_run):
    out, res = full_run
    rows = _table(out)
    k = res.stats["k"]
    assert k == choose_k(res.manifest.counts["kept"])
    assert all(0 <= r["partition_id"] < k for r in rows)
    assert all(r["second_partition"] != r["partition_id"] and 0 <= r["second_partition"] < k for r in rows)
    assert all(r["margin"] >= -1e-6 for r in rows)  # plain assignment: own partition is the nearest
    cents = load_centroids(out)
    assert cents["centroids"].shape == (k, 384)
    np.testing.assert_allclose(np.linalg.norm(cents["centroids"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(cents["centroid_cos"], cents["centroids"] @ cents["centroids"].T, atol=1e-5)
    sizes = np.bincount([r["partition_id"] for r in rows], minlength=k)
    assert sizes.tolist() == cents["sizes"].tolist() == res.stats["sizes"]
    assert res.stats["imbalance_factor"] >= 1.0


def test_macro_negatives_are_exclusive_checked_independently(full_run):
    out, res = full_run
    rows = _table(out)
    part = {r["prompt_id"]: r["partition_id"] for r in rows}
    cc = load_centroids(out)["centroid_cos"].astype(np.float64)
    m = res.stats["exclude_nearest_effective"]
    assert m == 2
    violations = 0
    for r in rows:
        p = r["partition_id"]
        sims = cc[p].copy()
        sims[p] = -np.inf
        nearest = set(np.argsort(-sims)[:m].tolist())
        assert len(r["macro_negatives"]) == 5
        assert len(set(r["macro_negatives"])) == 5
        for n in r["macro_negatives"]:
            q = part[n]
            violations += q == p or q in nearest
    assert violations == 0 == res.stats["certificate"]["violations"]
    cert = res.stats["certificate"]
    assert cert["shortfall_prompts"] == 0
    # macro negatives are semantically distant: far below same-partition similarity
    assert cert["anchor_negative_cos"]["p50"] < cert["same_partition_cos"]["p50"] - 0.1


def _nmi_and_purity(labels: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import normalized_mutual_info_score

    purity = sum(np.bincount(classes[labels == p]).max() for p in np.unique(labels)) / len(labels)
    return normalized_mutual_info_score(classes, labels), purity


def test_physics_and_general_prompts_are_separated(full_run):
    """The physics sets and the VBench v1 general prompts land in measurably different partitions."""
    out, _ = full_run
    labels, classes = [], []
    for r in _table(out):
        meta = json.loads(r["meta"])
        if r["source"] in PHYSICS_SOURCES or (r["source"] == "vbench2_all_dimensions.jsonl" and meta.get("physics_dimension")):
            cls = 1
        elif r["source"] in GENERAL_SOURCES:
            cls = 0
        else:
            continue
        labels.append(r["partition_id"])
        classes.append(cls)
    labels, classes = np.array(labels), np.array(classes)
    assert classes.sum() > 1000 and (classes == 0).sum() > 800
    nmi, purity = _nmi_and_purity(labels, classes)
    rng = np.random.default_rng(0)
    shuffled = [_nmi_and_purity(rng.permutation(labels), classes) for _ in range(20)]
    nmi_s, pur_s = max(s[0] for s in shuffled), max(s[1] for s in shuffled)
    print(f"physics-vs-general: NMI {nmi:.3f} (shuffled max {nmi_s:.3f}), purity {purity:.3f} (shuffled max {pur_s:.3f})")
    # measured: NMI 0.153 vs 0.006 shuffled, purity 0.842 vs 0.630 (k=37; NMI is bounded by the 2-class entropy)
    assert nmi > 0.1 and nmi > 10 * nmi_s
    assert purity > 0.8 and purity > pur_s + 0.15


def test_datasets_loads_the_shards_typed(full_run):
    import datasets

    out, res = full_run
    ds = datasets.load_dataset("parquet", data_files=str(out / "partitions-*.parquet"), split="train")
    assert ds.features == PARTITIONS
    assert len(ds) == res.manifest.counts["kept"]
    assert res.manifest.counts["rejected"] == 0 and res.manifest.shards["rejects"] == []  # no empty shard files
    schema = pq.read_schema(next(out.glob("partitions-*.parquet")))
    assert schema.metadata[b"direct_data.schema_version"] == b"1"


def test_card_and_manifest(full_run, prompt_files):
    out, res = full_run
    card = (out / "README.md").read_text()
    assert "exclusivity violations: **0**" in card and "partitions.png" in card
    png = (out / "partitions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    m = json.loads((out / "manifest.json").read_text())
    assert [i["path"] for i in m["inputs"]] == [str(p) for p in prompt_files]
    assert all(len(i["sha256"]) == 64 for i in m["inputs"])
    assert m["model"].startswith("all-MiniLM-L6-v2@") or "minilm" in m["model"].lower()
    assert m["config"]["seed"] == 0 and m["package_version"] and m["schema_version"] == 1
    assert m["counts"] == res.manifest.counts


def test_rerun_is_up_to_date_and_deterministic(full_run, prompt_files, tmp_path):
    out, res = full_run
    again = pipeline.partition(prompt_files, out, PartitionConfig(seed=0))
    assert again.up_to_date and again.reason == "up to date"
    # a second, independent run gives the same bytes
    other = tmp_path / "again"
    pipeline.partition(prompt_files, other, PartitionConfig(seed=0))
    for name in ["manifest.json", "centroids.safetensors", "partitions.png"] + [s["path"] for t in res.manifest.shards.values() for s in t]:
        assert (out / name).read_bytes() == (other / name).read_bytes(), name
    # a changed config recomputes
    changed = pipeline.partition(prompt_files, other, PartitionConfig(seed=1))
    assert not changed.up_to_date and changed.reason == "config changed: seed 0 -> 1"


def test_balanced_assignment_reduces_imbalance(full_run, prompt_files, tmp_path):
    _, res = full_run
    bal = pipeline.partition(prompt_files, tmp_path / "bal", PartitionConfig(seed=0, balanced=True))
    assert bal.stats["imbalance_factor"] < res.stats["imbalance_factor"]
    assert bal.stats["certificate"]["violations"] == 0


# --------------------------------------------------------------------------- bad input


def _write_bad_inputs(d: Path) -> list[Path]:
    import datasets
    import pyarrow as pa

    jl = d / "bad.jsonl"
    lines = [
        b'{"prompt": "A red ball bounces on a wooden floor.", "extra": 1}',
        b'{"prompt": "   A red ball   bounces on a wooden floor. "}',  # duplicate after folding
        b'{"prompt": ""}',
        b'{"prompt": " \\t  "}',
        b'{"prompt": "caf\xe9 au lait"}',  # latin-1 byte: not UTF-8
        json.dumps({"prompt": "x" * 300}).encode(),
        b'{"title": "no prompt column"}',
        b'{"prompt": 42}',
        b'{"prompt": null}',
        b'{"prompt": "unterminated',
        b"[1, 2, 3]",
        b"",
        json.dumps({"caption": "A glass vase falls off a table and shatters."}).encode(),
    ]
    jl.write_bytes(b"\n".join(lines) + b"\n")
    csv = d / "bad.csv"
    csv.write_text('prompt,source\n"A steel cube slides down a ramp.",a\n"too",many,fields\n"",b\n')
    txt = d / "good.txt"
    txt.write_text("A feather drifts slowly to the ground.\n\nA boat floats on a calm lake.\n")
    pqf = d / "mixed.parquet"
    pq.write_table(pa.table({"text": ["A kite rises in strong wind.", None, "A kite rises in strong wind."]}), pqf)
    dsd = d / "hf"
    datasets.Dataset.from_dict({"prompt": ["Water pours from a jug into a glass.", "Sand falls through an hourglass."]}).save_to_disk(str(dsd))
    return [jl, csv, txt, pqf, dsd]


def test_bad_input_rows_are_rejected_with_reasons(tmp_path, session_cache):
    inputs = _write_bad_inputs(tmp_path)
    res = pipeline.partition(inputs, tmp_path / "out", PartitionConfig(max_chars=200, k=2, exclude_nearest=0, macro_negatives=2))
    c = res.manifest.counts
    assert c["read"] == 13 - 1 + 3 + 2 + 3 + 2  # blank lines are not rows
    assert c["read"] == c["kept"] + c["merged"] + c["rejected"]
    assert c["merged"] == 2
    reasons = res.stats["reject_reasons"]
    assert reasons == {
        "bad_columns": 1, "empty": 3, "invalid_json": 1, "missing_column": 1, "not_an_object": 1,
        "not_utf8": 1, "too_long": 1, "wrong_type": 3,
    }
    import datasets

    rej = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "rejects-*.parquet"), split="train").to_list()
    assert len(rej) == c["rejected"] and all(r["reason"] and r["source"] and r["row"] >= 0 for r in rej)
    kept = {r["prompt"] for r in _table(tmp_path / "out")}
    assert "A glass vase falls off a table and shatters." in kept  # `caption` fallback column
    assert "Sand falls through an hourglass." in kept  # datasets folder
    row0 = next(r for r in _table(tmp_path / "out") if r["prompt"].startswith("A red ball"))
    assert json.loads(row0["meta"]) == {"extra": 1} and row0["n_duplicates"] == 1
    # perturb reads prompt files the same way and writes the same reject rows (table `rejects`)
    from direct_data.stages.perturb import PerturbConfig

    pres = pipeline.perturb(inputs, tmp_path / "neg", PerturbConfig(axes=("kinematics",), max_chars=200, use_embedding=False))
    prej = datasets.load_dataset("parquet", data_files=str(tmp_path / "neg" / "rejects-*.parquet"), split="train").to_list()
    assert sorted((r["source"], r["row"], r["reason"]) for r in prej) == sorted((r["source"], r["row"], r["reason"]) for r in rej)
    assert pres.manifest.counts["input_rejected"] == c["rejected"] and pres.manifest.stats["input_rejects"] == reasons
    assert pres.manifest.counts["prompts"] == c["kept"]


@pytest.mark.parametrize(
    "name,content,where",
    [
        ("broken.json", '{"prompts": [\n  {"prompt": "a"},\n  {"prompt": \n', "broken.json:4"),
        ("garbage.jsonl", "not json\nstill not json\n", "garbage.jsonl:1"),
        ("table.xlsx", "PK", "unsupported format"),
        ("quote.csv", 'prompt\n"unterminated\n', "quote.csv"),
    ],
)
def test_unparseable_file_is_a_one_line_error(tmp_path, name, content, where, session_cache):
    f = tmp_path / name
    f.write_text(content)
    r = runner.invoke(app, ["partition", str(f), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    msg = r.output.strip()
    assert "Traceback" not in msg and where in msg and len(msg.splitlines()) <= 2, msg
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- resume


def _subset(prompt_files: list[Path], path: Path, n: int) -> Path:
    lines = [l for f in prompt_files for l in f.read_text().splitlines() if l.strip()]
    rng = np.random.default_rng(0)
    path.write_text("\n".join(lines[i] for i in sorted(rng.choice(len(lines), n, replace=False))) + "\n")
    return path


def _cli(*args: str, env: dict) -> list[str]:
    return [sys.executable, "-m", "direct_data.cli", "partition", *args]


def test_kill_and_resume_gives_the_same_bytes(prompt_files, tmp_path):
    """kill -9 a real run while it embeds (twice), rerun: byte-identical to an uninterrupted run."""
    data = _subset(prompt_files, tmp_path / "subset.jsonl", 700)
    args = ["--embed-chunk", "48", "--k", "8", "--seed", "3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_cli(str(data), "--out", str(ref), "--cache-dir", str(tmp_path / "c-ref"), *args, env=env), env=env, check=True, capture_output=True)
    out, cache = tmp_path / "killed", tmp_path / "c-killed"
    for target_chunks in (2, 6):
        p = subprocess.Popen(_cli(str(data), "--out", str(out), "--cache-dir", str(cache), *args, env=env), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and p.poll() is None:
            if len(list(cache.rglob("chunk-*.arrow"))) >= target_chunks:
                break
            time.sleep(0.05)
        assert p.poll() is None, "the run finished before it could be killed"
        p.send_signal(signal.SIGKILL)
        p.wait()
    n_chunks_before = len(list(cache.rglob("chunk-*.arrow")))
    assert 0 < n_chunks_before < 15 and not (out / "manifest.json").exists()
    r = subprocess.run(_cli(str(data), "--out", str(out), "--cache-dir", str(cache), *args, env=env), env=env, check=True, capture_output=True, text=True)
    assert "up to date" not in r.stdout
    names = sorted(p.name for p in ref.iterdir() if p.is_file())
    assert names == sorted(p.name for p in out.iterdir() if p.is_file())
    for name in names:
        assert (ref / name).read_bytes() == (out / name).read_bytes(), name
    # a kill after the shards but before the manifest (the commit record) is also recovered
    (out / "manifest.json").unlink()
    (out / "partitions-00000.parquet").write_bytes(b"torn")
    subprocess.run(_cli(str(data), "--out", str(out), "--cache-dir", str(cache), *args, env=env), env=env, check=True, capture_output=True)
    for name in names:
        assert (ref / name).read_bytes() == (out / name).read_bytes(), name


def test_grown_corpus_embeds_only_new_texts(prompt_files, tmp_path):
    data = _subset(prompt_files, tmp_path / "s.jsonl", 120)
    cfg = PartitionConfig(k=3, cache_dir=str(tmp_path / "cache"))
    first = pipeline.partition([data], tmp_path / "o", cfg)
    assert first.run["embedded"] == first.manifest.counts["kept"]
    with open(data, "a") as f:
        f.write(json.dumps({"prompt": "A brand new prompt about a copper coin spinning on a glass table."}) + "\n")
    second = pipeline.partition([data], tmp_path / "o", cfg)
    assert not second.up_to_date and second.reason.startswith("input changed")
    assert (second.run["embedded"], second.run["cached"], second.run["removed"]) == (1, first.manifest.counts["kept"], [])


# --------------------------------------------------------------------------- CLI and config


def test_help_lists_every_option_with_defaults():
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "partition" in r.output
    r = runner.invoke(app, ["partition", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for key in PartitionConfig.keys():
        assert "--" + key.replace("_", "-") in r.output, key
    for flag in ("--config", "--dry-run", "--force", "--out", "--rank", "--world-size"):
        assert flag in r.output
    text = " ".join(r.output.split())
    assert "k-means iterations. Range: 1..2147483647. [default: 20]" in text
    assert "Macro negatives per prompt (a prompt gets at most the rows outside its excluded partitions). Range: 0..2147483647. [default: 5]" in text


def test_config_file_and_flag_override(tmp_path, session_cache):
    data = tmp_path / "p.txt"
    data.write_text("\n".join(f"A {c} ball rolls down a {s} hill." for c in ("red", "blue", "green", "white", "black", "pink") for s in ("steep", "grassy", "rocky", "snowy")) + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text("seed = 5\n[partition]\nk = 3\nmacro_negatives = 2\nexclude_nearest = 0\n")
    r = runner.invoke(app, ["partition", str(data), "--out", str(tmp_path / "a"), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    m = Manifest.read(tmp_path / "a")
    assert (m.stats["k"], m.config["macro_negatives"], m.seed) == (3, 2, 5)
    r = runner.invoke(app, ["partition", str(data), "--out", str(tmp_path / "b"), "--config", str(cfg), "--k", "4"])
    assert r.exit_code == 0, r.output
    assert Manifest.read(tmp_path / "b").stats["k"] == 4
    bad = tmp_path / "bad.toml"
    bad.write_text("[partition]\nkk = 3\n")
    r = runner.invoke(app, ["partition", str(data), "--out", str(tmp_path / "c"), "--config", str(bad)])
    assert r.exit_code == 2 and "unknown key in [partition]: kk" in r.output


def test_dry_run_writes_nothing(tmp_path, session_cache):
    data = tmp_path / "p.txt"
    data.write_text("A ball falls.\nA ball falls.\nA leaf floats.\n")
    r = runner.invoke(app, ["partition", str(data), "--out", str(tmp_path / "o"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "kept" in r.output and "merged" in r.output and "embed_new" in r.output
    assert not (tmp_path / "o").exists()


def test_make_pipeline_sample_is_generated_not_copied(tmp_path):
    from direct_data.samples import generate_sample

    a, b = generate_sample(200, seed=1), generate_sample(200, seed=1)
    assert a == b and len(a) == 200
    shared = {json.loads(l)["prompt"] for f in (ROOT.parent / "shared" / "data" / "prompts").glob("*.jsonl") for l in f.read_text().splitlines() if l.strip()}
    assert not shared & {r["prompt"] for r in a}
    assert {r["family"] for r in a} == {"physics", "scene"}


# --------------------------------------------------------------------------- the negative draw itself


def test_draw_never_pads_and_never_repeats():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 40)
    cc = np.array([[1, 0.9, 0.1], [0.9, 1, 0.2], [0.1, 0.2, 1]], dtype=np.float32)
    excl = excluded_partitions(cc, 1)
    assert excl.tolist() == [[True, True, False], [True, True, False], [False, True, True]]
    neg = draw_macro_negatives(labels, excl, 5, seed=0)
    for i, n in enumerate(neg):
        assert len(set(n.tolist())) == len(n)
        assert not excl[labels[i], labels[n]].any()
    # partition 2 may only draw from partition 0 (50 rows): full lists; partitions 0/1 from 2 (40 rows)
    assert all(len(n) == 5 for n in neg)
    tiny = draw_macro_negatives(np.array([0, 0, 1, 1, 1]), excluded_partitions(np.eye(2, dtype=np.float32), 0), 4, seed=0)
    assert [len(n) for n in tiny] == [3, 3, 2, 2, 2]  # shortfall: the pools are smaller than 4
    # roughly uniform over the eligible rows
    many = draw_macro_negatives(np.array([0] * 2000 + [1] * 10), excluded_partitions(np.eye(2, dtype=np.float32), 0), 5, seed=1)
    counts = np.bincount(np.concatenate(many[:2000]), minlength=2010)[2000:]
    assert counts.min() > 800 and counts.max() < 1200  # expected 1000 each


def test_choose_k_documented_values():
    assert [choose_k(n) for n in (1, 10, 50, 5_000, 100_000, 1_000_000)] == [1, 2, 4, 35, 158, 500]


# --------------------------------------------------------------------------- at scale: streamed rows, one sort (issue 13)


def _draw_per_partition_scan(labels, excluded, n_neg, seed):
    """The previous draw (one scan of the labels and one pool array per partition), kept as the
    reference the one-sort draw must reproduce exactly."""
    k = len(excluded)
    members = [np.flatnonzero(labels == p) for p in range(k)]
    sizes = np.array([len(m) for m in members])
    out = [np.empty(0, dtype=np.int64)] * len(labels)
    for p in range(k):
        if sizes[p] == 0:
            continue
        rng = np.random.default_rng([seed, p])
        eligible = np.flatnonzero(~excluded[p])
        pool = int(sizes[eligible].sum())
        if pool == 0 or n_neg == 0:
            continue
        flat = np.concatenate([members[q] for q in eligible])
        take = min(n_neg, pool)
        if take == pool:
            for i in members[p]:
                out[i] = flat
            continue
        draws = rng.integers(0, pool, size=(sizes[p], take))
        s_ = np.sort(draws, axis=1)
        for r in np.flatnonzero((s_[:, 1:] == s_[:, :-1]).any(axis=1)):
            row = draws[r]
            while len(np.unique(row)) < take:
                _, first = np.unique(row, return_index=True)
                dup = np.setdiff1d(np.arange(take), first)
                row[dup] = rng.integers(0, pool, size=len(dup))
        for r, i in enumerate(members[p]):
            out[i] = flat[draws[r]]
    return out


@pytest.mark.parametrize("n,k,m,n_neg", [(5000, 40, 2, 5), (3000, 7, 0, 3), (60, 3, 1, 30), (400, 12, 10, 5)])
def test_one_sort_draw_equals_the_per_partition_draw(n, k, m, n_neg):
    from direct_data.stages.partition import draw_macro_negatives_array

    rng = np.random.default_rng(n)
    labels = rng.integers(0, k, n) if n > 100 else np.repeat(np.arange(k), [40, 15, 5])
    c = rng.standard_normal((k, 8)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    excl = excluded_partitions(c @ c.T, m)
    ref = _draw_per_partition_scan(labels, excl, n_neg, seed=3)
    neg, counts = draw_macro_negatives_array(labels, excl, n_neg, seed=3)
    assert counts.tolist() == [len(r) for r in ref]
    for i in range(n):
        assert neg[i, : counts[i]].tolist() == ref[i].tolist()
        assert (neg[i, counts[i] :] == -1).all()


def test_streamed_file_gives_the_in_memory_result(full_run, tmp_path):
    """partition_vectors on a float32 .npy read through VectorFile = on the array (the real prompts'
    vectors); float16 storage keeps almost every partition; the assignment is a pure batch function."""
    from direct_data.backends.embed import Embedder
    from direct_data.stages.partition import assign, assign_batch, partition_vectors
    from direct_data.stages.vectors import VectorFile

    rows = _table(full_run[0])
    x = Embedder().embed([r["prompt"] for r in rows])
    cfg = PartitionConfig(seed=0)
    a = partition_vectors(x, cfg)
    assert a["labels"].tolist() == [r["partition_id"] for r in rows]  # the stage's own result
    np.save(tmp_path / "x32.npy", x)
    np.save(tmp_path / "x16.npy", x.astype(np.float16))
    f32 = VectorFile(tmp_path / "x32.npy")
    b = partition_vectors(f32, cfg)
    for key in ("labels", "second", "own", "margin", "centroids"):
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    assert np.array_equal(a["negatives"].array, b["negatives"].array)
    assert json.dumps(a["stats"], sort_keys=True) == json.dumps(b["stats"], sort_keys=True)
    assert f32.rows_read >= len(x)
    c = partition_vectors(VectorFile(tmp_path / "x16.npy"), cfg)
    assert (c["labels"] == a["labels"]).mean() > 0.97 and c["stats"]["certificate"]["violations"] == 0
    # the pure assignment, in any batching: the same partitions (FAISS's GEMM scores may differ in the
    # last bits with the batch shape, which is why the written cosines come from row-wise dots)
    top, sims = assign(x, a["centroids"])
    parts = [assign(x[s : s + 1000], a["centroids"]) for s in range(0, len(x), 1000)]
    assert np.array_equal(top, np.concatenate([h[0] for h in parts]))
    np.testing.assert_allclose(sims, np.concatenate([h[1] for h in parts]), atol=1e-5)
    lab, second, own, _ = assign_batch(x[:500], a["centroids"])
    assert np.array_equal(lab, a["labels"][:500]) and np.array_equal(own, a["own"][:500]) and np.array_equal(second, a["second"][:500])


def test_embed_backend_option_from_flag_and_toml(full_run, tmp_path, session_cache):
    from direct_data.backends.embed import DEFAULT_EMBED_BACKEND

    m = Manifest.read(full_run[0])
    assert m.config["embed_backend"] is None  # the default
    ident = m.stats["embedding"]["identity"]
    assert ident.endswith("-eqlen") if DEFAULT_EMBED_BACKEND == "torch" else "-eqlen-" in ident
    data = tmp_path / "p.txt"
    data.write_text("\n".join(f"A {c} ball rolls down a {s} hill." for c in ("red", "blue", "green", "white") for s in ("steep", "grassy", "rocky")) + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[partition]\nk = 2\nembed_backend = \"torch\"\n")
    r = runner.invoke(app, ["partition", str(data), "--out", str(tmp_path / "a"), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    ma = Manifest.read(tmp_path / "a")
    assert ma.config["embed_backend"] == "torch" and ma.stats["embedding"]["identity"].endswith("-eqlen")
    r = runner.invoke(app, ["partition", str(data), "--out", str(tmp_path / "b"), "--config", str(cfg), "--embed-backend", "onnx"])
    assert r.exit_code == 0, r.output
    mb = Manifest.read(tmp_path / "b")
    assert mb.config["embed_backend"] == "onnx" and "-eqlen-ort-int8dyn-" in mb.stats["embedding"]["identity"]

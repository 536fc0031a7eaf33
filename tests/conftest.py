"""Shared fixtures: the real prompt sets in ../shared and one embedding cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_PROMPTS = ROOT.parent / "shared" / "data" / "prompts"
PHYSICS_SOURCES = ("phyworldbench.jsonl", "vbench2_physics.jsonl", "videophy1_test.jsonl")
GENERAL_SOURCES = ("vbench1_all_dimension.jsonl",)


#: whether vLLM imports here (`make install-vllm`); the engine tests skip without it
try:
    import vllm  # noqa: F401

    HAVE_VLLM = True
except Exception:  # pragma: no cover - depends on the install
    HAVE_VLLM = False


#: The test files that take longest (measured: `pytest --durations`, 2-core CPU without bf16), longest
#: first. `make test` runs the suite on two pytest-xdist workers, a file per worker at a time
#: (`--dist loadfile`, so a module's engine or cluster starts once): handing these out first keeps
#: one long file from starting last and running alone. Other files follow in their usual order.
LONGEST_FIRST = (
    "test_perturb_vllm.py", "test_validator_learnt.py", "test_llm.py", "test_ray.py", "test_partition.py",
    "test_ray_client.py", "test_perturb.py", "test_pair.py", "test_bad_inputs_llm.py", "test_runner.py", "test_pipeline.py", "test_fluency.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


def shared_prompt_files() -> list[Path]:
    files = sorted(SHARED_PROMPTS.glob("*.jsonl"))
    if len(files) != 9:
        pytest.fail(f"expected the nine prompt files in {SHARED_PROMPTS}, found {len(files)}")
    return files


_BY_ID: dict[str, str] = {}


def shared_prompt(prompt_id: str) -> str:
    """The shared prompt whose id (sha256 of its text, first 16 hex digits, as in
    `data/rewrites/`) is ``prompt_id``: tests name real prompts without copying them into the repo."""
    if not _BY_ID:
        import json

        from direct_data.core.read import prompt_id as id_of

        for f in sorted(SHARED_PROMPTS.glob("*.jsonl")):
            for line in f.read_text(encoding="utf-8").splitlines():
                text = json.loads(line).get("prompt") if line.strip() else None
                if isinstance(text, str):
                    _BY_ID.setdefault(id_of(text), text)
    if prompt_id not in _BY_ID:
        raise LookupError(f"no prompt with id {prompt_id} in {SHARED_PROMPTS}")
    return _BY_ID[prompt_id]


def labelled_good(n: int) -> list[dict]:
    """`n` good train rows of the labelled set as (prompt, axis, negative) records."""
    import json as _json

    files: dict[str, list[str]] = {}
    out = []
    for line in (ROOT / "data" / "rewrites" / "labelled.jsonl").read_text(encoding="utf-8").splitlines():
        r = _json.loads(line)
        if r["split"] != "train" or r["label"] != "good":
            continue
        if r["source"] not in files:
            files[r["source"]] = [_json.loads(x)["prompt"] for x in (SHARED_PROMPTS / f"{r['source']}.jsonl").read_text().splitlines() if x.strip()]
        out.append({"prompt": files[r["source"]][r["line"]], "axis": r["axis"], "negative": r["negative"]})
        if len(out) == n:
            break
    return out


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One embedding cache for the whole session (tests that test the cache make their own)."""
    d = Path(os.environ["DIRECT_DATA_TEST_CACHE"]) if os.environ.get("DIRECT_DATA_TEST_CACHE") else tmp_path_factory.mktemp("ddcache")
    os.environ["DIRECT_DATA_CACHE"] = str(d)
    return d


@pytest.fixture(scope="session")
def prompt_files() -> list[Path]:
    return shared_prompt_files()


@pytest.fixture(scope="session")
def shared_prompt_texts() -> list[str]:
    """The text of every row of the nine shared prompt files (``prompt``, else ``caption``, else ``text``)."""
    import json

    out: list[str] = []
    for f in shared_prompt_files():
        for line in f.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line) if line.strip() else {}
            text = next((rec[k] for k in ("prompt", "caption", "text") if isinstance(rec.get(k), str)), None)
            if text is not None:
                out.append(text)
    return out

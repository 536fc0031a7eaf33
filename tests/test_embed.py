"""`Embedder`: a text's vector depends on the text alone (never on the cache's history), and a fully
cached run never loads the model. Real packaged all-MiniLM-L6-v2 and real prompts; no mocks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from direct_data.backends.embed import BATCHING_MARKER, DEFAULT_EMBED_BACKEND, Embedder
from direct_data.backends.models import packaged_embedder_path, sentence_model_meta

from .conftest import SHARED_PROMPTS


def _real_prompts(n: int, skip: int = 0) -> list[str]:
    """n distinct real prompts, taken round-robin over the prompt files (varied lengths)."""
    per_file = []
    for f in sorted(SHARED_PROMPTS.glob("*.jsonl")):
        rows = []
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                t = r.get("prompt") or r.get("caption") or r.get("text")
                if isinstance(t, str) and t.strip():
                    rows.append(t)
        per_file.append(rows)
    out, seen, i = [], set(), 0
    while len(out) < n + skip and any(i < len(r) for r in per_file):
        for rows in per_file:
            if i < len(rows) and rows[i] not in seen:
                seen.add(rows[i])
                out.append(rows[i])
        i += 1
    return out[skip : skip + n]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    t = _real_prompts(40)
    assert len(t) == 40
    return t


@pytest.fixture(scope="module")
def others() -> list[str]:
    """A different, bigger set of real prompts (none of `texts`)."""
    return _real_prompts(48, skip=40)


@pytest.fixture(scope="module")
def reference(texts, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The 40 texts embedded at once into an empty cache: (cache folder, vectors)."""
    d = tmp_path_factory.mktemp("ref-cache")
    emb = Embedder(cache_dir=d)
    v = emb.embed(texts)
    assert emb.model_loaded and emb.stats.embedded == 40
    assert v.dtype == np.float32 and v.shape == (40, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    return d, v


def test_vector_depends_on_the_text_alone(texts, others, reference, tmp_path):
    together = reference[1]
    targets = texts[::13]  # 4 texts

    # each target alone, in its own empty cache
    alone = {t: Embedder(cache_dir=tmp_path / f"alone{j}").embed([t])[0] for j, t in enumerate(targets)}

    # a cache first filled by a bigger, different run (other texts + the targets, small chunks and
    # batches, so the targets had other companions), then asked for the 40
    hist = tmp_path / "history"
    Embedder(cache_dir=hist, chunk_size=11, batch_size=4).embed(others + targets[::-1])
    second = Embedder(cache_dir=hist)
    after_history = second.embed(texts)
    assert second.stats.cached == len(targets) and second.stats.embedded == len(texts) - len(targets)

    # no cache at all, another batch size and order
    no_cache = Embedder(use_cache=False, batch_size=5).embed(list(reversed(texts)))[::-1]

    for i, t in enumerate(texts):
        ref = together[i].tobytes()
        assert after_history[i].tobytes() == ref, f"text {i}: cache history changed its vector"
        assert no_cache[i].tobytes() == ref, f"text {i}: batch composition changed its vector"
        if t in alone:
            assert alone[t].tobytes() == ref, f"text {i}: embedded alone differs"


def test_fully_cached_run_does_not_load_the_model(texts, reference):
    cache_dir, v1 = reference
    second = Embedder(cache_dir=cache_dir)
    assert not second.model_loaded
    assert second.plan(texts) == (40, 0)
    assert second.plan(texts + ["a text nobody has embedded yet"]) == (41, 1)
    v2 = second.embed(texts[::-1])
    assert not second.model_loaded
    assert second.stats.cached == 40 and second.stats.embedded == 0
    assert v2[::-1].tobytes() == v1.tobytes()
    assert second.embed([]).shape == (0, 384) and not second.model_loaded


def test_resume_after_interrupted_fill_is_byte_identical(texts, reference, tmp_path):
    sub = texts[:20]
    planned = Embedder(cache_dir=tmp_path / "plan", chunk_size=5).missing_chunks(sub)  # 4 x 5
    broken = Embedder(cache_dir=tmp_path / "resumed", chunk_size=5)
    put, calls = broken.cache.put, []

    def dying_put(hashes, vectors):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed after two committed chunks
        calls.append(len(hashes))
        put(hashes, vectors)

    broken.cache.put = dying_put
    with pytest.raises(KeyboardInterrupt):
        broken.embed(sub)
    resumed = Embedder(cache_dir=tmp_path / "resumed", chunk_size=5)
    assert resumed.plan(sub) == (20, 10)
    assert resumed.embed(sub).tobytes() == reference[1][:20].tobytes()
    assert resumed.stats.chunks_written == 2
    names = sorted(p.name for p in (tmp_path / "resumed").rglob("*.arrow"))
    assert names == sorted(f"chunk-{c[0][:16]}-{len(c)}.arrow" for c in planned)


@pytest.mark.parametrize("max_seq_length", [None, 128])
def test_identity_is_the_same_lazy_or_loaded(max_seq_length, tmp_path):
    lazy = Embedder(cache_dir=tmp_path, max_seq_length=max_seq_length, backend="torch")
    assert not lazy.model_loaded
    loaded = Embedder(cache_dir=tmp_path, max_seq_length=max_seq_length, lazy=False, backend="torch")
    assert loaded.model_loaded
    assert lazy.identity == loaded.identity
    assert (lazy.dim, lazy.max_seq_length, lazy.model_identity) == (loaded.dim, loaded.max_seq_length, loaded.model_identity)
    assert lazy.identity.endswith(f"-L{max_seq_length or 256}-norm-{BATCHING_MARKER}")
    assert lazy.dim == 384
    # loading later (what a lazy Embedder does when texts are missing) agrees with the files
    assert lazy.model is loaded.model and lazy.model_loaded
    assert lazy.model.max_seq_length == 256  # the shared model object is left as loaded


def test_identity_read_from_another_folder(tmp_path):
    """A copy of the packaged folder with another saved max_seq_length: read from the files, and the
    same as what loading that folder says; an unreadable folder or a hub id means: load the model."""
    src = packaged_embedder_path()
    dst = tmp_path / "minilm-96"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    for w in list(src.glob("*.safetensors")) + list(src.glob("*.bin")):
        (dst / w.name).symlink_to(w)
    cfg = json.loads((dst / "sentence_bert_config.json").read_text())
    (dst / "sentence_bert_config.json").write_text(json.dumps({**cfg, "max_seq_length": 96}))
    meta = sentence_model_meta(str(dst))
    assert meta is not None and (meta.max_seq_length, meta.dim) == (96, 384)
    lazy = Embedder(str(dst), cache_dir=tmp_path / "c")
    loaded = Embedder(str(dst), cache_dir=tmp_path / "c", lazy=False)
    assert not lazy.model_loaded and lazy.identity == loaded.identity
    assert lazy.identity.startswith("minilm-96-") and "-L96-" in lazy.identity

    broken = tmp_path / "no-modules"
    shutil.copytree(dst, broken, symlinks=True)
    (broken / "modules.json").unlink()
    assert sentence_model_meta(str(broken)) is None
    assert sentence_model_meta("sentence-transformers/all-MiniLM-L6-v2") is None


def test_batches_are_one_length_and_never_single():
    emb = Embedder(cache_dir=None, use_cache=False)
    lengths = np.array([5, 7, 5, 5, 9, 5, 5, 7, 5, 5, 5, 7, 7, 7])
    batches = emb._batches(lengths, 4)
    seen = sorted(i for b in batches for i in b)
    assert seen == list(range(len(lengths)))
    for b in batches:
        assert len({int(lengths[i]) for i in b}) == 1 and len(b) <= 4
        assert len(b) >= 2 or int((lengths == lengths[b[0]]).sum()) == 1  # only a lone length is alone
    assert not emb.model_loaded


def test_missing_chunks_and_fill_as_resume_units(texts, reference, tmp_path):
    """The stage runner's path: chunks of missing hashes as units, filled one by one (in any order,
    by several Embedders as ranks would), then a model-free embed of everything."""
    sub, ref = texts[:24], reference[1][:24]
    a = Embedder(cache_dir=tmp_path / "units", chunk_size=7)
    b = Embedder(cache_dir=tmp_path / "units", chunk_size=7)
    chunks = a.missing_chunks(sub)
    assert [len(c) for c in chunks] == [7, 7, 7, 3] and b.missing_chunks(sub) == chunks
    assert sum(chunks, []) == sorted(sum(chunks, []))
    for j, c in reversed(list(enumerate(chunks))):
        (a if j % 2 else b).fill(c)
    assert a.stats.chunks_written == 2 and b.stats.chunks_written == 2
    assert a.embed(sub).tobytes() == ref.tobytes()  # sees b's chunks (index refreshed), embeds nothing
    assert a.stats.embedded == 0 and a.stats.cached == 24
    final = Embedder(cache_dir=tmp_path / "units")
    assert final.missing_chunks(sub) == [] and final.embed(sub).tobytes() == ref.tobytes()
    assert not final.model_loaded
    with pytest.raises(KeyError):
        final.fill(["0" * 64])


# --------------------------------------------------------------------------- the onnx / openvino backends


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_vector_is_a_function_of_the_text_for_each_backend(backend, texts, others):
    """(The default backend is covered by test_vector_depends_on_the_text_alone above.)"""
    sub = texts[:16]
    together = Embedder(backend=backend, use_cache=False).embed(sub)
    mixed = Embedder(backend=backend, use_cache=False, batch_size=3).embed(others[:12] + sub[::-1])[12:][::-1]
    alone = {i: Embedder(backend=backend, use_cache=False).embed([sub[i]])[0] for i in (0, 7, 15)}
    for i in range(len(sub)):
        assert mixed[i].tobytes() == together[i].tobytes(), f"{backend}, text {i}: batch composition changed its vector"
        if i in alone:
            assert alone[i].tobytes() == together[i].tobytes(), f"{backend}, text {i}: embedded alone differs"


def test_backends_agree_with_torch_and_tokenise_alike(texts, others):
    long_text = " ".join(others)  # far past 256 tokens: truncation must match too
    sample = texts + [long_text]
    ref = Embedder(backend="torch", use_cache=False)
    v_ref = ref.embed(sample)
    torch_lengths = ref._token_lengths(ref.model, sample)
    assert torch_lengths.max() == 256
    for backend in ("onnx", "openvino"):
        emb = Embedder(backend=backend, use_cache=False)
        assert emb.identity == f"{ref.identity}-{emb.variant}" and emb.variant.startswith({"onnx": "ort-int8dyn-", "openvino": "ov-"}[backend])
        v = emb.embed(sample)
        cos = np.einsum("ij,ij->i", v, v_ref)
        assert cos.mean() >= 0.99 and cos.min() >= 0.97, (backend, cos.mean(), cos.min())
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        assert emb._load_runtime().token_lengths(sample, 256).tolist() == torch_lengths.tolist()
        short = Embedder(backend=backend, use_cache=False, max_seq_length=16)
        m = ref.model
        m.max_seq_length, native = 16, m.max_seq_length
        try:
            want = ref._token_lengths(m, sample)
        finally:
            m.max_seq_length = native
        assert short._load_runtime().token_lengths(sample, 16).tolist() == want.tolist()
        assert "-L16-" in short.identity


def test_openvino_f32_gives_torchs_vectors_and_partitions():
    """openvino-f32 exists for users who need torch's partitions: k-means retrained on its vectors
    must give torch's labels (bf16's ~1e-3 differences move a few percent of them)."""
    from direct_data.stages.partition import PartitionConfig, partition_vectors

    sample = _real_prompts(400)
    v_ref = Embedder(backend="torch", use_cache=False).embed(sample)
    emb = Embedder(backend="openvino-f32", use_cache=False)
    assert emb.variant == "ov-f32-v1" and emb.identity.endswith("-eqlen-ov-f32-v1")
    v = emb.embed(sample)
    assert np.abs(v - v_ref).max() < 1e-5
    for seed in (0, 1):
        cfg = PartitionConfig(k=10, seed=seed)
        assert partition_vectors(v, cfg)["labels"].tolist() == partition_vectors(v_ref, cfg)["labels"].tolist()


def test_encode_is_embed_for_sentence_transformers_callers(texts, others, tmp_path):
    """`Embedder.encode` (the validator calls it as it would a SentenceTransformer): the same bytes
    as `embed`, whatever the call's batch mates, its keyword arguments or what the cache already
    holds; repeats and an empty call work; texts are embedded once, then read back."""
    emb = Embedder(backend="openvino-f32", cache_dir=tmp_path / "c")
    first = emb.encode(texts[:7] + texts[:2], batch_size=3, normalize_embeddings=True, convert_to_numpy=True)
    assert first.shape == (9, 384) and first.dtype == np.float32
    assert first[7].tobytes() == first[0].tobytes() and emb.stats.embedded == 7
    mixed = emb.encode(others[:5] + texts[:7][::-1])  # cached texts next to new ones
    assert emb.stats.embedded == 12
    ref = Embedder(backend="openvino-f32", use_cache=False).embed(texts[:7])
    for i in range(7):
        assert first[i].tobytes() == ref[i].tobytes() == mixed[5 + 6 - i].tobytes(), i
    assert emb.encode([]).shape == (0, 384)
    assert Embedder(backend="openvino-f32", use_cache=False).encode(texts[:3]).tobytes() == ref[:3].tobytes()


def test_backend_is_part_of_the_cache_key(texts, tmp_path):
    sub = texts[:10]
    ov = Embedder(backend="openvino", cache_dir=tmp_path)
    v = ov.embed(sub)
    assert Embedder(backend="torch", cache_dir=tmp_path).plan(sub) == (10, 10)  # torch vectors are not served from the openvino cache
    again = Embedder(backend="openvino", cache_dir=tmp_path)
    assert again.embed(sub).tobytes() == v.tobytes() and not again.model_loaded and again.stats.cached == 10
    assert DEFAULT_EMBED_BACKEND in ("torch", "onnx", "openvino", "openvino-f32")


def test_missing_runtime_is_a_one_line_user_error(monkeypatch, tmp_path):
    import sys

    from typer.testing import CliRunner

    from direct_data.cli import app

    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in _real_prompts(30)))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if onnxruntime were not installed
    r = CliRunner().invoke(app, ["partition", str(data), "--out", str(tmp_path / "o"), "--embed-backend", "onnx"])
    assert r.exit_code == 2, r.output
    assert "pip install" in r.output and "onnxruntime" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["partition", str(data), "--out", str(tmp_path / "o2"), "--embed-backend", "tensorflow"])
    assert r.exit_code == 2

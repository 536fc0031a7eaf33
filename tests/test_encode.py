"""`direct-data encode`: real encoders (packaged MiniLM, a tiny umT5, a tiny AutoencoderKLWan)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from direct_data import pipeline
from direct_data.core.errors import ConfigError
from direct_data.core.manifest import read_table
from direct_data.stages.encode import EncodeConfig, TextEncoder, VideoEncoder, from_bytes, load_latents, load_text_states, read_video, to_bytes
from direct_data.stages.partition import PartitionConfig
from direct_data.stages.perturb import PerturbConfig

from .conftest import SHARED_PROMPTS


def _moving_square(t: int, size: int, colour, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clip = np.zeros((t, size, size, 3), np.uint8)
    x, y = rng.integers(0, size - 8, 2)
    for i in range(t):
        clip[i, y : y + 8, (x + 2 * i) % (size - 8) : (x + 2 * i) % (size - 8) + 8] = colour
    return clip


@pytest.fixture(scope="module")
def tiny_wan_folder(tmp_path_factory) -> Path:
    """A Wan-style diffusers checkpoint folder built from configs: tiny umT5 text encoder (with the
    packaged MiniLM's tokenizer, since no hub is reachable) and a tiny AutoencoderKLWan."""
    from diffusers import AutoencoderKLWan
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    from direct_data.backends.models import packaged_embedder_path

    root = tmp_path_factory.mktemp("tiny-wan")
    tok = AutoTokenizer.from_pretrained(packaged_embedder_path())
    tok.save_pretrained(root / "tokenizer")
    torch.manual_seed(0)
    te = UMT5EncoderModel(UMT5Config(vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4))
    te.save_pretrained(root / "text_encoder")
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
                           latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    vae.save_pretrained(root / "vae")
    return root


@pytest.fixture(scope="module")
def small_pipeline(tmp_path_factory, session_cache):
    d = tmp_path_factory.mktemp("enc-pipe")
    rows = [json.loads(l) for l in (SHARED_PROMPTS / "videophy1_test.jsonl").read_text().splitlines()[:24]]
    clips = d / "clips"
    clips.mkdir()
    import imageio.v3 as iio

    for i, r in enumerate(rows):
        clip = _moving_square(9, 32, (255, 40 * (i % 6), 0), i)
        ext = "gif" if i % 2 else "mp4"
        path = clips / f"{i}.{ext}"
        if ext == "gif":
            iio.imwrite(path, clip, loop=0)
        else:
            iio.imwrite(path, clip, fps=8, codec="libx264", plugin="pyav")
        r["video"] = str(path)
    rows.append({"prompt": "A clip whose file does not exist rolls away.", "video": str(clips / "missing.mp4")})
    data = d / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pipeline.partition([data], d / "part", PartitionConfig(k=2, exclude_nearest=0, macro_negatives=2))
    pipeline.perturb([d / "part"], d / "neg", PerturbConfig(axes=("kinematics", "materials")))
    return d


def test_minilm_text_states_roundtrip(small_pipeline):
    d = small_pipeline
    res = pipeline.encode(d / "part", d / "enc", negatives=d / "neg")
    c = res.manifest.counts
    n_neg = len(read_table(d / "neg", "negatives"))
    assert c["captions"] == 25 and c["negatives"] == n_neg > 0 and c["text_states"] == 25 + n_neg
    states = load_text_states(d / "enc")
    assert len(states) == c["text_states"]
    # the stored states are the encoder's own output, unpadded
    enc = TextEncoder(None, max_tokens=128)
    row = read_table(d / "enc", "text_states").to_pylist()[3]
    ref = enc.encode([row["text"]])[0]
    # (batched with padding vs alone: equal up to float noise)
    assert torch.allclose(states[row["key"]].float(), ref.float(), atol=5e-3) and ref.dtype == torch.float16 and ref.shape[1] == 384
    assert ref.shape[0] == len(enc.tokenizer(row["text"]).input_ids)
    assert pipeline.encode(d / "part", d / "enc", negatives=d / "neg").up_to_date
    # more tokens than the encoder has positions is a clear error when it loads, not a crash on the
    # first long text
    with pytest.raises(ConfigError, match="reads at most 512 tokens"):
        TextEncoder(None, max_tokens=100000)


def test_umt5_and_vae_from_a_wan_folder(small_pipeline, tiny_wan_folder):
    d = small_pipeline
    cfg = EncodeConfig(text_encoder=str(tiny_wan_folder), vae=str(tiny_wan_folder), video_column="video", text_dtype="bfloat16", chunk_rows=10)
    res = pipeline.encode(d / "part", d / "enc-wan", cfg, negatives=d / "neg")
    c = res.manifest.counts
    assert c["clips"] == 25 and c["latents"] == 24 and c["rejected"] == 1
    rej = read_table(d / "enc-wan", "rejects").to_pylist()
    assert rej[0]["reason"] == "latent_unavailable" and "missing.mp4" in rej[0]["raw"]
    lat = load_latents(d / "enc-wan")
    z = next(iter(lat.values()))
    assert z.shape == (4, 3, 4, 4)  # 9 frames -> 1 + 8/4, 32 px -> 32/8
    # the stored latent is the VAE's normalised posterior mode of the decoded video file
    row = read_table(d / "enc-wan", "latents").to_pylist()[0]
    ref = VideoEncoder(tiny_wan_folder).encode(read_video(row["source"]))
    assert torch.allclose(lat[row["prompt_id"]], ref)
    st = load_text_states(d / "enc-wan")
    assert next(iter(st.values())).dtype == torch.bfloat16 and next(iter(st.values())).shape[1] == 32
    assert res.manifest.model.startswith("text_encoder@") and res.manifest.model.endswith("/L512")


def test_provided_latents_and_resume(small_pipeline, tmp_path):
    from safetensors.torch import save_file

    d = small_pipeline
    ids = read_table(d / "part", "partitions").column("prompt_id").to_pylist()
    g = torch.Generator().manual_seed(0)
    tensors = {pid: torch.randn(4, 3, 4, 4, generator=g) for pid in ids[:-2]}
    f = tmp_path / "lat.safetensors"
    save_file(tensors, f)
    cfg = EncodeConfig(latents=str(f), chunk_rows=8)
    res = pipeline.encode(d / "part", tmp_path / "e", cfg)
    assert res.manifest.counts["latents"] == len(ids) - 2 and res.manifest.counts["rejected"] == 2
    lat = load_latents(tmp_path / "e")
    assert all(torch.equal(lat[k], v) for k, v in tensors.items())
    # a run interrupted after some chunks: drop the manifest and a later chunk; the rerun redoes only that
    (tmp_path / "e" / "manifest.json").unlink()
    markers = sorted((tmp_path / "e" / ".direct-data" / "chunks").glob("*.json"))
    markers[-1].unlink()
    before = {p.name: p.read_bytes() for p in (tmp_path / "e").glob("*.parquet")}
    again = pipeline.encode(d / "part", tmp_path / "e", cfg)
    assert again.run["units_run"] == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "e").glob("*.parquet")} == before


def test_bytes_roundtrip_all_dtypes():
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        t = torch.randn(5, 7).to(dt)
        data, name = to_bytes(t)
        assert torch.equal(from_bytes(data, name, (5, 7)), t)


def test_an_edited_clip_recomputes_the_latents(tmp_path, session_cache):
    """The clips a `--video-column` names are inputs too: an edited clip makes `encode` recompute
    (its manifest digests every clip's path, size and modification time), and the result is what a
    fresh run on the edited clip writes."""
    import imageio.v3 as iio

    rows = [json.loads(l) for l in (SHARED_PROMPTS / "videophy1_test.jsonl").read_text().splitlines()[:6]]
    for i, r in enumerate(rows):
        r["video"] = str(tmp_path / f"{i}.gif")
        iio.imwrite(r["video"], _moving_square(9, 16, (255, 40 * i, 0), i), loop=0)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pipeline.partition([tmp_path / "p.jsonl"], tmp_path / "part", PartitionConfig(k=2, exclude_nearest=0, macro_negatives=1))
    cfg = EncodeConfig(vae="pixels", video_column="video")
    first = pipeline.encode(tmp_path / "part", tmp_path / "e", cfg)
    assert [i["role"] for i in first.manifest.inputs].count("clips") == 1
    assert pipeline.encode(tmp_path / "part", tmp_path / "e", cfg).up_to_date
    iio.imwrite(rows[0]["video"], _moving_square(9, 16, (0, 0, 255), 99), loop=0)
    again = pipeline.encode(tmp_path / "part", tmp_path / "e", cfg)
    assert not again.up_to_date and "clips" in again.reason, again.reason
    fresh = pipeline.encode(tmp_path / "part", tmp_path / "e2", cfg)
    assert load_latents(tmp_path / "e").keys() == load_latents(tmp_path / "e2").keys()
    assert all(torch.equal(load_latents(tmp_path / "e")[k], v) for k, v in load_latents(tmp_path / "e2").items())
    assert fresh.manifest.counts["latents"] == 6

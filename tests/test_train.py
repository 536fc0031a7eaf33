"""The DiReCT trainer on a real tiny diffusers `WanTransformer3DModel` (built from its config, no hub)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from direct_data.core.errors import ConfigError, InputError
from direct_data.training import wan
from direct_data.training.checkpoint import LORA_WEIGHT_NAME, latest_checkpoint
from direct_data.training.config import TrainConfig, preset
from direct_data.training.data import PartitionBatchSampler, TrainData, collate, drop_captions, make_val_batch
from direct_data.training.loop import NonFiniteLossError, train

C, F, H, W = 16, 2, 8, 8  # latent (Wan VAE channels), 2 x 8 x 8 -> 32 tokens with patch (1, 2, 2)
D = 384  # MiniLM token-state width: the tiny model's text_dim


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster than two fighting over a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def structured_data(n: int = 32, parts: int = 4, text_len: int = 8, seed: int = 0, **kw) -> TrainData:
    """Rows of `parts` semantic clusters: each partition has its own latent prototype and caption
    states; every row carries a hard negative (its caption states, perturbed)."""
    g = torch.Generator().manual_seed(seed)
    part = torch.arange(n) % parts
    latents = torch.randn(parts, C, F, H, W, generator=g)[part] + 0.3 * torch.randn(n, C, F, H, W, generator=g)
    text = torch.randn(parts, text_len, D, generator=g)[part] + 0.1 * torch.randn(n, text_len, D, generator=g)
    lengths = torch.randint(text_len // 2, text_len + 1, (n,), generator=g)
    hard = text + 0.5 * torch.randn(n, text_len, D, generator=g)
    axes = ["kinematics", "forces", "materials", "interactions", "magnitudes"]
    return TrainData.from_tensors(latents, text, lengths, part, hard_states=hard, hard_lengths=lengths,
                                  hard_axis=[axes[i % 5] for i in range(n)], **kw)


def _cfg(name: str, **kw) -> TrainConfig:
    base = dict(batch_size=4, lr=3e-3, lora_rank=8, progress=False, model_config="tiny")
    base.update(kw)
    return preset(name, **base)


# ---------------------------------------------------------------------------------------------- sampler


def test_sampler_every_batch_spans_two_partitions_deterministic_and_resumable():
    # one dominant partition: plain shuffling would give single-partition batches
    part = torch.tensor([0] * 40 + [1] * 5 + [2] * 3)
    s = PartitionBatchSampler(part, batch_size=4, seed=7)
    seen = []
    for _ in range(40):
        epoch, rows = s.next_batch()
        assert len(rows) == 4 and len(set(rows)) == 4
        assert len({int(part[i]) for i in rows}) >= 2, rows
        seen.append((epoch, tuple(rows)))
    assert seen[-1][0] >= 2  # crossed epochs
    # deterministic from (seed, epoch)
    s2 = PartitionBatchSampler(part, batch_size=4, seed=7)
    assert [(e, tuple(r)) for e, r in (s2.next_batch() for _ in range(40))] == seen
    # resume mid-epoch from the state dict
    s3 = PartitionBatchSampler(part, batch_size=4, seed=7)
    for _ in range(13):
        s3.next_batch()
    s4 = PartitionBatchSampler(part, batch_size=4, seed=7)
    s4.load_state_dict(s3.state_dict())
    assert [tuple(s4.next_batch()[1]) for _ in range(27)] == [r for _, r in seen[13:]]
    # each row at most once per epoch
    for e in range(2):
        rows = [i for b in s.epoch_batches(e) for i in b]
        assert len(rows) == len(set(rows))
    with pytest.raises(InputError, match="two partitions"):
        PartitionBatchSampler(torch.zeros(8, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="seed"):
        PartitionBatchSampler(part, 4, seed=8).load_state_dict(s.state_dict())


def test_batch_carries_hard_negatives_of_its_rows():
    data = structured_data()
    g = torch.Generator().manual_seed(0)
    b = collate(data, [0, 1, 2, 3], text_len=data.max_text_len, micro_fraction=0.5, use_micro=True, gen=g)
    assert b.micro_rows.numel() == 2 and b.hard_text.shape == (2, data.max_text_len, D)
    for k, pos in enumerate(b.micro_rows.tolist()):
        row = int(b.rows[pos])
        states, axis = data.hard[row][0]
        torch.testing.assert_close(b.hard_text[k, : states.shape[0]], states)
        assert float(b.hard_text[k, states.shape[0]:].abs().sum()) == 0.0  # zero padding, as Wan pads
        assert b.hard_axis[k] == axis


def test_data_accounting_rejects_bad_rows_and_macro_candidates():
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(6, C, F, H, W, generator=g)
    lat[2, 0, 0, 0, 0] = float("nan")
    text = torch.randn(6, 4, D, generator=g)
    lengths = torch.tensor([4, 4, 4, 0, 4, 4])
    data = TrainData.from_tensors(lat, text, lengths, [0, 1, 2, 0, 1, 2], partition_neighbors={0: [1, 2]})
    assert data.rejected == [(2, "non-finite latent"), (3, "empty text states")]
    assert data.accounting()["kept"] + data.accounting()["rejected"] == 6
    assert data.source_rows == [0, 1, 4, 5]
    # kept rows: 0 (p0), 1 (p1), 4 (p1), 5 (p2); excluding the nearest partition of p0 (p1) leaves p2
    assert data.macro_candidates(0, exclude_nearest=0).tolist() == [1, 2, 3]
    assert data.macro_candidates(0, exclude_nearest=1).tolist() == [3]
    rows = torch.arange(4)
    for m in (0, 1):
        mat = data.macro_eligible_matrix(rows, m)
        assert torch.equal(mat, torch.stack([data.macro_eligible(i, rows, m) for i in range(4)]))
    assert data.macro_eligible_matrix(rows, 1)[0].tolist() == [False, False, False, True]
    explicit = TrainData.from_tensors(lat, text, lengths, [0, 1, 2, 0, 1, 2], macro_ids=[[5, 2], [], [], [], [0], []])
    assert explicit.macro_candidates(0, 0).tolist() == [3]  # input row 5 -> kept row 3; rejected row 2 dropped
    assert explicit.macro_eligible_matrix(rows, 0).tolist() == [[False, False, False, True], [False] * 4,
                                                                [True, False, False, False], [False] * 4]
    with pytest.raises(InputError, match="latent shape"):
        TrainData([torch.zeros(C, F, H, W), torch.zeros(C, F, H, 4)], [torch.zeros(2, D)] * 2, [0, 1])


# ---------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("objective", ["sft", "direct"])
def test_fm_loss_falls_on_fixed_validation_batch(objective, tmp_path):
    data = structured_data()
    val = make_val_batch(data, range(8), seed=99)
    cfg = _cfg(objective, max_steps=100, val_every=50, out_dir=str(tmp_path))
    res = train(cfg, data, model=wan.build_transformer("tiny", seed=0), val=val)
    (s0, v0), (s1, v1) = res.val_fm[0], res.val_fm[-1]
    assert (s0, s1) == (0, 100)
    assert v1 < 0.93 * v0, res.val_fm
    assert res.nan_skips == 0
    recs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert recs[0] == {"step": 0, "val_fm": v0}
    steps = [r for r in recs if r["step"] > 0]
    assert [r["step"] for r in steps] == list(range(1, 101))
    last = steps[-1]
    for key in ("loss", "fm", "lr", "grad_norm", "conflict_naive", "cos_naive"):
        assert key in last and math.isfinite(last[key])
    assert 0.0 <= last["conflict_naive"] <= 1.0
    if objective == "direct":
        for key in ("macro", "micro", "reg", "conflict_macro", "macro_rows"):
            assert key in last and math.isfinite(last[key]), key
        assert last["macro"] <= 0.0 and last["micro"] >= 0.0 and last["reg"] >= 0.0
        assert last["loss"] == pytest.approx(last["fm"] + last["macro"] + last["micro"] + last["reg"], rel=1e-5)
        assert any("conflict_micro" in r for r in steps)
        assert last["micro_rows"] == 1  # 25% of a batch of 4
    else:
        assert last["loss"] == last["fm"]
    # the training FM term fell too (mean of the first vs last 20 steps)
    first = sum(r["fm"] for r in steps[:20]) / 20
    final = sum(r["fm"] for r in steps[-20:]) / 20
    assert final < first


@pytest.mark.parametrize("lora_rank,reg", [(8, "moments"), (0, "l2")])
def test_stop_and_resume_gives_the_same_loss_curve(lora_rank, reg, tmp_path):
    data = structured_data()
    kw = dict(max_steps=12, ckpt_every=4, lora_rank=lora_rank, reg=reg, lr_schedule="cosine", warmup_steps=3,
              lr=1e-3 if lora_rank == 0 else 3e-3)
    full = train(_cfg("direct", out_dir=str(tmp_path / "full"), **kw), data, model=wan.build_transformer("tiny"))
    part = train(_cfg("direct", out_dir=str(tmp_path / "resumed"), **kw), data,
                 model=wan.build_transformer("tiny"), stop_after=6)
    assert part.stopped and part.step == 6
    assert latest_checkpoint(tmp_path / "resumed").name == "step-00000006"
    res = train(_cfg("direct", out_dir=str(tmp_path / "resumed"), **kw), data, model=wan.build_transformer("tiny"))
    assert res.step == 12 and not res.stopped
    keys = ("loss", "fm", "macro", "micro", "reg", "lr", "grad_norm", "epoch")
    curve = lambda recs: [tuple(r[k] for k in keys) for r in recs]  # noqa: E731
    assert curve(res.records) == curve(full.records)
    logged = [json.loads(x) for x in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 13))
    # final weights identical too
    for (n1, p1), (n2, p2) in zip(full.model.named_parameters(), res.model.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    # only the newest checkpoints are kept
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == ["step-00000008", "step-00000012"]


def test_lora_checkpoint_loads_through_wan_pipeline(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    data = structured_data()
    cfg = _cfg("sft", max_steps=10, lora_rank=4, lora_alpha=8.0, out_dir=str(tmp_path))
    res = train(cfg, data, model=wan.build_transformer("tiny", seed=3))
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=wan.build_transformer("tiny", seed=3),
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0))
    g = torch.Generator().manual_seed(0)
    x, c, t = torch.randn(2, C, F, H, W, generator=g), torch.randn(2, 8, D, generator=g), torch.tensor([250.0, 900.0])
    with torch.no_grad():
        base = pipe.transformer(x, t, c, return_dict=False)[0]
        pipe.load_lora_weights(str(res.checkpoint), weight_name=LORA_WEIGHT_NAME)
        loaded = pipe.transformer(x, t, c, return_dict=False)[0]
        res.model.eval()
        trained = res.model(x, t, c, return_dict=False)[0]
    assert float((trained - base).abs().max()) > 1e-3  # the adapter learned something
    torch.testing.assert_close(loaded, trained, atol=1e-5, rtol=1e-5)  # and diffusers applies it identically
    out = pipe(prompt_embeds=c[:1], height=16, width=16, num_frames=5, num_inference_steps=2, guidance_scale=1.0,
               output_type="latent").frames
    assert out.shape == (1, C, 2, 2, 2) and bool(torch.isfinite(out).all())


def test_full_finetune_checkpoint_is_save_pretrained(tmp_path):
    from diffusers import WanTransformer3DModel

    data = structured_data()
    res = train(_cfg("sft", max_steps=3, lora_rank=0, out_dir=str(tmp_path)), data, model=wan.build_transformer("tiny"))
    loaded = WanTransformer3DModel.from_pretrained(res.checkpoint / "transformer")
    for (n, p), (n2, p2) in zip(res.model.named_parameters(), loaded.named_parameters()):
        assert n == n2 and torch.equal(p, p2)
    assert not list(res.checkpoint.rglob("*.bin")) and not list(res.checkpoint.rglob("*.pt"))


def test_non_finite_steps_are_skipped_counted_then_stop(tmp_path):
    data = structured_data(check_finite=False)
    data.latents[5] = data.latents[5].clone()
    data.latents[5][0, 0, 0, 0] = float("inf")  # a corrupt row: its batch gives a non-finite loss
    cfg = _cfg("sft", max_steps=24, max_nan_skips=5)  # 3 epochs of 8 batches: the row comes up 3 times
    res = train(cfg, data, model=wan.build_transformer("tiny"))
    skipped = [r for r in res.records if r["skipped"]]
    assert res.nan_skips == 3 and len(skipped) == 3 and res.step == 24
    assert all(math.isnan(r["loss"]) for r in skipped)
    assert all(bool(torch.isfinite(p).all()) for p in res.model.parameters())
    with pytest.raises(NonFiniteLossError, match="max_nan_skips=1"):
        train(_cfg("sft", max_steps=24, max_nan_skips=1, out_dir=str(tmp_path)), data,
              model=wan.build_transformer("tiny"))
    # the stop left a resumable checkpoint at the step it stopped
    assert latest_checkpoint(tmp_path) is not None


@pytest.mark.parametrize("variant", [
    dict(micro_variant="push", reg="mmd", macro_source="dataset", exclude_nearest=1),
    dict(micro_variant="repel", reg="moments-target", lam_naive=0.05),
    dict(micro_variant="triplet", reg="none", lam_micro=0.05, micro_fraction=1.0, noise_dist="uniform"),
    dict(prediction="x0", reg="moments", lam_naive=0.05),
])
def test_every_variant_runs_with_finite_terms(variant):
    data = structured_data(partition_neighbors={0: [1, 2], 1: [0, 3], 2: [3, 0], 3: [2, 1]})
    res = train(_cfg("direct", max_steps=3, **variant), data, model=wan.build_transformer("tiny"))
    for r in res.records:
        assert not r["skipped"] and all(math.isfinite(r[k]) for k in ("loss", "fm", "macro", "micro"))
    if variant.get("micro_fraction") == 1.0:
        assert res.records[-1]["micro_rows"] == 4


def test_config_validation():
    with pytest.raises(ConfigError, match="lam_macro"):
        preset("direct", lam_macro=1.0)
    with pytest.raises(ConfigError, match="micro_variant"):
        preset("direct", micro_variant="pull")
    with pytest.raises(ConfigError, match="unknown objective"):
        preset("dpo")
    with pytest.raises(ConfigError, match="prediction"):
        preset("sft", prediction="eps")
    with pytest.raises(InputError, match="text_dim"):
        train(_cfg("sft", max_steps=1), structured_data(), model=wan.build_transformer("tiny", text_dim=64))


# ---------------------------------------------------------------------------------------------- model builders


def test_wan_1p3b_config_is_the_real_architecture():
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):  # no memory: shapes only
        model = WanTransformer3DModel(**wan.transformer_config("wan2.1-1.3b"))
    n = sum(p.numel() for p in model.parameters())
    assert 1.40e9 < n < 1.44e9, n  # Wan2.1-T2V-1.3B: ~1.42B parameters
    assert len(model.blocks) == 30 and model.proj_out.in_features == 1536
    assert model.condition_embedder.text_embedder.linear_1.in_features == 4096  # umT5-XXL states
    with pytest.raises(ValueError, match="unknown model config"):
        wan.transformer_config("wan2.1-14b-typo")


def test_pretrained_folder_lora_and_reference_switch(tmp_path):
    tiny = wan.build_transformer("tiny", seed=5)
    tiny.save_pretrained(tmp_path / "ckpt" / "transformer", safe_serialization=True)
    for path in (tmp_path / "ckpt", tmp_path / "ckpt" / "transformer"):
        loaded = wan.build_transformer(pretrained=path)
        for (n, p), (_, q) in zip(tiny.named_parameters(), loaded.named_parameters()):
            assert torch.equal(p, q), n
    with pytest.raises(InputError, match="config.json"):
        wan.build_transformer(pretrained=tmp_path)
    g = torch.Generator().manual_seed(0)
    x, c, t = torch.randn(1, C, F, H, W, generator=g), torch.randn(1, 6, D, generator=g), torch.tensor([500.0])
    wan.add_lora(loaded, rank=4, alpha=8)
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} and all(
        "lora_" in n for n, p in loaded.named_parameters() if p.requires_grad)
    with torch.no_grad():
        for n, p in loaded.named_parameters():
            if "lora_B" in n:
                p.normal_(generator=g)
        on = loaded(x, t, c, return_dict=False)[0]
        with wan.adapters_disabled(loaded):
            off = loaded(x, t, c, return_dict=False)[0]
        again = loaded(x, t, c, return_dict=False)[0]
        base = tiny(x, t, c, return_dict=False)[0]
    torch.testing.assert_close(off, base)  # adapters off = the pretrained model
    assert float((on - base).abs().max()) > 1e-3
    torch.testing.assert_close(again, on)  # and switched back on after the block
    with pytest.raises(ConfigError, match="lora_targets no_such_layer matched no module .*to_out.0"):
        wan.add_lora(wan.build_transformer("tiny"), rank=4, target_modules=("no_such_layer",))


# ---------------------------------------------------------------------------------------------- sampling


class _Oracle(torch.nn.Module):
    """Stands in for the transformer's call signature: predicts a fixed clean latent, ``c`` for a
    caption and ``d`` for the null caption (all-zero states), as x0 or as its exact velocity
    ``(x_s - x0) / s`` (``prediction="v"``)."""

    def __init__(self, c: torch.Tensor, d: torch.Tensor, prediction: str) -> None:
        super().__init__()
        self.c, self.d, self.prediction = c, d, prediction

    def forward(self, x, t, text, return_dict=False):
        s = (t / 1000.0).reshape(-1, 1, 1, 1, 1)
        has_text = (text.abs().flatten(1).sum(1) > 0).reshape(-1, 1, 1, 1, 1)
        x0 = torch.where(has_text, self.c, self.d)
        return ((x0 if self.prediction == "x0" else (x - x0) / s),)


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_sampler_lands_on_the_predicted_clean_latent_and_guides(prediction):
    from direct_data.training.sample import sample_latents

    g = torch.Generator().manual_seed(3)
    c, d = torch.randn(C, F, H, W, generator=g), torch.randn(C, F, H, W, generator=g)
    states = [torch.ones(4, D), torch.ones(6, D)]
    oracle = _Oracle(c, d, prediction)
    out = sample_latents(oracle, states, (C, F, H, W), steps=7, shift=3.0, seed=1, prediction=prediction)
    torch.testing.assert_close(out, c.expand(2, *c.shape), atol=1e-4, rtol=1e-4)
    # classifier-free guidance extrapolates from the null caption's prediction: d + 2 (c - d)
    out = sample_latents(oracle, states, (C, F, H, W), steps=7, shift=3.0, seed=1, prediction=prediction,
                         guidance_scale=2.0)
    torch.testing.assert_close(out, (2 * c - d).expand(2, *c.shape), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="prediction"):
        sample_latents(oracle, states, (C, F, H, W), steps=2, prediction="eps")
    with pytest.raises(ValueError, match="guidance_scale"):
        sample_latents(oracle, states, (C, F, H, W), steps=2, guidance_scale=0.5)


def test_caption_dropout_nulls_a_seeded_fraction_of_rows():
    data = structured_data(n=64)
    batch = collate(data, list(range(64)), text_len=8, micro_fraction=0.25, use_micro=True,
                    gen=torch.Generator().manual_seed(0))
    out = drop_captions(batch, 0.25, torch.Generator().manual_seed(5))
    again = drop_captions(batch, 0.25, torch.Generator().manual_seed(5))
    null = out.text.abs().flatten(1).sum(1) == 0
    assert 4 <= int(null.sum()) <= 28 and torch.equal(out.text, again.text)
    torch.testing.assert_close(out.text[~null], batch.text[~null])  # the rest untouched
    assert torch.equal(out.hard_text, batch.hard_text) and torch.equal(out.latents, batch.latents)
    assert drop_captions(batch, 0.0, torch.Generator()) is batch
    with pytest.raises(ConfigError, match="cond_dropout"):
        preset("sft", cond_dropout=1.0)


# ---------------------------------------------------------------------------------------------- declared config


@pytest.mark.parametrize("line,key", [
    ('max_steps = "ten"', "max_steps"),
    ("lora_targets = 5", "lora_targets"),
    ('betas = ["a", 0.9]', "betas"),
    ('model_overrides = "big"', "model_overrides"),
    ('progress = "yes"', "progress"),
    ("lr = [1, 2]", "lr"),
])
def test_train_toml_value_of_the_wrong_type_is_a_config_error(tmp_path, line, key):
    from direct_data.core.config import load_toml

    path = tmp_path / "run.toml"
    path.write_text(f"[train]\n{line}\n")
    over = load_toml(path, TrainConfig)
    with pytest.raises(ConfigError, match=f"^{key}: expected") as e:
        preset("direct", **over)
    assert "\n" not in str(e.value)
    # the same through the generic builder (defaults < TOML < flags)
    with pytest.raises(ConfigError, match=f"^{key}: expected"):
        TrainConfig.build(toml=over)


def test_train_toml_values_of_the_right_type_are_used(tmp_path):
    from direct_data.core.config import load_toml

    path = tmp_path / "run.toml"
    path.write_text('seed = 3\n[train]\nmax_steps = 7\nlora_targets = ["to_q", "to_v"]\nbetas = [0.8, 0.99]\n'
                    'model_overrides = {num_layers = 1}\nlr = 1\n')
    cfg = preset("direct", **load_toml(path, TrainConfig))
    assert (cfg.max_steps, cfg.seed, cfg.lr) == (7, 3, 1.0) and isinstance(cfg.lr, float)
    assert cfg.lora_targets == ("to_q", "to_v") and cfg.betas == (0.8, 0.99)
    assert cfg.model_overrides == {"num_layers": 1} and cfg.lam_macro == 0.05  # the preset's terms kept
    path.write_text("[train]\nmax_step = 7\n")
    with pytest.raises(ConfigError, match="unknown key in \\[train\\]: max_step .*max_steps"):
        load_toml(path, TrainConfig)


def test_unknown_preset_key_or_range_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown objective 'dpo': one of sft, deltafm, direct"):
        preset("dpo")
    with pytest.raises(ConfigError, match="unknown train option max_step .*max_steps"):
        preset("sft", max_step=3)
    with pytest.raises(ConfigError, match="objective given twice"):
        preset("sft", objective="direct")
    with pytest.raises(ConfigError, match="batch_size: must be >= 2"):
        preset("sft", batch_size=1)
    with pytest.raises(ConfigError, match="model_overrides: unknown WanTransformer3DModel option num_blocks"):
        preset("sft", model_overrides={"num_blocks": 3})
    with pytest.raises(ConfigError, match="betas"):
        preset("sft", betas=(0.9, 1.0))
    with pytest.raises(ConfigError, match="device"):
        preset("sft", device="gpu")
    with pytest.raises(ConfigError, match="model_config: 'huge' is not one of"):
        preset("sft", model_config="huge")


def test_train_config_declaration():
    fields = {f.name: f.metadata for f in TrainConfig.declared()}
    assert set(fields) == set(TrainConfig.keys()) and all(m["help"] for m in fields.values())
    assert {k for k, m in fields.items() if m["cli"]} == {"model_config", "pretrained", "lora_rank", "max_steps",
                                                          "batch_size", "lr", "seed", "device"}
    hashed = preset("direct", out_dir="/somewhere", progress=False).hashed()
    for k in ("out_dir", "progress", "tensorboard", "log_every", "device", "ckpt_every", "val_every"):
        assert k not in hashed
    for k in ("lam_macro", "lr", "seed", "max_steps", "model_overrides", "prediction"):
        assert k in hashed
    # the config module is light: the CLI and the TOML checker import it without torch
    import subprocess
    import sys

    code = ("import sys, direct_data.training.config, direct_data.training.sample; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------- data vs model


def pixel_data(n: int = 8, parts: int = 2, shape=(3, 2, 8, 8), text_len: int = 6, seed: int = 0) -> TrainData:
    """Pixel latents in [-1, 1] (as `encode --vae pixels` stores them) and MiniLM-wide text states."""
    g = torch.Generator().manual_seed(seed)
    part = torch.arange(n) % parts
    latents = (torch.rand(parts, *shape, generator=g)[part] * 2 - 1).clamp(-1, 1)
    text = torch.randn(parts, text_len, D, generator=g)[part] + 0.1 * torch.randn(n, text_len, D, generator=g)
    return TrainData.from_tensors(latents, text, torch.full((n,), text_len), part)


def test_data_that_cannot_fit_the_model_is_a_user_error(tmp_path):
    tiny = dict(model_config="tiny", max_steps=1, batch_size=4, progress=False)
    with pytest.raises(ConfigError, match=r"latent height \(H\) = 7 is not a multiple of the patch size 2"):
        train(preset("sft", **tiny), pixel_data(shape=(3, 2, 7, 8)))
    with pytest.raises(ConfigError, match=r"latent width \(W\) = 5 .*patch_size"):
        train(preset("sft", **tiny, model_overrides={"patch_size": [1, 2, 2]}), pixel_data(shape=(3, 2, 8, 5)))
    with pytest.raises(ConfigError, match="model_overrides sets in_channels=16.*3 channels"):
        train(preset("sft", **tiny, model_overrides={"in_channels": 16, "out_channels": 16}), pixel_data())
    with pytest.raises(ConfigError, match="text_len=4 is shorter .*6 tokens"):
        train(preset("sft", **tiny, text_len=4), pixel_data())
    with pytest.raises(ConfigError, match="text states are 384 wide.*text_dim=64.*model_overrides"):
        train(preset("sft", **tiny, model_overrides={"text_dim": 64}), pixel_data())
    with pytest.raises(InputError, match="4 training rows are fewer than one batch of 8: lower batch_size"):
        train(preset("sft", **{**tiny, "batch_size": 8}), pixel_data(n=4))
    with pytest.raises(InputError, match="one partition.*k >= 2"):
        pixel_data(parts=1)
    # a pretrained model fixes the channels: the data must match it
    wan.build_transformer("tiny").save_pretrained(tmp_path / "base" / "transformer", safe_serialization=True)
    with pytest.raises(InputError, match="takes 16-channel latents .*have 3 channels"):
        train(preset("sft", **tiny, pretrained=str(tmp_path / "base")), pixel_data())
    with pytest.raises(InputError, match="not a diffusers Wan checkpoint"):
        train(preset("sft", **tiny, pretrained=str(tmp_path)), pixel_data())


def test_resume_under_another_batch_size_is_a_config_error(tmp_path):
    data = structured_data()
    train(_cfg("sft", max_steps=2, out_dir=str(tmp_path)), data, model=wan.build_transformer("tiny"))
    with pytest.raises(ConfigError, match="batch_size=4, this run asks for batch_size=8"):
        train(_cfg("sft", max_steps=4, batch_size=8, out_dir=str(tmp_path)), data, model=wan.build_transformer("tiny"))
    res = train(_cfg("sft", max_steps=4, batch_size=8, out_dir=str(tmp_path)), data, model=wan.build_transformer("tiny"),
                resume=False)
    assert res.step == 4
    # a checkpoint whose files were truncated or deleted: one line naming it, with the way out
    ck = latest_checkpoint(tmp_path)
    opt = ck / "optimizer.safetensors"
    opt.write_bytes(opt.read_bytes()[:100])
    with pytest.raises(InputError, match=f"checkpoint {re.escape(str(ck))}: its files are not .*changed: optimizer.safetensors;"
                                         f".*delete it to resume from an earlier one"):
        train(_cfg("sft", max_steps=6, batch_size=8, out_dir=str(tmp_path)), data, model=wan.build_transformer("tiny"))


# ---------------------------------------------------------------------------------------------- the tiny CPU path


@pytest.mark.parametrize("lora_rank", [4, 0])
def test_tiny_model_on_pixel_latents_trains_and_samples_gifs_from_the_run_folder(tmp_path, lora_rank):
    import imageio.v3 as iio

    from direct_data.training.sample import SampleConfig, run_sample

    run = tmp_path / "run"
    cfg = preset("sft", model_config="tiny", lora_rank=lora_rank, max_steps=2, batch_size=4, lr=1e-3,
                 out_dir=str(run), progress=False)
    res = train(cfg, pixel_data())  # no model given: the named config follows the data's 3 channels
    assert res.step == 2 and res.model.config.in_channels == 3 and res.model.config.out_channels == 3
    assert latest_checkpoint(run).name == "step-00000002"
    out = tmp_path / "samples"
    s = run_sample(run, ["a red ball falls onto the floor", "a blue cube slides"], out, SampleConfig(steps=2, seed=1))
    assert s["files"] == ["0000.gif", "0001.gif"] and s["frames_shape"] == [2, 8, 8, 3]
    assert s["checkpoint"] == str(run / "checkpoints" / "step-00000002")
    for name in s["files"]:
        frames = iio.imread(out / name, index=None)
        assert frames.shape[0] == 2 and frames.shape[1:3] == (8, 8)
    assert (out / "samples.safetensors").is_file() and json.loads((out / "prompts.json").read_text())[1] == "a blue cube slides"
    # the same clips from the checkpoint folder itself (same seed, same noise)
    again = run_sample(run / "checkpoints" / "step-00000002", ["a red ball falls onto the floor"], tmp_path / "again",
                       steps=2, seed=1)
    assert iio.imread(tmp_path / "again" / "0000.gif", index=None).tolist() == iio.imread(out / "0000.gif", index=None).tolist()
    assert again["clips"] == 1
    # one prompt into the two-prompt folder: its second clip goes with the prompts.json that listed it
    run_sample(run, ["a red ball falls onto the floor"], out, SampleConfig(steps=2, seed=1))
    assert sorted(p.name for p in out.iterdir()) == ["0000.gif", "prompts.json", "samples.safetensors"]


def test_run_sample_checks_every_argument_before_sampling(tmp_path):
    from direct_data.core.errors import OutputError
    from direct_data.training.sample import SampleConfig, run_sample

    run = tmp_path / "run"
    train(_cfg("sft", max_steps=1, out_dir=str(run)), structured_data(), model=wan.build_transformer("tiny"))
    out = tmp_path / "samples"
    # 16-channel latents and no VAE: refused before any sampling, nothing written
    with pytest.raises(ConfigError, match="16 channels .*give vae") as e:
        run_sample(run, ["a ball"], out, SampleConfig(steps=2))
    assert "\n" not in str(e.value)
    assert not out.exists()
    with pytest.raises(ConfigError, match="16 channels"):
        run_sample(run, ["a ball"], out, SampleConfig(steps=2, vae="pixels"))
    with pytest.raises(ConfigError, match="vae .*no such folder"):  # a missing vae folder: refused with the settings
        SampleConfig(steps=2, vae=str(tmp_path / "no-vae"))
    # 3-channel latents for a 16-channel model: refused after loading the model, before sampling
    with pytest.raises(ConfigError, match="has 3 channels but the checkpoint's model takes 16"):
        run_sample(run, ["a ball"], out, SampleConfig(steps=2, latent_shape=(3, 2, 8, 8)))
    # paths that are not a checkpoint
    with pytest.raises(InputError, match="no such folder"):
        run_sample(tmp_path / "nothing", ["a ball"], out, SampleConfig())
    (tmp_path / "empty-run" / "checkpoints" / "step-00000003.tmp").mkdir(parents=True)
    with pytest.raises(InputError, match="without a complete checkpoint .*step-00000003.tmp"):
        run_sample(tmp_path / "empty-run", ["a ball"], out, SampleConfig())
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="neither a checkpoint folder .*nor a run folder .*notes.txt"):
        run_sample(tmp_path / "other", ["a ball"], out, SampleConfig())
    # the output folder
    with pytest.raises(OutputError, match="is a file"):
        run_sample(run, ["a ball"], tmp_path / "other" / "notes.txt", SampleConfig(latent_shape="3,2,8,8"))
    with pytest.raises(OutputError, match="checkpoint or its run folder"):
        run_sample(run, ["a ball"], run, SampleConfig(latent_shape="3,2,8,8"))
    # a folder of the user's, even with files named as samples are: refused, untouched
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "prompts.json").write_text("my notes")
    with pytest.raises(OutputError, match="holds files `sample` did not write"):
        run_sample(run, ["a ball"], mine, SampleConfig(latent_shape="3,2,8,8"))
    assert (mine / "prompts.json").read_text() == "my notes"
    # values
    with pytest.raises(ConfigError, match="format: 'avi' is not one of gif, mp4"):
        SampleConfig(format="avi")
    with pytest.raises(ConfigError, match="steps: must be >= 1"):
        SampleConfig(steps=0)
    with pytest.raises(ConfigError, match="guidance: must be >= 1"):
        SampleConfig(guidance=0.5)
    with pytest.raises(ConfigError, match="latent_shape: expected C,F,H,W"):
        SampleConfig(latent_shape="3,2,8")
    with pytest.raises(ConfigError, match="values per clip, over 2"):
        SampleConfig(latent_shape="3,1000000,1000000,1000000")
    with pytest.raises(ConfigError, match="steps: must be <= 100000"):
        SampleConfig(steps=10**20)
    with pytest.raises(ConfigError, match="seed: must be <="):
        SampleConfig(seed=10**20)
    # a trainer state edited by hand: one line naming it
    state = latest_checkpoint(run) / "trainer_state.json"
    good = state.read_text()
    for bad, needle in (("{bad json", "cannot read it"), ("[]", "not a trainer state")):
        state.write_text(bad)
        with pytest.raises(InputError, match=needle):
            run_sample(run, ["a ball"], out, SampleConfig(latent_shape="3,2,8,8"))
    state.write_text(good)
    with pytest.raises(ConfigError, match="no prompts"):
        run_sample(run, [], out, SampleConfig())
    assert not out.exists()


def test_run_sample_refuses_an_mp4_it_cannot_write_before_sampling(tmp_path):
    from direct_data.training.sample import SampleConfig, run_sample

    run = tmp_path / "run"
    train(preset("sft", model_config="tiny", lora_rank=4, max_steps=1, batch_size=4, out_dir=str(run), progress=False,
                 model_overrides={"patch_size": [1, 1, 1]}), pixel_data(shape=(3, 2, 5, 6)))
    out = tmp_path / "samples"
    with pytest.raises(ConfigError, match="mp4 .*even frame height and width, the clips are 5 x 6"):
        run_sample(run, ["a ball"], out, SampleConfig(steps=1, format="mp4"))
    assert not out.exists()
    s = run_sample(run, ["a ball"], out, SampleConfig(steps=1, format="gif"))
    assert s["files"] == ["0000.gif"]


def _tiny_vae(path, z_dim: int):
    """A real `AutoencoderKLWan` (random init, 62k parameters): 4x temporal, 8x spatial, as Wan's."""
    from diffusers import AutoencoderKLWan

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = AutoencoderKLWan(base_dim=8, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                               temperal_downsample=[False, True, True], latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
    vae.save_pretrained(path, safe_serialization=True)
    return path


def test_run_sample_decodes_latents_with_a_vae(tmp_path):
    import imageio.v3 as iio

    from direct_data.training.sample import SampleConfig, run_sample

    run = tmp_path / "run"
    train(preset("sft", model_config="tiny", lora_rank=4, max_steps=1, batch_size=4, out_dir=str(run), progress=False),
          pixel_data(shape=(4, 2, 4, 4)))
    vae = _tiny_vae(tmp_path / "wan" / "vae", 4)
    with pytest.raises(ConfigError, match="4 channels .*give vae"):
        run_sample(run, ["a ball"], tmp_path / "s", SampleConfig(steps=1))
    with pytest.raises(ConfigError, match="decodes 16-channel latents but these have 4"):
        run_sample(run, ["a ball"], tmp_path / "s", SampleConfig(steps=1, vae=str(_tiny_vae(tmp_path / "vae16", 16))))
    assert not (tmp_path / "s").exists()
    for fmt in ("gif", "mp4"):
        s = run_sample(run, ["a ball", "a cube"], tmp_path / fmt, SampleConfig(steps=1, vae=str(tmp_path / "wan"), format=fmt))
        assert s["files"] == [f"0000.{fmt}", f"0001.{fmt}"] and s["frames_shape"] == [5, 32, 32, 3]
        assert iio.imread(tmp_path / fmt / f"0001.{fmt}", index=None).shape == (5, 32, 32, 3)
    assert str(vae).endswith("vae")


# ---------------------------------------------------------------------------------------------- run folders and checkpoints: never a user's file, never a traceback


def test_rotation_never_deletes_a_checkpoint_folder_holding_a_users_file(tmp_path, caplog):
    from direct_data.training.checkpoint import is_checkpoint_folder

    run = tmp_path / "run"
    data = structured_data()
    train(_cfg("sft", lora_rank=0, max_steps=1, out_dir=str(run)), data, model=wan.build_transformer("tiny"))
    first = run / "checkpoints" / "step-00000001"
    assert is_checkpoint_folder(first)
    mine = first / "transformer" / "notes.txt"
    mine.write_text("my notes")
    assert not is_checkpoint_folder(first)  # recursively: a file in transformer/ is not ours
    with caplog.at_level("WARNING"):
        train(_cfg("sft", lora_rank=0, max_steps=3, ckpt_every=1, keep_checkpoints=1, out_dir=str(run)), data,
              model=wan.build_transformer("tiny"))
    assert mine.read_text() == "my notes"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000001", "step-00000003"]
    assert any("keeping old checkpoint" in r.getMessage() and "transformer/notes.txt" in r.getMessage() for r in caplog.records)


def test_a_users_folder_with_run_file_names_is_refused(tmp_path):
    from direct_data.core.errors import OutputError
    from direct_data.training.checkpoint import check_run_folder

    for name, text in (("config.json", '{"my": "settings"}'), ("log.jsonl", "my log\n"), ("config.json", "notes")):
        out = tmp_path / f"mine-{name}-{len(text)}"
        out.mkdir()
        (out / name).write_text(text)
        with pytest.raises(OutputError, match="not a run folder of `direct-data train`") as e:
            check_run_folder(out)
        assert "\n" not in str(e.value) and (out / name).read_text() == text
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "config.json").write_text(json.dumps(_cfg("sft").to_json()))
    (ours / "log.jsonl").write_text("")
    check_run_folder(ours)  # an earlier run's folder: resumed
    check_run_folder(tmp_path / "new")


def test_a_second_writer_of_a_run_folder_is_refused(tmp_path):
    from direct_data.core.errors import OutputError
    from direct_data.training.checkpoint import lock_run_folder

    run = tmp_path / "run"
    with lock_run_folder(run):
        with pytest.raises(OutputError, match=f"another direct-data process is writing {re.escape(str(run))}"):
            train(_cfg("sft", max_steps=1, out_dir=str(run)), structured_data(), model=wan.build_transformer("tiny"))
    res = train(_cfg("sft", max_steps=1, out_dir=str(run)), structured_data(), model=wan.build_transformer("tiny"))
    assert res.step == 1
    # a run refused before writing anything leaves no folder behind
    with pytest.raises(ConfigError):
        train(_cfg("sft", max_steps=1, lora_targets=("nonexistent",), out_dir=str(tmp_path / "no")), structured_data(),
              model=wan.build_transformer("tiny"))
    assert not (tmp_path / "no").exists()


def _swap(path, fn):
    """Apply ``fn`` to the tensors of safetensors file ``path``; returns the original bytes."""
    from safetensors.torch import load_file, save_file

    raw = path.read_bytes()
    save_file(fn(load_file(str(path))), str(path))
    return raw


def _forget_digests(ck):
    """Drop the sha256 record from checkpoint ``ck``'s trainer state, as versions before it wrote."""
    from direct_data.training.checkpoint import FILES_KEY

    state = ck / "trainer_state.json"
    meta = json.loads(state.read_text())
    assert set(meta.pop(FILES_KEY)) >= {"optimizer.safetensors", "rng.safetensors"}
    state.write_text(json.dumps(meta))


@pytest.mark.parametrize("lora_rank", [4, 0])
def test_a_checkpoint_file_changed_after_training_is_refused_by_resume_and_sample(tmp_path, lora_rank, caplog):
    from direct_data.training.sample import SampleConfig, run_sample

    run = tmp_path / "run"
    cfg = dict(model_config="tiny", lora_rank=lora_rank, max_steps=1, batch_size=4, progress=False, out_dir=str(run))
    train(preset("sft", **cfg), pixel_data())
    ck = latest_checkpoint(run)
    weights = ck / LORA_WEIGHT_NAME if lora_rank else next((ck / "transformer").glob("*.safetensors"))
    name = weights.relative_to(ck).as_posix()

    def refused(*needles):
        for call in (lambda: train(preset("sft", **{**cfg, "max_steps": 2}), pixel_data()),
                     lambda: run_sample(run, ["a ball"], tmp_path / "s", SampleConfig(steps=1))):
            with pytest.raises(InputError, match=f"checkpoint {re.escape(str(ck))}: its files are not the ones") as e:
                call()
            assert "\n" not in str(e.value) and all(n in str(e.value) for n in needles), str(e.value)
        assert latest_checkpoint(run) == ck and not (tmp_path / "s").exists()

    # one weight set to NaN, the shapes and names unchanged: only the digest tells
    good = _swap(weights, lambda t: {k: (v.fill_(float("nan")) if i == 0 else v) for i, (k, v) in enumerate(sorted(t.items()))})
    refused(f"changed: {name}")
    weights.write_bytes(good)
    (ck / "rng.safetensors").rename(tmp_path / "rng")
    refused("missing: rng.safetensors")
    (tmp_path / "rng").rename(ck / "rng.safetensors")
    extra = ck / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors"
    extra.parent.mkdir(exist_ok=True)
    extra.write_bytes(good)
    refused("not written by train: transformer/diffusion_pytorch_model-00002-of-00002.safetensors")
    extra.unlink()
    if lora_rank:
        extra.parent.rmdir()
    # a digest table edited into something else than file -> sha256 is a corrupt trainer state
    state = ck / "trainer_state.json"
    text = state.read_text()
    meta = json.loads(text)
    meta["files"] = {"../../etc/passwd": "0" * 64}
    state.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="corrupt trainer state .*files is not a table"):
        run_sample(run, ["a ball"], tmp_path / "s", SampleConfig(steps=1))
    state.write_text(text)
    # restored: verified and loaded (a user's note beside the weights is not read, so not refused)
    note = ck / ("notes.txt" if lora_rank else "transformer/notes.txt")
    note.write_text("mine")
    run_sample(run, ["a ball"], tmp_path / "s", SampleConfig(steps=1))
    note.unlink()  # a resume never writes into a run holding a foreign file
    # a checkpoint of an earlier version (no digests) still loads, with a warning
    _forget_digests(ck)
    with caplog.at_level("WARNING"):
        assert train(preset("sft", **{**cfg, "max_steps": 2}), pixel_data()).step == 2
    assert any("records no sha256" in r.getMessage() for r in caplog.records)


def test_corrupt_checkpoint_parts_are_one_line_errors(tmp_path):
    from direct_data.training.sample import SampleConfig, run_sample

    run = tmp_path / "run"
    cfg = dict(model_config="tiny", max_steps=1, batch_size=4, progress=False, out_dir=str(run))
    train(preset("sft", lora_rank=4, **cfg), pixel_data())
    ck = latest_checkpoint(run)
    _forget_digests(ck)  # as an earlier version wrote it: the loaders' own checks still refuse each bad part

    def refused(err=InputError, match="cannot load it", sample=True, objective="sft", **kw):
        with pytest.raises(err, match=match) as e:
            train(preset(objective, **{"lora_rank": 4, **cfg, "max_steps": 2, **kw}), pixel_data())
        assert "\n" not in str(e.value)
        if sample:
            with pytest.raises(err, match=match) as e:
                run_sample(run, ["a ball"], tmp_path / "s", SampleConfig(steps=1))
            assert "\n" not in str(e.value)

    # the optimizer state: a moment of another shape, or one deleted
    opt = ck / "optimizer.safetensors"
    from safetensors.torch import load_file

    first = sorted(k for k in load_file(str(opt)) if k.endswith("exp_avg"))[0]
    sq = first.replace("exp_avg", "exp_avg_sq")
    for fn, needle in ((lambda t: {**t, first: t[first][:1]}, "is \\[1"),
                       (lambda t: {k: v for k, v in t.items() if k != sq}, "lacks exp_avg_sq")):
        good = _swap(opt, fn)
        refused(match=f"cannot load it .*{needle}", sample=False)
        opt.write_bytes(good)
    # the adapter: a tensor deleted
    lora = ck / LORA_WEIGHT_NAME
    good = _swap(lora, lambda t: dict(sorted(t.items())[1:]))
    refused(match="cannot load it .*lacks LoRA weights")
    lora.write_bytes(good)
    # trainer state fields edited by hand
    state = ck / "trainer_state.json"
    good = state.read_text()
    for where, key, value in (("state", "latent_shape", "abc"), ("state", "latent_shape", [3, 0, 8, 8]),
                              ("state", "latent_shape", [3, -9, 8, 8]), ("state", "latent_shape", [3, 10**5, 10**5, 10**5]),
                              ("state", "latent_shape", [3, 2, 8]), ("state", "text_len", -5), ("state", "text_len", "x"),
                              ("config", "prediction", "zzz"), ("state", "step", "x")):
        meta = json.loads(good)
        meta[where][key] = value
        state.write_text(json.dumps(meta))
        refused(match=f"corrupt trainer state .*{key}")
    state.write_text(good)
    # the run's log: a partial last line is dropped; other bad content is refused
    log_path = run / "log.jsonl"
    good = log_path.read_text()
    for bad in ("[1,2]\n", "garbage{\n" + good):
        log_path.write_text(bad)
        refused(match="log.jsonl: line 1 is not", sample=False)
    log_path.unlink()
    log_path.mkdir()
    refused(match="log.jsonl: cannot read", sample=False)
    log_path.rmdir()
    # another value of an option that changes the result: refused like batch_size
    log_path.write_text(good)
    for kw, needle in ((dict(lr=1e-2), "lr=0.0001, this run asks for lr=0.01"), (dict(objective="deltafm"), 'objective="sft".*lam_naive')):
        refused(ConfigError, needle, sample=False, **kw)
    log_path.write_text(good + "garbage{")
    res = train(preset("sft", lora_rank=4, **{**cfg, "max_steps": 2}), pixel_data())
    assert res.step == 2 and [json.loads(x)["step"] for x in log_path.read_text().splitlines()] == [1, 2]


def test_full_checkpoint_with_a_missing_or_extra_tensor_is_refused_by_sample(tmp_path, capfd):
    import torch as _torch

    from direct_data.training.sample import SampleConfig, run_sample

    run = tmp_path / "run"
    train(preset("sft", model_config="tiny", lora_rank=0, max_steps=1, batch_size=4, progress=False, out_dir=str(run)),
          pixel_data())
    _forget_digests(latest_checkpoint(run))
    weights = next((latest_checkpoint(run) / "transformer").glob("*.safetensors"))
    for fn, needle in ((lambda t: dict(sorted(t.items())[1:]), "lack 1 tensor"), (lambda t: {**t, "extra.weight": _torch.zeros(2)}, "hold 1 tensor")):
        good = _swap(weights, fn)
        capfd.readouterr()
        with pytest.raises(InputError, match=f"cannot load it .*{needle}"):
            run_sample(run, ["a ball"], tmp_path / "s", SampleConfig(steps=1))
        assert "diffusers" not in capfd.readouterr().err
        weights.write_bytes(good)


def test_large_seeds_and_unbounded_values(tmp_path):
    from direct_data.training.data import mix_seed
    from direct_data.training.sample import run_sample

    # every seed that worked gives the numbers it gave; the declared maximum works
    assert mix_seed(7, 3) == 7 * 1_000_003 + 3 and mix_seed(2**63 - 1, 5) == ((2**63 - 1) * 1_000_003 + 5) % 2**64
    part = torch.tensor([0, 1] * 4)
    for seed in (2**63 - 1, 10**14):
        assert len(PartitionBatchSampler(part, batch_size=4, seed=seed).next_batch()[1]) == 4
    small = PartitionBatchSampler(part, batch_size=4, seed=7)
    g = torch.Generator().manual_seed(7 * 1_000_003 + 0)
    assert torch.randperm(8, generator=g).tolist()[:2] == torch.randperm(8, generator=torch.Generator().manual_seed(mix_seed(7, 0))).tolist()[:2]
    assert small.epoch_batches(0)
    for key, value in (("lora_rank", 10**12), ("lora_rank", 10**20), ("text_len", 10**12), ("lr", 1e300)):
        with pytest.raises(ConfigError, match=f"{key}: must be <="):
            preset("sft", **{key: value})
    with pytest.raises(ConfigError, match="lora_targets nonexistent matched no module .*to_q"):
        wan.add_lora(wan.build_transformer("tiny"), rank=4, target_modules=["nonexistent"])
    with pytest.raises(InputError, match="prompt 0 is not valid UTF-8"):
        run_sample(tmp_path / "nothing", ["a\udcffb"], tmp_path / "s")


def test_lora_checkpoint_header_is_canonical(tmp_path):
    from safetensors.torch import load_file, save_file

    from direct_data.training.checkpoint import _canonical_header

    t = {"b": torch.ones(3), "a": torch.zeros(2, 2)}
    files = []
    for i, meta in enumerate(({"format": "pt", "lora_adapter_metadata": "{}", "z": "1"},
                              {"z": "1", "lora_adapter_metadata": "{}", "format": "pt"})):
        f = tmp_path / f"{i}.safetensors"
        save_file(t, str(f), metadata=meta)
        _canonical_header(f)
        files.append(f)
        assert all(torch.equal(load_file(str(f))[k], t[k]) for k in t)
    assert files[0].read_bytes() == files[1].read_bytes()
    assert wan._sorted_sets({"target_modules": {"to_v", "to_q"}, "b": 1, "a": [{"y", "x"}]}) == \
        {"a": [["x", "y"]], "b": 1, "target_modules": ["to_q", "to_v"]}

"""The pair classifier: a causal LM's first layers, LoRA-tuned to read a whole (axis, prompt,
rewrite) triple and say which of the labelled set's eight labels it is (optional, since session 31).

Why. The learnt validator (`direct_data.text.learnt`) reads hand features, sentence vectors of the
changed spans and (with ``--fluency``) a probe of Gemma's states over the edited span; none of them
reads the prompt and the rewrite *together* with a language model. A broken clause, a lost object
or a second physics change often shows only in context. Tuned on the train split, this classifier
alone separates good rewrites from bad ones less well than the learnt model (dev AUC 0.867 against
0.929 in session 30), but the two err on different rows: blended, they rank better than either.

Input: ``"Axis: {axis}\\nOriginal: {prompt}\\nRewrite: {negative}"`` between the start and end
tokens, the first `PairSettings.max_tokens` tokens. The final-normed states after `layers` decoder
layers are averaged (a) over the rewrite's edited tokens and the 2 after each edited region
(`direct_data.backends.fluency._pooled_tokens`, the regions of `edited_regions` against the prompt)
and (b) over all the rewrite's tokens; the two means side by side go into one linear head over the
eight labels (`direct_data.text.learnt.LABELS`).

Fit (`fit_pair_classifier`, ``direct-data validator fit-pair``): LoRA (rank 8, alpha 16, dropout
0.05) on every attention and MLP projection of the kept layers (peft), the head trained with it;
AdamW (LoRA lr 3e-4, head 2e-3, weight decay 0.01), class-balanced cross-entropy, batches of 8 in a
seeded shuffle, a 30-step warm-up then linear decay, 2 epochs of the train split only, with (since
session 34, `PairSettings.compose_multi_axis`) the ``multi_axis`` rows that
`direct_data.text.learnt.composed_multi_axis` makes by joining two train goods' edits on different
axes (455 rows next to the 2,861 labelled; dev balanced with fluency 0.9140 -> 0.9194). Everything
random comes from the seed, and the fit runs on a fixed number of threads (`PairSettings.threads`):
the same rows, settings and CPU kind give the same weights. Then, on dev, the blend's cut-offs
(`calibrate`). The artefact: the LoRA matrices and the head in safetensors
(``direct_data/text/data/pair_classifier.safetensors``) and a JSON sidecar with the settings, the
base model's identity, the labelled set's sha256 and the calibration.

Inference (`PairClassifier.probs`): the LoRA matrices are merged into the layers' weights once
(W + alpha/r * B A), so it runs without peft. Texts run in batches of one exact token length (no
padding, a lone text next to a copy of itself, as the fluency scorer does): a row's probabilities
never depend on the other rows.

The blend (`blend`): p(good) = sigmoid(logit p_learnt(good) + w * logit p_pair(good)), w 0.5 (the
session 30 experiment's weight), the bad labels' probabilities scaled to fill the rest in the learnt
model's proportions. The validator's threshold, lexicon floor, ungrammatical gate and span check
are chosen again on dev for the blend, with and without fluency, as `direct_data.text.learnt` does
for the learnt model alone; they are the sidecar's ``calibration``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from direct_data.core.errors import UserError

log = logging.getLogger(__name__)

FORMAT = "direct-data-pair-classifier/1"
PAIR_VERSION = "pair-lora-v1"  # bump when the input text or the pooling changes
ARTEFACT = Path(__file__).resolve().parents[1] / "text" / "data" / "pair_classifier.safetensors"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class PairSettings:
    """How the pair classifier is fitted (every field is recorded in the sidecar)."""

    layers: int = 8  # decoder layers kept (Gemma-3-270M has 18)
    rank: int = 8  # LoRA rank
    alpha: float = 16.0  # LoRA scale numerator (scale = alpha / rank)
    dropout: float = 0.05  # LoRA dropout (training only)
    epochs: float = 2.0  # passes over the train split
    batch_size: int = 8
    lr: float = 3e-4  # LoRA matrices
    head_lr: float = 2e-3  # the linear head
    weight_decay: float = 0.01
    warmup: int = 30  # steps of linear warm-up, then linear decay to 0
    seed: int = 0
    max_tokens: int = 400  # tokens of the pair text kept (the end token comes after)
    threads: int = 2  # torch threads during the fit (the float sums' order depends on it)
    blend_weight: float = 0.5  # w in the blend
    compose_multi_axis: bool = True  # add `learnt.composed_multi_axis` rows (two goods' edits joined) to the train rows

    def check(self) -> None:
        for name in ("layers", "rank", "batch_size", "max_tokens", "threads"):
            if getattr(self, name) < 1:
                raise UserError(f"pair classifier: {name} must be >= 1")
        if not self.epochs > 0 or not math.isfinite(self.epochs):
            raise UserError("pair classifier: epochs must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError("pair classifier: dropout must be in [0, 1)")
        for name in ("lr", "head_lr", "alpha"):
            if not getattr(self, name) > 0:
                raise UserError(f"pair classifier: {name} must be > 0")
        if self.weight_decay < 0 or self.warmup < 0 or self.blend_weight < 0:
            raise UserError("pair classifier: weight_decay, warmup and blend_weight must be >= 0")


def pair_text(prompt: str, axis: str, negative: str) -> tuple[str, int]:
    """(the classifier's input text, the offset where the rewrite starts in it)."""
    head = f"Axis: {axis}\nOriginal: {prompt}\nRewrite: "
    return head + negative, len(head)


def encode_pair(tok: Any, prompt: str, axis: str, negative: str, max_tokens: int) -> tuple[list[int], list[int], list[int]]:
    """(token ids with the start and end tokens, the edited tokens' positions, all the rewrite's
    tokens' positions); positions index the id list."""
    from direct_data.backends.fluency import _pooled_tokens, edited_regions

    text, shift = pair_text(prompt, axis, negative)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    end = tok.eos_token_id
    if start is None or end is None:
        raise UserError("the pair classifier's tokenizer has neither a bos nor an eos token")
    ids = list(enc["input_ids"])[:max_tokens]
    offsets = [list(o) for o in enc["offset_mapping"]][:max_tokens]
    n = len(text) if len(ids) == len(enc["input_ids"]) else (offsets[-1][1] if offsets else 0)
    offsets.append([n, n])
    ranges = [(s + shift, t + shift) for _, (s, t) in edited_regions(prompt, negative)]
    # a prompt longer than `max_tokens` leaves no rewrite token: the end token stands for it
    rewrite = [j for j, o in enumerate(offsets) if o[0] >= shift] or [len(offsets) - 1]
    edited = _pooled_tokens(offsets, ranges) if ranges else rewrite
    edited = [j for j in edited if offsets[j][0] >= shift] or rewrite
    # +1: the start token comes first; the end token (last offset) is always a rewrite token
    return [start, *ids, end], [j + 1 for j in edited], [j + 1 for j in rewrite]


def _pool(hidden: Any, edited: Sequence[int], rewrite: Sequence[int]) -> Any:
    import torch

    return torch.cat([hidden[list(edited)].mean(0), hidden[list(rewrite)].mean(0)])


def _cut_decoder(path: str, layers: int) -> tuple[Any, Any]:
    """(tokenizer, float32 decoder cut to its first `layers` layers) of a causal LM folder or hub id."""
    from direct_data.backends.fluency import decoder_stack, read_causal_lm

    tok, model = read_causal_lm(path, "cpu", "float32")
    decoder = decoder_stack(model, path)
    if layers > len(decoder.layers):
        raise UserError(f"{path} has {len(decoder.layers)} decoder layers; the pair classifier needs {layers}")
    decoder.layers = decoder.layers[:layers]
    decoder.config.num_hidden_layers = layers
    return tok, decoder


def _artefact_problem(tensors: dict[str, Any], meta: dict[str, Any]) -> str | None:
    """What makes a loaded artefact unusable (a sidecar edited by hand, tensors renamed, reshaped or
    not finite), or None: checked at load, so a bad one is a one-line error, not a traceback minutes
    into scoring (the base model's own shapes are checked when it loads, `_load`)."""
    from direct_data.text.learnt import LABELS

    settings = meta.get("settings")
    if not isinstance(settings, dict):
        return "the sidecar has no 'settings' object"
    for name in ("layers", "rank", "max_tokens"):
        v = settings.get(name, getattr(PairSettings, name))
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return f"settings.{name} is {v!r}, not a whole number >= 1"
    alpha = settings.get("alpha", PairSettings.alpha)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
        return f"settings.alpha is {alpha!r}, not a number"
    labels = meta.get("labels")
    if labels != list(LABELS):
        return f"labels {labels!r}, this code reads {list(LABELS)}"
    cal = meta.get("calibration")
    if cal is not None:
        if not isinstance(cal, dict):
            return "the sidecar's 'calibration' is not an object"
        bw = cal.get("blend_weight")
        if not isinstance(bw, (int, float)) or isinstance(bw, bool) or not math.isfinite(bw) or bw < 0:
            return f"calibration.blend_weight is {bw!r}, not a number >= 0"
        for key, v in cal.items():
            if key.split("_fluency")[0] in ("threshold", "lexicon_floor", "ungrammatical_gate", "span_multi_p") and v is not None:
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                    return f"calibration.{key} is {v!r}, not a number in [0, 1]"
    for name in ("head.weight", "head.bias"):
        if name not in tensors:
            return f"no tensor {name}"
    w, b = tensors["head.weight"], tensors["head.bias"]
    if w.ndim != 2 or b.shape != (w.shape[0],) or w.shape[0] != len(LABELS):
        return f"head.weight {tuple(w.shape)} and head.bias {tuple(b.shape)}, expected ({len(LABELS)}, d) and ({len(LABELS)},)"
    for name, t in tensors.items():
        if not np.issubdtype(t.dtype, np.floating):
            return f"tensor {name} is {t.dtype}, not floating point"
        if not np.isfinite(t).all():
            return f"tensor {name} has non-finite values"
        if name == "head.weight" or name == "head.bias":
            continue
        key, _, part = name.rpartition(".")
        if part not in ("lora_A", "lora_B"):
            return f"unexpected tensor {name}"
        other = key + (".lora_B" if part == "lora_A" else ".lora_A")
        if other not in tensors:
            return f"{name} has no {other}"
        if t.ndim != 2:
            return f"{name} is {t.ndim}-d, not a matrix"
        if part == "lora_A" and tensors[other].ndim == 2 and tensors[other].shape[1] != t.shape[0]:
            return f"{other} {tuple(tensors[other].shape)} cannot multiply {name} {tuple(t.shape)}"
    return None


def _base_identity(path: str) -> str:
    from direct_data.backends.models import model_identity

    return str(model_identity(path))


def weights_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class PairClassifier:
    """The fitted pair classifier (`load`), scoring (prompt, axis, negative) rows (`probs`)."""

    tensors: dict[str, Any]
    meta: dict[str, Any]
    model: str | None = None  # the base causal LM (None: the packaged Gemma-3-270M base)
    batch_size: int = 16
    show_progress: bool = False
    _tok: Any = field(default=None, repr=False)
    _decoder: Any = field(default=None, repr=False)
    _head: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, weights: str | Path | None = None, *, model: str | None = None) -> PairClassifier:
        """The artefact at `weights` (default the packaged one) and its JSON sidecar; `model`: its base
        causal LM (default: the one `fit-pair --model` named, else the packaged Gemma-3-270M)."""
        from safetensors.numpy import load_file

        weights = Path(weights or ARTEFACT)
        sidecar = weights.with_suffix(".json")
        if not weights.is_file() or not sidecar.is_file():
            raise UserError(f"no pair classifier at {weights} (and {sidecar.name} next to it): fit one with "
                            f"`direct-data validator fit-pair`")
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            raise UserError(f"{weights}: not a pair classifier artefact ({e})") from None
        if not isinstance(meta, dict):
            raise UserError(f"{sidecar}: not a pair classifier sidecar (a JSON {type(meta).__name__}, not an object): refit it")
        if meta.get("format") != FORMAT or meta.get("version") != PAIR_VERSION:
            raise UserError(f"{sidecar}: format {meta.get('format')}/{meta.get('version')}, this code reads {FORMAT}/{PAIR_VERSION}: refit it")
        if meta.get("weights_sha256") and meta["weights_sha256"] != weights_sha256(weights):
            raise UserError(f"{weights}: sha256 differs from its sidecar's; the artefact was changed after the fit")
        try:
            tensors = load_file(str(weights))
        except Exception as e:  # noqa: BLE001 (SafetensorError: truncated, not safetensors; OSError)
            from direct_data.core.errors import first_line

            raise UserError(f"{weights}: not a pair classifier artefact ({first_line(e)})") from None
        problem = _artefact_problem(tensors, meta)
        if problem:
            raise UserError(f"{weights}: not a usable pair classifier artefact ({problem}): refit it (direct-data validator fit-pair)")
        return cls(tensors, meta, model if model is not None else meta.get("base_model_path"))

    @property
    def settings(self) -> PairSettings:
        """The settings the sidecar records (one fitted before session 34 had no composed rows)."""
        recorded = {"compose_multi_axis": False, **self.meta["settings"]}
        return PairSettings(**{k: recorded[k] for k in PairSettings.__dataclass_fields__ if k in recorded})

    @property
    def model_path(self) -> str:
        from direct_data.backends.fluency import causal_lm_path

        return causal_lm_path(self.model)

    def _load(self) -> None:
        if self._decoder is not None:
            return
        import torch

        s = self.settings
        have = _base_identity(self.model_path)
        want = str(self.meta.get("base_model") or "")
        if want and have.split("@", 1)[-1] != want.split("@", 1)[-1]:
            raise UserError(f"the pair classifier was fitted on {want}; this run loads {have}: refit it "
                            f"(direct-data validator fit-pair --model M) or use the model it was fitted on")
        tok, decoder = _cut_decoder(self.model_path, s.layers)
        modules = dict(decoder.named_modules())
        scale = s.alpha / s.rank
        with torch.no_grad():
            for key in sorted({k.rsplit(".", 1)[0] for k in self.tensors if k.endswith(".lora_A")}):
                if key not in modules or not isinstance(getattr(modules[key], "weight", None), torch.Tensor):
                    raise UserError(f"pair classifier: the base model has no module {key}")
                a = torch.from_numpy(np.array(self.tensors[key + ".lora_A"]))
                b = torch.from_numpy(np.array(self.tensors[key + ".lora_B"]))
                if tuple(modules[key].weight.shape) != (b.shape[0], a.shape[1]):
                    raise UserError(f"pair classifier: its LoRA update of {key} is {b.shape[0]}x{a.shape[1]}, the base model's "
                                    f"weight {tuple(modules[key].weight.shape)}: refit it on this model (direct-data validator fit-pair)")
                modules[key].weight += scale * (b @ a)
        width = 2 * int(decoder.config.hidden_size)
        if self.tensors["head.weight"].shape[1] != width:
            raise UserError(f"pair classifier: its head reads {self.tensors['head.weight'].shape[1]} features, the base model "
                            f"gives {width}: refit it on this model (direct-data validator fit-pair)")
        head = torch.nn.Linear(self.tensors["head.weight"].shape[1], self.tensors["head.weight"].shape[0])
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(np.array(self.tensors["head.weight"])))
            head.bias.copy_(torch.from_numpy(np.array(self.tensors["head.bias"])))
        self._tok, self._decoder, self._head = tok, decoder.eval(), head.eval()

    def probs(self, rows: Sequence[tuple[str, str, str]]) -> np.ndarray:
        """(n, 8) float64 label probabilities (the order of `direct_data.text.learnt.LABELS`), rounded
        to 6 decimals, of (prompt, axis, negative) rows."""
        from direct_data.backends.fluency import equal_length_batches
        from direct_data.core.progress import progress_bar

        rows = [tuple(r) for r in rows]
        if not rows:
            return np.zeros((0, len(self.meta["labels"])))
        self._load()
        import torch

        s = self.settings
        encoded = {r: encode_pair(self._tok, *r, s.max_tokens) for r in set(rows)}
        keyed = {json.dumps(r): r for r in encoded}  # equal_length_batches sorts its keys: strings
        by_key = {k: (encoded[r][0],) for k, r in keyed.items()}
        out: dict[tuple, np.ndarray] = {}
        with progress_bar("pair classifier", total=len(by_key), enabled=self.show_progress) as bar, torch.inference_mode():
            for chunk, ids in equal_length_batches(by_key, self.batch_size):
                hidden = self._decoder(input_ids=torch.tensor(ids), attention_mask=torch.ones(len(ids), len(ids[0]), dtype=torch.long)).last_hidden_state
                feats = torch.stack([_pool(hidden[b], *encoded[keyed[k]][1:]) for b, k in enumerate(chunk)])
                p = torch.softmax(self._head(feats).double(), -1).numpy()
                if not np.isfinite(p).all():  # never a verdict from NaN: it would read as "not below the threshold"
                    raise RuntimeError(f"pair classifier: non-finite probabilities for {keyed[chunk[0]][0][:80]!r} (a bug)")
                for b, k in enumerate(chunk):
                    out[keyed[k]] = np.round(p[b], 6)
                bar.update(len(chunk))
        return np.stack([out[r] for r in rows])


# --------------------------------------------------------------------------------------------
# The blend with the learnt model.
# --------------------------------------------------------------------------------------------


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def blend(p_learnt: np.ndarray, p_pair: np.ndarray, weight: float) -> np.ndarray:
    """Label probabilities of the blend: p(good) = sigmoid(logit p_learnt(good) + weight * logit
    p_pair(good)); the bad labels share the rest in the learnt model's proportions (rounded to 6
    decimals)."""
    g = 1.0 / (1.0 + np.exp(-(_logit(p_learnt[:, 0]) + weight * _logit(p_pair[:, 0]))))
    rest = np.clip(1.0 - p_learnt[:, 0], 1e-12, None)
    out = p_learnt * ((1.0 - g) / rest)[:, None]
    out[:, 0] = g
    return np.round(out, 6)


# --------------------------------------------------------------------------------------------
# The fit.
# --------------------------------------------------------------------------------------------


def _train(rows: Sequence[Any], s: PairSettings, model_path: str) -> dict[str, np.ndarray]:
    """LoRA matrices and head (numpy float32) fitted on `rows` (LabelledRow)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from direct_data.core.progress import progress_bar
    from direct_data.text.learnt import LABELS

    threads = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    try:
        torch.manual_seed(s.seed)
        tok, decoder = _cut_decoder(model_path, s.layers)
        data = [encode_pair(tok, r.prompt, r.axis, r.negative, s.max_tokens) for r in rows]
        y = torch.tensor([LABELS.index(r.label) for r in rows])
        cfg = LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(TARGETS))
        model = get_peft_model(decoder, cfg)
        hidden_size = decoder.config.hidden_size
        head = torch.nn.Linear(2 * hidden_size, len(LABELS))
        lora = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW([{"params": lora, "lr": s.lr}, {"params": list(head.parameters()), "lr": s.head_lr}],
                                weight_decay=s.weight_decay)
        counts = np.bincount(y.numpy(), minlength=len(LABELS))
        w = torch.tensor(len(rows) / (len(LABELS) * np.maximum(counts, 1)), dtype=torch.float32)
        steps = max(1, int(s.epochs * len(rows) / s.batch_size))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / max(s.warmup, 1)) * max(0.0, 1 - k / steps))
        rng = random.Random(s.seed)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        order: list[int] = []
        model.train()
        with progress_bar("pair classifier fit", total=steps, enabled=True) as bar:
            for step in range(steps):
                while len(order) < s.batch_size:
                    perm = list(range(len(rows)))
                    rng.shuffle(perm)
                    order += perm
                batch, order = order[: s.batch_size], order[s.batch_size:]
                width = max(len(data[i][0]) for i in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                att = torch.zeros((len(batch), width), dtype=torch.long)
                for b, i in enumerate(batch):
                    ids[b, : len(data[i][0])] = torch.tensor(data[i][0])
                    att[b, : len(data[i][0])] = 1
                hidden = model(input_ids=ids, attention_mask=att).last_hidden_state
                logits = head(torch.stack([_pool(hidden[b], *data[i][1:]) for b, i in enumerate(batch)]))
                loss = torch.nn.functional.cross_entropy(logits, y[batch], weight=w)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                if step % 50 == 0:
                    log.info("pair classifier fit: step %d/%d, loss %.4f", step, steps, loss.item())
                bar.update(1, info=f"loss {loss.item():.3f}")
        out: dict[str, np.ndarray] = {}
        for name, module in model.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                key = name.removeprefix("base_model.model.")
                out[key + ".lora_A"] = module.lora_A["default"].weight.detach().float().numpy().copy()
                out[key + ".lora_B"] = module.lora_B["default"].weight.detach().float().numpy().copy()
        out["head.weight"] = head.weight.detach().float().numpy().copy()
        out["head.bias"] = head.bias.detach().float().numpy().copy()
        return out
    finally:
        torch.set_num_threads(threads)


def _write(weights: Path, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    weights.parent.mkdir(parents=True, exist_ok=True)
    # one metadata key (safetensors writes several in any order, and the bytes must repeat)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(weights), metadata={"format": FORMAT})
    meta = dict(meta, weights_sha256=weights_sha256(weights))
    weights.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def write_fitted(weights: Path, tensors: dict[str, np.ndarray], s: PairSettings, model_path: str, labelled: Path, train_rows: int,
                 base_model: str | None = None, *, composed_rows: int = 0) -> None:
    """Write fitted weights and their sidecar (no calibration yet); `base_model`: the folder or hub id
    the user named (None: the packaged Gemma), which `PairClassifier.load` then loads by default."""
    import peft
    import torch
    import transformers

    from direct_data.text.learnt import LABELS, file_sha256

    meta = {"format": FORMAT, "version": PAIR_VERSION, "settings": asdict(s), "labels": list(LABELS),
            "base_model": _base_identity(model_path), "labelled_sha256": file_sha256(labelled), "train_rows": train_rows,
            "composed_rows": composed_rows,
            "input": pair_text("{prompt}", "{axis}", "{negative}")[0], "targets": list(TARGETS),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}}
    if base_model is not None:  # a user's own base model: loaded again from here (the packaged Gemma is found without it)
        meta["base_model_path"] = base_model
    _write(weights, tensors, meta)


def calibrate_artefact(weights: str | Path | None = None, *, validator_model: str | Path | None = None, model: str | None = None,
                       labelled: str | Path | None = None, prompts_dir: str | Path | None = None, embedder: Any = None,
                       fluency: Any = None) -> PairClassifier:
    """Choose the blend's cut-offs on dev (`direct_data.text.learnt.calibrate_pair`) for the learnt
    validator model at `validator_model` (default the packaged one) and write them into the pair
    classifier's sidecar at `weights` (default the packaged one). Run again after the learnt model
    is refitted: the validator refuses a calibration made for another learnt model."""
    from direct_data.text.learnt import LearntModel, calibrate_pair

    weights = Path(weights or ARTEFACT)
    pc = PairClassifier.load(weights, model=model)
    learnt = LearntModel.load(validator_model)
    cal = calibrate_pair(learnt, pc, labelled=labelled, prompts_dir=prompts_dir, embedder=embedder, fluency=fluency)
    meta = {k: v for k, v in pc.meta.items() if k != "weights_sha256"}
    meta["calibration"] = cal
    _write(weights, pc.tensors, meta)
    return PairClassifier.load(weights, model=model)


def fit_pair_classifier(weights: str | Path | None = None, *, settings: PairSettings | None = None, model: str | None = None,
                        labelled: str | Path | None = None, prompts_dir: str | Path | None = None,
                        validator_model: str | Path | None = None, embedder: Any = None, fluency: Any = None,
                        calibrate: bool = True) -> PairClassifier:
    """Fit the pair classifier on the labelled train split (`_train`), write the artefact (`weights`,
    default the packaged one, and its JSON sidecar), then choose the blend's cut-offs on dev
    (`calibrate_artefact`; with `fluency`, a SpanStates, the fluency twins too).

    Example:
        >>> fit_pair_classifier("/tmp/pair.safetensors", settings=PairSettings(layers=2, epochs=0.05))  # doctest: +SKIP
    """
    from direct_data.backends.fluency import causal_lm_path
    from direct_data.text.learnt import DEFAULT_LABELLED, LearntModel, composed_multi_axis, load_labelled

    s = settings or PairSettings()
    s.check()
    weights = Path(weights or ARTEFACT)
    if weights.suffix != ".safetensors" or weights.is_dir():
        raise UserError(f"{weights}: give a .safetensors file path (its JSON sidecar goes next to it)")
    if calibrate:  # the model the blend is calibrated for, checked before the fit's 40 minutes, not after
        LearntModel.load(validator_model)
    labelled = Path(labelled or DEFAULT_LABELLED)
    rows = load_labelled(labelled, prompts_dir, splits=("train",))
    if not rows:
        raise UserError(f"{labelled}: no train rows to fit the pair classifier on")
    composed = composed_multi_axis(rows, seed=s.seed) if s.compose_multi_axis else []
    path = causal_lm_path(model)
    write_fitted(weights, _train([*rows, *composed], s, path), s, path, labelled, len(rows), model, composed_rows=len(composed))
    if not calibrate:
        return PairClassifier.load(weights, model=model)
    return calibrate_artefact(weights, validator_model=validator_model, model=model, labelled=labelled,
                              prompts_dir=prompts_dir, embedder=embedder, fluency=fluency)

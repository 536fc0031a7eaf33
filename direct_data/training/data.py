"""The trainer's data: rows in memory (`TrainData`), the batches drawn from them
(`PartitionBatchSampler` -> `collate` -> `drop_captions`), and the fixed validation batch.

`TrainData` is built from tensors or from the verified stage outputs
(`direct_data.training.inputs.load_train_data`). Problems the user's data can cause (no usable
rows, one partition, latents of different shapes, fewer rows than a batch) are `InputError`s that
say what to do; a broken invariant of the caller (sequences of different lengths) stays a
`ValueError`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace as dc_replace

import torch
from torch import Tensor

from direct_data.core.errors import InputError
from direct_data.training import losses as L

__all__ = [
    "TrainData",
    "PartitionBatchSampler",
    "Batch",
    "collate",
    "drop_captions",
    "pad_states",
    "ValBatch",
    "make_val_batch",
]


# =============================================================================================
# rows
# =============================================================================================

class TrainData:
    """Training rows: latent (C, F, H, W), text states (L_i, D), partition id, macro-negative
    candidates, optional hard-negative text states with their physics axis.

    Rows with non-finite tensors or empty text are rejected with a reason (``rejected``), the rest
    are kept (``len(self)``); every input row is accounted for. Macro candidates come either as
    explicit row lists (``macro_ids``: input-row indices) or from the partition graph: any row of
    another partition, minus the ``exclude_nearest`` partitions listed first in
    ``partition_neighbors[p]`` (partitions ordered by centroid similarity to ``p``).
    """

    def __init__(
        self,
        latents: Sequence[Tensor],
        text: Sequence[Tensor],
        partition: Sequence[int],
        *,
        macro_ids: Sequence[Sequence[int]] | None = None,
        hard: Sequence[Sequence[tuple[Tensor, str]]] | None = None,
        partition_neighbors: dict[int, Sequence[int]] | None = None,
        row_ids: Sequence[str] | None = None,
        check_finite: bool = True,
    ) -> None:
        n = len(latents)
        for name, seq in (("text", text), ("partition", partition), ("macro_ids", macro_ids), ("hard", hard),
                          ("row_ids", row_ids)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} rows, latents has {n}")
        if n == 0:
            raise InputError("no training rows: the data set is empty")
        shape = tuple(latents[0].shape)
        dim = int(text[0].shape[-1])
        rejected: list[tuple[int, str]] = []
        keep: list[int] = []
        for i in range(n):
            lat, txt = latents[i], text[i]
            if tuple(lat.shape) != shape:
                name = row_ids[i] if row_ids is not None else i
                raise InputError(f"row {name}: latent shape {tuple(lat.shape)} differs from the first row's {shape}: "
                                 f"training needs one latent shape per data set (clips of one size and frame count)")
            if txt.ndim != 2 or int(txt.shape[1]) != dim:
                raise ValueError(f"row {i}: text states must be (L, {dim}), got {tuple(txt.shape)}")
            reason = None
            if txt.shape[0] == 0:
                reason = "empty text states"
            elif check_finite and not bool(torch.isfinite(lat).all()):
                reason = "non-finite latent"
            elif check_finite and not bool(torch.isfinite(txt).all()):
                reason = "non-finite text states"
            if reason:
                rejected.append((i, reason))
            else:
                keep.append(i)
        if not keep:
            reasons = sorted({r for _, r in rejected})
            raise InputError(f"all {n} training rows were rejected ({', '.join(reasons)}): nothing to train on")
        self.rejected = rejected
        self.source_rows = keep  # kept row k is input row source_rows[k]
        remap = {src: k for k, src in enumerate(keep)}
        self.latents = [latents[i] for i in keep]
        self.text = [text[i] for i in keep]
        self.partition = torch.as_tensor([int(partition[i]) for i in keep], dtype=torch.long)
        self.row_ids = [str(row_ids[i]) for i in keep] if row_ids is not None else [str(i) for i in keep]
        self.latent_shape = shape
        self.text_dim = dim
        self.hard: list[list[tuple[Tensor, str]]] = []
        for i in keep:
            negs = []
            for states, axis in (hard[i] if hard is not None else ()):
                if states.ndim != 2 or int(states.shape[1]) != dim or states.shape[0] == 0:
                    raise ValueError(f"row {i}: hard-negative states must be (L>0, {dim}), got {tuple(states.shape)}")
                if check_finite and not bool(torch.isfinite(states).all()):
                    continue  # an unusable hard negative; the row stays (counted in hard_dropped)
                negs.append((states, str(axis)))
            self.hard.append(negs)
        self.hard_dropped = sum(len(hard[i]) for i in keep) - sum(len(h) for h in self.hard) if hard is not None else 0
        self.macro_ids: list[Tensor] | None = None
        if macro_ids is not None:
            self.macro_ids = [
                torch.as_tensor(sorted({remap[j] for j in macro_ids[i] if j in remap}), dtype=torch.long) for i in keep
            ]
        self.partition_neighbors = {int(k): [int(x) for x in v] for k, v in (partition_neighbors or {}).items()}
        self._excluded: dict[int, Tensor] = {}  # exclude_nearest -> (P, P) excluded-partition matrix
        self.max_text_len = max(max(int(t.shape[0]) for t in self.text),
                                max((int(s.shape[0]) for h in self.hard for s, _ in h), default=0))
        if len(set(self.partition.tolist())) < 2:
            raise InputError(f"all {len(self)} usable rows are in one partition, and training needs rows from at least "
                             f"two partitions (every batch spans >= 2): partition the prompts with k >= 2")

    @classmethod
    def from_tensors(
        cls,
        latents: Tensor,
        text_states: Tensor,
        text_lengths: Tensor | Sequence[int],
        partition: Tensor | Sequence[int],
        *,
        macro_ids: Sequence[Sequence[int]] | None = None,
        hard_states: Tensor | None = None,
        hard_lengths: Tensor | Sequence[int] | None = None,
        hard_axis: Sequence[str] | None = None,
        partition_neighbors: dict[int, Sequence[int]] | None = None,
        row_ids: Sequence[str] | None = None,
        check_finite: bool = True,
    ) -> TrainData:
        """From padded tensors: latents (N, C, F, H, W), text states (N, L, D) + lengths (N,),
        partition (N,), optionally one hard negative per row: states (N, L', D) + lengths (0 = none)
        + axis names."""
        n = latents.shape[0]
        lengths = [int(x) for x in torch.as_tensor(text_lengths).tolist()]
        text = [text_states[i, : lengths[i]] for i in range(n)]
        hard = None
        if hard_states is not None:
            if hard_lengths is None or hard_axis is None:
                raise ValueError("hard_states needs hard_lengths and hard_axis")
            hl = [int(x) for x in torch.as_tensor(hard_lengths).tolist()]
            hard = [[(hard_states[i, : hl[i]], hard_axis[i])] if hl[i] > 0 else [] for i in range(n)]
        return cls(list(latents), text, list(torch.as_tensor(partition).tolist()), macro_ids=macro_ids, hard=hard,
                   partition_neighbors=partition_neighbors, row_ids=row_ids, check_finite=check_finite)

    def __len__(self) -> int:
        return len(self.latents)

    def accounting(self) -> dict[str, int]:
        return {"kept": len(self), "rejected": len(self.rejected), "hard_negatives": sum(len(h) for h in self.hard),
                "hard_dropped": self.hard_dropped}

    def macro_partitions_excluded(self, p: int, exclude_nearest: int) -> set[int]:
        """Partitions whose rows are not macro negatives of a row in partition ``p``."""
        return {p, *self.partition_neighbors.get(p, [])[:exclude_nearest]}

    def macro_eligible_matrix(self, rows: Tensor, exclude_nearest: int) -> Tensor:
        """(B, B) boolean: ``[a, b]`` is True when row ``rows[b]`` is a valid macro negative of ``rows[a]``."""
        if self.macro_ids is not None:
            return torch.stack([torch.isin(rows, self.macro_ids[int(r)]) for r in rows])
        key = exclude_nearest
        if key not in self._excluded:
            parts = sorted(set(self.partition.tolist()))
            size = max(parts) + 1
            excl = torch.zeros(size, size, dtype=torch.bool)
            for p in parts:
                excl[p, sorted(q for q in self.macro_partitions_excluded(p, exclude_nearest) if q < size)] = True
            self._excluded[key] = excl
        p = self.partition[rows]
        return ~self._excluded[key][p[:, None], p[None, :]]

    def macro_eligible(self, i: int, candidates: Tensor, exclude_nearest: int) -> Tensor:
        """Boolean mask over ``candidates`` (kept-row indices): valid macro negatives of row ``i``."""
        if self.macro_ids is not None:
            return torch.isin(candidates, self.macro_ids[i])
        excl = torch.as_tensor(sorted(self.macro_partitions_excluded(int(self.partition[i]), exclude_nearest)))
        return ~torch.isin(self.partition[candidates], excl)

    def macro_candidates(self, i: int, exclude_nearest: int) -> Tensor:
        """All kept rows that are valid macro negatives of row ``i``."""
        if self.macro_ids is not None:
            return self.macro_ids[i]
        allrows = torch.arange(len(self))
        return allrows[self.macro_eligible(i, allrows, exclude_nearest)]



# =============================================================================================
# batches
# =============================================================================================


def pad_states(states: Sequence[Tensor], length: int) -> Tensor:
    """Zero-pad (L_i, D) states to (N, length, D), as Wan's pipeline pads umT5 states."""
    out = torch.zeros(len(states), length, states[0].shape[-1], dtype=torch.float32)
    for k, s in enumerate(states):
        if s.shape[0] > length:
            raise ValueError(f"text states of {s.shape[0]} tokens exceed text_len={length}")
        out[k, : s.shape[0]] = s.float()
    return out


def mix_seed(seed: int, i: int) -> int:
    """The generator seed of item ``i`` (an epoch, a prompt) of a run seeded ``seed``:
    ``seed * 1_000_003 + i`` modulo 2**64 (a torch seed is 64 bits), so every seed up to 2**63 - 1
    works and the ones below 2**64 / 1_000_003 give the numbers they always gave."""
    return (int(seed) * 1_000_003 + int(i)) % 2**64


class PartitionBatchSampler:
    """Deterministic shuffled batches, each spanning >= 2 partitions.

    Epoch ``e`` permutes the rows with a generator seeded by ``(seed, e)``; a batch that would hold
    one partition only swaps its last row for the next row of another partition. Rows that cannot
    form a full valid batch at the end of an epoch wait for the next epoch (like ``drop_last``).
    The state is ``(epoch, position)``: resuming recomputes the epoch and continues from there.
    ``shards`` (distributed training, one per process): a batch is that many consecutive shards of
    ``batch_size / shards`` rows, each formed (and fixed to span >= 2 partitions) as above.
    """

    def __init__(self, partition: Tensor, batch_size: int, seed: int = 0, shards: int = 1) -> None:
        self.partition = [int(p) for p in partition.tolist()]
        self.batch_size = batch_size
        self.seed = seed
        # distributed training: a batch is `shards` consecutive shards of batch_size / shards rows,
        # each spanning >= 2 partitions (rank r trains on shard r); 1 = one undivided batch
        if shards < 1 or batch_size % shards or batch_size // shards < 2:
            raise ValueError(f"batch_size {batch_size} must split into {shards} shards of >= 2 rows")
        self.shards = shards
        if len(self.partition) < batch_size:
            raise InputError(f"{len(self.partition)} training rows are fewer than one batch of {batch_size}: "
                             f"lower batch_size or add rows")
        if len(set(self.partition)) < 2:
            raise InputError("every batch must span two partitions, but the data has one: partition the prompts with k >= 2")
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        pool = deque(torch.randperm(len(self.partition), generator=g).tolist())
        part, b = self.partition, self.batch_size // self.shards
        batches: list[list[int]] = []
        shards: list[int] = []
        while len(pool) >= b:
            batch = [pool.popleft() for _ in range(b)]
            if len({part[i] for i in batch}) < 2:
                k = next((k for k, j in enumerate(pool) if part[j] != part[batch[0]]), None)
                if k is None:
                    break
                j = pool[k]
                del pool[k]
                pool.appendleft(batch[-1])
                batch[-1] = j
            shards += batch
            if len(shards) == self.batch_size:
                batches.append(shards)
                shards = []
        if not batches:
            b = self.batch_size
            raise InputError(f"no batch of {b} spanning two partitions can be formed (too few rows outside the largest "
                             f"partition): lower batch_size or add rows of other partitions")
        self._cache = (epoch, batches)
        return batches

    def next_batch(self) -> tuple[int, list[int]]:
        batches = self.epoch_batches(self.epoch)
        if self.position >= len(batches):
            self.epoch += 1
            self.position = 0
            batches = self.epoch_batches(self.epoch)
        batch = batches[self.position]
        epoch = self.epoch
        self.position += 1
        return epoch, batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "batch_size": self.batch_size,
                "shards": self.shards}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed or state["batch_size"] != self.batch_size:
            raise ValueError("sampler state is from a run with another seed or batch size")
        if int(state.get("shards", 1)) != self.shards:  # another world size: the same global batches no more
            import logging

            logging.getLogger(__name__).warning(
                "resuming a run of %s processes on %s: batches from here on differ from an uninterrupted run",
                state.get("shards", 1), self.shards)
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


@dataclass
class Batch:
    """One training batch: rows, their latents and text, and the hard negatives they carry."""

    rows: Tensor  # (B,) kept-row indices
    latents: Tensor  # (B, C, F, H, W)
    text: Tensor  # (B, text_len, D)
    partition: Tensor  # (B,)
    micro_rows: Tensor  # (M,) positions in the batch whose hard negative runs this step
    hard_text: Tensor | None  # (M, text_len, D)
    hard_axis: list[str]


def drop_captions(batch: Batch, p: float, gen: torch.Generator) -> Batch:
    """Replace the text of each row, with probability ``p``, by the null caption (zeros: the
    padding value, so the model sees no token at all); the hard negatives are kept."""
    if p <= 0:
        return batch
    drop = torch.rand(batch.rows.numel(), generator=gen) < p
    if not bool(drop.any()):
        return batch
    text = batch.text.clone()
    text[drop] = 0.0
    return dc_replace(batch, text=text)


def collate(data: TrainData, rows: Sequence[int], *, text_len: int, micro_fraction: float, use_micro: bool,
            gen: torch.Generator) -> Batch:
    """Stack a batch; pick ``round(micro_fraction * B)`` (>= 1) of the rows that have a hard
    negative, and one of each picked row's hard negatives (uniformly, with ``gen``)."""
    rows_t = torch.as_tensor(list(rows), dtype=torch.long)
    latents = torch.stack([data.latents[i].float() for i in rows])
    text = pad_states([data.text[i] for i in rows], text_len)
    micro_rows = torch.zeros(0, dtype=torch.long)
    hard_text, axes = None, []
    if use_micro:
        have = torch.as_tensor([k for k, i in enumerate(rows) if data.hard[i]], dtype=torch.long)
        if have.numel():
            m = min(have.numel(), max(1, round(micro_fraction * len(rows))))
            micro_rows = have[torch.randperm(have.numel(), generator=gen)[:m]].sort().values
            picks = []
            for k in micro_rows.tolist():
                negs = data.hard[rows[k]]
                states, axis = negs[int(torch.randint(len(negs), (1,), generator=gen))]
                picks.append(states)
                axes.append(axis)
            hard_text = pad_states(picks, text_len)
    return Batch(rows_t, latents, text, data.partition[rows_t], micro_rows, hard_text, axes)



# =============================================================================================
# validation
# =============================================================================================


@dataclass
class ValBatch:
    """A fixed validation batch: latents, text, and the noise and levels drawn once."""

    latents: Tensor
    text: Tensor
    eps: Tensor
    s: Tensor


def make_val_batch(data: TrainData, rows: Sequence[int], *, text_len: int | None = None, seed: int = 1234,
                   shift: float = 5.0, levels: Sequence[float] | None = None) -> ValBatch:
    """Freeze noise and noise levels for ``rows`` (levels: evenly spread over (0, 1) then shifted,
    unless given), so `evaluate_fm` is a deterministic function of the weights."""
    rows = list(rows)
    g = torch.Generator().manual_seed(seed)
    latents = torch.stack([data.latents[i].float() for i in rows])
    text = pad_states([data.text[i] for i in rows], text_len or data.max_text_len)
    eps = torch.randn(latents.shape, generator=g)
    if levels is None:
        s = L.shift_noise_level((torch.arange(len(rows), dtype=torch.float32) + 0.5) / len(rows), shift)
    else:
        s = torch.as_tensor(list(levels), dtype=torch.float32)
    return ValBatch(latents, text, eps, s)


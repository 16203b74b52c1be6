"""Sequence log-probabilities: log pi(y|x) = sum over completion tokens t of
log pi(y_t | x, y_<t).

Only completion tokens count (the end token included); prompt and padding are masked
out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .data import PreferencePair, validate_pairs
from .errors import describe
from .tokenizer import CharTokenizer


@dataclass
class SequenceBatch:
    """Right-padded rows <bos> prompt completion <eos>: the model reads `input_ids` and
    predicts `targets` (the same rows shifted by one); `completion_mask` marks targets
    that are completion tokens."""

    input_ids: torch.Tensor  # (B, T) long
    targets: torch.Tensor  # (B, T) long
    completion_mask: torch.Tensor  # (B, T) bool
    # leading positions identical in every row and outside the mask (a common prompt):
    # computed once
    shared_prefix: int = 0

    def to(self, device: torch.device | str) -> "SequenceBatch":
        return SequenceBatch(
            self.input_ids.to(device),
            self.targets.to(device),
            self.completion_mask.to(device),
            self.shared_prefix,
        )

    def select(self, index: torch.Tensor) -> "SequenceBatch":
        """The rows `index` (any subset of rows keeps their common prefix)."""
        return SequenceBatch(
            self.input_ids[index],
            self.targets[index],
            self.completion_mask[index],
            self.shared_prefix,
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def build_batch(
    tokenizer: CharTokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    block_size: int | None = None,
    device: torch.device | str | None = None,
) -> SequenceBatch:
    """Tokenize (prompt, completion) rows into one right-padded batch."""
    _check_texts("prompts", prompts)
    _check_texts("completions", completions)
    if len(prompts) != len(completions):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(completions)} completions; pass one "
            "prompt per completion"
        )
    if not prompts:
        raise ValueError("cannot build a batch from zero sequences")
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int)
    ):
        raise TypeError(
            f"block_size must be an int or None, got {type(block_size).__name__} "
            f"{describe(block_size)}"
        )
    rows, starts = [], []
    for p, c in zip(prompts, completions):
        prompt_ids = tokenizer.encode(p, bos=True)
        seq = prompt_ids + tokenizer.encode(c, eos=True)
        if block_size is not None and len(seq) - 1 > block_size:
            raise ValueError(
                f"prompt {describe(p)} + completion {describe(c)} need {len(seq) - 1} "
                f"positions but the model's context is {block_size}; shorten them or "
                "use a model with a larger block_size"
            )
        rows.append(seq)
        # target j is seq[j+1]; the first completion token is seq[len(prompt_ids)],
        # i.e. target len(prompt_ids) - 1
        starts.append(len(prompt_ids) - 1)
    T = max(len(r) for r in rows) - 1
    input_ids = torch.full((len(rows), T), tokenizer.pad_id, dtype=torch.long)
    targets = torch.full((len(rows), T), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, (seq, s) in enumerate(zip(rows, starts)):
        n = len(seq) - 1
        input_ids[i, :n] = torch.tensor(seq[:-1])
        targets[i, :n] = torch.tensor(seq[1:])
        mask[i, s:n] = True
    batch = SequenceBatch(input_ids, targets, mask, _shared_prefix(input_ids, mask))
    return batch.to(device) if device is not None else batch


def _check_texts(name: str, texts: object) -> None:
    """A list (or tuple) of str: a bare str would be read as one row per character."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"{name} must be a list of strings, one per row, got a single "
            f"{type(texts).__name__} {describe(texts)}; wrap it in a list: "
            f"{describe([texts])}"
        )
    if not isinstance(texts, Sequence):
        raise TypeError(
            f"{name} must be a list of strings, got {type(texts).__name__} "
            f"{describe(texts)}"
        )
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"{name}[{i}] must be a str, got {type(t).__name__} {describe(t)}"
            )


def _check_mask(mask: torch.Tensor, shape: torch.Size) -> None:
    """A mask of `shape` marking scored positions: bool, or numbers that are all 0 or 1
    (an integer mask of 2 would count a token twice)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(
            f"mask must be a torch.Tensor of shape {tuple(shape)}, got "
            f"{type(mask).__name__}"
        )
    if mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
        values = torch.unique(mask.detach())[:10].tolist()
        raise ValueError(
            f"mask must hold only 0/1 (or True/False), got values {describe(values)}; "
            "it marks which targets count, it does not weight them (use "
            "mask.bool(), and weights in the loss)"
        )


def _shared_prefix(input_ids: torch.Tensor, mask: torch.Tensor) -> int:
    """Number of leading positions where every row has the same token and none is
    scored."""
    same = (input_ids == input_ids[:1]).all(0) & ~mask.any(0)
    return int(same.long().cumprod(0).sum())


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target_t | tokens before t) at every position: shape (B, T), unmasked."""
    return (
        torch.log_softmax(logits.float(), dim=-1)
        .gather(-1, targets.unsqueeze(-1))
        .squeeze(-1)
    )


def sequence_logprobs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    average: bool = False,
) -> torch.Tensor:
    """Per-row sum (or, with `average`, per-token mean) of log p(target) over masked
    positions: shape (B,)."""
    if logits.shape[:2] != targets.shape or targets.shape != mask.shape:
        raise ValueError(
            f"shapes disagree: logits {tuple(logits.shape)}, targets "
            f"{tuple(targets.shape)}, mask {tuple(mask.shape)}; logits must be "
            "(B, T, V) with targets and mask (B, T)"
        )
    _check_mask(mask, targets.shape)
    token_logps = token_logprobs(logits, targets)
    m = mask.to(token_logps.dtype)
    total = (token_logps * m).sum(-1)
    if average:
        return total / m.sum(-1).clamp(min=1)
    return total


def batch_logprobs(
    model: torch.nn.Module, batch: SequenceBatch, average: bool = False
) -> torch.Tensor:
    """log pi(completion | prompt) for every row of `batch`, in one forward pass.

    When the rows share a prompt, the model reads it once (`prefix_cache`) and only the
    rest per row: the same numbers, about half the work for the pizza run's rows."""
    S = batch.shared_prefix
    prefix_cache = getattr(model, "prefix_cache", None)
    if S == 0 or len(batch) == 1 or prefix_cache is None:
        return sequence_logprobs(
            model(batch.input_ids), batch.targets, batch.completion_mask, average
        )
    past = prefix_cache(batch.input_ids[:1, :S])
    logits = model(batch.input_ids[:, S:], past=past)
    return sequence_logprobs(
        logits, batch.targets[:, S:], batch.completion_mask[:, S:], average
    )


def batch_token_logprobs(model: torch.nn.Module, batch: SequenceBatch) -> torch.Tensor:
    """Per-token log pi(y_t | x, y_<t) of every row, shape (B, T), 0 outside
    `completion_mask`.

    The per-token view that on-policy RL needs (per-token KL, advantages); summing it
    over the time axis gives `batch_logprobs`."""
    _check_mask(batch.completion_mask, batch.targets.shape)
    S = batch.shared_prefix
    prefix_cache = getattr(model, "prefix_cache", None)
    if S == 0 or len(batch) == 1 or prefix_cache is None:
        logits, targets = model(batch.input_ids), batch.targets
    else:
        past = prefix_cache(batch.input_ids[:1, :S])
        logits, targets = model(batch.input_ids[:, S:], past=past), batch.targets[:, S:]
    out = torch.zeros(batch.targets.shape, dtype=torch.float32, device=logits.device)
    out[:, batch.targets.shape[1] - targets.shape[1] :] = token_logprobs(
        logits, targets
    )
    return out * batch.completion_mask


@dataclass
class PairBatch:
    """Chosen and rejected completions in ONE batch of rows; pair i is rows
    chosen_index[i], rejected_index[i].

    With merging, identical (prompt, completion) rows are stored once: exact, because a
    row's log-prob does not depend on which pair it belongs to, and autograd sums the
    repeated uses.
    """

    rows: SequenceBatch
    chosen_index: torch.Tensor  # (P,) long
    rejected_index: torch.Tensor  # (P,) long

    def to(self, device: torch.device | str) -> "PairBatch":
        return PairBatch(
            self.rows.to(device),
            self.chosen_index.to(device),
            self.rejected_index.to(device),
        )

    def __len__(self) -> int:
        return self.chosen_index.shape[0]


def build_pair_batch(
    tokenizer: CharTokenizer,
    pairs: Sequence[PreferencePair],
    block_size: int | None = None,
    merge_identical: bool = True,
    device: torch.device | str | None = None,
) -> PairBatch:
    """Put every pair's chosen and rejected completion into one batch (merged when
    identical)."""
    pairs = validate_pairs(pairs)
    keys = [(p.prompt, p.chosen) for p in pairs] + [
        (p.prompt, p.rejected) for p in pairs
    ]
    if merge_identical:
        unique: dict[tuple[str, str], int] = {}
        idx = [unique.setdefault(k, len(unique)) for k in keys]
        rows = list(unique)
    else:
        idx, rows = list(range(len(keys))), keys
    batch = build_batch(
        tokenizer, [r[0] for r in rows], [r[1] for r in rows], block_size
    )
    index = torch.tensor(idx, dtype=torch.long)
    pb = PairBatch(batch, index[: len(pairs)], index[len(pairs) :])
    return pb.to(device) if device is not None else pb


def pair_logprobs(
    model: torch.nn.Module, pair_batch: PairBatch, average: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen_logps, rejected_logps), each of shape (P,), from a single forward pass
    over all rows."""
    row_logps = batch_logprobs(model, pair_batch.rows, average)
    return row_logps[pair_batch.chosen_index], row_logps[pair_batch.rejected_index]

"""Supervised pretraining of a tiny GPT on (sentence, count) rows: the food model's
recipe."""

from __future__ import annotations

import math
import os
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .errors import describe
from .logprobs import build_batch
from .model import GPT
from .tokenizer import CharTokenizer


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or weights; the model was restored."""


def progress_disabled(progress: bool | None) -> bool:
    """Whether a progress bar is hidden: `progress` if given, else $TQDM_DISABLE."""
    if progress is None:
        # follow the environment, so notebooks and tests can silence every bar at once
        return os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    return not progress


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine to
    `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def pretrain(
    model: GPT,
    tokenizer: CharTokenizer,
    sentences: Sequence[tuple[str, int]],
    steps: int = 600,
    lr: float = 3e-3,
    warmup: int = 50,
    weight_decay: float = 0.01,
    progress: bool | None = None,
) -> list[float]:
    """Next-token cross-entropy on (sentence, count) rows, full batch with AdamW;
    returns the loss per step.

    Rows are weighted by count, so training on distinct sentences is exactly the
    full-corpus objective (mean loss per token of the corpus) at a fraction of the cost.
    """
    if not sentences:
        raise ValueError(
            "no sentences to pretrain on; pass (sentence, count) rows, e.g. "
            "count_sentences(make_corpus())"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {describe(steps)}")
    texts = [s for s, _ in sentences]
    counts = torch.tensor([float(c) for _, c in sentences])
    if (counts <= 0).any():
        raise ValueError("every sentence count must be > 0")
    device = model.device
    batch = build_batch(
        tokenizer, [""] * len(texts), texts, model.config.block_size, device
    )
    # token weights: each row's count on each of its real tokens; normalised to a mean
    w = counts.to(device)[:, None] * batch.completion_mask
    w = w / w.sum()
    opt = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, steps, warmup)
    )
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="pretrain", disable=progress_disabled(progress)):
        logits = model(batch.input_ids)
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), batch.targets, reduction="none"
        )
        loss = (nll * w).sum()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"pretraining loss became {loss.item()}; lower the learning rate "
                f"(lr={lr})"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses

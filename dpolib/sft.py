"""Supervised fine-tuning on chosen completions: the "SFT" before DPO (the DPO paper's
Preferred-FT), a masked next-token cross-entropy on the completion tokens only."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from .errors import describe
from .logprobs import SequenceBatch, batch_token_logprobs, build_batch
from .model import GPT
from .pretrain import NonFiniteLossError, progress_disabled
from .tokenizer import CharTokenizer


def sft_loss(
    model: GPT, batch: SequenceBatch, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean NLL per completion token: -sum_i w_i sum_t log pi(y_it) / sum_i w_i |y_i|"""
    token_logps = batch_token_logprobs(model, batch)  # 0 outside the completion
    mask = batch.completion_mask.to(token_logps.dtype)
    w = torch.ones(len(batch), device=mask.device) if weights is None else weights
    return -(token_logps.sum(-1) * w).sum() / (mask.sum(-1) * w).sum()


def _check_rows(
    prompts: Sequence[str],
    completions: Sequence[str],
    weights: Sequence[float] | None,
) -> None:
    if len(prompts) == 0 or len(completions) == 0:
        raise ValueError(
            "the SFT set is empty: pass at least one (prompt, completion) row, e.g. "
            "the chosen completions of the preference pairs"
        )
    if len(prompts) != len(completions):
        raise ValueError(
            f"prompts and completions must pair up one to one, got {len(prompts)} "
            f"prompts and {len(completions)} completions"
        )
    for name, rows in (("prompts", prompts), ("completions", completions)):
        bad = [r for r in rows if not isinstance(r, str)]
        if bad:
            raise TypeError(f"{name} must be strings, got {describe(bad[0])}")
    if weights is not None:
        if len(weights) != len(prompts):
            raise ValueError(
                f"weights must have one entry per row ({len(prompts)}), "
                f"got {len(weights)}"
            )
        bad_weights = [w for w in weights if not float(w) > 0]
        if bad_weights:
            raise ValueError(
                f"every weight must be > 0, got {describe(bad_weights[0])}; drop rows "
                "you do not want instead of weighting them 0"
            )


def sft(
    model: GPT,
    tokenizer: CharTokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    weights: Sequence[float] | None = None,
    *,
    steps: int = 100,
    lr: float = 3e-4,
    progress: bool | None = None,
) -> list[float]:
    """Full-batch Adam on `sft_loss` over the rows (prompt tokens are not trained);
    returns the loss per step. `weights` (e.g. counts) weight the rows; the model ends
    in eval mode."""
    _check_rows(prompts, completions, weights)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {describe(steps)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {describe(lr)}")
    device = model.device
    # identical rows are stored once with their weights summed: the same loss, less work
    merged: dict[tuple[str, str], float] = {}
    for i, row in enumerate(zip(prompts, completions)):
        merged[row] = merged.get(row, 0.0) + (
            1.0 if weights is None else float(weights[i])
        )
    rows = list(merged)
    batch = build_batch(
        tokenizer,
        [p for p, _ in rows],
        [c for _, c in rows],
        model.config.block_size,
        device,
    )
    w = torch.tensor(list(merged.values()), device=device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="SFT", disable=progress_disabled(progress)):
        loss = sft_loss(model, batch, w)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the SFT loss became {loss.item()}; lower the learning rate (lr={lr})"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses

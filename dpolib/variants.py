"""`run_variant_episodes`: the practitioners' losses (RPO, DPO-Positive, sigmoid_norm,
SimPO; `dpolib.losses.practice_loss`) trained by the one DPO loop, `train_dpo`."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .config import DPOConfig
from .data import PreferencePair
from .losses import PRACTICE_LOSS_TYPES
from .model import GPT
from .tokenizer import CharTokenizer
from .train import train_dpo


def run_variant_episodes(
    num_epochs: int,
    preference_dataset: Sequence[PreferencePair],
    policy: GPT,
    reference_policy: GPT,
    policy_optimizer: torch.optim.Optimizer,
    tokenizer: CharTokenizer,
    loss_type: str,
    beta: float = 0.1,
    *,
    rpo_alpha: float = 1.0,
    dpop_lambda: float = 5.0,
    simpo_gamma: float = 1.0,
    progress: bool | None = None,
    callback: Callable[[dict], None] | None = None,
) -> tuple[GPT, list[dict]]:
    """Full-batch training with `practice_loss(loss_type)`, one step per epoch; returns
    (policy, history) with TRL's metric names plus `nll/chosen` (mean NLL per token)."""
    if loss_type not in PRACTICE_LOSS_TYPES:
        raise ValueError(
            f"loss_type must be one of {PRACTICE_LOSS_TYPES}, got {loss_type!r}; the "
            "DPO family (sigmoid, ipo, ...) trains with run_dpo_episodes"
        )
    config = DPOConfig(
        beta=beta,
        loss_type=loss_type,
        num_train_epochs=num_epochs,
        rpo_alpha=rpo_alpha,
        dpop_lambda=dpop_lambda,
        simpo_gamma=simpo_gamma,
    )
    return train_dpo(
        policy,
        reference_policy,
        tokenizer,
        preference_dataset,
        policy_optimizer,
        config,
        callback=callback,
        progress=progress,
    )

"""Training with the practitioners' losses (RPO, DPO-Positive, sigmoid_norm, SimPO).

`run_dpo_episodes` trains the DPO family of `dpo_loss`; these variants also need each
completion's token count or the chosen log-ratio alone, so they get this small
full-batch loop built from the same pieces (one pair batch, the reference run once)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .data import PreferencePair, validate_pairs
from .logprobs import build_pair_batch, pair_logprobs
from .losses import PRACTICE_LOSS_TYPES, check_beta, practice_loss
from .model import GPT
from .tokenizer import CharTokenizer
from .train import NonFiniteLossError, _check_pair_models, _progress_disabled


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
    check_beta(beta)
    if loss_type not in PRACTICE_LOSS_TYPES:
        raise ValueError(
            f"loss_type must be one of {PRACTICE_LOSS_TYPES}, got {loss_type!r}; the "
            "DPO family (sigmoid, ipo, ...) trains with run_dpo_episodes"
        )
    pairs = validate_pairs(preference_dataset)
    _check_pair_models(policy, reference_policy, tokenizer)
    if num_epochs < 0:
        raise ValueError(f"num_epochs must be >= 0, got {num_epochs}")
    device = policy.device
    data = build_pair_batch(tokenizer, pairs, policy.config.block_size, True, device)
    lengths = data.rows.completion_mask.sum(-1).float()
    len_c, len_r = lengths[data.chosen_index], lengths[data.rejected_index]
    reference_policy.to(device).eval()
    with torch.no_grad():  # the reference never changes
        ref_c, ref_r = pair_logprobs(reference_policy, data)
    history: list[dict] = []
    policy.train()
    for epoch in tqdm(
        range(num_epochs), desc=loss_type, disable=_progress_disabled(progress)
    ):
        pol_c, pol_r = pair_logprobs(policy, data)
        out = practice_loss(
            pol_c,
            pol_r,
            ref_c,
            ref_r,
            beta,
            loss_type,
            chosen_lengths=len_c,
            rejected_lengths=len_r,
            rpo_alpha=rpo_alpha,
            dpop_lambda=dpop_lambda,
            simpo_gamma=simpo_gamma,
        )
        if not torch.isfinite(out.loss):
            raise NonFiniteLossError(
                f"the {loss_type} loss became {out.loss.item()} at epoch {epoch + 1}; "
                "lower the learning rate or raise beta"
            )
        record = {"epoch": epoch + 1, "step": epoch + 1, **out.metrics()}
        record["nll/chosen"] = float((-pol_c.detach() / len_c).mean())
        policy_optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        policy_optimizer.step()
        history.append(record)
        if callback is not None:
            callback(record)
    policy.eval()
    return policy, history

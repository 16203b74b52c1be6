"""Training loops: supervised pretraining of the food model and batched DPO (`run_dpo_episodes`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .checkpoint import load_dpo_checkpoint, save_checkpoint
from .data import PreferencePair, validate_pairs
from .logprobs import (
    PairBatch,
    SequenceBatch,
    batch_logprobs,
    build_batch,
    build_pair_batch,
)
from .losses import check_beta, dpo_loss, token_kl_to_reference
from .model import GPT
from .tokenizer import CharTokenizer


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the model was not updated with it."""


def _progress_disabled(progress: bool | None) -> bool:
    if (
        progress is None
    ):  # follow the environment, so notebooks and tests can silence every bar at once
        return os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    return not progress


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine decay to `floor`."""
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
    """Next-token cross-entropy on (sentence, count) rows, full batch with AdamW; returns the loss per step.

    Rows are weighted by count, so training on distinct sentences is exactly the full-corpus objective
    (mean loss per token of the corpus) at a fraction of the cost.
    """
    if not sentences:
        raise ValueError(
            "no sentences to pretrain on; pass (sentence, count) rows, e.g. count_sentences(make_corpus())"
        )
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    texts = [s for s, _ in sentences]
    counts = torch.tensor([float(c) for _, c in sentences])
    if (counts <= 0).any():
        raise ValueError("every sentence count must be > 0")
    device = model.device
    batch = build_batch(
        tokenizer, [""] * len(texts), texts, model.config.block_size, device
    )
    # token weights: each row's count on each of its real tokens; normalised to a per-token mean
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
    for _ in tqdm(range(steps), desc="pretrain", disable=_progress_disabled(progress)):
        logits = model(batch.input_ids)
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), batch.targets, reduction="none"
        )
        loss = (nll * w).sum()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"pretraining loss became {loss.item()}; lower the learning rate (lr={lr})"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


@dataclass
class Anchor:
    """Rows whose next-token distributions the policy must keep close to the reference's:
    adds weight * KL(pi_ref || pi_theta), teacher-forced over the rows' completion tokens.

    DPO's beta only leashes the prompts in the preference data; an anchor on other prompts
    keeps the rest of the model where it was."""

    prompts: Sequence[str]
    completions: Sequence[str]
    counts: Sequence[float]
    weight: float = 3.0


def _check_pair_models(policy: GPT, reference: GPT, tokenizer: CharTokenizer) -> None:
    if policy is reference:
        raise ValueError(
            "policy and reference_policy are the same object; the reference must be a frozen copy "
            "(copy.deepcopy(policy) before training)"
        )
    if policy.config != reference.config:
        raise ValueError(
            f"policy and reference have different configs ({policy.config} vs {reference.config}); "
            "DPO compares log-probs of the same model family: load the reference from the policy's starting checkpoint"
        )
    if policy.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the models have {policy.config.vocab_size}; "
            "use the tokenizer saved with the model"
        )


def naive_dpo_epoch(
    preference_dataset: Sequence[PreferencePair],
    policy: GPT,
    reference_policy: GPT,
    policy_optimizer: torch.optim.Optimizer,
    tokenizer: CharTokenizer,
    beta: float = 0.1,
) -> float:
    """One full-batch DPO step written the straightforward way: a pair at a time, four forward passes
    per pair, the reference re-run every time. Same result as `run_dpo_episodes` with batch_size=None,
    kept as the baseline it is measured against. Returns the mean loss."""
    check_beta(beta)
    pairs = validate_pairs(preference_dataset)
    _check_pair_models(policy, reference_policy, tokenizer)
    block, device = policy.config.block_size, policy.device

    def logp(model: GPT, prompt: str, completion: str) -> torch.Tensor:
        return batch_logprobs(
            model, build_batch(tokenizer, [prompt], [completion], block, device)
        )

    policy.train()
    policy_optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for p in pairs:
        with torch.no_grad():
            ref_c, ref_r = (
                logp(reference_policy, p.prompt, p.chosen),
                logp(reference_policy, p.prompt, p.rejected),
            )
        loss = dpo_loss(
            logp(policy, p.prompt, p.chosen),
            logp(policy, p.prompt, p.rejected),
            ref_c,
            ref_r,
            beta,
        ).loss
        (loss / len(pairs)).backward()
        total += loss.item()
    policy_optimizer.step()
    policy.eval()
    return total / len(pairs)


def run_dpo_episodes(
    num_epochs: int,
    preference_dataset: Sequence[PreferencePair],
    policy: GPT,
    reference_policy: GPT,
    policy_optimizer: torch.optim.Optimizer,
    tokenizer: CharTokenizer,
    beta: float = 0.1,
    print_every: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    *,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    batch_size: int | None = None,
    merge_identical: bool = True,
    average_logprobs: bool = False,
    anchor: Anchor | None = None,
    resume_from: str | os.PathLike | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
    callback: Callable[[dict], None] | None = None,
) -> tuple[GPT, list[dict]]:
    """Train `policy` with DPO against the frozen `reference_policy`; returns (policy, history).

    Each step: one forward over every distinct (prompt, completion) row the batch needs (chosen and
    rejected together), loss from `dpo_loss`, one optimizer step. Reference log-probs are computed
    once. `batch_size=None` uses the whole dataset per step (one step per epoch). `history` holds one
    dict per step with the loss and TRL's metric names. With `resume_from`, training continues from a
    checkpoint written by this function and ends exactly where an uninterrupted run would.
    """
    check_beta(beta)
    pairs = validate_pairs(preference_dataset)
    _check_pair_models(policy, reference_policy, tokenizer)
    if num_epochs < 0:
        raise ValueError(f"num_epochs must be >= 0, got {num_epochs}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(
            f"batch_size must be >= 1 or None (full batch), got {batch_size}"
        )
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("checkpoint_every needs a checkpoint_dir to write to")
    if not any(p.requires_grad for p in policy.parameters()):
        raise ValueError(
            "the policy has no trainable parameters (requires_grad is False everywhere); "
            "was it copied from a frozen model? call policy.requires_grad_(True)"
        )
    fixed = _Fixed.prepare(
        pairs,
        policy,
        reference_policy,
        tokenizer,
        merge_identical,
        average_logprobs,
        anchor,
    )
    hparams = {
        "beta": float(beta),
        "loss_type": loss_type,
        "label_smoothing": float(label_smoothing),
        "batch_size": batch_size,
        "average_logprobs": average_logprobs,
    }
    history, start_epoch = [], 0
    if resume_from is not None:
        history, start_epoch = _resume(
            resume_from, policy, policy_optimizer, generator, hparams
        )

    policy.train()
    for epoch in tqdm(
        range(start_epoch, num_epochs), desc="DPO", disable=_progress_disabled(progress)
    ):
        for idx in _minibatches(len(pairs), batch_size, generator, policy.device):
            loss, record = _dpo_step(
                policy, fixed, idx, beta, loss_type, label_smoothing, average_logprobs
            )
            record = {"epoch": epoch + 1, "step": len(history) + 1, **record}
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"the loss became {loss.item()} at epoch {epoch + 1}, step {record['step']}; the policy was not "
                    "updated and earlier checkpoints are intact. Lower the learning rate or raise beta, then resume "
                    "from the last checkpoint"
                )
            policy_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            policy_optimizer.step()
            history.append(record)
            if callback is not None:
                callback(record)
        if print_every and (epoch + 1) % print_every == 0:
            r = history[-1]
            tqdm.write(
                f"epoch {epoch + 1:4d} | loss {r['loss']:.4f} | margin {r['rewards/margins']:+.3f} | "
                f"accuracy {r['rewards/accuracies']:.2f} | logps/chosen {r['logps/chosen']:.3f}"
            )
        if checkpoint_every and (epoch + 1) % checkpoint_every == 0:
            extra = {"history": history, "hparams": hparams}
            if generator is not None:
                extra["generator_state"] = generator.get_state()
            save_checkpoint(
                Path(checkpoint_dir) / f"dpo_epoch_{epoch + 1:04d}.pt",
                policy,
                tokenizer,
                policy_optimizer,
                step=epoch + 1,
                kind="dpo",
                **extra,
            )
    policy.eval()
    return policy, history


@dataclass
class _Fixed:
    """What never changes during a DPO run: the batched rows, the reference's log-probs of them, and the
    anchor rows with the reference's logits on them."""

    data: PairBatch
    ref_logps: torch.Tensor
    anchor: Anchor | None = None
    anchor_rows: SequenceBatch | None = None
    anchor_ref_logits: torch.Tensor | None = None
    anchor_counts: torch.Tensor | None = None

    @classmethod
    def prepare(
        cls,
        pairs: list[PreferencePair],
        policy: GPT,
        reference: GPT,
        tokenizer: CharTokenizer,
        merge_identical: bool,
        average_logprobs: bool,
        anchor: Anchor | None,
    ) -> "_Fixed":
        device, block = policy.device, policy.config.block_size
        reference.to(device).eval()
        data = build_pair_batch(tokenizer, pairs, block, merge_identical, device)
        with (
            torch.no_grad()
        ):  # the reference never changes: its log-probs are computed once
            fixed = cls(data, batch_logprobs(reference, data.rows, average_logprobs))
            if anchor is not None:
                if anchor.weight < 0:
                    raise ValueError(f"anchor weight must be >= 0, got {anchor.weight}")
                fixed.anchor = anchor
                fixed.anchor_rows = build_batch(
                    tokenizer, anchor.prompts, anchor.completions, block, device
                )
                fixed.anchor_ref_logits = reference(fixed.anchor_rows.input_ids)
                fixed.anchor_counts = torch.as_tensor(
                    anchor.counts, dtype=torch.float32, device=device
                )
        return fixed


def _minibatches(
    n: int,
    batch_size: int | None,
    generator: torch.Generator | None,
    device: torch.device,
) -> list[torch.Tensor]:
    """Pair indices for one epoch: all of them at once, or a seeded shuffle cut into batches."""
    if batch_size is None or batch_size >= n:
        return [torch.arange(n, device=device)]
    return list(torch.randperm(n, generator=generator).to(device).split(batch_size))


def _dpo_step(
    policy: GPT,
    fixed: _Fixed,
    idx: torch.Tensor,
    beta: float,
    loss_type: str,
    label_smoothing: float,
    average_logprobs: bool,
) -> tuple[torch.Tensor, dict]:
    """The loss on pairs `idx` (DPO, plus the anchor's KL if any) and its metrics under TRL's names."""
    ci, ri = fixed.data.chosen_index[idx], fixed.data.rejected_index[idx]
    # forward only the distinct rows this batch needs, chosen and rejected together
    needed, inverse = torch.unique(torch.cat([ci, ri]), return_inverse=True)
    logps = batch_logprobs(policy, fixed.data.rows.select(needed), average_logprobs)
    n = len(idx)
    out = dpo_loss(
        logps[inverse[:n]],
        logps[inverse[n:]],
        fixed.ref_logps[ci],
        fixed.ref_logps[ri],
        beta,
        loss_type,
        label_smoothing,
    )
    loss, record = out.loss, out.metrics()
    if fixed.anchor is not None:
        kl = token_kl_to_reference(
            policy(fixed.anchor_rows.input_ids),
            fixed.anchor_ref_logits,
            fixed.anchor_rows.completion_mask,
            fixed.anchor_counts,
        )
        loss = loss + fixed.anchor.weight * kl
        record["anchor/kl"] = float(kl.detach())
        record["loss/total"] = float(loss.detach())
    return loss, record


def _resume(
    path: str | os.PathLike,
    policy: GPT,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None,
    hparams: dict,
) -> tuple[list[dict], int]:
    """Restore policy, optimizer and shuffle state from a run_dpo_episodes checkpoint; (history, epoch)."""
    ckpt = load_dpo_checkpoint(path)
    if ckpt.model.config != policy.config:
        raise ValueError(
            f"{path} holds a model of another shape than `policy`; resume with the same model config"
        )
    if ckpt.extra.get("hparams") != hparams:
        raise ValueError(
            f"{path} was trained with {ckpt.extra.get('hparams')}, not {hparams}; resume with the same settings"
        )
    policy.load_state_dict(ckpt.model.state_dict())
    if ckpt.optimizer_state is not None:
        optimizer.load_state_dict(ckpt.optimizer_state)
    if generator is not None and "generator_state" in ckpt.extra:
        generator.set_state(ckpt.extra["generator_state"])
    return list(ckpt.extra.get("history", [])), ckpt.step

"""Online (iterative) DPO: each round samples the current policy, labels the samples
with a reward and a well-formedness check, builds fresh pairs and trains on those.

Samples that fail the check (garbled or unfinished text) get `garbled_reward`, so the
policy's own garbage becomes rejected answers. The reference stays fixed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch

from .data import PreferencePair, build_preference_pairs
from .errors import describe
from .model import GPT, Sample
from .tokenizer import CharTokenizer
from .train import run_dpo_episodes


class NoAcceptableSampleError(ValueError):
    """An online round drew no sample that passes the well-formedness check."""


@dataclass
class OnlineRound:
    """What one round saw and did: samples, how many passed, pairs, training history."""

    round: int
    samples: int
    acceptable: int  # samples that passed the well-formedness check
    mean_reward: float  # over all samples, garbled ones at garbled_reward
    best_share: float  # share of samples with the round's best reward
    pairs: list[PreferencePair] = field(repr=False)
    history: list[dict] = field(repr=False)

    @property
    def trained(self) -> bool:
        """False when every sample had the same reward: nothing to prefer, no step."""
        return bool(self.pairs)


def label_samples(
    prompt: str,
    samples: Sequence[Sample],
    reward_fn: Callable[[str, str], float],
    acceptable: Callable[[Sample], bool],
    garbled_reward: float = -1.0,
) -> dict[str, float]:
    """Reward of each distinct completion: reward_fn for acceptable samples,
    garbled_reward otherwise (a string seen both ways keeps the lower). Raises if none
    is acceptable."""
    if not samples:
        raise ValueError("no samples to label; draw at least one")
    labels: dict[str, float] = {}
    n_ok = 0
    for s in samples:
        ok = bool(acceptable(s))
        n_ok += ok
        r = float(reward_fn(prompt, s.completion)) if ok else float(garbled_reward)
        labels[s.completion] = min(r, labels.get(s.completion, r))
    if n_ok == 0:
        shown = [s.completion for s in samples[:5]]
        raise NoAcceptableSampleError(
            f"none of the {len(samples)} samples of {describe(prompt)} is acceptable "
            f"(first ones: {describe(shown)}), so no pair can have a good answer as "
            "chosen. The policy has collapsed or the check is too strict: restart from "
            "an earlier checkpoint with a lower learning rate or a larger beta"
        )
    return labels


def online_dpo_round(
    policy: GPT,
    reference: GPT,
    tokenizer: CharTokenizer,
    optimizer: torch.optim.Optimizer,
    prompt: str,
    reward_fn: Callable[[str, str], float],
    acceptable: Callable[[Sample], bool],
    *,
    n_samples: int = 256,
    n_pairs: int = 64,
    steps: int = 4,
    beta: float = 0.5,
    garbled_reward: float = -1.0,
    generator: torch.Generator | None = None,
    round_index: int = 1,
) -> OnlineRound:
    """Sample `n_samples` from the policy, label them, draw `n_pairs` pairs (chosen
    among the best, rejected among the rest), train `steps` full-batch DPO steps."""
    if n_pairs < 1 or steps < 1:
        raise ValueError(
            f"n_pairs and steps must be >= 1, got n_pairs={n_pairs}, steps={steps}"
        )
    samples = policy.sample_batch(tokenizer, prompt, n_samples, generator=generator)
    labels = label_samples(prompt, samples, reward_fn, acceptable, garbled_reward)
    rewards = [labels[s.completion] for s in samples]
    best = max(rewards)
    untrained = OnlineRound(
        round=round_index,
        samples=len(samples),
        acceptable=sum(bool(acceptable(s)) for s in samples),
        mean_reward=sum(rewards) / len(rewards),
        best_share=sum(r == best for r in rewards) / len(rewards),
        pairs=[],
        history=[],
    )
    if len(set(rewards)) == 1:  # nothing to prefer: the round trains nothing
        return untrained
    pairs = build_preference_pairs(
        prompt,
        [s.completion for s in samples],
        lambda _p, c: labels[c],
        n_pairs,
        generator,
    )
    _, history = run_dpo_episodes(
        steps, pairs, policy, reference, optimizer, tokenizer, beta=beta, progress=False
    )
    return replace(untrained, pairs=pairs, history=history)


def online_dpo(
    policy: GPT,
    reference: GPT,
    tokenizer: CharTokenizer,
    optimizer: torch.optim.Optimizer,
    prompt: str,
    reward_fn: Callable[[str, str], float],
    acceptable: Callable[[Sample], bool],
    rounds: int,
    *,
    callback: Callable[[OnlineRound], None] | None = None,
    **round_kwargs,
) -> list[OnlineRound]:
    """`rounds` calls of `online_dpo_round` on the same policy and optimizer."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    out = []
    for i in range(rounds):
        r = online_dpo_round(
            policy,
            reference,
            tokenizer,
            optimizer,
            prompt,
            reward_fn,
            acceptable,
            round_index=i + 1,
            **round_kwargs,
        )
        out.append(r)
        if callback is not None:
            callback(r)
    return out

"""Measuring a model exactly: completion distributions, sampled frequencies, KL and TVD,
drift from the reference, and `Evaluator` (a fixed reference measured once).

Nothing here knows the toy: the completions, prompts and labels are arguments. The
people-food defaults live in `dpolib.pizza.measures` (re-exported by `dpolib`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .data import PreferencePair, validate_pairs
from .errors import describe
from .logprobs import batch_logprobs, build_batch, build_pair_batch, pair_logprobs
from .losses import dpo_gradient_weight
from .model import GPT, Sample
from .tokenizer import CharTokenizer

OTHER = "<other>"  # every completion that is not a known one (garbled text, unfinished)


@torch.no_grad()
def completion_distribution(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    completions: Sequence[str],
) -> dict[str, float]:
    """Exact p(completion + <eos> | prompt) for each completion, the rest of the mass as
    OTHER."""
    completions = list(completions)
    if not completions:
        raise ValueError("completions is empty; pass the completions to measure")
    was_training = model.training
    model.eval()
    try:
        batch = build_batch(
            tokenizer,
            [prompt] * len(completions),
            completions,
            model.config.block_size,
            model.device,
        )
        probs = batch_logprobs(model, batch).exp().double().cpu().tolist()
    finally:
        model.train(was_training)
    dist = dict(zip(completions, probs))
    dist[OTHER] = max(0.0, 1.0 - sum(probs))
    return dist


def distribution_table(
    model: GPT,
    tokenizer: CharTokenizer,
    prompts: Mapping[str, str],
    completions: Sequence[str],
) -> dict[str, dict[str, float]]:
    """completion_distribution of every prompt, keyed by its label: {label: {y: p}}."""
    return {
        label: completion_distribution(model, tokenizer, prompt, completions)
        for label, prompt in prompts.items()
    }


def _as_vectors(
    p: Mapping[str, float], q: Mapping[str, float]
) -> tuple[list[float], list[float]]:
    keys = sorted(set(p) | set(q))
    return [p.get(k, 0.0) for k in keys], [q.get(k, 0.0) for k in keys]


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """TVD(p, q) = 1/2 sum_y |p(y) - q(y)|, between 0 (same) and 1 (disjoint)."""
    a, b = _as_vectors(p, q)
    return 0.5 * sum(abs(x - y) for x, y in zip(a, b))


def kl_divergence(
    p: Mapping[str, float] | Sequence[float], q: Mapping[str, float] | Sequence[float]
) -> float:
    """KL(p || q) = sum_y p(y) log(p(y)/q(y)) in nats, dpolib's one KL rule.

    Zero probabilities: a term with p(y) = 0 is 0 (0 log 0 = 0); p(y) > 0 where q(y) = 0
    gives +inf. Dictionaries are matched by key (a missing key is probability 0);
    sequences by position. Rounding below zero is clamped to 0."""
    if isinstance(p, Mapping) and isinstance(q, Mapping):
        a, b = _as_vectors(p, q)
    elif not isinstance(p, Mapping) and not isinstance(q, Mapping):
        a, b = [float(x) for x in p], [float(y) for y in q]
        if len(a) != len(b):
            raise ValueError(f"p and q differ in length ({len(a)} and {len(b)})")
    else:
        raise TypeError("p and q must both be dicts or both be sequences")
    total = 0.0
    for x, y in zip(a, b):
        if x > 0:
            if y <= 0:
                return math.inf
            total += x * (math.log(x) - math.log(y))
    return max(total, 0.0)


@dataclass
class SampleReport:
    """What `n` samples of one prompt say: how often the target appears, how many are
    well formed."""

    n: int
    counts: dict[str, int]
    target_frequency: float
    well_formed: float

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "target_frequency": self.target_frequency,
            "well_formed": self.well_formed,
        }


def summarize_samples(
    samples: Sequence[Sample], target: str, vocabulary: Sequence[str]
) -> SampleReport:
    """A sample is well formed if it finished (emitted <eos>) and is in `vocabulary`."""
    if not samples:
        raise ValueError("no samples to summarize; draw at least one")
    known = set(vocabulary)
    counts = Counter(
        s.completion if s.finished else s.completion + "…" for s in samples
    )
    n = len(samples)
    good = sum(1 for s in samples if s.finished and s.completion in known)
    hits = sum(1 for s in samples if s.finished and s.completion == target)
    return SampleReport(n, dict(counts.most_common()), hits / n, good / n)


def sample_report(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    target: str,
    vocabulary: Sequence[str],
    n: int = 1000,
    generator: torch.Generator | None = None,
    max_completion_len: int = 20,
) -> SampleReport:
    """Draw `n` completions of `prompt` in one batch and summarize them."""
    samples = model.sample_batch(
        tokenizer, prompt, n, max_completion_len, generator=generator
    )
    return summarize_samples(samples, target, vocabulary)


def drift(
    policy: GPT,
    reference: GPT | None,
    tokenizer: CharTokenizer,
    prompts: Mapping[str, str],
    completions: Sequence[str],
    reference_table: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Per prompt label: TVD and KL(policy || reference) between exact distributions.

    Pass `reference_table` (the reference's `distribution_table`) to measure many
    policies against one reference without recomputing it; `reference` may then be
    None."""
    pol = distribution_table(policy, tokenizer, prompts, completions)
    if reference_table is None:
        if reference is None:
            raise ValueError("drift needs the reference model or its reference_table")
        reference_table = distribution_table(reference, tokenizer, prompts, completions)
    ref = reference_table
    return {
        k: {"tvd": total_variation(pol[k], ref[k]), "kl": kl_divergence(pol[k], ref[k])}
        for k in prompts
    }


@dataclass(frozen=True)
class Snapshot:
    """Exact measurements of a policy after `epoch` epochs (epoch 0: the reference).

    d = u(y_w) - u(y_l), u = log pi_theta - log pi_ref, is the log-ratio gap of a pair;
    the reward margin (TRL's rewards/margins) is beta * d."""

    epoch: int
    target: float  # p(target | prompt)
    well_formed: float  # 1 - p(OTHER | prompt): the mass on known completions
    kl: float  # KL(pi_theta || pi_ref) on the prompt over completions and OTHER, nats
    beta: float  # the beta that reward_margin and dpo_weight use
    gap: float  # mean over pairs of d = u(y_w) - u(y_l), in nats
    gap_min: float  # the smallest d over the pairs
    dpo_weight: float  # mean of DPO's gradient weight sigma(-beta d); near 0: saturated
    others_tvd_mean: float | None = (
        None  # mean TVD of the other prompts; None: not measured
    )
    others_tvd_max: float | None = None

    @property
    def reward_margin(self) -> float:
        """Mean reward margin beta * d over the pairs (TRL's rewards/margins)."""
        return self.beta * self.gap

    @property
    def margin(self) -> float:
        raise AttributeError(
            "Snapshot.margin was d, which collided with TRL's meaning of margin: use "
            ".gap for d = u(y_w) - u(y_l), .reward_margin for beta * d"
        )

    @property
    def margin_min(self) -> float:
        raise AttributeError(
            "Snapshot.margin_min was the smallest d: use .gap_min for it, "
            ".reward_margin_min for beta times it"
        )

    @property
    def reward_margin_min(self) -> float:
        """The smallest reward margin beta * d over the pairs."""
        return self.beta * self.gap_min


class Evaluator:
    """Measures policies against a fixed reference on one prompt (and, optionally, other
    prompts); the reference's distributions and log-probs are computed once."""

    def __init__(
        self,
        reference: GPT,
        tokenizer: CharTokenizer,
        pairs: Sequence[PreferencePair],
        prompt: str,
        target: str,
        completions: Sequence[str],
        others: Mapping[str, str] | None = None,
    ) -> None:
        self.tokenizer, self.prompt, self.target = tokenizer, prompt, target
        self.completions = list(completions)
        self.others = dict(others or {})
        if prompt in self.others.values():
            raise ValueError(
                f"the prompt {describe(prompt)} is also among `others`; pass the other "
                "prompts only"
            )
        self.pairs = validate_pairs(pairs)
        self.reference_distribution = self.distribution(reference)
        if target not in self.reference_distribution or target == OTHER:
            raise ValueError(
                f"target {describe(target)} is not one of the completions "
                f"{describe(self.completions)}; pick one of them"
            )
        self.reference_others = distribution_table(
            reference, tokenizer, self.others, self.completions
        )
        # every pair's chosen and rejected row in one batch; the reference never changes
        self.pair_batch = build_pair_batch(
            tokenizer, self.pairs, reference.config.block_size, True, reference.device
        )
        with torch.no_grad():
            self.reference_logps = pair_logprobs(reference.eval(), self.pair_batch)

    def distribution(self, policy: GPT) -> dict[str, float]:
        """The exact completion distribution of the prompt under `policy`, and OTHER."""
        return completion_distribution(
            policy, self.tokenizer, self.prompt, self.completions
        )

    @torch.no_grad()
    def log_ratios(self, policy: GPT) -> tuple[torch.Tensor, torch.Tensor]:
        """(u(y_w), u(y_l)) for every pair, u = log pi_theta - log pi_ref, each (P,)."""
        was_training = policy.training
        policy.eval()
        try:
            c, r = pair_logprobs(policy, self.pair_batch.to(policy.device))
        finally:
            policy.train(was_training)
        ref_c, ref_r = self.reference_logps
        u_w = (c - ref_c.to(c.device)).double().cpu()
        return u_w, (r - ref_r.to(r.device)).double().cpu()

    def snapshot(
        self, policy: GPT, epoch: int, others: bool = True, beta: float = 1.0
    ) -> Snapshot:
        """Measure `policy`: the prompt's exact distribution, the log-ratio gaps d (and
        DPO's gradient weight at `beta`), and, if `others`, the other prompts' drift."""
        dist = self.distribution(policy)
        u_w, u_l = self.log_ratios(policy)
        d = u_w - u_l
        tvd_mean = tvd_max = None
        if others and self.others:
            moved = drift(
                policy,
                None,
                self.tokenizer,
                self.others,
                self.completions,
                reference_table=self.reference_others,
            )
            tvds = [m["tvd"] for m in moved.values()]
            tvd_mean, tvd_max = sum(tvds) / len(tvds), max(tvds)
        return Snapshot(
            epoch=epoch,
            target=dist[self.target],
            well_formed=1.0 - dist[OTHER],
            kl=kl_divergence(dist, self.reference_distribution),
            beta=float(beta),
            gap=float(d.mean()),
            gap_min=float(d.min()),
            dpo_weight=float(dpo_gradient_weight(beta * u_w, beta * u_l).mean()),
            others_tvd_mean=tvd_mean,
            others_tvd_max=tvd_max,
        )

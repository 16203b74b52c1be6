"""Measuring a food model: exact completion distributions, sampled frequencies, drift from the reference."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch

from .logprobs import batch_logprobs, build_batch
from .model import GPT, Sample
from .tokenizer import CharTokenizer


def _toy():
    # the people-food corpus supplies the default labels; imported late so the core does not
    # import the toy at module level
    from .pizza import corpus

    return corpus


OTHER = "<other>"  # every completion that is not a known food (garbled text, unfinished samples)


@torch.no_grad()
def completion_distribution(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    completions: Sequence[str] | None = None,
) -> dict[str, float]:
    """Exact p(completion + <eos> | prompt) for each known completion, plus the remaining mass as OTHER."""
    completions = _toy().FOODS if completions is None else completions
    was_training = model.training
    model.eval()
    batch = build_batch(
        tokenizer,
        [prompt] * len(completions),
        list(completions),
        model.config.block_size,
        model.device,
    )
    probs = batch_logprobs(model, batch).exp().double().cpu().tolist()
    model.train(was_training)
    dist = dict(zip(completions, probs))
    dist[OTHER] = max(0.0, 1.0 - sum(probs))
    return dist


def distribution_table(
    model: GPT,
    tokenizer: CharTokenizer,
    people: Sequence[str] | None = None,
    foods: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """completion_distribution for every person's prompt "<person> likes "."""
    toy = _toy()
    people = toy.PEOPLE if people is None else people
    return {
        p: completion_distribution(model, tokenizer, toy.prompt_for(p), foods)
        for p in people
    }


def _as_vectors(
    p: dict[str, float], q: dict[str, float]
) -> tuple[list[float], list[float]]:
    keys = sorted(set(p) | set(q))
    return [p.get(k, 0.0) for k in keys], [q.get(k, 0.0) for k in keys]


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """TVD(p, q) = 1/2 sum_y |p(y) - q(y)|, between 0 (same) and 1 (disjoint)."""
    a, b = _as_vectors(p, q)
    return 0.5 * sum(abs(x - y) for x, y in zip(a, b))


def kl_divergence(
    p: dict[str, float], q: dict[str, float], floor: float = 1e-12
) -> float:
    """KL(p || q) = sum_y p(y) log(p(y)/q(y)), in nats; q is floored so a zero does not give infinity."""
    a, b = _as_vectors(p, q)
    return sum(
        x * (math.log(x) - math.log(max(y, floor))) for x, y in zip(a, b) if x > 0
    )


@dataclass
class SampleReport:
    """What `n` samples of one prompt say: how often the target appears and how many are well formed."""

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
    samples: Sequence[Sample],
    target: str = "pizza",
    vocabulary: Sequence[str] | None = None,
) -> SampleReport:
    """A sample is well formed when it finished (emitted <eos>) and is a known food."""
    if not samples:
        raise ValueError("no samples to summarize; draw at least one")
    known = set(_toy().FOODS if vocabulary is None else vocabulary)
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
    n: int = 1000,
    generator: torch.Generator | None = None,
    target: str = "pizza",
    max_completion_len: int = 20,
) -> SampleReport:
    """Draw `n` completions of `prompt` in one batch and summarize them."""
    samples = model.sample_batch(
        tokenizer, prompt, n, max_completion_len, generator=generator
    )
    return summarize_samples(samples, target)


def drift(
    policy: GPT,
    reference: GPT | None,
    tokenizer: CharTokenizer,
    people: Sequence[str] | None = None,
    reference_table: dict[str, dict[str, float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Per person: TVD and KL(policy || reference) between exact food distributions.

    Pass `reference_table` (the reference's `distribution_table`) to measure many policies against one
    reference without recomputing it; `reference` may then be None."""
    people = _toy().PEOPLE if people is None else people
    pol = distribution_table(policy, tokenizer, people)
    if reference_table is None:
        if reference is None:
            raise ValueError("drift needs the reference model or its reference_table")
        reference_table = distribution_table(reference, tokenizer, people)
    ref = reference_table
    return {
        p: {"tvd": total_variation(pol[p], ref[p]), "kl": kl_divergence(pol[p], ref[p])}
        for p in people
    }

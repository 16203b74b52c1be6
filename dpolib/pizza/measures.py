"""The core measurements (`dpolib.evaluate`) with the people-food toy's defaults: the
foods as completions, "<person> likes " as prompts, "pizza" as the target.

These are the forms the chapters call, e.g. `completion_distribution(model, tok,
prompt)`."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .. import evaluate
from ..evaluate import SampleReport
from ..model import GPT, Sample
from ..tokenizer import CharTokenizer
from .corpus import FOODS, PEOPLE, prompt_for

TARGET = "pizza"  # the food the pizza run teaches ravin to like

__all__ = [
    "TARGET",
    "completion_distribution",
    "distribution_table",
    "drift",
    "people_prompts",
    "sample_report",
    "summarize_samples",
]


def people_prompts(people: Sequence[str] = PEOPLE) -> dict[str, str]:
    """{person: "<person> likes "} for each person."""
    return {p: prompt_for(p) for p in people}


def completion_distribution(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    completions: Sequence[str] | None = None,
) -> dict[str, float]:
    """`evaluate.completion_distribution` over the foods, or over `completions`."""
    foods = FOODS if completions is None else completions
    return evaluate.completion_distribution(model, tokenizer, prompt, foods)


def distribution_table(
    model: GPT,
    tokenizer: CharTokenizer,
    people: Sequence[str] | None = None,
    foods: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """The food distribution of every person's prompt "<person> likes "."""
    prompts = people_prompts(PEOPLE if people is None else people)
    return evaluate.distribution_table(
        model, tokenizer, prompts, FOODS if foods is None else foods
    )


def drift(
    policy: GPT,
    reference: GPT | None,
    tokenizer: CharTokenizer,
    people: Sequence[str] | None = None,
    reference_table: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Per person: TVD and KL(policy || reference) between exact food distributions."""
    prompts = people_prompts(PEOPLE if people is None else people)
    return evaluate.drift(policy, reference, tokenizer, prompts, FOODS, reference_table)


def summarize_samples(
    samples: Sequence[Sample],
    target: str = TARGET,
    vocabulary: Sequence[str] | None = None,
) -> SampleReport:
    """`evaluate.summarize_samples` with the foods as the known completions."""
    known = FOODS if vocabulary is None else vocabulary
    return evaluate.summarize_samples(samples, target, known)


def sample_report(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    n: int = 1000,
    generator: torch.Generator | None = None,
    target: str = TARGET,
    max_completion_len: int = 20,
) -> SampleReport:
    """Draw `n` completions of `prompt` in one batch and summarize them against the
    foods."""
    return evaluate.sample_report(
        model, tokenizer, prompt, target, FOODS, n, generator, max_completion_len
    )

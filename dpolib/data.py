"""Preference pairs: the data DPO trains on, checked, and built from a reward."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import describe


@dataclass(frozen=True)
class PreferencePair:
    """One preference: for `prompt`, completion `chosen` is preferred to `rejected`."""

    prompt: str
    chosen: str
    rejected: str


def validate_pairs(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """Check a preference dataset and return it as a list; raises on the mistakes that
    silently ruin DPO."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError(
            "the preference dataset is empty; build at least one (prompt, chosen, "
            "rejected) pair"
        )
    for i, p in enumerate(pairs):
        if not isinstance(p, PreferencePair):
            raise TypeError(
                f"pair {i} is a {type(p).__name__}, expected PreferencePair(prompt, "
                "chosen, rejected)"
            )
        for name in ("prompt", "chosen", "rejected"):
            value = getattr(p, name)
            if not isinstance(value, str):
                raise TypeError(
                    f"pair {i} has {name}={describe(value)} ({type(value).__name__}); "
                    f"{name} must be a str (the text itself, not token ids or a list)"
                )
        if p.chosen == p.rejected:
            raise ValueError(
                f"pair {i} has chosen == rejected ({p.chosen!r}); such a pair carries "
                "no preference "
                "(its DPO gradient is exactly zero): drop it or pick a different "
                "rejected completion"
            )
    return pairs


def build_preference_pairs(
    prompt: str,
    candidates: Sequence[str],
    reward_fn: Callable[[str, str], float],
    n_pairs: int = 100,
    generator: torch.Generator | None = None,
) -> list[PreferencePair]:
    """Make `n_pairs` pairs from candidate completions: chosen is drawn among the
    highest-reward candidates, rejected among those with a lower reward (duplicates
    kept, as sampled).

    With reward_fn = 1 for "pizza" and 0 otherwise this is the original text's recipe:
    chosen "pizza", rejected another food the model actually says."""
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"n_pairs must be an integer >= 1, got {describe(n_pairs)}")
    if not candidates:
        raise ValueError("no candidate completions; sample some from the model first")
    rewards = [float(reward_fn(prompt, c)) for c in candidates]
    for c, r in zip(candidates, rewards):
        if not math.isfinite(r):
            raise ValueError(
                f"reward_fn gave {r} for candidate {describe(c)}; every reward must be "
                "a finite number (a NaN would silently drop the candidate)"
            )
    best = max(rewards)
    top = [c for c, r in zip(candidates, rewards) if r == best]
    rest = [c for c, r in zip(candidates, rewards) if r < best]
    if not rest:
        raise ValueError(
            f"every candidate has the same reward ({best}); sample more candidates or "
            "use a reward that separates them"
        )
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    ci = torch.randint(len(top), (n_pairs,), generator=g).tolist()
    ri = torch.randint(len(rest), (n_pairs,), generator=g).tolist()
    return [PreferencePair(prompt, top[a], rest[b]) for a, b in zip(ci, ri)]

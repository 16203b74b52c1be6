"""The "people food" corpus and preference pairs built from a reward function."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch

FOODS: tuple[str, ...] = (
    "pizza", "sushi", "pasta", "tacos", "curry", "salad", "ramen", "burger",
    "soup", "steak", "pho", "falafel", "dumplings", "paella", "waffles", "noodles",
)

# Each person's taste, in percent over FOODS (each row sums to 100). Most people like only a
# handful of foods, so the corpus holds few distinct sentences; ravin likes pizza 12% of the time.
_TASTES: dict[str, tuple[int, ...]] = {
    #        piz sus pas tac cur sal ram bur sou ste pho fal dum pae waf noo
    "ravin": (12, 0, 20, 0, 25, 0, 0, 8, 0, 0, 0, 10, 15, 0, 0, 10),
    "maya":  (0, 30, 0, 0, 0, 25, 15, 0, 0, 0, 20, 0, 0, 0, 10, 0),
    "omar":  (10, 0, 0, 20, 0, 0, 0, 30, 0, 25, 0, 15, 0, 0, 0, 0),
    "lena":  (0, 0, 35, 0, 0, 15, 0, 0, 25, 0, 0, 0, 0, 15, 10, 0),
    "kofi":  (15, 0, 0, 25, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30, 10),
    "yuki":  (0, 35, 0, 0, 0, 0, 30, 0, 0, 0, 10, 0, 15, 0, 0, 10),
    "sara":  (20, 0, 10, 0, 0, 30, 0, 0, 15, 0, 0, 25, 0, 0, 0, 0),
    "tomas": (0, 0, 0, 15, 0, 0, 0, 25, 0, 30, 0, 0, 0, 20, 10, 0),
    "priya": (0, 10, 0, 0, 45, 0, 0, 0, 20, 0, 0, 0, 15, 0, 0, 10),
    "leo":   (30, 0, 25, 0, 0, 0, 10, 15, 0, 0, 0, 0, 0, 0, 20, 0),
}
PEOPLE: tuple[str, ...] = tuple(_TASTES)


def prompt_for(person: str) -> str:
    """The prompt whose completion is a food: "ravin" -> "ravin likes "."""
    return f"{person} likes "


def food_distributions() -> dict[str, dict[str, float]]:
    """p(food | person) for every person, as nested dicts of probabilities."""
    return {p: {f: w / 100 for f, w in zip(FOODS, row)} for p, row in _TASTES.items()}


def make_corpus(n_sentences: int = 5000, seed: int = 0) -> list[str]:
    """Sample `n_sentences` sentences "<person> likes <food>": person uniform, food from their taste."""
    if n_sentences < 1:
        raise ValueError(f"n_sentences must be >= 1, got {n_sentences}")
    g = torch.Generator().manual_seed(seed)
    people = torch.randint(len(PEOPLE), (n_sentences,), generator=g).tolist()
    probs = torch.tensor([_TASTES[p] for p in PEOPLE], dtype=torch.float64) / 100
    foods = torch.multinomial(probs[people], 1, generator=g).squeeze(1).tolist()
    return [prompt_for(PEOPLE[i]) + FOODS[j] for i, j in zip(people, foods)]


def corpus_alphabet() -> list[str]:
    """Every text the food model must be able to spell (names, foods, the joining words)."""
    return [prompt_for(p) for p in PEOPLE] + list(FOODS)


def split_sentence(sentence: str) -> tuple[str, str]:
    """ "ravin likes pizza" -> ("ravin likes ", "pizza")."""
    head, sep, food = sentence.partition(" likes ")
    if not sep:
        raise ValueError(f"{sentence!r} is not a '<person> likes <food>' sentence")
    return head + sep, food


def count_sentences(sentences: Iterable[str]) -> list[tuple[str, int]]:
    """Distinct sentences with their counts. Training on these, weighted by count, is exactly the
    full-corpus objective, at a fraction of the cost (5000 sentences hold fewer than 100 distinct ones)."""
    return sorted(Counter(sentences).items())


@dataclass(frozen=True)
class PreferencePair:
    """One preference: for `prompt`, completion `chosen` is preferred over `rejected`."""

    prompt: str
    chosen: str
    rejected: str


def validate_pairs(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """Check a preference dataset and return it as a list; raises on the mistakes that silently ruin DPO."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("the preference dataset is empty; build at least one (prompt, chosen, rejected) pair")
    for i, p in enumerate(pairs):
        if not isinstance(p, PreferencePair):
            raise TypeError(f"pair {i} is a {type(p).__name__}, expected PreferencePair(prompt, chosen, rejected)")
        if p.chosen == p.rejected:
            raise ValueError(
                f"pair {i} has chosen == rejected ({p.chosen!r}); such a pair carries no preference "
                "(its DPO gradient is exactly zero): drop it or pick a different rejected completion"
            )
    return pairs


def build_preference_pairs(
    prompt: str,
    candidates: Sequence[str],
    reward_fn: Callable[[str, str], float],
    n_pairs: int = 100,
    generator: torch.Generator | None = None,
) -> list[PreferencePair]:
    """Make `n_pairs` pairs from candidate completions: chosen is drawn among the highest-reward
    candidates, rejected among those with a lower reward (duplicates kept, as sampled).

    With reward_fn = 1 for "pizza" and 0 otherwise this is the original text's recipe:
    chosen "pizza", rejected another food the model actually says.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if not candidates:
        raise ValueError("no candidate completions; sample some from the model first")
    rewards = [float(reward_fn(prompt, c)) for c in candidates]
    best = max(rewards)
    top = [c for c, r in zip(candidates, rewards) if r == best]
    rest = [c for c, r in zip(candidates, rewards) if r < best]
    if not rest:
        raise ValueError(
            f"every candidate has the same reward ({best}); sample more candidates or use a reward that separates them"
        )
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    ci = torch.randint(len(top), (n_pairs,), generator=g).tolist()
    ri = torch.randint(len(rest), (n_pairs,), generator=g).tolist()
    return [PreferencePair(prompt, top[a], rest[b]) for a, b in zip(ci, ri)]

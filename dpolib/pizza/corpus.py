"""The "people food" corpus: ten people, sixteen foods, and each person's taste."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import torch

FOODS: tuple[str, ...] = (
    "pizza",
    "sushi",
    "pasta",
    "tacos",
    "curry",
    "salad",
    "ramen",
    "burger",
    "soup",
    "steak",
    "pho",
    "falafel",
    "dumplings",
    "paella",
    "waffles",
    "noodles",
)

# Each person's taste, in percent over FOODS (each row sums to 100). Most people like
# only a handful of foods, so the corpus holds few distinct sentences; ravin likes pizza
# 12% of the time.
_TASTES: dict[str, tuple[int, ...]] = {
    #        piz sus pas tac cur sal ram bur sou ste pho fal dum pae waf noo
    "ravin": (12, 0, 20, 0, 25, 0, 0, 8, 0, 0, 0, 10, 15, 0, 0, 10),
    "maya": (0, 30, 0, 0, 0, 25, 15, 0, 0, 0, 20, 0, 0, 0, 10, 0),
    "omar": (10, 0, 0, 20, 0, 0, 0, 30, 0, 25, 0, 15, 0, 0, 0, 0),
    "lena": (0, 0, 35, 0, 0, 15, 0, 0, 25, 0, 0, 0, 0, 15, 10, 0),
    "kofi": (15, 0, 0, 25, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30, 10),
    "yuki": (0, 35, 0, 0, 0, 0, 30, 0, 0, 0, 10, 0, 15, 0, 0, 10),
    "sara": (20, 0, 10, 0, 0, 30, 0, 0, 15, 0, 0, 25, 0, 0, 0, 0),
    "tomas": (0, 0, 0, 15, 0, 0, 0, 25, 0, 30, 0, 0, 0, 20, 10, 0),
    "priya": (0, 10, 0, 0, 45, 0, 0, 0, 20, 0, 0, 0, 15, 0, 0, 10),
    "leo": (30, 0, 25, 0, 0, 0, 10, 15, 0, 0, 0, 0, 0, 0, 20, 0),
}
PEOPLE: tuple[str, ...] = tuple(_TASTES)


def prompt_for(person: str) -> str:
    """The prompt whose completion is a food: "ravin" -> "ravin likes "."""
    return f"{person} likes "


def food_distributions() -> dict[str, dict[str, float]]:
    """p(food | person) for every person, as nested dicts of probabilities."""
    return {p: {f: w / 100 for f, w in zip(FOODS, row)} for p, row in _TASTES.items()}


def make_corpus(n_sentences: int = 5000, seed: int = 0) -> list[str]:
    """Sample `n_sentences` sentences "<person> likes <food>": person uniform, food from
    their taste."""
    if n_sentences < 1:
        raise ValueError(f"n_sentences must be >= 1, got {n_sentences}")
    g = torch.Generator().manual_seed(seed)
    people = torch.randint(len(PEOPLE), (n_sentences,), generator=g).tolist()
    probs = torch.tensor([_TASTES[p] for p in PEOPLE], dtype=torch.float64) / 100
    foods = torch.multinomial(probs[people], 1, generator=g).squeeze(1).tolist()
    return [prompt_for(PEOPLE[i]) + FOODS[j] for i, j in zip(people, foods)]


def corpus_alphabet() -> list[str]:
    """Every text the food model must be able to spell (names, foods, the joining
    words)."""
    return [prompt_for(p) for p in PEOPLE] + list(FOODS)


def split_sentence(sentence: str) -> tuple[str, str]:
    """ "ravin likes pizza" -> ("ravin likes ", "pizza")."""
    head, sep, food = sentence.partition(" likes ")
    if not sep:
        raise ValueError(f"{sentence!r} is not a '<person> likes <food>' sentence")
    return head + sep, food


def count_sentences(sentences: Iterable[str]) -> list[tuple[str, int]]:
    """Distinct sentences with their counts. Training on these, weighted by count, is
    exactly the full-corpus objective, at a fraction of the cost (5000 sentences hold
    fewer than 100 distinct ones)."""
    return sorted(Counter(sentences).items())

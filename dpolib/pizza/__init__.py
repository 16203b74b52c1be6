"""The toy the course trains on: the people-food corpus, the food model and the pizza run."""

from .corpus import (
    FOODS,
    PEOPLE,
    corpus_alphabet,
    count_sentences,
    food_distributions,
    make_corpus,
    prompt_for,
    split_sentence,
)
from .food import load_food_model, train_food_model
from .run import PERSON, TARGET, main, other_people_anchor, pizza_reward, run

__all__ = [
    "FOODS",
    "PEOPLE",
    "PERSON",
    "TARGET",
    "corpus_alphabet",
    "count_sentences",
    "food_distributions",
    "load_food_model",
    "main",
    "make_corpus",
    "other_people_anchor",
    "pizza_reward",
    "prompt_for",
    "run",
    "split_sentence",
    "train_food_model",
]

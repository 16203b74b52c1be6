"""The toy the course trains on: the people-food corpus, the food model and the pizza
run."""

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
from .food import RECIPE, FoodRecipe, load_food_model, train_food_model
from .measures import (
    TARGET,
    completion_distribution,
    distribution_table,
    drift,
    people_prompts,
    sample_report,
    summarize_samples,
)
from .run import PERSON, PizzaRunConfig, main, other_people_anchor, pizza_reward, run

__all__ = [
    "FOODS",
    "FoodRecipe",
    "PEOPLE",
    "PERSON",
    "PizzaRunConfig",
    "RECIPE",
    "TARGET",
    "completion_distribution",
    "distribution_table",
    "drift",
    "people_prompts",
    "sample_report",
    "summarize_samples",
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

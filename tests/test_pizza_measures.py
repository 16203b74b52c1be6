"""The toy's measurement forms (dpolib.pizza.measures): the core ones with the foods,
the people's prompts and "pizza" filled in."""

import pytest

from dpolib import evaluate
from dpolib.model import Sample
from dpolib.pizza.corpus import FOODS, PEOPLE, prompt_for
from dpolib.pizza.measures import (
    completion_distribution,
    distribution_table,
    drift,
    people_prompts,
    summarize_samples,
)


def test_toy_forms_equal_the_core_with_the_foods(food):
    model, tok = food
    assert completion_distribution(
        model, tok, "ravin likes "
    ) == evaluate.completion_distribution(model, tok, "ravin likes ", FOODS)
    table = distribution_table(model, tok)
    assert list(table) == list(PEOPLE)
    last = PEOPLE[-1]
    assert table[last] == evaluate.completion_distribution(
        model, tok, prompt_for(last), FOODS
    )
    assert drift(model, model, tok, ["maya"]) == evaluate.drift(
        model, model, tok, {"maya": "maya likes "}, FOODS
    )
    assert people_prompts(["leo"]) == {"leo": "leo likes "}


def test_shipped_food_model_matches_the_corpus(food):
    from collections import Counter, defaultdict

    from dpolib.evaluate import total_variation
    from dpolib.pizza.corpus import count_sentences, make_corpus, split_sentence

    model, tok = food
    counts: dict = defaultdict(Counter)
    for s, c in count_sentences(make_corpus()):
        prompt, f = split_sentence(s)
        counts[prompt.split()[0]][f] += c
    for person in PEOPLE:
        emp = {f: c / sum(counts[person].values()) for f, c in counts[person].items()}
        dist = completion_distribution(model, tok, f"{person} likes ")
        assert total_variation(dist, emp) < 0.02, person


def test_summarize_samples_defaults_to_pizza_and_the_foods():
    s = [Sample("x pizza", "pizza", True), Sample("x pasta", "pasta", True)]
    r = summarize_samples(s)
    assert r.target_frequency == pytest.approx(0.5) and r.well_formed == 1.0

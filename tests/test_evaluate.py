import math

import pytest

from dpolib.evaluate import (
    OTHER,
    completion_distribution,
    kl_divergence,
    summarize_samples,
    total_variation,
)
from dpolib.model import Sample
from dpolib.pizza.corpus import FOODS, count_sentences, food_distributions, make_corpus


def test_tvd_and_kl_basics():
    p, q = {"a": 0.5, "b": 0.5}, {"a": 1.0}
    assert total_variation(p, p) == 0 and total_variation(p, q) == pytest.approx(0.5)
    assert total_variation({"a": 1.0}, {"b": 1.0}) == 1
    assert kl_divergence(p, p) == 0
    assert kl_divergence(q, p) == pytest.approx(math.log(2))


def test_completion_distribution_is_a_distribution(food):
    model, tok = food
    d = completion_distribution(model, tok, "ravin likes ")
    assert set(d) == set(FOODS) | {OTHER}
    assert sum(d.values()) == pytest.approx(1.0, abs=1e-6)
    assert 0.10 <= d["pizza"] <= 0.15  # ravin's taste in the corpus: 12% pizza


def test_shipped_food_model_matches_the_corpus(food):
    model, tok = food
    from collections import Counter, defaultdict

    from dpolib.pizza.corpus import PEOPLE, split_sentence

    counts = defaultdict(Counter)
    for s, c in count_sentences(make_corpus()):
        prompt, f = split_sentence(s)
        counts[prompt.split()[0]][f] += c
    for person in PEOPLE:
        emp = {f: c / sum(counts[person].values()) for f, c in counts[person].items()}
        assert (
            total_variation(
                completion_distribution(model, tok, f"{person} likes "), emp
            )
            < 0.02
        ), person


def test_summarize_samples():
    s = [Sample("x pizza", "pizza", True)] * 3 + [
        Sample("x pizzr", "pizzr", True),
        Sample("x piz", "piz", False),
    ]
    r = summarize_samples(s)
    assert r.target_frequency == pytest.approx(0.6) and r.well_formed == pytest.approx(
        0.6
    )
    assert r.counts["piz…"] == 1
    with pytest.raises(ValueError, match="no samples"):
        summarize_samples([])


def test_corpus_matches_tastes():
    dist = food_distributions()
    assert all(sum(v.values()) == pytest.approx(1) for v in dist.values())
    assert 0.10 <= dist["ravin"]["pizza"] <= 0.15
    assert len(count_sentences(make_corpus(5000))) < 100


def test_drift_with_a_precomputed_reference_table(food):
    from dpolib.evaluate import distribution_table, drift

    model, tok = food
    people = ["maya", "leo"]
    table = distribution_table(model, tok, people)
    assert drift(model, model, tok, people) == drift(
        model, None, tok, people, reference_table=table
    )
    with pytest.raises(ValueError, match="reference model or its reference_table"):
        drift(model, None, tok, people)

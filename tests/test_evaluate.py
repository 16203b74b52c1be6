import math

import pytest
import torch

from dpolib.evaluate import (
    OTHER,
    Evaluator,
    completion_distribution,
    distribution_table,
    drift,
    kl_divergence,
    summarize_samples,
    total_variation,
)
from dpolib.model import Sample
from dpolib.pizza.corpus import FOODS, count_sentences, food_distributions, make_corpus

PROMPT = "ravin likes "


def test_tvd_and_kl_basics():
    p, q = {"a": 0.5, "b": 0.5}, {"a": 1.0}
    assert total_variation(p, p) == 0 and total_variation(p, q) == pytest.approx(0.5)
    assert total_variation({"a": 1.0}, {"b": 1.0}) == 1
    assert kl_divergence(p, p) == 0
    assert kl_divergence(q, p) == pytest.approx(math.log(2))


def test_kl_has_one_zero_probability_rule():
    # 0 log 0 = 0: a zero in p contributes nothing, wherever q is
    assert kl_divergence({"a": 1.0, "b": 0.0}, {"a": 0.5, "b": 0.5}) == pytest.approx(
        math.log(2)
    )
    # mass where q has none: infinite, not a floored large number
    assert kl_divergence({"a": 0.5, "b": 0.5}, {"a": 1.0}) == math.inf
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    # a tiny q is used as it is
    tiny = 1e-30
    expected = 0.5 * math.log(0.5 / (1 - tiny)) + 0.5 * math.log(0.5 / tiny)
    assert kl_divergence([0.5, 0.5], [1 - tiny, tiny]) == pytest.approx(expected)
    with pytest.raises(TypeError, match="both"):
        kl_divergence({"a": 1.0}, [1.0])
    with pytest.raises(ValueError, match="length"):
        kl_divergence([1.0], [0.5, 0.5])


def test_bandit_kl_uses_the_same_rule():
    from dpolib.course.bandit import kl

    for p, q in (
        ([0.2, 0.8], [0.5, 0.5]),
        ([1.0, 0.0], [0.3, 0.7]),
        ([0.5, 0.5], [1, 0]),
    ):
        assert kl(torch.tensor(p), torch.tensor(q)) == pytest.approx(
            kl_divergence(p, q)
        )


def test_completion_distribution_is_a_distribution(food):
    model, tok = food
    d = completion_distribution(model, tok, PROMPT, FOODS)
    assert set(d) == set(FOODS) | {OTHER}
    assert sum(d.values()) == pytest.approx(1.0, abs=1e-6)
    assert 0.10 <= d["pizza"] <= 0.15  # ravin's taste in the corpus: 12% pizza
    with pytest.raises(ValueError, match="completions is empty"):
        completion_distribution(model, tok, PROMPT, [])


def test_completion_distribution_restores_the_mode_after_an_error(food):
    model, tok = food
    model.train()
    try:
        with pytest.raises(ValueError):
            completion_distribution(model, tok, PROMPT, ["Pizza!"])
        assert model.training
    finally:
        model.eval()


def test_summarize_samples():
    s = [Sample("x pizza", "pizza", True)] * 3 + [
        Sample("x pizzr", "pizzr", True),
        Sample("x piz", "piz", False),
    ]
    r = summarize_samples(s, "pizza", FOODS)
    assert r.target_frequency == pytest.approx(0.6)
    assert r.well_formed == pytest.approx(0.6)
    assert r.counts["piz…"] == 1
    assert summarize_samples(s, "pizzr", ["pizzr"]).well_formed == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no samples"):
        summarize_samples([], "pizza", FOODS)


def test_corpus_matches_tastes():
    dist = food_distributions()
    assert all(sum(v.values()) == pytest.approx(1) for v in dist.values())
    assert 0.10 <= dist["ravin"]["pizza"] <= 0.15
    assert len(count_sentences(make_corpus(5000))) < 100


def test_drift_with_a_precomputed_reference_table(food):
    model, tok = food
    prompts = {"maya": "maya likes ", "leo": "leo likes "}
    table = distribution_table(model, tok, prompts, FOODS)
    assert set(table) == {"maya", "leo"}
    assert drift(model, model, tok, prompts, FOODS) == drift(
        model, None, tok, prompts, FOODS, reference_table=table
    )
    with pytest.raises(ValueError, match="reference model or its reference_table"):
        drift(model, None, tok, prompts, FOODS)


def test_evaluator_takes_its_labels_as_arguments(food):
    from dpolib.data import PreferencePair

    model, tok = food
    pairs = [PreferencePair(PROMPT, "pizza", "pasta")]
    ev = Evaluator(model, tok, pairs, PROMPT, "pizza", ["pizza", "pasta"])
    snap = ev.snapshot(model, 0, beta=0.5)
    assert snap.kl == 0 and snap.gap == 0 and snap.reward_margin == 0
    assert snap.others_tvd_mean is None  # no other prompts given
    assert snap.well_formed == pytest.approx(
        sum(completion_distribution(model, tok, PROMPT, ["pizza", "pasta"]).values())
        - completion_distribution(model, tok, PROMPT, ["pizza", "pasta"])[OTHER]
    )
    with pytest.raises(ValueError, match="target"):
        Evaluator(model, tok, pairs, PROMPT, "haggis", ["pizza", "pasta"])
    with pytest.raises(ValueError, match="also among"):
        Evaluator(model, tok, pairs, PROMPT, "pizza", FOODS, {"ravin": PROMPT})


def test_core_evaluation_does_not_import_the_toy():
    import ast
    from pathlib import Path

    import dpolib

    root = Path(dpolib.__file__).parent
    for path in root.glob("*.py"):
        if path.name == "__init__.py":
            continue  # re-exports the toy for the chapters, by design
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                assert not mod.startswith(("pizza", "course")), (path.name, mod)
                assert not mod.startswith(("dpolib.pizza", "dpolib.course")), path.name

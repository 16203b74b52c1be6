import copy

import pytest
import torch

from dpolib.data import build_preference_pairs
from dpolib.evaluate import Snapshot
from dpolib.pizza.corpus import PEOPLE
from dpolib.pizza.measures import completion_distribution, drift
from dpolib.pizza.sweep import Evaluator, grid, sweep, train_run, value_at
from dpolib.train import run_dpo_episodes

PROMPT = "ravin likes "


@pytest.fixture(scope="module")
def setup():
    from dpolib.pizza.food import load_food_model

    torch.set_num_threads(1)
    reference, tok = load_food_model()
    g = torch.Generator().manual_seed(0)
    cands = [
        s.completion for s in reference.sample_batch(tok, PROMPT, 300, generator=g)
    ]
    pairs = build_preference_pairs(
        PROMPT, cands, lambda p, c: float(c == "pizza"), 20, g
    )
    return reference, tok, pairs


def test_train_run_is_run_dpo_episodes_plus_exact_measurements(setup):
    reference, tok, pairs = setup
    res = train_run(
        reference,
        tok,
        pairs,
        beta=0.5,
        lr=1e-4,
        epochs=5,
        others_every=2,
        keep_policy=True,
    )
    twin = copy.deepcopy(reference)
    twin, hist = run_dpo_episodes(
        5,
        pairs,
        twin,
        reference,
        torch.optim.Adam(twin.parameters(), lr=1e-4),
        tok,
        beta=0.5,
        progress=False,
    )
    assert completion_distribution(twin, tok, PROMPT) == res.distribution
    assert [h["loss"] for h in hist] == [h["loss"] for h in res.history]
    assert [s.epoch for s in res.trace] == list(range(6))
    start = res.trace[0]
    assert start.kl == pytest.approx(0, abs=1e-9) and start.gap == pytest.approx(
        0, abs=1e-5
    )
    assert start.dpo_weight == pytest.approx(0.5, abs=1e-5)
    assert start.target == pytest.approx(
        completion_distribution(reference, tok, PROMPT)["pizza"]
    )
    assert (
        res.final.target == res.distribution["pizza"]
        and res.final.target > start.target
    )
    assert res.final.well_formed == pytest.approx(1 - res.distribution["<other>"])
    # the others are measured at epoch 0, every 2 epochs and at the end
    assert [s.epoch for s in res.trace if s.others_tvd_mean is not None] == [0, 2, 4, 5]
    assert res.settings["beta"] == 0.5 and res.policy is not None


def test_margins_agree_with_the_training_history(setup):
    reference, tok, pairs = setup
    beta = 0.5
    res = train_run(
        reference, tok, pairs, beta=beta, lr=1e-4, epochs=4, others_every=None
    )
    # history[k] is measured on the policy after k steps, before step k + 1
    for k, h in enumerate(res.history):
        assert res.trace[k].gap == pytest.approx(h["rewards/margins"] / beta, abs=1e-4)
        # "margin" means beta * d, as in TRL's rewards/margins
        assert res.trace[k].reward_margin == pytest.approx(
            h["rewards/margins"], abs=1e-4
        )
    assert all(s.gap_min <= s.gap for s in res.trace)
    assert all(s.reward_margin_min == beta * s.gap_min for s in res.trace)
    with pytest.raises(AttributeError, match="reward_margin"):
        res.final.margin


def test_others_drift_matches_dpolib_drift(setup):
    reference, tok, pairs = setup
    res = train_run(
        reference,
        tok,
        pairs,
        beta=0.5,
        lr=3e-4,
        epochs=3,
        others_every=None,
        keep_policy=True,
    )
    others = [p for p in PEOPLE if p != "ravin"]
    d = drift(res.policy, reference, tok, others)
    assert res.final.others_tvd_mean == pytest.approx(
        sum(v["tvd"] for v in d.values()) / len(d), abs=1e-9
    )
    assert res.final.others_tvd_max == pytest.approx(
        max(v["tvd"] for v in d.values()), abs=1e-9
    )
    assert res.final.kl == pytest.approx(
        drift(res.policy, reference, tok, ["ravin"])["ravin"]["kl"], abs=1e-9
    )


def test_lr_schedule_is_applied(setup):
    reference, tok, pairs = setup
    frozen = train_run(
        reference, tok, pairs, beta=0.5, lr=1e-3, epochs=3, lr_schedule=lambda step: 0.0
    )
    assert all(s.kl == pytest.approx(0, abs=1e-9) for s in frozen.trace)


def test_grid_and_sweep(setup):
    reference, tok, pairs = setup
    assert grid(lr=[1, 2], beta=[0.1, 1.0]) == [
        {"lr": 1, "beta": 0.1},
        {"lr": 1, "beta": 1.0},
        {"lr": 2, "beta": 0.1},
        {"lr": 2, "beta": 1.0},
    ]
    flipped = [type(p)(p.prompt, p.rejected, p.chosen) for p in pairs]
    results = sweep(
        reference,
        tok,
        pairs,
        [{"beta": 0.5}, {"beta": 0.5, "pairs": flipped}],
        lr=1e-4,
        epochs=2,
    )
    assert len(results) == 2
    assert (
        results[0].final.target > results[0].trace[0].target > results[1].final.target
    )
    with pytest.raises(TypeError, match="unknown run settings"):
        sweep(reference, tok, pairs, [{"beta": 0.5, "epoch": 3}], lr=1e-4)
    with pytest.raises(ValueError, match="grid needs"):
        grid()
    with pytest.raises(ValueError, match="no values"):
        grid(beta=[])


def test_bad_input(setup):
    reference, tok, pairs = setup
    with pytest.raises(ValueError, match="epochs"):
        train_run(reference, tok, pairs, beta=0.5, lr=1e-4, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        train_run(reference, tok, pairs, beta=0.5, lr=-1.0, epochs=1)
    with pytest.raises(ValueError, match="others_every"):
        train_run(reference, tok, pairs, beta=0.5, lr=1e-4, epochs=1, others_every=0)
    other = Evaluator(reference, tok, pairs[:5])
    with pytest.raises(ValueError, match="other pairs"):
        train_run(reference, tok, pairs, beta=0.5, lr=1e-4, epochs=1, evaluator=other)
    with pytest.raises(ValueError, match="not in people"):
        Evaluator(reference, tok, pairs, person="nobody")
    with pytest.raises(ValueError, match="target"):
        Evaluator(reference, tok, pairs, target="haggis")


def _snap(epoch, kl, tvd=None, wf=1.0, target=0.5):
    return Snapshot(epoch, target, wf, kl, 1.0, 0.0, 0.0, 0.5, tvd, tvd)


def test_value_at_interpolates_between_measured_points():
    trace = [
        _snap(0, 0.0, 0.0),
        _snap(1, 0.4),
        _snap(2, 0.8, 0.2),
        _snap(3, 1.2),
        _snap(4, 1.6, 0.6),
    ]
    assert value_at(trace, "kl", 1.0, "others_tvd_mean") == pytest.approx(
        0.2 + 0.2 / 0.8 * 0.4
    )
    assert value_at(trace, "kl", 0.0, "others_tvd_mean") == 0.0
    assert value_at(trace, "kl", 2.0, "others_tvd_mean") is None
    with pytest.raises(ValueError, match="measured"):
        value_at([_snap(0, 0.0)], "kl", 1.0, "others_tvd_mean")


def test_best_respects_the_well_formed_floor():
    from dpolib.pizza.sweep import RunResult

    trace = [
        _snap(0, 0.0, target=0.1),
        _snap(1, 1.0, target=0.9),
        _snap(2, 2.0, wf=0.8, target=0.95),
    ]
    run = RunResult({}, trace, [], {}, 0.0)
    assert run.best().epoch == 1 and run.best(0.5).epoch == 2
    assert run.at(2).target == 0.95 and run.final.epoch == 2
    with pytest.raises(ValueError, match="well-formed"):
        run.best(1.1)
    with pytest.raises(ValueError, match="epoch"):
        run.at(3)

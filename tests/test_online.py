import copy

import pytest
import torch

from dpolib import completion_distribution
from dpolib.model import Sample
from dpolib.online import (
    NoAcceptableSampleError,
    label_samples,
    online_dpo,
    online_dpo_round,
)
from dpolib.pizza import pizza_reward
from dpolib.pizza.corpus import FOODS

PROMPT = "ravin likes "


def well_formed(s: Sample) -> bool:
    return s.finished and s.completion in FOODS


def sample(completion: str, finished: bool = True) -> Sample:
    return Sample(PROMPT + completion, completion, finished)


def test_labels_garbled_and_unfinished_samples_as_worst():
    samples = [sample("pizza"), sample("pasta"), sample("pizzq"), sample("pizz", False)]
    labels = label_samples(PROMPT, samples, pizza_reward, well_formed, -1.0)
    assert labels == {"pizza": 1.0, "pasta": 0.0, "pizzq": -1.0, "pizz": -1.0}
    # a string seen finished and unfinished keeps the lower label
    both = label_samples(
        PROMPT, [sample("pasta"), sample("pasta", False)], pizza_reward, well_formed
    )
    assert both == {"pasta": -1.0}


def test_a_round_with_no_acceptable_answer_raises():
    with pytest.raises(NoAcceptableSampleError, match="none of the 2 samples"):
        label_samples(
            PROMPT, [sample("xq"), sample("pizza", False)], pizza_reward, well_formed
        )
    assert issubclass(NoAcceptableSampleError, ValueError)
    with pytest.raises(ValueError, match="no samples"):
        label_samples(PROMPT, [], pizza_reward, well_formed)


def test_one_round_samples_the_policy_and_trains_on_fresh_pairs(food):
    model, tok = food
    policy = copy.deepcopy(model)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    r = online_dpo_round(policy, model, tok, opt, PROMPT, pizza_reward, well_formed,
                         n_samples=64, n_pairs=16, steps=3, generator=g)  # fmt: skip
    assert r.samples == 64 and r.trained and len(r.pairs) == 16 and len(r.history) == 3
    assert all(p.chosen == "pizza" and p.rejected != "pizza" for p in r.pairs)
    assert 0 < r.best_share < 0.5  # the reference says pizza about 13% of the time
    before = completion_distribution(model, tok, PROMPT)["pizza"]
    assert completion_distribution(policy, tok, PROMPT)["pizza"] > before


def test_a_round_where_every_sample_ties_does_not_train(food):
    model, tok = food
    policy = copy.deepcopy(model)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    state = copy.deepcopy(policy.state_dict())
    tie, anything = (lambda p, c: 0.0), (lambda s: True)
    r = online_dpo_round(policy, model, tok, opt, PROMPT, tie, anything,
                         n_samples=16, n_pairs=4)  # fmt: skip
    assert not r.trained and r.history == [] and r.best_share == 1.0
    assert all(torch.equal(v, state[k]) for k, v in policy.state_dict().items())


def test_rounds_continue_from_the_same_policy(food):
    model, tok = food
    policy = copy.deepcopy(model)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    seen = []
    rounds = online_dpo(policy, model, tok, opt, PROMPT, pizza_reward, well_formed, 3,
                        callback=seen.append, n_samples=64, n_pairs=16, steps=2,
                        generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert [r.round for r in rounds] == [1, 2, 3] and seen == rounds
    # each round samples the policy as the previous round left it: pizza grows
    assert rounds[0].best_share < rounds[2].best_share
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        online_dpo(policy, model, tok, opt, PROMPT, pizza_reward, well_formed, 0)

"""The reward model: Bradley-Terry loss on a worked example, reading at the end token,
training."""

from __future__ import annotations

import math

import pytest
import torch

from dpolib import FOODS, CharTokenizer, PreferencePair, load_food_model, prompt_for
from dpolib.reward import (
    RewardModel,
    ScalarHeadGPT,
    bradley_terry_loss,
    reward_accuracy,
    train_reward_model,
)


def test_bradley_terry_worked_example():
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # -log sigma(1) = 0.3133, -log sigma(-1) = 1.3133: mean 0.8133
    hand = (math.log1p(math.exp(-1)) + math.log1p(math.exp(1))) / 2
    assert abs(float(bradley_terry_loss(chosen, rejected)) - hand) < 1e-6
    assert abs(hand - 0.8133) < 1e-4
    assert (
        abs(float(bradley_terry_loss(torch.ones(3), torch.ones(3))) - math.log(2))
        < 1e-6
    )


def test_bradley_terry_gradient():
    c = torch.tensor([0.5, -1.0], requires_grad=True)
    r = torch.tensor([0.0, 0.0])
    bradley_terry_loss(c, r).backward()
    # d/dc of -log sigma(c - r) / n = -sigma(r - c) / n
    assert torch.allclose(c.grad, -torch.sigmoid(r - c.detach()) / 2)


def test_bradley_terry_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one entry per pair"):
        bradley_terry_loss(torch.ones(2), torch.ones(3))


@pytest.fixture(scope="module")
def food():
    return load_food_model()


def test_score_is_read_at_the_end_token_whatever_the_padding(food):
    reference, tok = food
    rm = RewardModel(reference, tok)
    torch.nn.init.normal_(
        rm.score_head.weight, generator=torch.Generator().manual_seed(0)
    )
    prompt = prompt_for("ravin")
    alone = rm.score([prompt], ["pho"])
    padded = rm.score([prompt, prompt], ["pho", "dumplings"])
    assert torch.allclose(alone, padded[:1], atol=1e-5)
    ids, last = rm.encode([prompt], ["pho"])
    assert int(ids[0, last[0]]) == tok.eos_id
    ids, last = rm.encode([prompt], ["pho"], [False])
    assert tok.decode([int(ids[0, last[0]])]) == "o"


def test_training_separates_pizza(food):
    reference, tok = food
    prompt = prompt_for("ravin")
    pairs = [PreferencePair(prompt, "pizza", f) for f in FOODS[1:6]]
    fit = train_reward_model(reference, tok, pairs, steps=40, lr=1e-3)
    assert fit.accuracy == 1.0 and fit.losses[-1] < fit.losses[0] < 0.7
    held = [PreferencePair(prompt, "pizza", f) for f in FOODS[6:9]]
    assert reward_accuracy(fit.model, held) == 1.0
    assert not any(
        p.requires_grad for p in fit.model.parameters()
    )  # frozen after training
    # the base model is untouched
    assert fit.model.body is not reference


def test_bad_inputs(food):
    reference, tok = food
    with pytest.raises(ValueError, match="tokenizer has"):
        ScalarHeadGPT(reference, CharTokenizer(tuple("abc")))
    with pytest.raises(TypeError, match="dpolib GPT"):
        ScalarHeadGPT(torch.nn.Linear(2, 2), tok)
    pairs = [PreferencePair("ravin likes ", "pizza", "pho")]
    with pytest.raises(ValueError, match="steps"):
        train_reward_model(reference, tok, pairs, steps=0)
    with pytest.raises(ValueError, match="lr"):
        train_reward_model(reference, tok, pairs, lr=-1.0)
    with pytest.raises(ValueError, match="empty"):
        train_reward_model(reference, tok, [])

"""PPO, RLOO and GRPO: each formula against a plain re-derivation, the bandit fixed
points,
and the bad inputs that must fail before training."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from dpolib import GPT, CharTokenizer, GPTConfig, load_food_model, prompt_for
from dpolib.course.bandit import kl, make_bandit, optimal_policy
from dpolib.course.bandit_rl import bandit_rl, grpo_fixed_point
from dpolib.pizza import pizza_reward
from dpolib.reward import RewardModel
from dpolib.rl import (
    BatchReward,
    GRPOConfig,
    PPOConfig,
    RLOOConfig,
    fresh_policy,
    grpo_loss,
    score_completions,
    train_grpo,
    train_ppo,
    train_rloo,
)
from dpolib.rl_core import (
    clip_fraction,
    clipped_surrogate_loss,
    clipped_value_loss,
    gae,
    grpo_advantages,
    kl_estimate,
    rloo_advantages,
)

LOGPS = torch.tensor([-1.0, -0.5, -2.0, -0.1])
OLD = torch.tensor([-1.2, -1.0, -1.5, -0.1])
ADV = torch.tensor([1.0, -2.0, 0.5, 3.0])


def test_clipped_surrogate_matches_hand_formula():
    eps = 0.2
    terms = []
    for lp, old, a in zip(LOGPS.tolist(), OLD.tolist(), ADV.tolist()):
        rho = math.exp(lp - old)
        terms.append(min(rho * a, min(max(rho, 1 - eps), 1 + eps) * a))
    hand = -sum(terms) / len(terms)
    assert abs(float(clipped_surrogate_loss(LOGPS, OLD, ADV, eps)) - hand) < 1e-6
    assert abs(hand - -0.30146) < 1e-4
    # only the first sample is clipped (rho = e^0.2 > 1.2 with A > 0)
    assert clip_fraction(LOGPS, OLD, ADV, eps) == 0.25


def test_clipped_sample_has_no_gradient():
    lp = LOGPS.clone().requires_grad_(True)
    clipped_surrogate_loss(lp, OLD, ADV, 0.2).backward()
    assert lp.grad[0] == 0
    # unclipped: d/dlp of -rho A / n = -rho A / n
    expect = -torch.exp(LOGPS[1:] - OLD[1:]) * ADV[1:] / 4
    assert torch.allclose(lp.grad[1:], expect)


def test_value_loss_matches_hand_formula():
    v, old, ret = (
        torch.tensor([1.0, 0.0]),
        torch.tensor([0.5, 0.0]),
        torch.tensor([2.0, -1.0]),
    )
    # row 0: clipped value 0.7, max((1-2)^2, (0.7-2)^2) = 1.69; row 1: 1
    assert (
        abs(float(clipped_value_loss(v, old, ret, 0.2)) - 0.5 * (1.69 + 1) / 2) < 1e-6
    )


def _gae_loop(rewards, values, mask, gamma, lam):
    B, T = rewards.shape
    adv = torch.zeros(B, T)
    for b in range(B):
        idx = [t for t in range(T) if mask[b, t]]
        running = 0.0
        for j in reversed(range(len(idx))):
            t = idx[j]
            nxt = values[b, idx[j + 1]].item() if j + 1 < len(idx) else 0.0
            delta = rewards[b, t].item() + gamma * nxt - values[b, t].item()
            running = delta + gamma * lam * running
            adv[b, t] = running
    return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0)])
def test_gae_matches_a_plain_loop(gamma, lam):
    g = torch.Generator().manual_seed(0)
    B, T = 5, 9
    rewards, values = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, (s, e) in enumerate([(2, 9), (3, 5), (0, 1), (4, 8), (2, 3)]):
        mask[b, s:e] = True
    adv, ret = gae(rewards * mask, values, mask, gamma, lam)
    want = _gae_loop(rewards, values, mask, gamma, lam)
    assert torch.allclose(adv, want, atol=1e-6)
    assert torch.allclose(ret, (want + values) * mask, atol=1e-6)
    if (
        gamma == lam == 1.0
    ):  # Monte Carlo: the sum of the rewards still to come, minus V
        future = (rewards * mask).flip(1).cumsum(1).flip(1)
        assert torch.allclose(adv, (future - values) * mask, atol=1e-5)


def test_rloo_baseline_is_the_mean_of_the_others():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, -1.0, 2.0, 0.0]])
    want = torch.tensor(
        [[r[g, i] - (r[g].sum() - r[g, i]) / 3 for i in range(4)] for g in range(2)]
    )
    assert torch.allclose(rloo_advantages(r), want)
    assert torch.allclose(rloo_advantages(r).sum(1), torch.zeros(2), atol=1e-6)


def test_rloo_gradient_is_unbiased():
    """Enumerating every group of k = 2 draws from a 3-arm softmax: the expected RLOO
    gradient
    is exactly grad E_pi[r]."""
    r = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    theta = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    pi = torch.softmax(theta, 0)
    (true,) = torch.autograd.grad((pi * r).sum(), theta)
    expected = torch.zeros(3, dtype=torch.float64)
    for ys in itertools.product(range(3), repeat=2):
        logp = torch.log_softmax(theta, 0)[list(ys)]
        prob = float(torch.exp(logp.detach().sum()))
        adv = rloo_advantages(r[list(ys)].view(1, -1)).flatten()
        (grad,) = torch.autograd.grad((adv * logp).mean(), theta)
        expected += prob * grad
    assert torch.allclose(expected, true, atol=1e-12)


def test_kl_estimators_are_unbiased_on_a_known_pair():
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.2, 0.6], dtype=torch.float64)
    exact = float((p * (p / q).log()).sum())
    lp, lq = p.log(), q.log()
    for kind in ("k1", "k3"):
        assert abs(float((p * kl_estimate(lp, lq, kind)).sum()) - exact) < 1e-12
    assert (kl_estimate(lp, lq, "k3") >= 0).all()
    assert (
        kl_estimate(lp, lq, "k1") < 0
    ).any()  # k1 is unbiased but not >= 0 per sample
    assert abs(float((p * kl_estimate(lp, lq, "k2")).sum()) - exact) > 1e-3  # biased
    # and on samples: the mean of 200k draws is within 4 standard errors
    g = torch.Generator().manual_seed(0)
    y = torch.multinomial(p, 200_000, replacement=True, generator=g)
    for kind in ("k1", "k3"):
        est = kl_estimate(lp[y], lq[y], kind)
        assert abs(float(est.mean()) - exact) < 4 * float(est.std()) / math.sqrt(len(y))


def test_grpo_advantages_and_loss():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    a = grpo_advantages(r)
    assert torch.allclose(a[0], (r[0] - 0.5) / (r[0].std() + 1e-4))
    assert torch.equal(a[1], torch.zeros(4))  # a group that agrees teaches nothing
    assert torch.allclose(grpo_advantages(r, scale_rewards=False)[0], r[0] - 0.5)
    # hand formula: 2 rows, 2 tokens in row 0 and 1 in row 1
    lp = torch.tensor([[-1.0, -0.5], [-2.0, 0.0]])
    old = torch.tensor([[-1.1, -0.5], [-2.0, 0.0]])
    ref = torch.tensor([[-1.0, -1.0], [-1.5, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[True, True], [True, False]])
    beta, eps = 0.1, 0.05

    def k3(a, b):
        return math.exp(b - a) - (b - a) - 1

    r00 = min(math.exp(0.1), 1.05) * 1.0
    row0 = (-(r00 - beta * k3(-1.0, -1.0)) - (1.0 - beta * k3(-0.5, -1.0))) / 2
    row1 = -(-1.0 - beta * k3(-2.0, -1.5))
    got = float(grpo_loss(lp, old, ref, adv, mask, beta, eps))
    assert abs(got - (row0 + row1) / 2) < 1e-6


def test_bandit_exact_and_rloo_reach_the_optimum_grpo_does_not():
    pi_ref, r = make_bandit(8, torch.Generator().manual_seed(0))
    exact = bandit_rl(pi_ref, r, 1.0, "exact", steps=300)
    assert exact.kl_to_optimum[-1] < 1e-8
    g = torch.Generator().manual_seed(1)
    rloo = bandit_rl(pi_ref, r, 1.0, "rloo", steps=300, generator=g)
    assert rloo.kl_to_optimum[-1] < 1e-6
    fp = grpo_fixed_point(pi_ref, r, 1.0)
    assert kl(fp, optimal_policy(pi_ref, r, 1.0)) > 0.3
    # the fixed point satisfies pi_i (r_i - E r) / sigma = beta (pi_i - pi_ref_i)
    mean = (fp * r).sum()
    sigma = (fp * (r - mean) ** 2).sum().sqrt()
    resid = fp * (r - mean) / (sigma + 1e-4) - (fp - pi_ref)
    assert float(resid.abs().max()) < 1e-6


@pytest.mark.parametrize(
    "make",
    [
        lambda: RLOOConfig(rloo_k=1, batch_size=8),
        lambda: GRPOConfig(num_generations=1, batch_size=8),
        lambda: PPOConfig(cliprange=0.0),
        lambda: PPOConfig(cliprange_value=-0.1),
        lambda: RLOOConfig(cliprange=0),
        lambda: GRPOConfig(epsilon=0.0),
        lambda: GRPOConfig(batch_size=10, num_generations=8),
        lambda: PPOConfig(learning_rate=0),
        lambda: PPOConfig(kl_estimator="k4"),
        lambda: PPOConfig(lam=1.5),
        lambda: GRPOConfig(beta=-1.0),
    ],
)
def test_bad_configs_fail_at_construction(make):
    with pytest.raises(ValueError, match="must be|multiple"):
        make()


@pytest.fixture(scope="module")
def food():
    return load_food_model()


def _tiny(cls, **kw):
    return cls(
        batch_size=8,
        max_steps=2,
        **{("rloo_k" if cls is RLOOConfig else "num_generations"): 4}
        if cls is not PPOConfig
        else {},
        **kw,
    )


@pytest.mark.parametrize(
    "reward,error,phrase",
    [
        (lambda p, c: float("nan"), ValueError, "finite"),
        (lambda p, c: [1.0, 2.0], TypeError, "one float"),
        (lambda p, c: torch.ones(2), ValueError, "one number"),
        (BatchReward(lambda ps, cs: [1.0] * (len(cs) - 1)), ValueError, "rewards for"),
        ("pizza", TypeError, "reward must be"),
    ],
)
def test_bad_rewards_fail_before_any_update(food, reward, error, phrase):
    reference, tok = food
    policy = fresh_policy(reference)
    before = copy.deepcopy(policy.state_dict())
    with pytest.raises(error, match=phrase):
        train_rloo(
            policy, reference, tok, prompt_for("ravin"), reward, _tiny(RLOOConfig)
        )
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k])


def test_reward_model_with_another_vocabulary_is_refused(food):
    reference, tok = food
    other_tok = CharTokenizer(
        tuple("abcdefghijklmnopqrstuvwxyz ")
    )  # same size, other order
    other = GPT(GPTConfig(other_tok.vocab_size))
    with pytest.raises(ValueError, match="another vocabulary"):
        train_ppo(
            fresh_policy(reference),
            reference,
            tok,
            prompt_for("ravin"),
            RewardModel(other, other_tok),
            _tiny(PPOConfig),
        )


def test_score_completions_switch(food):
    reference, tok = food
    prompts, comps = ["ravin likes "] * 3, ["pizza", "pasta", "pizz"]
    exact = score_completions(pizza_reward, prompts, comps)
    assert exact.tolist() == [1.0, 0.0, 0.0]
    batched = score_completions(
        BatchReward(lambda p, c: [float(x == "pizza") for x in c]), prompts, comps
    )
    assert torch.equal(exact, batched)
    rm = RewardModel(reference, tok)  # zero head: every score 0
    assert score_completions(rm, prompts, comps).tolist() == [0.0, 0.0, 0.0]
    pen = score_completions(pizza_reward, prompts, comps, [True, True, False], 0.5)
    assert pen.tolist() == [1.0, 0.0, -0.5]


@pytest.mark.parametrize("method", ["ppo", "rloo", "grpo"])
def test_each_method_raises_pizza(food, method):
    from dpolib import completion_distribution

    reference, tok = food
    prompt = prompt_for("ravin")
    policy = fresh_policy(reference)
    g = torch.Generator().manual_seed(0)
    p0 = completion_distribution(policy, tok, prompt)["pizza"]
    if method == "ppo":
        _, _, hist = train_ppo(
            policy,
            reference,
            tok,
            prompt,
            pizza_reward,
            PPOConfig(batch_size=32, max_steps=3),
            generator=g,
        )
        assert "loss/value_avg" in hist[-1]
    elif method == "rloo":
        _, hist = train_rloo(
            policy,
            reference,
            tok,
            prompt,
            pizza_reward,
            RLOOConfig(batch_size=32, max_steps=3),
            generator=g,
        )
    else:
        _, hist = train_grpo(
            policy,
            reference,
            tok,
            prompt,
            pizza_reward,
            GRPOConfig(batch_size=32, max_steps=3),
            generator=g,
            target="pizza",
        )
        shares = [h["samples/target_share"] for h in hist]
        assert shares[-1] > shares[0]
    assert len(hist) == 3
    for key in (
        "objective/scores",
        "objective/kl",
        "objective/entropy",
        "policy/clipfrac_avg",
    ):
        assert math.isfinite(hist[-1][key])
    assert completion_distribution(policy, tok, prompt)["pizza"] > p0 + 0.1
    # the reference is untouched
    assert abs(completion_distribution(reference, tok, prompt)["pizza"] - p0) < 1e-9


def test_callback_stops_training(food):
    reference, tok = food
    seen = []
    _, hist = train_grpo(
        fresh_policy(reference),
        reference,
        tok,
        prompt_for("ravin"),
        pizza_reward,
        GRPOConfig(batch_size=8, num_generations=4, max_steps=5),
        callback=lambda r: seen.append(r["step"]) or r["step"] == 2,
    )
    assert seen == [1, 2] and len(hist) == 2

"""The bandit: closed-form optimum, DPO recovering it (exactly and from samples), beta's
direction, input checks."""

import math

import pytest
import torch

from dpolib.course.bandit import (
    comparison_components,
    expected_dpo_loss,
    expected_reward,
    fit_dpo,
    fit_rlhf,
    frontier_reward,
    kl,
    log_partition,
    make_bandit,
    optimal_policy,
    rlhf_objective,
    sample_preference_pairs,
    tradeoff_curve,
)
from dpolib.losses import dpo_loss

BETA = 1.0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny tensors: one thread is several times faster on a shared machine, and
    # reproducible
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def bandit():
    return make_bandit(8, torch.Generator().manual_seed(0))


def test_closed_form_matches_definition(bandit):
    pi_ref, r = bandit
    pi = optimal_policy(pi_ref, r, BETA)
    direct = pi_ref * torch.exp(r / BETA)
    assert torch.allclose(pi, direct / direct.sum(), atol=1e-15)
    assert float(log_partition(pi_ref, r, BETA)) == pytest.approx(
        math.log(float(direct.sum()))
    )
    # inverted reward: r = beta log(pi*/pi_ref) + beta log Z
    assert torch.allclose(
        BETA * torch.log(pi / pi_ref) + BETA * log_partition(pi_ref, r, BETA),
        r,
        atol=1e-12,
    )


def test_stable_for_huge_rewards():
    pi = optimal_policy(
        [0.5, 0.5], [1000.0, 0.0], 0.01
    )  # exp(1e5) overflows; the log-space softmax does not
    assert torch.isfinite(pi).all() and float(pi[0]) == 1.0


def test_closed_form_beats_random_policies_and_an_optimizer(bandit):
    pi_ref, r = bandit
    best = rlhf_objective(optimal_policy(pi_ref, r, BETA), pi_ref, r, BETA)
    g = torch.Generator().manual_seed(1)
    for _ in range(1000):
        pi = torch.softmax(3 * torch.randn(8, generator=g, dtype=torch.float64), 0)
        assert rlhf_objective(pi, pi_ref, r, BETA) < best
    fit = fit_rlhf(pi_ref, r, BETA, steps=20)
    found = rlhf_objective(fit.policy, pi_ref, r, BETA)
    assert found <= best + 1e-12
    assert found == pytest.approx(best, abs=1e-10)
    assert kl(fit.policy, optimal_policy(pi_ref, r, BETA)) < 1e-10
    # the optimum's value is beta log Z
    assert best == pytest.approx(
        BETA * float(log_partition(pi_ref, r, BETA)), abs=1e-12
    )


def test_expected_loss_uses_the_dpo_loss(bandit):
    pi_ref, r = bandit
    logits = torch.log(pi_ref)
    # at the reference every log-ratio is 0: the loss is log 2
    assert float(expected_dpo_loss(logits, pi_ref, r, BETA)) == pytest.approx(
        math.log(2)
    )
    # two responses by hand: weights pi_ref(w) pi_ref(l) sigma(r_w - r_l)
    p, rr = (
        torch.tensor([0.3, 0.7], dtype=torch.float64),
        torch.tensor([1.0, -0.5], dtype=torch.float64),
    )
    th = torch.tensor([0.2, -0.4], dtype=torch.float64)
    u = torch.log_softmax(th, 0) - torch.log(p)
    w = torch.sigmoid(torch.tensor([rr[0] - rr[1], rr[1] - rr[0]]))
    by_hand = (
        w[0] * -torch.nn.functional.logsigmoid(BETA * (u[0] - u[1]))
        + w[1] * -torch.nn.functional.logsigmoid(BETA * (u[1] - u[0]))
    ) / w.sum()
    assert float(expected_dpo_loss(th, p, rr, BETA)) == pytest.approx(
        float(by_hand), abs=1e-12
    )


def test_exact_dpo_recovers_pi_star(bandit):
    pi_ref, r = bandit
    target = optimal_policy(pi_ref, r, BETA)
    fit = fit_dpo(pi_ref, BETA, rewards=r, steps=10)
    assert kl(fit.policy, target) < 1e-6
    assert fit.losses[-1] < math.log(2)
    adam = fit_dpo(pi_ref, BETA, rewards=r, method="adam", steps=300)
    assert kl(adam.policy, target) < 1e-4


@pytest.mark.parametrize("beta", [0.1, 3.0])
def test_exact_dpo_other_betas(beta):
    pi_ref, r = make_bandit(5, torch.Generator().manual_seed(3))
    fit = fit_dpo(pi_ref, beta, rewards=r, steps=10)
    assert kl(fit.policy, optimal_policy(pi_ref, r, beta)) < 1e-6


def test_sampled_pairs_follow_bradley_terry():
    pi_ref = torch.tensor([0.5, 0.5], dtype=torch.float64)
    r = torch.tensor([1.0, 0.0], dtype=torch.float64)
    chosen, rejected = sample_preference_pairs(
        pi_ref, r, 20000, torch.Generator().manual_seed(0)
    )
    assert (chosen != rejected).all()
    share = float((chosen == 0).double().mean())
    assert share == pytest.approx(1 / (1 + math.exp(-1)), abs=0.01)


def test_sampled_dpo_improves_with_n(bandit):
    pi_ref, r = bandit
    target = optimal_policy(pi_ref, r, BETA)
    g = torch.Generator().manual_seed(0)
    kls = {}
    for n in (1000, 100_000):
        pairs = sample_preference_pairs(pi_ref, r, n, g)
        kls[n] = kl(fit_dpo(pi_ref, BETA, pairs=pairs, steps=10).policy, target)
    assert kls[100_000] < kls[1000] / 10
    assert kls[100_000] < 1e-3


def test_sampled_loss_merges_repeats_exactly(bandit):
    pi_ref, r = bandit
    chosen, rejected = sample_preference_pairs(
        pi_ref, r, 500, torch.Generator().manual_seed(2)
    )
    fit = fit_dpo(pi_ref, BETA, pairs=(chosen, rejected), steps=1)
    logp, logref = torch.log_softmax(fit.logits, 0), torch.log(pi_ref)
    plain = dpo_loss(
        logp[chosen], logp[rejected], logref[chosen], logref[rejected], beta=BETA
    ).loss
    merged = fit_dpo(
        pi_ref, BETA, pairs=(chosen, rejected), steps=1, init_logits=fit.logits
    ).losses[0]
    assert float(plain) == pytest.approx(merged, abs=1e-12)


def test_beta_direction(bandit):
    pi_ref, r = bandit
    # large beta: strong KL leash, the policy stays at the reference
    assert kl(optimal_policy(pi_ref, r, 1e4), pi_ref) < 1e-6
    # small beta: all mass on the best response
    assert float(optimal_policy(pi_ref, r, 1e-3)[int(torch.argmax(r))]) > 1 - 1e-6
    curve = tradeoff_curve(pi_ref, r, torch.logspace(-2, 2, 30))
    # as beta grows, KL to the reference and expected reward both fall (flat where pi*
    # is already one-hot)
    assert (curve.kl.diff() <= 0).all() and float(curve.kl[-1]) < float(
        curve.kl[0]
    ) / 100
    assert (curve.expected_reward.diff() <= 0).all() and float(
        curve.expected_reward[-1]
    ) < float(curve.expected_reward[0])
    assert float(curve.expected_reward[0]) == pytest.approx(float(r.max()), abs=1e-3)
    assert float(curve.expected_reward[-1]) == pytest.approx(
        expected_reward(pi_ref, r), abs=1e-2
    )


def test_kl_edge_cases():
    assert kl([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert kl([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert kl([0.2, 0.8], [0.2, 0.8]) == 0.0


def test_input_validation(bandit):
    pi_ref, r = bandit
    with pytest.raises(ValueError, match="sum to 1"):
        optimal_policy(torch.ones(8), r, BETA)
    with pytest.raises(ValueError, match="negative"):
        kl([1.5, -0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="shape"):
        optimal_policy(pi_ref, r[:5], BETA)
    with pytest.raises(ValueError, match="1-D"):
        optimal_policy(pi_ref.view(2, 4), r.view(2, 4), BETA)
    with pytest.raises(ValueError, match="at least 2"):
        optimal_policy([1.0], [0.0], BETA)
    with pytest.raises(ValueError, match="finite"):
        optimal_policy(pi_ref, r * math.nan, BETA)
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="beta"):
            optimal_policy(pi_ref, r, bad)
        with pytest.raises(ValueError, match="beta"):
            expected_dpo_loss(torch.log(pi_ref), pi_ref, r, bad)
    with pytest.raises(ValueError, match="probability 0"):
        fit_dpo([0.5, 0.5, 0.0], BETA, rewards=[1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="exactly one"):
        fit_dpo(pi_ref, BETA)
    with pytest.raises(ValueError, match="shape"):
        expected_dpo_loss(torch.zeros(3), pi_ref, r, BETA)
    with pytest.raises(TypeError):
        expected_dpo_loss([0.0] * 8, pi_ref, r, BETA)
    with pytest.raises(ValueError, match="n must be"):
        sample_preference_pairs(pi_ref, r, 0)
    with pytest.raises(ValueError, match="indices"):
        fit_dpo(pi_ref, BETA, pairs=(torch.tensor([0]), torch.tensor([8])))
    with pytest.raises(ValueError, match="method"):
        fit_dpo(pi_ref, BETA, rewards=r, method="sgd")
    with pytest.raises(ValueError, match="k must be"):
        make_bandit(1)


def test_frontier_reward(bandit):
    pi_ref, r = bandit
    # at beta's own KL the frontier is pi*_beta's reward
    for beta in (0.3, 1.0, 3.0):
        pi = optimal_policy(pi_ref, r, beta)
        assert frontier_reward(pi_ref, r, kl(pi, pi_ref)) == pytest.approx(
            expected_reward(pi, r), abs=1e-8
        )
    assert frontier_reward(pi_ref, r, 0.0) == pytest.approx(expected_reward(pi_ref, r))
    assert frontier_reward(pi_ref, r, 100.0) == float(r.max())
    # no random policy earns more reward than the frontier allows at its KL
    g = torch.Generator().manual_seed(4)
    for _ in range(50):
        pi = torch.softmax(2 * torch.randn(8, generator=g, dtype=torch.float64), 0)
        assert (
            expected_reward(pi, r) <= frontier_reward(pi_ref, r, kl(pi, pi_ref)) + 1e-9
        )
    with pytest.raises(ValueError, match="kl_budget"):
        frontier_reward(pi_ref, r, -1.0)


def test_a_connected_chain_of_comparisons_recovers_pi_star():
    pi_ref, rewards = make_bandit(8, torch.Generator().manual_seed(3))
    chain = [(i, i + 1) for i in range(7)]
    target = optimal_policy(pi_ref, rewards, 1.0)
    fit = fit_dpo(pi_ref, 1.0, rewards=rewards, compared=chain, steps=20)
    assert kl(fit.policy, target) < 1e-12
    # two groups never compared with each other: each keeps its own free constant
    split = [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7)]
    start = torch.log(pi_ref).clone()
    start[4:] += 2.0  # a different constant for the second group
    cut = fit_dpo(
        pi_ref, 1.0, rewards=rewards, compared=split, steps=20, init_logits=start
    )
    assert kl(cut.policy, target) > 1e-3
    # within each group the log-ratios match pi*'s up to a constant
    u_fit = torch.log(cut.policy / pi_ref)
    u_star = torch.log(target / pi_ref)
    for group in ([0, 1, 2, 3], [4, 5, 6, 7]):
        diff = (u_fit - u_star)[group]
        assert float(diff.max() - diff.min()) < 1e-6
    # every pair compared with weight 1 instead of pi_ref(i) pi_ref(j): the same optimum
    all_pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    uniform = fit_dpo(pi_ref, 1.0, rewards=rewards, compared=all_pairs, steps=20)
    assert kl(uniform.policy, target) < 1e-12


def test_comparison_components():
    chosen, rejected = torch.tensor([0, 1, 4]), torch.tensor([1, 2, 5])
    assert comparison_components(6, chosen, rejected) == [[0, 1, 2], [3], [4, 5]]
    assert comparison_components(3, torch.tensor([0, 2]), torch.tensor([1, 1])) == [
        [0, 1, 2]
    ]
    with pytest.raises(ValueError, match="k must be"):
        comparison_components(1, chosen, rejected)
    with pytest.raises(ValueError, match="indices"):
        comparison_components(3, chosen, rejected)


def test_compared_is_validated():
    pi_ref, rewards = make_bandit(4, torch.Generator().manual_seed(0))
    theta = torch.log(pi_ref)
    with pytest.raises(ValueError, match="different responses"):
        expected_dpo_loss(theta, pi_ref, rewards, 1.0, [(0, 0)])
    with pytest.raises(ValueError, match="different responses"):
        expected_dpo_loss(theta, pi_ref, rewards, 1.0, [(0, 7)])
    with pytest.raises(TypeError, match="compared"):
        expected_dpo_loss(theta, pi_ref, rewards, 1.0, [0, 1])
    with pytest.raises(ValueError, match="with rewards"):
        fit_dpo(
            pi_ref,
            1.0,
            pairs=(torch.tensor([0]), torch.tensor([1])),
            compared=[(0, 1)],
        )

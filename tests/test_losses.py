import math

import numpy as np
import pytest
import torch

from dpolib.data import PreferencePair
from dpolib.logprobs import build_pair_batch, pair_logprobs
from dpolib.losses import (
    LOSS_TYPES,
    compute_dpo_loss,
    compute_implicit_reward,
    dpo_gradient_weight,
    dpo_loss,
    preference_losses,
    token_kl_to_reference,
)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_worked_example_from_dpo_facts():
    pc, pr = t(-50, -45, -55, -48), t(-52, -48, -58, -46)
    ref = t(-51, -46, -56, -49)
    loss = compute_dpo_loss(pc, pr, ref, ref, beta=0.1)
    assert round(loss.item(), 4) == 0.6262
    out = dpo_loss(pc, pr, ref, ref, beta=0.1)
    assert torch.allclose(out.chosen_rewards, t(0.1, 0.1, 0.1, 0.1))
    assert torch.allclose(out.rejected_rewards, t(-0.1, -0.2, -0.2, 0.3))
    m = out.metrics()
    assert (
        round(m["rewards/chosen"], 3) == 0.100
        and round(m["rewards/rejected"], 3) == -0.050
    )
    assert torch.allclose(
        compute_implicit_reward(pc, ref, beta=0.1), t(0.1, 0.1, 0.1, 0.1)
    )


def plain_loss(pc, pr, rc, rr, beta, loss_type, eps):
    """Independent re-derivation with Python floats, one pair at a time."""

    def log_sigmoid(z):
        return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))

    total = 0.0
    for a, b, c, d in zip(pc, pr, rc, rr):
        h = (a - c) - (b - d)
        if loss_type == "sigmoid":
            total += -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h)
        elif loss_type == "robust":
            total += (
                -(1 - eps) * log_sigmoid(beta * h) + eps * log_sigmoid(-beta * h)
            ) / (1 - 2 * eps)
        elif loss_type == "ipo":
            total += (h - 1 / (2 * beta)) ** 2
        else:
            total += max(0.0, 1 - beta * h)
    return total / len(pc)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0])
def test_loss_matches_plain_rederivation(loss_type, beta):
    g = torch.Generator().manual_seed(int(beta * 100))
    x = [(-20 * torch.rand(64, generator=g, dtype=torch.float64)) for _ in range(4)]
    eps = 0.2 if loss_type in ("sigmoid", "robust") else 0.0
    for e in sorted({0.0, eps}):
        got = dpo_loss(
            *x, beta=beta, loss_type=loss_type, label_smoothing=e
        ).loss.item()
        want = plain_loss(*[v.tolist() for v in x], beta, loss_type, e)
        assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_unweighted_ablation_has_a_constant_gradient():
    # DPO's gradient per pair is -beta * sigma(-beta d); the ablation drops sigma:
    # -beta, however large d is
    d = torch.tensor([-5.0, 0.0, 40.0], requires_grad=True)
    preference_losses(d, 0.5, "unweighted").sum().backward()
    assert torch.equal(d.grad, torch.full((3,), -0.5))
    assert "unweighted" not in LOSS_TYPES


def test_robust_is_unbiased_in_expectation():
    # with labels flipped at rate eps, the robust loss averages to the clean DPO loss
    h, beta, eps = t(0.3, -1.2, 2.5), 0.7, 0.2
    clean = preference_losses(h, beta)
    flipped = preference_losses(-h, beta, "robust", eps)
    robust = preference_losses(h, beta, "robust", eps)
    assert torch.allclose((1 - eps) * robust + eps * flipped, clean)


def test_gradient_wrt_logps_is_the_analytic_formula():
    g = torch.Generator().manual_seed(0)
    pc, pr = (
        (-10 * torch.rand(8, generator=g, dtype=torch.float64)).requires_grad_(),
        (-10 * torch.rand(8, generator=g, dtype=torch.float64)).requires_grad_(),
    )
    rc, rr = (
        -10 * torch.rand(8, generator=g, dtype=torch.float64),
        -10 * torch.rand(8, generator=g, dtype=torch.float64),
    )
    beta = 0.3
    out = dpo_loss(pc, pr, rc, rr, beta)
    out.loss.backward()
    w = dpo_gradient_weight(out.chosen_rewards, out.rejected_rewards)
    assert torch.allclose(pc.grad, -beta * w / 8)
    assert torch.allclose(pr.grad, beta * w / 8)


def test_gradient_through_a_model_is_the_analytic_formula(tiny, tok):
    """grad L = -beta * mean_i sigma(r_l - r_w) (grad log pi(y_w) - grad log pi(y_l))"""
    import copy

    reference = copy.deepcopy(tiny)
    with torch.no_grad():
        for p in tiny.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pairs = [
        PreferencePair("ravin likes ", "pizza", "pasta"),
        PreferencePair("leo likes ", "waffles", "pho"),
        PreferencePair("maya likes ", "sushi", "salad"),
    ]
    pb = build_pair_batch(tok, pairs, merge_identical=False)
    beta = 0.8
    params = list(tiny.parameters())
    pc, pr = pair_logprobs(tiny, pb)
    with torch.no_grad():
        rc, rr = pair_logprobs(reference, pb)
    out = dpo_loss(pc, pr, rc, rr, beta)
    auto = torch.autograd.grad(out.loss, params, retain_graph=True)
    w = dpo_gradient_weight(out.chosen_rewards, out.rejected_rewards)
    analytic = [torch.zeros_like(p) for p in params]
    for i in range(len(pairs)):
        gw = torch.autograd.grad(pc[i], params, retain_graph=True)
        gl = torch.autograd.grad(pr[i], params, retain_graph=True)
        for a, x, y in zip(analytic, gw, gl):
            a -= beta * w[i] * (x - y) / len(pairs)
    for a, b in zip(auto, analytic):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_policy_equal_to_reference_gives_log2_and_zero_margins():
    x = -5 * torch.rand(10)
    y = -5 * torch.rand(10)
    out = dpo_loss(x, y, x.clone(), y.clone(), beta=0.37)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-7)
    m = out.metrics()
    assert m["rewards/margins"] == 0 and m["rewards/accuracies"] == 0


@pytest.mark.parametrize("beta", [0, -0.1, float("nan"), float("inf")])
def test_beta_must_be_positive_and_finite(beta):
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        compute_dpo_loss(x, x, x, x, beta=beta)


def test_bad_shapes_and_types():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="same shape"):
        compute_dpo_loss(x, torch.zeros(4), x, x)
    with pytest.raises(ValueError, match="1-D"):
        compute_dpo_loss(
            torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3)
        )
    with pytest.raises(ValueError, match="empty"):
        compute_dpo_loss(*[torch.zeros(0)] * 4)
    with pytest.raises(TypeError, match="torch.Tensor"):
        compute_dpo_loss([0.0], x, x, x)
    with pytest.raises(ValueError, match="unknown loss_type"):
        dpo_loss(x, x, x, x, loss_type="kto")
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(x, x, x, x, label_smoothing=0.5)
    with pytest.raises(ValueError, match="applies to"):
        dpo_loss(x, x, x, x, loss_type="ipo", label_smoothing=0.1)


@pytest.mark.parametrize("beta", [1e39, 3.5e38, 1e-39, 1e-300])
def test_beta_that_float32_cannot_hold_is_refused(beta):
    # 1e39 passed the old check and, being inf in float32, gave a NaN loss (inf * 0)
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="would overflow float32"):
        dpo_loss(x, x, x, x, beta=beta)
    with pytest.raises(ValueError, match="would overflow float32"):
        preference_losses(x, beta, "ipo")


def test_beta_types():
    x = torch.zeros(2)
    for bad in ("0.1", None, True, [0.1]):
        with pytest.raises(TypeError, match="beta must be a finite number > 0"):
            dpo_loss(x, x, x, x, beta=bad)
    with pytest.raises(ValueError, match="one number"):
        dpo_loss(x, x, x, x, beta=torch.tensor([0.1, 0.2]))
    # NumPy and tensor scalars are numbers too, and the largest float32 beta is fine
    for ok in (np.float32(0.1), np.float64(0.1), torch.tensor(0.1), 3e38):
        assert torch.isfinite(dpo_loss(x, x, x, x, beta=ok).loss)


@pytest.mark.parametrize("loss_type", ["sigmoid", "robust"])
def test_infinite_margin_without_smoothing_costs_nothing(loss_type):
    # a rejected completion the policy can never produce: d = +inf; the loss is
    # -log sigma(+inf) = 0, not 0 * log sigma(-inf) = NaN
    d = torch.tensor([math.inf, 2.0, -math.inf])
    losses = preference_losses(d, 0.5, loss_type)
    assert losses[0] == 0 and torch.isfinite(losses[1]) and losses[2] == math.inf
    # with smoothing, an infinitely sure pair is infinitely costly under cDPO
    smoothed = preference_losses(d, 0.5, loss_type, 0.1)
    assert not torch.isnan(smoothed).any()
    assert preference_losses(d, 0.5, "hinge")[0] == 0
    with pytest.raises(TypeError, match="logratio_diff must be a torch.Tensor"):
        preference_losses([1.0], 0.5)


def test_the_loss_takes_d_by_its_name_and_positionally():
    d = torch.tensor([0.3, -1.0])
    assert torch.equal(
        preference_losses(logratio_diff=d, beta=0.4), preference_losses(d, 0.4)
    )


@pytest.mark.parametrize("bad", [math.nan, -math.inf, math.inf])
@pytest.mark.parametrize("where", [2, 3])
def test_non_finite_reference_logps_are_refused_by_name(bad, where):
    x = [torch.tensor([-3.0, -4.0, -5.0]) for _ in range(4)]
    x[where][1] = bad
    name = ["reference_chosen", "reference_rejected"][where - 2]
    with pytest.raises(ValueError, match=rf"{name}_logps must be finite.*index 1"):
        dpo_loss(*x, beta=0.1)
    with pytest.raises(ValueError, match="reference_logps must be finite"):
        compute_implicit_reward(x[0], x[where])


def test_policy_logps_at_the_limits():
    ref = torch.tensor([-3.0, -4.0])
    # a rejected completion the policy can never produce: d = +inf, loss 0 (not NaN)
    pr = torch.tensor([-math.inf, -4.0])
    out = dpo_loss(ref, pr, ref, ref, beta=0.1)
    assert out.losses[0] == 0 and torch.isfinite(out.loss)
    # a chosen one it can never produce costs infinitely much
    assert dpo_loss(pr, ref, ref, ref, beta=0.1).losses[0] == math.inf
    # a diverged policy (NaN) reaches the training loop as a NaN loss, which it
    # reports as NonFiniteLossError without stepping
    nan = torch.tensor([math.nan, -4.0])
    assert torch.isnan(dpo_loss(nan, ref, ref, ref, beta=0.1).loss)


def test_weights_are_checked():
    x = -torch.rand(3)
    y = -torch.rand(3)
    for bad, message in [
        (torch.zeros(3), "all 0"),
        (torch.tensor([1.0, -1.0, 1.0]), "finite and >= 0"),
        (torch.tensor([1.0, math.nan, 1.0]), "finite and >= 0"),
        (torch.tensor([1.0, math.inf, 1.0]), "finite and >= 0"),
        (torch.ones(4), r"shape \(3,\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            dpo_loss(x, y, y, x, weights=bad)
    with pytest.raises(TypeError, match="weights must be a torch.Tensor"):
        dpo_loss(x, y, y, x, weights=[1.0, 1.0, 1.0])
    # a zero weight drops a pair: the mean over the others
    w = torch.tensor([1.0, 0.0, 1.0])
    out = dpo_loss(x, y, y, x, weights=w)
    assert out.loss.item() == pytest.approx(out.losses[[0, 2]].mean().item())


def test_token_kl_weights_are_checked():
    a, b = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    mask = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="all 0"):
        token_kl_to_reference(a, b, mask, torch.zeros(2))
    with pytest.raises(TypeError, match="weights must be a torch.Tensor"):
        token_kl_to_reference(a, b, mask, [1.0, 1.0])
    assert token_kl_to_reference(a, b, mask, torch.tensor([1.0, 0.0])) > 0


def test_label_smoothing_type():
    x = torch.zeros(2)
    with pytest.raises(TypeError, match="label_smoothing must be a float"):
        dpo_loss(x, x, x, x, label_smoothing="0.1")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        dpo_loss(x, x, x, x, label_smoothing=math.nan)

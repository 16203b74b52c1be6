import copy
import math

import pytest
import torch

from dpolib import completion_distribution
from dpolib.data import PreferencePair
from dpolib.losses import PRACTICE_LOSS_TYPES, dpo_loss, practice_loss
from dpolib.train import run_dpo_episodes
from dpolib.variants import run_variant_episodes

PC = torch.tensor([-50.0, -45.0, -55.0, -48.0], dtype=torch.float64)
PR = torch.tensor([-52.0, -48.0, -58.0, -46.0], dtype=torch.float64)
RC = torch.tensor([-51.0, -44.0, -56.0, -47.0], dtype=torch.float64)
RR = torch.tensor([-51.0, -46.0, -56.0, -49.0], dtype=torch.float64)
LC = torch.tensor([6.0, 5.0, 10.0, 7.0], dtype=torch.float64)
LR = torch.tensor([5.0, 9.0, 6.0, 6.0], dtype=torch.float64)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def plain(loss_type, beta, alpha=1.0, lam=5.0, gamma=1.0):
    """Each loss written out pair by pair in Python floats."""
    out = []
    for pc, pr, rc, rr, lc, lr in zip(*(t.tolist() for t in (PC, PR, RC, RR, LC, LR))):
        uw, ul = pc - rc, pr - rr
        if loss_type == "rpo":
            out.append(-log_sigmoid(beta * (uw - ul)) + alpha * (-pc / lc))
        elif loss_type == "dpop":
            out.append(-log_sigmoid(beta * (uw - ul - lam * max(0.0, rc - pc))))
        elif loss_type == "sigmoid_norm":
            out.append(-log_sigmoid(beta * (uw / lc - ul / lr)))
        else:
            out.append(-log_sigmoid(beta * (pc / lc - pr / lr) - gamma))
    return torch.tensor(out, dtype=torch.float64)


def run(loss_type, beta, **kw):
    return practice_loss(
        PC, PR, RC, RR, beta, loss_type, chosen_lengths=LC, rejected_lengths=LR, **kw
    )


@pytest.mark.parametrize("loss_type", PRACTICE_LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_each_loss_matches_a_plain_rederivation(loss_type, beta):
    out = run(loss_type, beta)
    want = plain(loss_type, beta)
    assert torch.allclose(out.losses, want, atol=1e-12)
    assert float(out.loss) == pytest.approx(float(want.mean()), abs=1e-12)


def test_hyperparameters_enter_where_the_formulas_say():
    for alpha in (0.0, 0.3, 2.0):
        got = run("rpo", 0.1, rpo_alpha=alpha).losses
        assert torch.allclose(got, plain("rpo", 0.1, alpha=alpha), atol=1e-12)
    for lam in (0.0, 1.0, 50.0):
        got = run("dpop", 0.1, dpop_lambda=lam).losses
        assert torch.allclose(got, plain("dpop", 0.1, lam=lam), atol=1e-12)
    for gamma in (0.0, 0.5, 3.0):
        got = run("simpo", 2.0, simpo_gamma=gamma).losses
        assert torch.allclose(got, plain("simpo", 2.0, gamma=gamma), atol=1e-12)


def test_special_cases_reduce_to_dpo():
    dpo = dpo_loss(PC, PR, RC, RR, 0.5).losses
    assert torch.allclose(run("rpo", 0.5, rpo_alpha=0.0).losses, dpo)
    assert torch.allclose(run("dpop", 0.5, dpop_lambda=0.0).losses, dpo)
    ones = torch.ones_like(LC)
    norm = practice_loss(
        PC, PR, RC, RR, 0.5, "sigmoid_norm", chosen_lengths=ones, rejected_lengths=ones
    )
    assert torch.allclose(norm.losses, dpo)
    # DPO-Positive only differs where the chosen log-prob fell below the reference's
    dpop = run("dpop", 0.5).losses
    fell = PC < RC
    assert fell.any() and (~fell).any()
    assert torch.equal(dpop[~fell], dpo[~fell]) and (dpop[fell] > dpo[fell]).all()


def test_simpo_is_reference_free_and_its_gradient_is_analytic():
    pc, pr = PC.clone().requires_grad_(True), PR.clone().requires_grad_(True)
    beta, gamma = 2.0, 1.0
    out = practice_loss(
        pc, pr, None, None, beta, "simpo", chosen_lengths=LC, rejected_lengths=LR
    )
    assert torch.allclose(out.losses, plain("simpo", beta))
    gc, gr = torch.autograd.grad(out.loss, (pc, pr))
    z = beta * (PC / LC - PR / LR) - gamma
    weight = torch.sigmoid(-z) / len(PC)
    assert torch.allclose(gc, -beta * weight / LC)
    assert torch.allclose(gr, beta * weight / LR)
    assert torch.allclose(out.chosen_rewards, beta * PC / LC)


def test_rpo_gradient_adds_the_per_token_nll():
    pc = PC.clone().requires_grad_(True)
    alpha, beta = 0.7, 0.5
    out = practice_loss(pc, PR, RC, RR, beta, "rpo", chosen_lengths=LC, rpo_alpha=alpha)
    (g,) = torch.autograd.grad(out.loss, pc)
    d = (PC - RC) - (PR - RR)
    want = (-beta * torch.sigmoid(-beta * d) - alpha / LC) / len(PC)
    assert torch.allclose(g, want)


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="length <= 0.*empty completion"):
        practice_loss(
            PC,
            PR,
            RC,
            RR,
            0.5,
            "sigmoid_norm",
            chosen_lengths=torch.tensor([6.0, 0.0, 1.0, 2.0]),
            rejected_lengths=LR,
        )
    with pytest.raises(ValueError, match="rejected_lengths is needed"):
        practice_loss(PC, PR, RC, RR, 0.5, "simpo", chosen_lengths=LC)
    with pytest.raises(ValueError, match="shape"):
        practice_loss(
            PC, PR, RC, RR, 0.5, "rpo", chosen_lengths=torch.tensor([1.0, 2.0])
        )
    with pytest.raises(ValueError, match="unknown practice loss_type 'sppo'"):
        practice_loss(PC, PR, RC, RR, 0.5, "sppo")
    with pytest.raises(ValueError, match="needs the reference"):
        practice_loss(PC, PR, None, None, 0.5, "dpop")
    with pytest.raises(ValueError, match="simpo_gamma must be a finite number >= 0"):
        run("simpo", 2.0, simpo_gamma=-1.0)
    with pytest.raises(ValueError, match="beta"):
        run("rpo", 0.0)


def pizza_pairs():
    prompt = "ravin likes "
    foods = ["pasta", "curry", "dumplings", "burger"]
    return [PreferencePair(prompt, "pizza", f) for f in foods * 3]


def test_sigmoid_norm_training_equals_run_dpo_episodes_with_mean_logprobs(food):
    model, tok = food
    pairs = pizza_pairs()
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    _, ha = run_variant_episodes(
        5, pairs, a, model, torch.optim.Adam(a.parameters(), lr=1e-4), tok,
        "sigmoid_norm", 0.5, progress=False,
    )  # fmt: skip
    _, hb = run_dpo_episodes(
        5, pairs, b, model, torch.optim.Adam(b.parameters(), lr=1e-4), tok,
        beta=0.5, average_logprobs=True, progress=False,
    )  # fmt: skip
    assert [r["loss"] for r in ha] == pytest.approx([r["loss"] for r in hb], abs=1e-5)
    # Adam divides by sqrt(v): parameters with near-zero gradients differ in the last
    # digits, so compare what the two models say rather than their weights
    da = completion_distribution(a, tok, "ravin likes ")
    db = completion_distribution(b, tok, "ravin likes ")
    assert max(abs(da[k] - db[k]) for k in da) < 1e-5


def test_rpo_with_alpha_zero_trains_like_dpo_and_alpha_holds_the_chosen(food):
    model, tok = food
    pairs = pizza_pairs()
    runs = {}
    for name, alpha in (("dpo", 0.0), ("rpo", 5.0)):
        p = copy.deepcopy(model)
        _, runs[name] = run_variant_episodes(
            20, pairs, p, model, torch.optim.Adam(p.parameters(), lr=1e-3), tok,
            "rpo", 0.5, rpo_alpha=alpha, progress=False,
        )  # fmt: skip
    p = copy.deepcopy(model)
    _, plain_dpo = run_dpo_episodes(
        20, pairs, p, model, torch.optim.Adam(p.parameters(), lr=1e-3), tok,
        beta=0.5, progress=False,
    )  # fmt: skip
    assert [r["loss"] for r in runs["dpo"]] == pytest.approx(
        [r["loss"] for r in plain_dpo], abs=1e-5
    )
    assert runs["rpo"][-1]["nll/chosen"] < runs["dpo"][-1]["nll/chosen"]
    assert set(runs["rpo"][-1]) >= {"rewards/margins", "logps/chosen", "nll/chosen"}


def test_variant_loop_rejects_dpo_family_types(food):
    model, tok = food
    p = copy.deepcopy(model)
    with pytest.raises(ValueError, match="run_dpo_episodes"):
        run_variant_episodes(
            1, pizza_pairs(), p, model, torch.optim.Adam(p.parameters()), tok, "ipo"
        )

"""Each checker passes the reference solution and names the common mistakes, written the
way a student would.
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dpolib
from dpolib.course import exercises as ex
from dpolib.course.bandit import optimal_policy
from dpolib.course.exercises import (
    CHECKERS,
    CheckResult,
    _core,
    check_anchor_kl,
    check_bandit_optimum,
    check_dpo_loss,
    check_gradient_weight,
    check_implicit_reward,
    check_ipo_loss,
    check_sequence_logprobs,
)
from dpolib.course.exercises._core import _SEED, _clone, _close
from dpolib.course.exercises.anchor import (
    _ANCHOR_MISTAKES,
    _anchor_cases,
    _anchor_kl_reference,
)
from dpolib.course.exercises.bandit import _BANDIT_MISTAKES, _bandit_cases
from dpolib.course.exercises.logprobs import _SEQ_MISTAKES, _seq_cases
from dpolib.course.exercises.losses import (
    _DPO_MISTAKES,
    _IPO_MISTAKES,
    _dpo_reference,
    _ipo_reference,
    _pair_cases,
)
from dpolib.course.exercises.memory import (
    _MEMORY_MISTAKES,
    _memory_cases,
    _memory_reference,
)
from dpolib.course.exercises.practice import (
    _RPO_MISTAKES,
    _SIMPO_MISTAKES,
    _rpo_cases,
    _rpo_reference,
    _simpo_cases,
    _simpo_reference,
)
from dpolib.course.exercises.rewards import (
    _REWARD_MISTAKES,
    _WEIGHT_MISTAKES,
    _reward_cases,
    _weight_cases,
)
from dpolib.course.exercises.rl import _CLIP_MISTAKES, _clip_cases, _clip_reference
from dpolib.course.exercises.trl import _MISTAKES as _TRL_MISTAKES
from dpolib.course.exercises.trl import _cases as _trl_cases
from dpolib.course.exercises.trl import _trl_ipo_reference
from dpolib.course.exercises.tuning import (
    _STOP_MISTAKES,
    _early_stop_reference,
    _stop_cases,
)
from dpolib.logprobs import sequence_logprobs
from dpolib.losses import compute_implicit_reward, dpo_gradient_weight

ROOT = Path(__file__).resolve().parents[1]


def expect(result: CheckResult, mistake: str, *phrases: str) -> None:
    """The check failed, with the named diagnosis, and its text says so in words."""
    text = str(result)
    assert not result.passed and not bool(result), text
    assert result.mistake == mistake, text
    for phrase in phrases:
        assert phrase.lower() in text.lower(), f"{phrase!r} not in:\n{text}"


def expect_pass(result: CheckResult) -> None:
    assert result.passed and bool(result), str(result)
    assert result.mistake is None
    assert "passed" in str(result)


# --- DPO loss: solutions a student might write
# ------------------------------------------------
def dpo_right(pc, pr, rc, rr, beta):
    chosen_logratio = pc - rc
    rejected_logratio = pr - rr
    return -F.logsigmoid(beta * (chosen_logratio - rejected_logratio)).mean()


def dpo_right_naive_log(pc, pr, rc, rr, beta):
    return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean()


def dpo_sign(pc, pr, rc, rr, beta):
    return F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def dpo_bracket(pc, pr, rc, rr, beta):  # the source text's one-liner
    return -F.logsigmoid(beta * (pc - pr) - (rc - rr)).mean()


def dpo_swapped(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pr - rr) - (pc - rc))).mean()


def dpo_no_reference(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * (pc - pr)).mean()


def dpo_sum(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum()


def dpo_no_log(pc, pr, rc, rr, beta):
    return -torch.sigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def dpo_vector(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))


def dpo_item(pc, pr, rc, rr, beta):
    return torch.tensor(-F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean().item())


def dpo_numpy(pc, pr, rc, rr, beta):
    d = (pc - rc) - (pr - rr)
    return float(np.mean(np.log1p(np.exp(-beta * d.detach().numpy()))))


def dpo_detached_rejected(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr.detach() - rr))).mean()


def dpo_stub(pc, pr, rc, rr, beta):
    # YOUR CODE HERE
    raise NotImplementedError()


def test_dpo_loss_passes_a_right_solution():
    expect_pass(check_dpo_loss(dpo_right, quiet=True))


@pytest.mark.parametrize(
    "fn, mistake, phrases",
    [
        (dpo_sign, "wrong_sign", ["wrong sign", "negative"]),
        (
            dpo_bracket,
            "beta_policy_only",
            ["policy term only", "bracket error", "whole difference"],
        ),
        (dpo_swapped, "swapped", ["chosen and rejected are swapped"]),
        (dpo_no_reference, "no_reference", ["reference model is ignored"]),
        (dpo_sum, "sum_not_mean", ["sum instead of mean"]),
        (dpo_no_log, "missing_log", ["log is missing", "logsigmoid"]),
        (dpo_vector, "per_pair_vector", ["one loss per pair", ".mean()"]),
        (dpo_item, "no_grad", ["not differentiable", ".item()"]),
        (dpo_numpy, "not_a_tensor", ["returned a float", "torch.Tensor"]),
        (
            dpo_detached_rejected,
            "partial_grad",
            ["gradient with respect to policy_rejected_logps"],
        ),
        (dpo_stub, "not_implemented", ["not implemented yet"]),
    ],
)
def test_dpo_loss_names_the_mistake(fn, mistake, phrases):
    expect(check_dpo_loss(fn, quiet=True), mistake, *phrases)


def test_dpo_loss_two_mistakes_at_once():
    def vector_and_swapped(pc, pr, rc, rr, beta):
        return -F.logsigmoid(beta * ((pr - rr) - (pc - rc)))

    r = check_dpo_loss(vector_and_swapped, quiet=True)
    expect(
        r, "wrong_shape", "shape (4,)", "add .mean()", "chosen and rejected are swapped"
    )


def test_dpo_loss_naive_log_passes_with_a_remark():
    r = check_dpo_loss(dpo_right_naive_log, quiet=True)
    expect_pass(r)
    assert "logsigmoid" in str(r) and "remark" in str(r)


def test_dpo_loss_unknown_mistake_gets_concrete_numbers():
    def scaled(pc, pr, rc, rr, beta):
        return 1.1 * -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()

    r = check_dpo_loss(scaled, quiet=True)
    expect(r, "wrong_value", "log 2 = 0.6931", "expected 0.6262")


def test_exception_is_named_and_does_not_escape():
    def broken(pc, pr, rc, rr, beta):
        return pc @ torch.ones(3)

    r = check_dpo_loss(broken, quiet=True)
    expect(r, "exception", "raised RuntimeError", "called with")


def test_not_callable_and_none():
    expect(
        check_dpo_loss(0.69, quiet=True), "not_callable", "check_dpo_loss(my_function)"
    )

    def forgot_return(pc, pr, rc, rr, beta):
        -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()

    expect(check_dpo_loss(forgot_return, quiet=True), "returned_none", "return")


def test_report_is_printed_once(capsys):
    r = check_dpo_loss(dpo_bracket)
    out = capsys.readouterr().out
    assert out.startswith("check_dpo_loss: not yet.") and "bracket error" in out
    assert r.printed
    # the notebook's automatic display of the returned value adds nothing
    r._ipython_display_()
    assert capsys.readouterr().out == ""
    quiet = check_dpo_loss(dpo_right, quiet=True)
    assert capsys.readouterr().out == ""
    quiet._ipython_display_()
    assert capsys.readouterr().out.startswith("check_dpo_loss: passed.")


def test_inputs_are_not_mutated_by_the_student():
    def in_place(pc, pr, rc, rr, beta):
        pc -= rc  # mutates its argument; the checker hands out copies
        pr -= rr
        return -F.logsigmoid(beta * (pc - pr)).mean()

    # values right on copies; in-place on inputs that require grad is then named
    r = check_dpo_loss(in_place, quiet=True)
    expect(r, "exception", "in place")


# --- IPO loss
# ---------------------------------------------------------------------------------
def ipo_right(pc, pr, rc, rr, beta):
    d = (pc - rc) - (pr - rr)
    return ((d - 1 / (2 * beta)) ** 2).mean()


def ipo_precedence(pc, pr, rc, rr, beta):
    d = (pc - rc) - (pr - rr)
    return ((d - 1 / 2 * beta) ** 2).mean()


def ipo_beta_on_margin(pc, pr, rc, rr, beta):
    return ((beta * ((pc - rc) - (pr - rr)) - 0.5) ** 2).mean()


def ipo_sign(pc, pr, rc, rr, beta):
    return (((pr - rr) - (pc - rc) - 1 / (2 * beta)) ** 2).mean()


def ipo_sum(pc, pr, rc, rr, beta):
    return (((pc - rc) - (pr - rr) - 1 / (2 * beta)) ** 2).sum()


def ipo_no_square(pc, pr, rc, rr, beta):
    return ((pc - rc) - (pr - rr) - 1 / (2 * beta)).mean()


def test_ipo_loss():
    expect_pass(check_ipo_loss(ipo_right, quiet=True))
    expect(
        check_ipo_loss(ipo_precedence, quiet=True),
        "beta_placement",
        "1 / (2 * beta)",
        "beta/2",
    )
    expect(
        check_ipo_loss(ipo_beta_on_margin, quiet=True),
        "beta_placement",
        "multiply the margin by beta",
    )
    expect(check_ipo_loss(ipo_sign, quiet=True), "wrong_sign", "wrong sign", "rejected")
    expect(check_ipo_loss(ipo_sum, quiet=True), "sum_not_mean", "sum instead of mean")
    expect(check_ipo_loss(ipo_no_square, quiet=True), "missing_square", "squared")
    expect(check_ipo_loss(dpo_right, quiet=True), "dpo_not_ipo", "DPO loss")


# --- implicit reward
# --------------------------------------------------------------------------
def reward_right(policy_logps, reference_logps, beta):
    return beta * (policy_logps - reference_logps)


def test_implicit_reward():
    expect_pass(check_implicit_reward(reward_right, quiet=True))
    expect(
        check_implicit_reward(lambda p, r, beta: p - r, quiet=True),
        "no_beta",
        "beta is missing",
    )
    expect(
        check_implicit_reward(lambda p, r, beta: beta * (r - p), quiet=True),
        "wrong_sign",
        "sign flipped",
    )
    expect(
        check_implicit_reward(lambda p, r, beta: beta * (p / r), quiet=True),
        "ratio",
        "ratio instead of difference",
    )
    expect(
        check_implicit_reward(lambda p, r, beta: beta * torch.exp(p - r), quiet=True),
        "ratio",
        "probability ratio",
    )
    expect(
        check_implicit_reward(lambda p, r, beta: (beta * (p - r)).mean(), quiet=True),
        "wrong_shape",
        "wrong shape",
        "per sequence",
    )
    expect(
        check_implicit_reward(
            lambda p, r, beta: (beta * (p - r)).unsqueeze(-1), quiet=True
        ),
        "wrong_shape",
        "wrong shape",
        "(B,)",
    )


def test_answers_of_the_wrong_type_get_feedback():
    """A list or an array with the right values breaks the next cell: it must fail."""
    expect(
        check_implicit_reward(lambda p, r, b: (b * (p - r)).tolist(), quiet=True),
        "not_a_tensor",
        "returned a list",
        "torch.Tensor",
    )
    expect(
        check_implicit_reward(lambda p, r, b: b * (p.numpy() - r.numpy()), quiet=True),
        "not_a_tensor",
        "numpy.ndarray",
    )
    expect(
        check_gradient_weight(lambda w, lo: "0.5", quiet=True),
        "not_a_tensor",
        "returned a str",
    )


# --- sequence log-probs
# -----------------------------------------------------------------------
def seq_right(logits, targets, mask):
    logp = torch.log_softmax(logits, dim=-1)
    token_logp = torch.gather(logp, 2, targets[..., None])[..., 0]
    return torch.where(mask, token_logp, torch.zeros_like(token_logp)).sum(dim=1)


def seq_mean(logits, targets, mask):
    token_logp = (
        torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    )
    return (token_logp * mask).sum(-1) / mask.sum(-1)


def seq_unmasked(logits, targets, mask):
    return (
        torch.log_softmax(logits, -1)
        .gather(-1, targets.unsqueeze(-1))
        .squeeze(-1)
        .sum(-1)
    )


def seq_softmax(logits, targets, mask):
    return (
        torch.softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    ).sum(-1)


def seq_raw_logits(logits, targets, mask):
    return (logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)


def seq_shifted(
    logits, targets, mask
):  # the "predict the next token" shift, done a second time
    logp = torch.log_softmax(logits[:, :-1], -1)
    tok = logp.gather(-1, targets[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (tok * mask[:, 1:]).sum(-1)


def seq_per_token(logits, targets, mask):
    return (
        torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        * mask
    )


def seq_boolean_index(logits, targets, mask):
    return (
        torch.log_softmax(logits, -1)
        .gather(-1, targets.unsqueeze(-1))
        .squeeze(-1)[mask]
        .sum()
    )


def test_sequence_logprobs():
    expect_pass(check_sequence_logprobs(seq_right, quiet=True))
    expect(
        check_sequence_logprobs(seq_mean, quiet=True),
        "mean_not_sum",
        "mean instead of sum",
    )
    expect(
        check_sequence_logprobs(seq_unmasked, quiet=True),
        "not_masked",
        "prompt and padding tokens are counted",
    )
    expect(
        check_sequence_logprobs(seq_softmax, quiet=True),
        "probs_not_logprobs",
        "log_softmax",
    )
    expect(
        check_sequence_logprobs(seq_raw_logits, quiet=True),
        "unnormalised_logits",
        "raw logits",
    )
    expect(check_sequence_logprobs(seq_shifted, quiet=True), "shifted", "off by one")
    expect(
        check_sequence_logprobs(seq_per_token, quiet=True),
        "per_token",
        "wrong shape",
        "(B, T)",
    )
    expect(
        check_sequence_logprobs(seq_boolean_index, quiet=True),
        "batch_total",
        "wrong shape",
        "x[mask]",
    )


# --- gradient weight
# --------------------------------------------------------------------------
def test_gradient_weight():
    expect_pass(check_gradient_weight(lambda w, lo: torch.sigmoid(lo - w), quiet=True))
    expect_pass(
        check_gradient_weight(lambda w, lo: 1 - torch.sigmoid(w - lo), quiet=True)
    )
    expect(
        check_gradient_weight(lambda w, lo: torch.sigmoid(w - lo), quiet=True),
        "wrong_sign",
        "sign flipped",
    )
    expect(
        check_gradient_weight(lambda w, lo: lo - w, quiet=True),
        "no_sigmoid",
        "sigmoid is missing",
    )
    expect(
        check_gradient_weight(lambda w, lo: torch.sigmoid(lo - w).mean(), quiet=True),
        "wrong_shape",
        "per pair",
    )
    expect(
        check_gradient_weight(lambda w, lo: F.logsigmoid(lo - w), quiet=True),
        "log_sigmoid",
        "log sigma",
    )


# --- bandit optimum
# ---------------------------------------------------------------------------
def bandit_right(pi_ref, rewards, beta):
    logits = torch.log(pi_ref) + rewards / beta
    return torch.exp(logits - torch.logsumexp(logits, dim=0))


def bandit_naive(pi_ref, rewards, beta):
    w = pi_ref * torch.exp(rewards / beta)
    return w / w.sum()


def test_bandit_optimum():
    expect_pass(check_bandit_optimum(bandit_right, quiet=True))
    expect(
        check_bandit_optimum(bandit_naive, quiet=True),
        "overflow",
        "overflow",
        "logsumexp",
    )
    expect(
        check_bandit_optimum(
            lambda p, r, b: (p * torch.exp(r * b)) / (p * torch.exp(r * b)).sum(),
            quiet=True,
        ),
        "beta_multiplies",
        "must divide",
    )
    expect(
        check_bandit_optimum(lambda p, r, b: p * torch.exp(r / b), quiet=True),
        "not_normalised",
        "sum to 1",
    )
    expect(
        check_bandit_optimum(lambda p, r, b: torch.softmax(r / b, 0), quiet=True),
        "pi_ref_ignored",
        "pi_ref is ignored",
    )
    expect(
        check_bandit_optimum(lambda p, r, b: p * torch.exp(r / b) / 0.0, quiet=True),
        "not_finite",
        "nan or inf",
    )


# --- the anchor's KL (chapter 6)
# -------------------------------------------------------------
def _anchor_parts(pl, rl):
    return F.log_softmax(pl, dim=-1), F.log_softmax(rl, dim=-1)


def anchor_right(pl, rl, mask, counts):
    pol_logp, ref_logp = _anchor_parts(pl, rl)
    kl = (ref_logp.exp() * (ref_logp - pol_logp)).sum(-1)
    return ((kl * mask).sum(-1) * counts).sum() / counts.sum()


def anchor_kl_div(pl, rl, mask, counts):  # torch's kl_div, the argument order right
    pol_logp, ref_logp = _anchor_parts(pl, rl)
    kl = F.kl_div(pol_logp, ref_logp, reduction="none", log_target=True).sum(-1)
    per_row = torch.where(mask, kl, torch.zeros_like(kl)).sum(-1)
    return per_row @ counts / counts.sum()


def anchor_kl_div_swapped(pl, rl, mask, counts):
    pol_logp, ref_logp = _anchor_parts(pl, rl)
    kl = F.kl_div(ref_logp, pol_logp, reduction="none", log_target=True).sum(-1)
    return ((kl * mask).sum(-1) * counts).sum() / counts.sum()


def anchor_kl_div_mean(pl, rl, mask, counts):  # kl_div's default reduction per token
    pol_logp, ref_logp = _anchor_parts(pl, rl)
    kl = F.kl_div(pol_logp, ref_logp, reduction="none", log_target=True).mean(-1)
    return ((kl * mask).sum(-1) * counts).sum() / counts.sum()


def anchor_cross_entropy(pl, rl, mask, counts):
    pol_logp, ref_logp = _anchor_parts(pl, rl)
    ce = -(ref_logp.exp() * pol_logp).sum(-1)
    return ((ce * mask).sum(-1) * counts).sum() / counts.sum()


def anchor_raw_logits(pl, rl, mask, counts):
    kl = (torch.softmax(rl, -1) * (rl - pl)).sum(-1)
    return ((kl * mask).sum(-1) * counts).sum() / counts.sum()


def _anchor_token_kl(pl, rl):
    pol_logp, ref_logp = _anchor_parts(pl, rl)
    return (ref_logp.exp() * (ref_logp - pol_logp)).sum(-1)


def anchor_per_row(pl, rl, mask, counts):
    return (_anchor_token_kl(pl, rl) * mask).sum(-1)


def anchor_unmasked(pl, rl, mask, counts):
    return (_anchor_token_kl(pl, rl).sum(-1) * counts).sum() / counts.sum()


def anchor_token_mean(pl, rl, mask, counts):
    per_row = (_anchor_token_kl(pl, rl) * mask).sum(-1) / mask.sum(-1)
    return (per_row * counts).sum() / counts.sum()


def anchor_unweighted(pl, rl, mask, counts):
    return (_anchor_token_kl(pl, rl) * mask).sum(-1).mean()


def anchor_weighted_sum(pl, rl, mask, counts):
    return ((_anchor_token_kl(pl, rl) * mask).sum(-1) * counts).sum()


def anchor_mean_of_weighted(pl, rl, mask, counts):
    return ((_anchor_token_kl(pl, rl) * mask).sum(-1) * counts).mean()


def anchor_no_log_target(pl, rl, mask, counts):  # log-probs taken for probabilities
    pol_logp, ref_logp = _anchor_parts(pl, rl)
    kl = F.kl_div(pol_logp, ref_logp, reduction="none").sum(-1)
    return ((kl * mask).sum(-1) * counts).sum() / counts.sum()


def anchor_detached_normaliser(pl, rl, mask, counts):
    pol_logp = pl - torch.logsumexp(pl.detach(), -1, keepdim=True)
    ref_logp = F.log_softmax(rl, dim=-1)
    kl = (ref_logp.exp() * (ref_logp - pol_logp)).sum(-1)
    return ((kl * mask).sum(-1) * counts).sum() / counts.sum()


def anchor_item(pl, rl, mask, counts):
    return torch.tensor(anchor_right(pl, rl, mask, counts).item())


@pytest.mark.parametrize("fn", [anchor_right, anchor_kl_div])
def test_anchor_kl_passes_right_solutions(fn):
    expect_pass(check_anchor_kl(fn, quiet=True))


@pytest.mark.parametrize(
    "fn, mistake, phrases",
    [
        (anchor_per_row, "per_row_vector", ["one kl per sentence", "counts.sum()"]),
        (anchor_kl_div_swapped, "reversed_kl", ["wrong way", "kl(pi_ref || pi_theta)"]),
        (anchor_cross_entropy, "cross_entropy", ["cross-entropy", "entropy of"]),
        (anchor_raw_logits, "unnormalised_logits", ["raw logits", "log_softmax"]),
        (anchor_kl_div_mean, "vocab_mean", ["average over the vocabulary"]),
        (anchor_unmasked, "not_masked", ["prompt and padding positions are counted"]),
        (anchor_token_mean, "mean_not_sum", ["average the kl over each sentence"]),
        (anchor_unweighted, "counts_ignored", ["counts are ignored"]),
        (anchor_weighted_sum, "not_normalised", ["weighted sum", "weighted mean"]),
        (anchor_mean_of_weighted, "wrong_normaliser", ["number of sentences"]),
        (anchor_no_log_target, "not_finite", ["nan or inf", "log_target=true"]),
        (anchor_detached_normaliser, "partial_grad", ["policy_logits is wrong"]),
        (anchor_item, "no_grad", ["not differentiable", ".item()"]),
    ],
)
def test_anchor_kl_names_the_mistake(fn, mistake, phrases):
    expect(check_anchor_kl(fn, quiet=True), mistake, *phrases)


def test_anchor_kl_wrong_types_get_feedback():
    expect(
        check_anchor_kl(
            lambda pl, rl, m, c: anchor_right(pl, rl, m, c).tolist(), quiet=True
        ),
        "not_a_tensor",
        "returned a float",
    )
    expect(
        check_anchor_kl(
            lambda pl, rl, m, c: anchor_right(pl, rl, m, c).detach().numpy(),
            quiet=True,
        ),
        "not_a_tensor",
        "numpy.ndarray",
    )
    expect(
        check_anchor_kl(
            anchor_right(*_anchor_cases(torch.Generator())[0].args), quiet=True
        ),
        "not_callable",
        "check_anchor_kl(my_function)",
    )


def test_anchor_kl_unknown_mistakes_get_hints_and_numbers():
    def scaled(pl, rl, mask, counts):
        return 1.1 * anchor_right(pl, rl, mask, counts)

    def offset(pl, rl, mask, counts):
        return anchor_right(pl, rl, mask, counts) + 0.1

    expect(
        check_anchor_kl(scaled, quiet=True),
        "wrong_value",
        "0 when the policy equals the reference",
        "expected 0.6699",
    )
    expect(check_anchor_kl(offset, quiet=True), "wrong_value", "yours is 0.1000")


def test_anchor_kl_prints_its_report_once(capsys):
    r = check_anchor_kl(anchor_no_log_target)
    out = capsys.readouterr().out
    assert out.startswith("check_anchor_kl: not yet.") and "log_target" in out
    assert r.printed and out.count("check_anchor_kl:") == 1
    r._ipython_display_()
    assert capsys.readouterr().out == ""
    check_anchor_kl(anchor_right, quiet=True)
    assert capsys.readouterr().out == ""


def test_anchor_kl_reference_is_the_training_loss_term():
    """The checker's reference is the KL the anchor adds in training, and the
    hand-made case matches a plain loop over sentences, positions and tokens."""
    pl, rl, mask, counts = _anchor_cases(torch.Generator())[0].args
    total = 0.0
    for n in range(pl.shape[0]):
        for t in range(pl.shape[1]):
            if mask[n, t]:
                p = torch.softmax(rl[n, t].double(), -1)
                q = torch.softmax(pl[n, t].double(), -1)
                total += float(counts[n]) * float((p * (p / q).log()).sum())
    want = total / float(counts.sum())
    assert math.isclose(
        float(_anchor_kl_reference(pl, rl, mask, counts)), want, rel_tol=1e-5
    )
    assert math.isclose(want, 0.6699, abs_tol=5e-5)  # what the feedback prints


# --- the checkers themselves
# ------------------------------------------------------------------
MISTAKE_TABLES = {
    "check_dpo_loss": (_DPO_MISTAKES, _pair_cases, _dpo_reference, 0),
    "check_ipo_loss": (_IPO_MISTAKES, _pair_cases, _ipo_reference, 1),
    "check_implicit_reward": (
        _REWARD_MISTAKES,
        _reward_cases,
        compute_implicit_reward,
        2,
    ),
    "check_sequence_logprobs": (
        _SEQ_MISTAKES,
        _seq_cases,
        lambda *a: sequence_logprobs(*a),
        3,
    ),
    "check_gradient_weight": (_WEIGHT_MISTAKES, _weight_cases, dpo_gradient_weight, 4),
    "check_bandit_optimum": (_BANDIT_MISTAKES, _bandit_cases, optimal_policy, 5),
    "check_trl_ipo_loss": (_TRL_MISTAKES, _trl_cases, _trl_ipo_reference, 40),
    "check_simpo_loss": (_SIMPO_MISTAKES, _simpo_cases, _simpo_reference, 11),
    "check_rpo_loss": (_RPO_MISTAKES, _rpo_cases, _rpo_reference, 12),
    "check_training_memory": (_MEMORY_MISTAKES, _memory_cases, _memory_reference, 6),
    "check_early_stop": (_STOP_MISTAKES, _stop_cases, _early_stop_reference, 7),
    "check_clipped_surrogate": (_CLIP_MISTAKES, _clip_cases, _clip_reference, 13),
    "check_anchor_kl": (_ANCHOR_MISTAKES, _anchor_cases, _anchor_kl_reference, 16),
}


@pytest.mark.parametrize("name", sorted(MISTAKE_TABLES))
def test_known_wrong_variants_are_all_distinguishable(name):
    """No variant reproduces the reference, and no two variants with different
    diagnoses coincide on the inputs.
    """
    mistakes, make_cases, reference, offset = MISTAKE_TABLES[name]
    cases = make_cases(torch.Generator().manual_seed(_SEED + offset))

    def outputs(f):
        return [f(*_clone(c.args)) for c in cases]

    ref = outputs(reference)
    outs = [outputs(m.fn) for m in mistakes]
    for m, o in zip(mistakes, outs):
        assert not all(_close(a, b) for a, b in zip(o, ref)), m.code
    for (m1, o1), (m2, o2) in itertools.combinations(zip(mistakes, outs), 2):
        assert not all(_close(a, b) for a, b in zip(o1, o2)), (m1.code, m2.code)


def test_every_checker_is_listed_and_documented():
    assert set(MISTAKE_TABLES) == set(CHECKERS)
    public = {n for n in ex.__all__ if n.startswith("check_")}
    assert public == set(CHECKERS)
    for fn in CHECKERS.values():
        assert fn.__doc__ and len(fn.__doc__.strip().splitlines()) == 1
    assert set(ex.MISTAKE_CODES) == set(CHECKERS)


@pytest.mark.skipif(
    not (ROOT / "chapters" / "instructors.md").exists(),
    reason="no instructors page yet",
)
def test_instructors_page_lists_each_checker_with_its_mistakes():
    """The checker table of chapters/instructors.md names exactly the mistake codes
    each checker can report.
    """
    import re

    text = (ROOT / "chapters" / "instructors.md").read_text()
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(check_\w+)` \|.*\|(.*)\|\s*$", text, re.M)
    }
    assert set(rows) == set(CHECKERS), (
        "the instructors page's checker table must list every checker once"
    )
    for name, cell in rows.items():
        assert tuple(re.findall(r"`(\w+)`", cell)) == ex.MISTAKE_CODES[name], name
    for code in ex.GENERIC_MISTAKES:
        assert f"`{code}`" in text, code


def test_checkers_are_deterministic_and_fast():
    import time

    t = time.perf_counter()
    a = check_dpo_loss(dpo_bracket, quiet=True)
    b = check_dpo_loss(dpo_bracket, quiet=True)
    assert a.feedback == b.feedback
    assert time.perf_counter() - t < 2.0
    assert math.isclose(
        float(_dpo_reference(*_pair_cases(torch.Generator())[0].args)),
        0.6262,
        abs_tol=5e-5,
    )


# --- checkers that cannot be fooled cheaply
# ---------------------------------------------------
def _ipo_via_library(pc, pr, rc, rr, beta):
    return dpolib.losses.dpo_loss(pc, pr, rc, rr, beta, loss_type="ipo").loss


def _hidden_helper(pc, pr, rc, rr, beta):  # the library call one function further down
    return dpolib.dpo_loss(pc, pr, rc, rr, beta).loss


# For each checker, a function that hands back dpolib's own answer, and the name the
# feedback must give.
CHEATS = {
    "check_dpo_loss": [
        (lambda pc, pr, rc, rr, beta: _hidden_helper(pc, pr, rc, rr, beta), "dpo_loss"),
        (_dpo_reference, "_dpo_reference"),
    ],
    "check_ipo_loss": [
        (_ipo_via_library, "dpo_loss"),
        (_ipo_reference, "_ipo_reference"),
    ],
    "check_implicit_reward": [
        (compute_implicit_reward, "compute_implicit_reward"),
        (
            lambda p, r, b: dpolib.compute_implicit_reward(p, r, b) + 0,
            "compute_implicit",
        ),
    ],
    "check_gradient_weight": [
        (lambda w, lo: dpo_gradient_weight(w, lo), "dpo_gradient_weight")
    ],
    "check_sequence_logprobs": [
        (lambda lg, t, m: sequence_logprobs(lg, t, m), "sequence_logprobs")
    ],
    "check_bandit_optimum": [(optimal_policy, "optimal_policy")],
    "check_trl_ipo_loss": [(_trl_ipo_reference, "_trl_ipo_reference")],
    "check_simpo_loss": [
        (
            lambda pc, pr, lc, lr, b, g: (
                dpolib.losses.practice_loss(
                    pc,
                    pr,
                    None,
                    None,
                    b,
                    "simpo",
                    chosen_lengths=lc,
                    rejected_lengths=lr,
                    simpo_gamma=g,
                ).loss
            ),
            "practice_loss",
        )
    ],
    "check_rpo_loss": [(_rpo_reference, "_rpo_reference")],
    "check_training_memory": [(_memory_reference, "_memory_reference")],
    "check_early_stop": [(_early_stop_reference, "_early_stop_reference")],
    "check_clipped_surrogate": [(_clip_reference, "_clip_reference")],
    "check_anchor_kl": [
        (_anchor_kl_reference, "_anchor_kl_reference"),
        (
            lambda pl, rl, m, c: dpolib.losses.token_kl_to_reference(pl, rl, m, c),
            "token_kl_to_reference",
        ),
    ],
}


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_every_checker_rejects_a_call_to_the_reference(name):
    assert set(CHEATS) == set(CHECKERS), "add the new checker's cheat to CHEATS"
    for cheat, called in CHEATS[name]:
        r = CHECKERS[name](cheat, quiet=True)
        expect(r, "calls_reference", "calls dpolib's own", called, "cannot pass")
        assert any(called in ref for ref in r.references), r.references


def test_references_name_the_library_functions():
    """What a checker forbids is what its reference runs, found by running it: the
    public functions too.
    """
    refs = check_dpo_loss(dpo_right, quiet=True).references
    assert (
        "dpolib.losses.dpo_loss" in refs and "dpolib.losses.preference_losses" in refs
    )
    refs = check_bandit_optimum(bandit_right, quiet=True).references
    assert "dpolib.course.bandit.optimal_policy" in refs
    assert all(r.startswith(("dpolib.course.bandit.", "dpolib.losses.")) for r in refs)
    # the shared machinery, the model and the tokenizer are never forbidden
    for name, fn in CHECKERS.items():
        for ref in fn(lambda *a: None, quiet=True).references:
            assert not ref.startswith(("dpolib.course.exercises._core", "dpolib.model"))


def test_allowed_library_code_is_not_a_cheat():
    """A checker may hand the student dpolib tools its reference also uses: `allowed`
    exempts them.
    """

    def make(allowed):
        return _core._Check(
            "check_scaled_reward",
            names=("policy_logps", "reference_logps", "beta"),
            reference=lambda p, r, b: 2 * compute_implicit_reward(p, r, b),
            cases=_reward_cases(torch.Generator().manual_seed(0)),
            mistakes=[],
            expected_shape="(B,)",
            allowed=allowed,
        )

    def student(p, r, b):
        return 2 * compute_implicit_reward(p, r, b)

    expect(_core._run_check(make(()), student, quiet=True), "calls_reference")
    expect_pass(_core._run_check(make([compute_implicit_reward]), student, quiet=True))
    expect_pass(_core._run_check(make([dpolib.losses]), student, quiet=True))


@pytest.fixture
def short_limit(monkeypatch):
    monkeypatch.setattr(_core, "_TIME_LIMIT", 0.3)


def _forever(p, r, b):
    n = 0
    while True:
        n += 1


def _sleeps(p, r, b):
    time.sleep(60)


def _swallows(p, r, b):  # a bare except around the loop must not swallow the time-out
    while True:
        try:
            while True:
                pass
        except:  # noqa: E722
            pass


@pytest.mark.parametrize("fn", [_forever, _sleeps, _swallows])
def test_a_function_that_never_returns_is_stopped(short_limit, fn):
    t = time.perf_counter()
    r = check_implicit_reward(fn, quiet=True)
    expect(r, "time_limit", "did not return within 0.3 s", "loop that never ends")
    assert time.perf_counter() - t < 5
    assert sys.gettrace() is None  # the checker's tracing is gone again
    # and the next check works normally
    expect_pass(check_implicit_reward(reward_right, quiet=True))


def test_time_limit_outside_the_main_thread(short_limit):
    """No SIGALRM outside the main thread: the trace function stops the loop between
    two lines.
    """
    out = {}
    worker = threading.Thread(
        target=lambda: out.setdefault("r", check_implicit_reward(_forever, quiet=True)),
        daemon=True,
    )
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    expect(out["r"], "time_limit", "did not return within")


@pytest.mark.parametrize(
    "exit_call", [lambda: sys.exit(), lambda: sys.exit(3), lambda: exit()]
)
def test_sys_exit_does_not_escape_the_checker(exit_call):
    def leaves(p, r, b):
        exit_call()

    expect(check_implicit_reward(leaves, quiet=True), "exited", "sys.exit()")


def test_guard_leaves_no_trace_or_timer_behind():
    import signal

    before = signal.getsignal(signal.SIGALRM)
    expect(check_dpo_loss(_hidden_helper, quiet=True), "calls_reference")
    expect_pass(check_dpo_loss(dpo_right, quiet=True))
    assert sys.gettrace() is None
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

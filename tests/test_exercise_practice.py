"""check_simpo_loss and check_rpo_loss pass the right solution and name the mistakes."""

import itertools

import torch
import torch.nn.functional as F

from dpolib.course.exercises._core import _SEED, _clone, _close
from dpolib.course.exercises.practice import (
    _RPO_MISTAKES,
    _SEED_OFFSET,
    _SIMPO_MISTAKES,
    _rpo_cases,
    _rpo_reference,
    _simpo_cases,
    _simpo_reference,
    check_rpo_loss,
    check_simpo_loss,
)


def expect(result, mistake, *phrases):
    text = str(result)
    assert not result.passed and result.mistake == mistake, text
    for phrase in phrases:
        assert phrase.lower() in text.lower(), f"{phrase!r} not in:\n{text}"


def simpo_right(pc, pr, lc, lr, beta, gamma):
    return -F.logsigmoid(beta * (pc / lc - pr / lr) - gamma).mean()


def test_the_right_solution_passes_and_matches_a_hand_computation():
    result = check_simpo_loss(simpo_right, quiet=True)
    assert result.passed and result.mistake is None, str(result)
    # first hand-made pair: beta (-3/6 + 8/9) - 1 = 2 * 7/18 - 1
    pc, pr, lc, lr, beta, gamma = _simpo_cases(torch.Generator())[0].args
    z = 2 * (-3 / 6 + 8 / 9) - 1
    want = torch.log1p(torch.exp(torch.tensor(-z)))
    per_pair = -F.logsigmoid(beta * (pc / lc - pr / lr) - gamma)
    assert torch.allclose(per_pair[0], want)


def test_common_mistakes_are_named():
    cases = [
        (lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * (pc - pr) - g).mean(),
         "not_normalised", "mean log-probs"),
        (lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * (pc / lc - pr / lr - g)).mean(),
         "gamma_inside_beta", "after the scaling"),
        (lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * (pc / lc - pr / lr) + g).mean(),
         "gamma_sign", "subtracted"),
        (lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * (pc / lc - pr / lr)).mean(),
         "no_gamma", "target margin"),
        (lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * (pc / lc - pr / lr) - g),
         "per_pair_vector", ".mean()"),
        (lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * (pc / lc - pr / lr) - g).sum(),
         "sum_not_mean", "sum instead of mean"),
        (lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * (pc / lr - pr / lc) - g).mean(),
         "lengths_swapped", "chosen length"),
    ]  # fmt: skip
    for fn, code, phrase in cases:
        expect(check_simpo_loss(fn, quiet=True), code, phrase)


def test_undiagnosed_and_detached_answers_get_feedback():
    def detached(pc, pr, lc, lr, b, g):
        return simpo_right(pc, pr, lc, lr, b, g).detach()

    expect(check_simpo_loss(detached, quiet=True), "no_grad", "not differentiable")
    odd = check_simpo_loss(lambda *a: simpo_right(*a) * 1.7, quiet=True)
    expect(odd, "wrong_value", "log(1 + e^gamma)")

    def todo(*a):
        raise NotImplementedError

    expect(check_simpo_loss(todo, quiet=True), "not_implemented", "not implemented")


def test_known_wrong_variants_are_all_distinguishable():
    cases = _simpo_cases(torch.Generator().manual_seed(_SEED + _SEED_OFFSET))

    def outputs(f):
        return [f(*_clone(c.args)) for c in cases]

    ref = outputs(_simpo_reference)
    outs = [outputs(m.fn) for m in _SIMPO_MISTAKES]
    for m, o in zip(_SIMPO_MISTAKES, outs):
        assert not all(_close(a, b) for a, b in zip(o, ref)), m.code
    for (m1, o1), (m2, o2) in itertools.combinations(zip(_SIMPO_MISTAKES, outs), 2):
        assert not all(_close(a, b) for a, b in zip(o1, o2)), (m1.code, m2.code)


def rpo_right(pc, pr, rc, rr, lc, beta, alpha):
    dpo = -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))
    return (dpo + alpha * (-pc / lc)).mean()


def test_rpo_checker_passes_the_solution_and_names_mistakes():
    result = check_rpo_loss(rpo_right, quiet=True)
    assert result.passed, str(result)

    def dpo(pc, pr, rc, rr, b):
        return -F.logsigmoid(b * ((pc - rc) - (pr - rr)))

    cases = [
        (lambda pc, pr, rc, rr, lc, b, a: (dpo(pc, pr, rc, rr, b) - a * pc).mean(),
         "nll_not_normalised", "per token"),
        (lambda pc, pr, rc, rr, lc, b, a: (dpo(pc, pr, rc, rr, b) + a * pc / lc).mean(),
         "nll_sign", "wrong sign"),
        (lambda pc, pr, rc, rr, lc, b, a: (dpo(pc, pr, rc, rr, b) - a * (pc - rc) / lc)
         .mean(),
         "nll_on_ratio", "no reference"),
        (lambda pc, pr, rc, rr, lc, b, a: dpo(pc, pr, rc, rr, b).mean(),
         "no_nll", "plain DPO"),
        (lambda pc, pr, rc, rr, lc, b, a: (a * dpo(pc, pr, rc, rr, b) - pc / lc).mean(),
         "alpha_on_dpo", "NLL term only"),
    ]  # fmt: skip
    for fn, code, phrase in cases:
        expect(check_rpo_loss(fn, quiet=True), code, phrase)
    odd = check_rpo_loss(lambda *a: rpo_right(*a) + 0.3, quiet=True)
    expect(odd, "wrong_value", "log 2 + alpha")


def test_rpo_variants_are_all_distinguishable():
    cases = _rpo_cases(torch.Generator().manual_seed(_SEED + _SEED_OFFSET + 1))

    def outputs(f):
        return [f(*_clone(c.args)) for c in cases]

    ref = outputs(_rpo_reference)
    outs = [outputs(m.fn) for m in _RPO_MISTAKES]
    for m, o in zip(_RPO_MISTAKES, outs):
        assert not all(_close(a, b) for a, b in zip(o, ref)), m.code
    for (m1, o1), (m2, o2) in itertools.combinations(zip(_RPO_MISTAKES, outs), 2):
        assert not all(_close(a, b) for a, b in zip(o1, o2)), (m1.code, m2.code)

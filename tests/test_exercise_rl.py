"""The clipped-surrogate checker passes a right answer and names the common mistakes."""

from __future__ import annotations

import itertools

import torch

from dpolib.course.exercises import _core
from dpolib.course.exercises.rl import (
    _CLIP_MISTAKES,
    _clip_cases,
    _clip_reference,
    check_clipped_surrogate,
)
from dpolib.rl_core import clipped_surrogate_loss


def expect(result, mistake, *phrases):
    text = str(result)
    assert not result.passed, text
    assert result.mistake == mistake, text
    for phrase in phrases:
        assert phrase.lower() in text.lower(), f"{phrase!r} not in:\n{text}"


def right(logps, old_logps, advantages, cliprange):
    ratio = torch.exp(logps - old_logps)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * advantages
    return -torch.min(unclipped, clipped).mean()


def test_right_answer_passes():
    result = check_clipped_surrogate(right, quiet=True)
    assert result.passed and result.mistake is None, str(result)


def test_worked_example_value():
    # ratios e^0.2, e^0.5, e^-0.5, 1: the first is clipped to 1.2, the others keep rho
    # * A
    args = _clip_cases(torch.Generator())[0].args
    hand = -(1.2 + torch.e**0.5 * -2.0 + torch.e**-0.5 * 0.5 + 3.0) / 4
    assert abs(float(_clip_reference(*args)) - hand) < 1e-6
    assert abs(hand - -0.30146) < 1e-4


def test_mistakes_are_named():
    def no_clip(lp, old, a, eps):
        return -(torch.exp(lp - old) * a).mean()

    def maximum(lp, old, a, eps):
        r = torch.exp(lp - old)
        return -torch.max(r * a, torch.clamp(r, 1 - eps, 1 + eps) * a).mean()

    def plus(lp, old, a, eps):
        r = torch.exp(lp - old)
        return torch.min(r * a, torch.clamp(r, 1 - eps, 1 + eps) * a).mean()

    def no_exp(lp, old, a, eps):
        r = lp - old
        return -torch.min(r * a, torch.clamp(r, 1 - eps, 1 + eps) * a).mean()

    def per_sample(lp, old, a, eps):
        r = torch.exp(lp - old)
        return -torch.min(r * a, torch.clamp(r, 1 - eps, 1 + eps) * a)

    def detached(lp, old, a, eps):
        return right(lp.detach(), old, a, eps)

    def stub(lp, old, a, eps):
        raise NotImplementedError

    expect(check_clipped_surrogate(no_clip, quiet=True), "no_clip", "clipping")
    expect(check_clipped_surrogate(maximum, quiet=True), "max_not_min", "minimum")
    expect(check_clipped_surrogate(plus, quiet=True), "wrong_sign", "negative")
    expect(check_clipped_surrogate(no_exp, quiet=True), "log_ratio", "torch.exp")
    expect(check_clipped_surrogate(per_sample, quiet=True), "wrong_shape", ".mean()")
    expect(check_clipped_surrogate(detached, quiet=True), "no_grad", "gradient")
    expect(check_clipped_surrogate(stub, quiet=True), "not_implemented")


def test_variants_are_distinguishable():
    cases = _clip_cases(_core._generator(13))

    def outputs(f):
        return [f(*_core._clone(c.args)) for c in cases]

    ref = outputs(_clip_reference)
    outs = [outputs(m.fn) for m in _CLIP_MISTAKES]
    for m, o in zip(_CLIP_MISTAKES, outs):
        assert not all(_core._close(a, b) for a, b in zip(o, ref)), m.code
    for (m1, o1), (m2, o2) in itertools.combinations(zip(_CLIP_MISTAKES, outs), 2):
        assert not all(_core._close(a, b) for a, b in zip(o1, o2)), (m1.code, m2.code)


def test_reference_is_the_library():
    for case in _clip_cases(_core._generator(13)):
        assert torch.equal(
            _clip_reference(*case.args), clipped_surrogate_loss(*case.args)
        )

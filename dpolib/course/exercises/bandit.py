"""The checker for the closed-form optimum of KL-regularised reward maximisation on a
bandit.

pi*(y) = pi_ref(y) exp(r(y) / beta) / Z. Besides the usual variants it checks a tiny
beta, where the direct formula overflows and only a log-space computation gives the
right answer.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..bandit import optimal_policy
from ._core import (
    CheckResult,
    _call,
    _Case,
    _Check,
    _close,
    _finite,
    _fmt,
    _fmt_args,
    _generator,
    _Mistake,
    _Outcome,
    _run_check,
)

_BANDIT_NAMES = ("pi_ref", "rewards", "beta")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.sum()


_BANDIT_MISTAKES = [
    _Mistake(
        "beta_multiplies",
        "beta multiplies the reward; it must DIVIDE it: pi_ref * exp(r / beta) / Z. "
        "(With your version a larger "
        "beta moves the policy further from the reference; it should keep it closer.)",
        lambda p, r, b: _normalise(p * torch.exp(r * b)),
    ),
    _Mistake(
        "not_normalised",
        "Not normalised: your probabilities do not sum to 1. Divide by Z = sum_y "
        "pi_ref(y) exp(r(y)/beta).",
        lambda p, r, b: p * torch.exp(r / b),
    ),
    _Mistake(
        "pi_ref_ignored",
        "pi_ref is ignored: you return softmax(r / beta). The optimum REWEIGHTS the "
        "reference: "
        "pi_ref * exp(r / beta) / Z.",
        lambda p, r, b: torch.softmax(r / b, -1),
    ),
    _Mistake(
        "wrong_sign",
        "Sign flipped: exp(-r / beta) moves probability towards the LOW-reward "
        "responses. Use exp(+r / beta).",
        lambda p, r, b: _normalise(p * torch.exp(-r / b)),
    ),
    _Mistake(
        "wrong_normaliser",
        "Wrong normaliser: you divide by sum_y exp(r(y)/beta), so the result does not "
        "sum to 1. Z must be weighted "
        "by the reference: Z = sum_y pi_ref(y) exp(r(y)/beta).",
        lambda p, r, b: p * torch.exp(r / b) / torch.exp(r / b).sum(),
    ),
    _Mistake(
        "log_space_pi_ref",
        "In log space you add pi_ref itself; add its LOG: softmax(log(pi_ref) + r / "
        "beta).",
        lambda p, r, b: torch.softmax(p + r / b, -1),
    ),
]


def _bandit_overflow(fn: Callable) -> _Outcome:
    case = _Case(
        "small beta",
        (
            torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64),
            torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64),
            0.001,
        ),
    )
    got, problem = _call(fn, case, _BANDIT_NAMES)
    if problem is not None:
        return _Outcome(
            False,
            ["Your function works for moderate beta but fails for beta = 0.001:"]
            + problem.lines,
            problem.mistake,
        )
    assert got is not None  # _call returns an answer or a problem
    want = optimal_policy(*case.args)
    if _close(got, want):
        return _Outcome(True, [])
    if not _finite(got):
        return _Outcome(
            False,
            [
                "Overflow for small beta: with beta = 0.001 and rewards up to 3, "
                "exp(r / beta) = exp(3000) is inf, and "
                "inf / inf is nan. Work in log space: log pi_ref + r / beta, then "
                "torch.softmax (or subtract "
                "torch.logsumexp before exp). The answer here is almost all mass on "
                "the best response.",
                f"Input: {_fmt_args(_BANDIT_NAMES, case.args)}: expected "
                f"{_fmt(want)}, got {_fmt(got)}.",
            ],
            "overflow",
        )
    return _Outcome(
        False,
        [
            "Your function is right for moderate beta but wrong for beta = 0.001: "
            f"expected {_fmt(want)}, got {_fmt(got)}. "
            "As beta -> 0 all the probability goes to the highest-reward response.",
        ],
        "small_beta",
    )


def _bandit_cases(gen: torch.Generator) -> list[_Case]:
    f64 = torch.float64
    cases = [
        _Case(
            "a 3-response bandit (beta = 1)",
            (
                torch.tensor([0.5, 0.3, 0.2], dtype=f64),
                torch.tensor([1.0, 0.0, 2.0], dtype=f64),
                1.0,
            ),
            True,
        )
    ]
    for K, beta in ((5, 0.5), (6, 2.0)):
        pi_ref = _normalise(torch.rand(K, generator=gen, dtype=f64) + 0.05)
        cases.append(
            _Case(
                f"a random {K}-response bandit (beta = {beta})",
                (pi_ref, torch.randn(K, generator=gen, dtype=f64), beta),
            )
        )
    return cases


def check_bandit_optimum(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pi_ref, rewards, beta) = pi_ref * exp(rewards / beta) / Z."""
    check = _Check(
        "check_bandit_optimum",
        names=_BANDIT_NAMES,
        reference=optimal_policy,
        cases=_bandit_cases(_generator(5)),
        mistakes=_BANDIT_MISTAKES,
        expected_shape="one probability per response, the shape of pi_ref (K,)",
        post_checks=[_bandit_overflow],
        hints=lambda g, w: [
            "pi*(y) = pi_ref(y) exp(r(y) / beta) / Z with Z = sum_y pi_ref(y) "
            "exp(r(y) / beta); "
            "the result must be positive and sum to 1."
        ],
    )
    return _run_check(check, fn, quiet=quiet)

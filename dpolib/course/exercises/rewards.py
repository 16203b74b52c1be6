"""Checkers for the implicit reward and for the weight it gives each pair in DPO's
gradient.

The implicit reward r_hat = beta * (log pi - log pi_ref) is one number per sequence; the
gradient weight sigma(r_hat(y_l) - r_hat(y_w)) is one number per pair. These checkers
compare values and shapes only; unlike the loss and log-prob checkers they have no
gradient check.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ...losses import compute_implicit_reward, dpo_gradient_weight
from ._core import (
    CheckResult,
    _Case,
    _Check,
    _generator,
    _Mistake,
    _rand_logps,
    _run_check,
)

# --------------------------------------------------------------------------------------
# Implicit reward
# --------------------------------------------------------------------------------------
_REWARD_NAMES = ("policy_logps", "reference_logps", "beta")

_REWARD_MISTAKES = [
    _Mistake(
        "no_beta",
        "beta is missing: the implicit reward is beta * (log pi - log pi_ref), not "
        "the bare log-ratio.",
        lambda p, r, b: p - r,
    ),
    _Mistake(
        "wrong_sign",
        "Sign flipped: you compute beta * (log pi_ref - log pi). The reward is "
        "positive when the POLICY gives "
        "the completion more probability than the reference: beta * (policy_logps - "
        "reference_logps).",
        lambda p, r, b: b * (r - p),
    ),
    _Mistake(
        "ratio",
        "Ratio instead of difference: you divide the log-probs. A log-ratio is a "
        "DIFFERENCE of logs, "
        "log(pi / pi_ref) = log pi - log pi_ref: use beta * (policy_logps - "
        "reference_logps).",
        lambda p, r, b: b * p / r,
    ),
    _Mistake(
        "ratio",
        "Ratio instead of difference: you divide the log-probs (and beta is missing "
        "too). A log-ratio is a "
        "DIFFERENCE of logs: beta * (policy_logps - reference_logps).",
        lambda p, r, b: p / r,
    ),
    _Mistake(
        "ratio",
        "You use the probability ratio pi / pi_ref = exp(log pi - log pi_ref); the "
        "implicit reward uses its LOG: "
        "beta * (policy_logps - reference_logps), no exp.",
        lambda p, r, b: b * torch.exp(p - r),
    ),
    _Mistake(
        "beta_divides",
        "You divide by beta; the implicit reward MULTIPLIES the log-ratio by beta.",
        lambda p, r, b: (p - r) / b,
    ),
    _Mistake(
        "wrong_shape",
        "Wrong shape: you return one number for the whole batch (a mean). The "
        "implicit reward is one number "
        "PER SEQUENCE: keep the shape of the inputs, (B,), with no .mean() or .sum().",
        lambda p, r, b: (b * (p - r)).mean(),
    ),
    _Mistake(
        "wrong_shape",
        "Wrong shape: you return one number for the whole batch (a sum). The implicit "
        "reward is one number "
        "PER SEQUENCE: keep the shape of the inputs, (B,), with no .mean() or .sum().",
        lambda p, r, b: (b * (p - r)).sum(),
    ),
]


def _reward_cases(gen: torch.Generator) -> list[_Case]:
    cases = [
        _Case(
            "the chosen completions of the worked example (beta = 0.1)",
            (
                torch.tensor([-50.0, -45.0, -55.0, -48.0]),
                torch.tensor([-51.0, -46.0, -56.0, -49.0]),
                0.1,
            ),
            True,
        ),
        _Case(
            "the rejected completions of the worked example (beta = 0.1)",
            (
                torch.tensor([-52.0, -48.0, -58.0, -46.0]),
                torch.tensor([-51.0, -46.0, -56.0, -49.0]),
                0.1,
            ),
            True,
        ),
    ]
    for beta in (0.5, 2.0):
        p = _rand_logps(gen, 7)
        cases.append(
            _Case(
                f"a random batch of 7 sequences (beta = {beta})",
                (p, p + 3 * torch.randn(7, generator=gen), beta),
            )
        )
    return cases


def check_implicit_reward(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(policy_logps, reference_logps, beta) = beta * (policy - ref)."""
    check = _Check(
        "check_implicit_reward",
        names=_REWARD_NAMES,
        reference=compute_implicit_reward,
        cases=_reward_cases(_generator(2)),
        mistakes=_REWARD_MISTAKES,
        expected_shape="one reward per sequence, the shape of the inputs (B,)",
    )
    return _run_check(check, fn, quiet=quiet)


# --------------------------------------------------------------------------------------
# DPO gradient weight
# --------------------------------------------------------------------------------------
_WEIGHT_NAMES = ("chosen_rewards", "rejected_rewards")

_WEIGHT_MISTAKES = [
    _Mistake(
        "wrong_sign",
        "Sign flipped: you compute sigma(r_w - r_l). The weight must be LARGE when "
        "the implicit reward orders the "
        "pair WRONGLY (rejected above chosen): sigma(r_hat(y_l) - r_hat(y_w)) = "
        "sigmoid(rejected_rewards - chosen_rewards).",
        lambda w, lo: torch.sigmoid(w - lo),
    ),
    _Mistake(
        "no_sigmoid",
        "The sigmoid is missing: you return the reward difference itself. The weight "
        "is "
        "sigma(r_l - r_w), a number between 0 and 1: torch.sigmoid(rejected_rewards - "
        "chosen_rewards).",
        lambda w, lo: lo - w,
    ),
    _Mistake(
        "no_sigmoid",
        "The sigmoid is missing (and the sign is flipped): you return r_w - r_l. The "
        "weight is "
        "sigma(r_l - r_w), a number between 0 and 1: torch.sigmoid(rejected_rewards - "
        "chosen_rewards).",
        lambda w, lo: w - lo,
    ),
    _Mistake(
        "log_sigmoid",
        "You take log sigma(...); the weight is sigma(...) itself, a number between 0 "
        "and 1. (log sigma is in the "
        "loss; its derivative gives the weight.)",
        lambda w, lo: F.logsigmoid(lo - w),
    ),
    _Mistake(
        "sigmoid_difference",
        "You subtract two sigmoids, sigma(r_l) - sigma(r_w). The weight is the "
        "sigmoid OF the difference: "
        "sigma(r_l - r_w).",
        lambda w, lo: torch.sigmoid(lo) - torch.sigmoid(w),
    ),
    _Mistake(
        "wrong_shape",
        "Wrong shape: you return one number for the batch (a mean). The weight is one "
        "number PER PAIR: keep the "
        "shape (B,), no .mean().",
        lambda w, lo: torch.sigmoid(lo - w).mean(),
    ),
]


def _weight_cases(gen: torch.Generator) -> list[_Case]:
    return [
        _Case(
            "the rewards of the worked example",
            (torch.tensor([0.1, 0.1, 0.1, 0.1]), torch.tensor([-0.1, -0.2, -0.2, 0.3])),
            True,
        ),
        _Case(
            "random rewards for 6 pairs",
            (2 * torch.randn(6, generator=gen), 2 * torch.randn(6, generator=gen)),
        ),
        _Case(
            "random rewards for 5 pairs",
            (torch.randn(5, generator=gen), 3 * torch.randn(5, generator=gen)),
        ),
    ]


def check_gradient_weight(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(chosen_rewards, rejected_rewards) = sigma(r_l - r_w) per pair."""
    check = _Check(
        "check_gradient_weight",
        names=_WEIGHT_NAMES,
        reference=dpo_gradient_weight,
        cases=_weight_cases(_generator(4)),
        mistakes=_WEIGHT_MISTAKES,
        expected_shape="one weight per pair, shape (B,)",
        hints=lambda g, w: [
            "The weight is sigma(r_l - r_w): 0.5 when the two rewards are equal, near "
            "1 when the "
            "rejected completion has the higher reward."
        ],
    )
    return _run_check(check, fn, quiet=quiet)

"""Checker for PPO's clipped surrogate loss (chapter 9).

The student's fn(logps, old_logps, advantages, cliprange) returns the scalar loss
-mean min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = exp(logps - old_logps),
differentiable in logps; it is compared with `dpolib.rl_core.clipped_surrogate_loss`.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...rl_core import clipped_surrogate_loss
from ._core import (
    CheckResult,
    _Case,
    _Check,
    _generator,
    _grad_check,
    _Mistake,
    _run_check,
)

_CLIP_NAMES = ("logps", "old_logps", "advantages", "cliprange")


def _clip_reference(logps, old_logps, advantages, cliprange):
    return clipped_surrogate_loss(logps, old_logps, advantages, cliprange)


def _ratio(lp, old):
    return torch.exp(lp - old)


def _clip(lp, old, eps):
    return torch.clamp(_ratio(lp, old), 1 - eps, 1 + eps)


_CLIP_MISTAKES = [
    _Mistake(
        "no_clip",
        "The clipping is missing: you return -mean(rho * A), the plain "
        "importance-weighted policy "
        "gradient. PPO takes min(rho * A, clip(rho, 1 - eps, 1 + eps) * A) before the "
        "mean, so a "
        "ratio that has moved past the clip range stops earning credit.",
        lambda lp, old, a, eps: -(_ratio(lp, old) * a).mean(),
    ),
    _Mistake(
        "clip_only",
        "You keep only the clipped term, -mean(clip(rho) * A). PPO takes the MINIMUM "
        "of the clipped "
        "and the unclipped term: a pessimistic bound that still punishes a ratio that "
        "moved the wrong "
        "way.",
        lambda lp, old, a, eps: -(_clip(lp, old, eps) * a).mean(),
    ),
    _Mistake(
        "max_not_min",
        "You take the maximum of the two terms; PPO takes the minimum "
        "(torch.minimum), the "
        "pessimistic one, so the clip can only remove credit, never add it.",
        lambda lp, old, a, eps: (
            -torch.maximum(_ratio(lp, old) * a, _clip(lp, old, eps) * a).mean()
        ),
    ),
    _Mistake(
        "wrong_sign",
        "Wrong sign: you return the objective mean min(...) itself. The LOSS to "
        "minimise is its "
        "negative, -mean min(rho A, clip(rho) A); as written, gradient descent would "
        "push "
        "high-advantage samples down.",
        lambda lp, old, a, eps: torch.minimum(
            _ratio(lp, old) * a, _clip(lp, old, eps) * a
        ).mean(),
    ),
    _Mistake(
        "log_ratio",
        "Your ratio is the log-ratio logps - old_logps. The ratio is pi_theta / "
        "pi_old = "
        "exp(logps - old_logps): add torch.exp.",
        lambda lp, old, a, eps: (
            -torch.minimum(
                (lp - old) * a, torch.clamp(lp - old, 1 - eps, 1 + eps) * a
            ).mean()
        ),
    ),
    _Mistake(
        "ratio_of_logs",
        "You divide the log-probs, logps / old_logps. A ratio of probabilities is the "
        "exp of a "
        "DIFFERENCE of log-probs: rho = exp(logps - old_logps).",
        lambda lp, old, a, eps: (
            -torch.minimum(
                lp / old * a, torch.clamp(lp / old, 1 - eps, 1 + eps) * a
            ).mean()
        ),
    ),
    _Mistake(
        "swapped_ratio",
        "Your ratio is upside down: exp(old_logps - logps). It is pi_theta / pi_old = "
        "exp(logps - old_logps), the new policy over the one that sampled.",
        lambda lp, old, a, eps: (
            -torch.minimum(_ratio(old, lp) * a, _clip(old, lp, eps) * a).mean()
        ),
    ),
    _Mistake(
        "clip_advantage",
        "You clip the advantage instead of the ratio. The clip bounds how far the "
        "policy may move, "
        "rho in [1 - eps, 1 + eps]; the advantage is used as it is.",
        lambda lp, old, a, eps: (
            -torch.minimum(
                _ratio(lp, old) * a, _ratio(lp, old) * torch.clamp(a, 1 - eps, 1 + eps)
            ).mean()
        ),
    ),
    _Mistake(
        "sum_not_mean",
        "Sum instead of mean: your loss grows with the batch size. Average over the "
        "samples with "
        ".mean().",
        lambda lp, old, a, eps: (
            -torch.minimum(_ratio(lp, old) * a, _clip(lp, old, eps) * a).sum()
        ),
    ),
]


def _clip_cases(gen: torch.Generator) -> list[_Case]:
    cases = [
        _Case(
            "the worked example (4 samples, cliprange 0.2)",
            (
                torch.tensor([-1.0, -0.5, -2.0, -0.1]),
                torch.tensor([-1.2, -1.0, -1.5, -0.1]),
                torch.tensor([1.0, -2.0, 0.5, 3.0]),
                0.2,
            ),
            True,
        )
    ]
    for eps in (0.1, 0.3):
        old = -(0.5 + 3 * torch.rand(8, generator=gen))
        cases.append(
            _Case(
                f"a random batch of 8 samples (cliprange {eps})",
                (
                    old + 0.5 * torch.randn(8, generator=gen),
                    old,
                    torch.randn(8, generator=gen),
                    eps,
                ),
            )
        )
    return cases


def check_clipped_surrogate(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(logps, old_logps, advantages, cliprange) = PPO's clipped loss."""
    cases = _clip_cases(_generator(13))
    check = _Check(
        "check_clipped_surrogate",
        names=_CLIP_NAMES,
        reference=_clip_reference,
        cases=cases,
        mistakes=_CLIP_MISTAKES,
        expected_shape="a single number (shape ()), the mean loss over the samples",
        post_checks=[_grad_check(_clip_reference, cases[1], (0,), _CLIP_NAMES)],
        hints=lambda g, w: [
            "Compute rho = exp(logps - old_logps), then the two terms rho * A and "
            "clip(rho, 1 - cliprange, 1 + cliprange) * A, their elementwise minimum, "
            "and minus "
            "its mean. At logps == old_logps the loss is -mean(A)."
        ],
        reduce_wrong_shape=lambda g: g.mean(),
        reduce_note="You return one loss per sample, not their mean: add .mean().",
    )
    return _run_check(check, fn, quiet=quiet)

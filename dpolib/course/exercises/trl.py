"""Checker for TRL's IPO loss, which divides each log-ratio by its completion's length.

fn(pc, pr, rc, rr, chosen_tokens, rejected_tokens, beta) = mean over pairs of
(d - 1/(2 beta))^2 with d = (pc - rc) / n_w - (pr - rr) / n_l: the summed
log-probs of the chapter, their completion token counts (end token included), beta.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...losses import dpo_loss
from ._core import (
    CheckResult,
    _Case,
    _Check,
    _fmt,
    _generator,
    _grad_check,
    _Mistake,
    _rand_logps,
    _run_check,
)

_NAMES = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
    "chosen_tokens",
    "rejected_tokens",
    "beta",
)


def _trl_ipo_reference(pc, pr, rc, rr, nc, nr, beta):
    # dpolib's IPO on per-token means is TRL's IPO
    return dpo_loss(pc / nc, pr / nr, rc / nc, rr / nr, beta, loss_type="ipo").loss


def _d(pc, pr, rc, rr, nc, nr):
    return (pc - rc) / nc - (pr - rr) / nr


def _cases(gen: torch.Generator) -> list[_Case]:
    """Pizza-like pairs (6 tokens against 4-11), then random ones at three betas."""
    cases = [
        _Case(
            "three pizza pairs (beta = 0.5)",
            (
                torch.tensor([-0.5, -0.4, -0.6]),
                torch.tensor([-9.0, -12.0, -7.0]),
                torch.tensor([-2.0, -2.0, -2.0]),
                torch.tensor([-2.5, -3.0, -1.5]),
                torch.tensor([6.0, 6.0, 6.0]),
                torch.tensor([5.0, 11.0, 4.0]),
                0.5,
            ),
            True,
        )
    ]
    for beta in (0.1, 0.5, 2.0):
        pc, pr = _rand_logps(gen, 6), _rand_logps(gen, 6)
        rc = pc + 3 * torch.randn(6, generator=gen)
        rr = pr + 3 * torch.randn(6, generator=gen)
        nc = torch.randint(3, 40, (6,), generator=gen).float()
        nr = torch.randint(3, 40, (6,), generator=gen).float()
        cases.append(
            _Case(
                f"a random batch of 6 pairs (beta = {beta})",
                (pc, pr, rc, rr, nc, nr, beta),
            )
        )
    return cases


_MISTAKES = [
    _Mistake(
        "per_pair_vector",
        "You return one loss per pair (a vector) instead of the batch loss, a single "
        "number: average the per-pair losses with .mean().",
        lambda pc, pr, rc, rr, nc, nr, b: (
            (_d(pc, pr, rc, rr, nc, nr) - 1 / (2 * b)) ** 2
        ),
    ),
    _Mistake(
        "not_normalised",
        "This is dpolib's (and the IPO paper's) loss on SUMMED log-probs. TRL divides "
        "each log-ratio by its completion's token count first: "
        "d = (pc - rc) / chosen_tokens - (pr - rr) / rejected_tokens.",
        lambda pc, pr, rc, rr, nc, nr, b: (
            (((pc - rc) - (pr - rr)) - 1 / (2 * b)) ** 2
        ).mean(),
    ),
    _Mistake(
        "margin_normalised",
        "You divide the whole margin by one length (the sum or the mean of the two "
        "counts). TRL divides each log-ratio by ITS OWN completion's count, so a long "
        "rejected answer counts per token like a short chosen one.",
        lambda pc, pr, rc, rr, nc, nr, b: (
            (((pc - rc) - (pr - rr)) / ((nc + nr) / 2) - 1 / (2 * b)) ** 2
        ).mean(),
    ),
    _Mistake(
        "swapped_counts",
        "The token counts are swapped: divide the chosen log-ratio by chosen_tokens "
        "and the rejected one by rejected_tokens.",
        lambda pc, pr, rc, rr, nc, nr, b: (
            ((pc - rc) / nr - (pr - rr) / nc - 1 / (2 * b)) ** 2
        ).mean(),
    ),
    _Mistake(
        "policy_only_normalised",
        "Only the policy's log-probs are divided by the counts: the reference's must "
        "be too (divide the log-RATIO, pc - rc, not pc alone).",
        lambda pc, pr, rc, rr, nc, nr, b: (
            ((pc / nc - rc) - (pr / nr - rr) - 1 / (2 * b)) ** 2
        ).mean(),
    ),
    _Mistake(
        "beta_placement",
        "beta is in the wrong place: IPO's target margin is 1/(2 beta), and d itself "
        "is not multiplied by beta.",
        lambda pc, pr, rc, rr, nc, nr, b: (
            (b * _d(pc, pr, rc, rr, nc, nr) - 0.5) ** 2
        ).mean(),
    ),
    _Mistake(
        "sum_not_mean",
        "Sum instead of mean over the batch: TRL averages the per-pair losses.",
        lambda pc, pr, rc, rr, nc, nr, b: (
            (_d(pc, pr, rc, rr, nc, nr) - 1 / (2 * b)) ** 2
        ).sum(),
    ),
]


def _hints(gots: list[torch.Tensor], wants: list[torch.Tensor]) -> list[str]:
    return [
        f"On the three pizza pairs the loss is {float(wants[0]):.4f}; yours is "
        f"{_fmt(gots[0])}. Compute the per-token log-ratio of each completion first."
    ]


def check_trl_ipo_loss(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pc, pr, rc, rr, n_w, n_l, beta): TRL's per-token IPO, batch mean."""
    cases = _cases(_generator(40))
    check = _Check(
        "check_trl_ipo_loss",
        names=_NAMES,
        reference=_trl_ipo_reference,
        cases=cases,
        mistakes=_MISTAKES,
        expected_shape="a single number (shape ()), the mean loss over the pairs",
        post_checks=[_grad_check(_trl_ipo_reference, cases[1], (0, 1), _NAMES)],
        hints=_hints,
        reduce_wrong_shape=lambda g: g.mean() if g.dim() == 1 else g.sum(),
        reduce_note="You return one loss per pair instead of their mean: add .mean().",
    )
    return _run_check(check, fn, quiet=quiet)


TRL_MISTAKE_CODES = tuple(
    dict.fromkeys([m.code for m in _MISTAKES] + ["no_grad", "partial_grad"])
)

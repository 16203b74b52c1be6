"""Checkers for the practitioners' losses: RPO (chapter 11) and SimPO (chapter 12).

check_rpo_loss: fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
reference_rejected_logps, chosen_lengths, beta, alpha) returns the batch mean of
-log sigma(beta d) + alpha * (-lp_w / |y_w|).
check_simpo_loss: fn(policy_chosen_logps, policy_rejected_logps, chosen_lengths,
rejected_lengths, beta, gamma) returns the batch mean of
-log sigma(beta * (lp_w / |y_w| - lp_l / |y_l|) - gamma), reference-free.
Both must be differentiable scalars.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ...losses import practice_loss
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

_SIMPO_NAMES = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "chosen_lengths",
    "rejected_lengths",
    "beta",
    "gamma",
)
_SEED_OFFSET = 11  # its own random inputs, apart from the other checkers'


def _simpo_reference(pc, pr, lc, lr, beta, gamma):
    return practice_loss(
        pc,
        pr,
        None,
        None,
        beta,
        "simpo",
        chosen_lengths=lc,
        rejected_lengths=lr,
        simpo_gamma=gamma,
    ).loss


def _simpo_cases(gen: torch.Generator) -> list[_Case]:
    """A small hand-made batch, equal mean log-probs (loss = -log sigma(-gamma)), random
    batches at three (beta, gamma)."""
    cases = [
        _Case(
            "a hand-made batch of 3 pairs (beta = 2, gamma = 1)",
            (
                torch.tensor([-3.0, -6.0, -2.0]),
                torch.tensor([-8.0, -4.0, -9.0]),
                torch.tensor([6.0, 4.0, 5.0]),
                torch.tensor([9.0, 5.0, 6.0]),
                2.0,
                1.0,
            ),
            True,
        ),
        _Case(
            "a batch where chosen and rejected have the same mean log-prob "
            "(beta = 2, gamma = 0.5)",
            (
                torch.tensor([-6.0, -10.0]),
                torch.tensor([-9.0, -4.0]),
                torch.tensor([4.0, 5.0]),
                torch.tensor([6.0, 2.0]),
                2.0,
                0.5,
            ),
        ),
    ]
    for beta, gamma in ((1.0, 0.3), (2.5, 1.4), (10.0, 2.0)):
        lc = torch.randint(2, 12, (6,), generator=gen).float()
        lr = torch.randint(2, 12, (6,), generator=gen).float()
        pc, pr = _rand_logps(gen, 6) / 5, _rand_logps(gen, 6) / 5
        cases.append(
            _Case(
                f"a random batch of 6 pairs (beta = {beta}, gamma = {gamma})",
                (pc, pr, lc, lr, beta, gamma),
            )
        )
    return cases


def _avg(pc, pr, lc, lr):
    return pc / lc - pr / lr


_SIMPO_MISTAKES = [
    _Mistake(
        "per_pair_vector",
        "You return one loss per pair (a vector) instead of the batch loss, a single "
        "number: average the per-pair losses with .mean().",
        lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * _avg(pc, pr, lc, lr) - g),
    ),
    _Mistake(
        "not_normalised",
        "The log-probs are not divided by the lengths: SimPO compares MEAN log-probs "
        "per token, lp / |y|, so that a longer answer is not favoured (or punished) "
        "for its length alone.",
        lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * (pc - pr) - g).mean(),
    ),
    _Mistake(
        "lengths_swapped",
        "The lengths are swapped: divide the chosen log-prob by the CHOSEN length and "
        "the rejected one by the rejected length.",
        lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * (pc / lr - pr / lc) - g).mean(),
    ),
    _Mistake(
        "gamma_inside_beta",
        "gamma is inside the bracket that beta multiplies: you compute "
        "beta * (difference - gamma). SimPO subtracts gamma AFTER the scaling: "
        "beta * difference - gamma (TRL: beta * (difference - gamma / beta)).",
        lambda pc, pr, lc, lr, b, g: (
            -F.logsigmoid(b * (_avg(pc, pr, lc, lr) - g)).mean()
        ),
    ),
    _Mistake(
        "gamma_sign",
        "gamma has the wrong sign: it is a target margin, so it is SUBTRACTED, "
        "-log sigma(beta * difference - gamma); adding it makes the loss too easy.",
        lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * _avg(pc, pr, lc, lr) + g).mean(),
    ),
    _Mistake(
        "no_gamma",
        "gamma is missing: SimPO asks the chosen answer to win by a target margin, "
        "-log sigma(beta * difference - gamma).",
        lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * _avg(pc, pr, lc, lr)).mean(),
    ),
    _Mistake(
        "swapped",
        "Chosen and rejected are swapped (or the difference has the wrong sign): your "
        "loss rewards the rejected answer. The difference is "
        "chosen_logps / chosen_lengths - rejected_logps / rejected_lengths.",
        lambda pc, pr, lc, lr, b, g: (
            -F.logsigmoid(-b * _avg(pc, pr, lc, lr) - g).mean()
        ),
    ),
    _Mistake(
        "wrong_sign",
        "Wrong sign: you return log sigma(...) itself, not its negative; minimising it "
        "would push the chosen answer DOWN.",
        lambda pc, pr, lc, lr, b, g: F.logsigmoid(b * _avg(pc, pr, lc, lr) - g).mean(),
    ),
    _Mistake(
        "no_beta",
        "beta is missing: SimPO scales the difference of mean log-probs by beta "
        "before subtracting gamma.",
        lambda pc, pr, lc, lr, b, g: -F.logsigmoid(_avg(pc, pr, lc, lr) - g).mean(),
    ),
    _Mistake(
        "sum_not_mean",
        "Sum instead of mean over the batch: your loss grows with the number of pairs. "
        "Use .mean().",
        lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * _avg(pc, pr, lc, lr) - g).sum(),
    ),
    _Mistake(
        "missing_log",
        "The log is missing: you use sigma(...) where the loss has -log sigma(...). "
        "Use torch.nn.functional.logsigmoid.",
        lambda pc, pr, lc, lr, b, g: torch.sigmoid(
            -(b * _avg(pc, pr, lc, lr) - g)
        ).mean(),
    ),
]


def _simpo_hints(gots: list[torch.Tensor], wants: list[torch.Tensor]) -> list[str]:
    return [
        "A check you can do by hand: when the two mean log-probs are equal the "
        "difference is 0 and the loss is -log sigma(-gamma) = log(1 + e^gamma), "
        f"{float(wants[1]):.4f} at gamma = 0.5. Yours is {_fmt(gots[1])} there."
    ]


def check_simpo_loss(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pc, pr, lc, lr, beta, gamma): the batch-mean SimPO loss, with grads."""
    cases = _simpo_cases(_generator(_SEED_OFFSET))
    check = _Check(
        "check_simpo_loss",
        names=_SIMPO_NAMES,
        reference=_simpo_reference,
        cases=cases,
        mistakes=_SIMPO_MISTAKES,
        expected_shape="a single number (shape ()), the mean loss over the pairs",
        post_checks=[_grad_check(_simpo_reference, cases[2], (0, 1), _SIMPO_NAMES)],
        hints=_simpo_hints,
        reduce_wrong_shape=lambda g: g.mean() if g.dim() == 1 else g.sum(),
        reduce_note="You return one loss per pair instead of their mean: add .mean().",
    )
    return _run_check(check, fn, quiet=quiet)


# --------------------------------------------------------------------------------------
# RPO: DPO plus an NLL term on the chosen answer (chapter 11)
# --------------------------------------------------------------------------------------
_RPO_NAMES = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
    "chosen_lengths",
    "beta",
    "alpha",
)


def _rpo_reference(pc, pr, rc, rr, lc, beta, alpha):
    return practice_loss(
        pc, pr, rc, rr, beta, "rpo", chosen_lengths=lc, rpo_alpha=alpha
    ).loss


def _rpo_cases(gen: torch.Generator) -> list[_Case]:
    """A hand-made batch, policy = reference (log 2 + alpha * NLL), random batches."""
    cases = [
        _Case(
            "a hand-made batch of 3 pairs (beta = 0.5, alpha = 1)",
            (
                torch.tensor([-3.0, -6.0, -2.0]),
                torch.tensor([-8.0, -4.0, -9.0]),
                torch.tensor([-4.0, -5.0, -2.5]),
                torch.tensor([-7.0, -5.0, -6.0]),
                torch.tensor([6.0, 4.0, 5.0]),
                0.5,
                1.0,
            ),
            True,
        )
    ]
    pc, pr = _rand_logps(gen, 4) / 5, _rand_logps(gen, 4) / 5
    lc = torch.randint(2, 12, (4,), generator=gen).float()
    cases.append(
        _Case(
            "a batch where the policy equals the reference (beta = 0.5, alpha = 0.5)",
            (pc, pr, pc.clone(), pr.clone(), lc, 0.5, 0.5),
        )
    )
    for beta, alpha in ((0.1, 1.0), (0.5, 0.2), (2.0, 3.0)):
        pc, pr = _rand_logps(gen, 6) / 5, _rand_logps(gen, 6) / 5
        rc = pc + torch.randn(6, generator=gen)
        rr = pr + torch.randn(6, generator=gen)
        lc = torch.randint(2, 12, (6,), generator=gen).float()
        cases.append(
            _Case(
                f"a random batch of 6 pairs (beta = {beta}, alpha = {alpha})",
                (pc, pr, rc, rr, lc, beta, alpha),
            )
        )
    return cases


def _dpo_part(pc, pr, rc, rr, b):
    return -F.logsigmoid(b * ((pc - rc) - (pr - rr)))


_RPO_MISTAKES = [
    _Mistake(
        "per_pair_vector",
        "You return one loss per pair (a vector) instead of the batch loss, a single "
        "number: average the per-pair losses with .mean().",
        lambda pc, pr, rc, rr, lc, b, a: _dpo_part(pc, pr, rc, rr, b) - a * pc / lc,
    ),
    _Mistake(
        "nll_not_normalised",
        "The NLL term is not divided by the chosen length: RPO adds the mean NLL PER "
        "TOKEN, -log pi(y_w) / |y_w|, so that alpha means the same for short and long "
        "answers.",
        lambda pc, pr, rc, rr, lc, b, a: (_dpo_part(pc, pr, rc, rr, b) - a * pc).mean(),
    ),
    _Mistake(
        "nll_sign",
        "The NLL term has the wrong sign: you add +log pi(y_w), which rewards making "
        "the chosen answer LESS likely. The NLL is -log pi(y_w) / |y_w|.",
        lambda pc, pr, rc, rr, lc, b, a: (
            _dpo_part(pc, pr, rc, rr, b) + a * pc / lc
        ).mean(),
    ),
    _Mistake(
        "nll_on_ratio",
        "The NLL term uses the log-RATIO of the chosen answer; it is the policy's "
        "own negative log-likelihood, -policy_chosen_logps / chosen_lengths "
        "(no reference).",
        lambda pc, pr, rc, rr, lc, b, a: (
            _dpo_part(pc, pr, rc, rr, b) - a * (pc - rc) / lc
        ).mean(),
    ),
    _Mistake(
        "nll_on_rejected",
        "The NLL term is on the rejected answer; RPO keeps the CHOSEN answer likely: "
        "-policy_chosen_logps / chosen_lengths.",
        lambda pc, pr, rc, rr, lc, b, a: (
            _dpo_part(pc, pr, rc, rr, b) - a * pr / lc
        ).mean(),
    ),
    _Mistake(
        "alpha_on_dpo",
        "alpha multiplies the DPO term; it weights the NLL term only: "
        "DPO + alpha * NLL.",
        lambda pc, pr, rc, rr, lc, b, a: (
            a * _dpo_part(pc, pr, rc, rr, b) - pc / lc
        ).mean(),
    ),
    _Mistake(
        "no_nll",
        "The NLL term is missing: this is plain DPO. RPO adds "
        "alpha * (-policy_chosen_logps / chosen_lengths).",
        lambda pc, pr, rc, rr, lc, b, a: _dpo_part(pc, pr, rc, rr, b).mean(),
    ),
    _Mistake(
        "beta_policy_only",
        "beta multiplies the policy term only in the DPO part; it must multiply the "
        "whole difference of log-ratios, beta * [(pc - rc) - (pr - rr)].",
        lambda pc, pr, rc, rr, lc, b, a: (
            -F.logsigmoid(b * (pc - pr) - (rc - rr)) - a * pc / lc
        ).mean(),
    ),
    _Mistake(
        "sum_not_mean",
        "Sum instead of mean over the batch: your loss grows with the number of pairs. "
        "Use .mean().",
        lambda pc, pr, rc, rr, lc, b, a: (
            _dpo_part(pc, pr, rc, rr, b) - a * pc / lc
        ).sum(),
    ),
]


def _rpo_hints(gots: list[torch.Tensor], wants: list[torch.Tensor]) -> list[str]:
    return [
        "A check you can do by hand: when the policy equals the reference the DPO part "
        "is log 2, so the loss is log 2 + alpha * mean(-pc / lc), "
        f"{float(wants[1]):.4f} on the second input. Yours is {_fmt(gots[1])} there."
    ]


def check_rpo_loss(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pc, pr, rc, rr, lc, beta, alpha): DPO + alpha * NLL/token of chosen."""
    cases = _rpo_cases(_generator(_SEED_OFFSET + 1))
    check = _Check(
        "check_rpo_loss",
        names=_RPO_NAMES,
        reference=_rpo_reference,
        cases=cases,
        mistakes=_RPO_MISTAKES,
        expected_shape="a single number (shape ()), the mean loss over the pairs",
        post_checks=[_grad_check(_rpo_reference, cases[2], (0, 1), _RPO_NAMES)],
        hints=_rpo_hints,
        reduce_wrong_shape=lambda g: g.mean() if g.dim() == 1 else g.sum(),
        reduce_note="You return one loss per pair instead of their mean: add .mean().",
    )
    return _run_check(check, fn, quiet=quiet)

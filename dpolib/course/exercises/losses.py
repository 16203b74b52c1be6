"""Checkers for the two preference losses on a batch of pairs: DPO's and IPO's.

Both take the four summed log-probs of a batch of pairs and beta, (pc, pr, rc, rr,
beta), and return the batch mean, a differentiable scalar; they share their inputs,
their argument names and their shape and gradient checks.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ...losses import dpo_loss
from ._core import (
    CheckResult,
    _call,
    _Case,
    _Check,
    _finite,
    _fmt,
    _generator,
    _grad_check,
    _Mistake,
    _Outcome,
    _rand_logps,
    _run_check,
)

# --------------------------------------------------------------------------------------
# What the two loss checkers share
# --------------------------------------------------------------------------------------
_PAIR_NAMES = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
    "beta",
)


def _dpo_reference(pc, pr, rc, rr, beta):
    return dpo_loss(pc, pr, rc, rr, beta).loss


def _ipo_reference(pc, pr, rc, rr, beta):
    return dpo_loss(pc, pr, rc, rr, beta, loss_type="ipo").loss


def _pair_cases(gen: torch.Generator) -> list[_Case]:
    """The worked example of the loss chapter, policy = reference, and random batches
    at three betas.
    """
    cases = [
        _Case(
            "the worked example (beta = 0.1, 4 pairs)",
            (
                torch.tensor([-50.0, -45.0, -55.0, -48.0]),
                torch.tensor([-52.0, -48.0, -58.0, -46.0]),
                torch.tensor([-51.0, -46.0, -56.0, -49.0]),
                torch.tensor([-51.0, -46.0, -56.0, -49.0]),
                0.1,
            ),
            True,
        ),
    ]
    pc, pr = _rand_logps(gen, 5), _rand_logps(gen, 5)
    cases.append(
        _Case(
            "a batch where the policy equals the reference (beta = 0.5)",
            (pc, pr, pc.clone(), pr.clone(), 0.5),
        )
    )
    for beta in (0.1, 0.5, 2.0):
        pc, pr = _rand_logps(gen, 6), _rand_logps(gen, 6)
        rc = pc + 3 * torch.randn(6, generator=gen)
        rr = pr + 3 * torch.randn(6, generator=gen)
        cases.append(
            _Case(f"a random batch of 6 pairs (beta = {beta})", (pc, pr, rc, rr, beta))
        )
    return cases


def _margin(pc, pr, rc, rr):
    return (pc - rc) - (pr - rr)


_PER_PAIR_MESSAGE = (
    "You return one loss per pair (a vector) instead of the batch loss, a single "
    "number: "
    "average the per-pair losses with .mean()."
)


def _pair_loss_check(
    name: str,
    seed_offset: int,
    reference: Callable[..., torch.Tensor],
    mistakes: list[_Mistake],
    hints: Callable[[list[torch.Tensor], list[torch.Tensor]], list[str]],
    extra_post_checks: Sequence[Callable[[Callable], _Outcome]] = (),
) -> _Check:
    """A batch-mean loss of pairs: the pair cases, a gradient check on a random batch,
    and the per-pair fix.
    """
    cases = _pair_cases(_generator(seed_offset))
    return _Check(
        name,
        names=_PAIR_NAMES,
        reference=reference,
        cases=cases,
        mistakes=mistakes,
        expected_shape="a single number (shape ()), the mean loss over the pairs",
        post_checks=[
            _grad_check(reference, cases[2], (0, 1), _PAIR_NAMES),
            *extra_post_checks,
        ],
        hints=hints,
        reduce_wrong_shape=lambda g: g.mean() if g.dim() == 1 else g.sum(),
        reduce_note="You return one loss per pair instead of their mean, a single "
        "number: add .mean().",
    )


# --------------------------------------------------------------------------------------
# DPO loss
# --------------------------------------------------------------------------------------
_DPO_MISTAKES = [
    _Mistake(
        "per_pair_vector",
        _PER_PAIR_MESSAGE,
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * _margin(pc, pr, rc, rr)),
    ),
    _Mistake(
        "wrong_sign",
        "Wrong sign: you return the log-likelihood log sigma(...) itself, not its "
        "negative, so your loss is "
        "negative and minimising it would push the chosen completions DOWN. The loss "
        "is -log sigma(beta * margin).",
        lambda pc, pr, rc, rr, b: F.logsigmoid(b * _margin(pc, pr, rc, rr)).mean(),
    ),
    _Mistake(
        "swapped",
        "Chosen and rejected are swapped (or the sign inside the sigmoid is flipped): "
        "your loss rewards the "
        "rejected completion. The margin is (chosen log-ratio) - (rejected log-ratio), "
        "[(pc - rc) - (pr - rr)].",
        lambda pc, pr, rc, rr, b: -F.logsigmoid(-b * _margin(pc, pr, rc, rr)).mean(),
    ),
    _Mistake(
        "beta_policy_only",
        "beta multiplies the policy term only: you compute beta * (pc - pr) - (rc - "
        "rr), the bracket error of the "
        "source text's one-line loss. beta must multiply the WHOLE difference of "
        "log-ratios: "
        "beta * [(pc - rc) - (pr - rr)].",
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr) - (rc - rr)).mean(),
    ),
    _Mistake(
        "beta_reference_only",
        "beta multiplies the reference term only: you compute (pc - pr) - beta * (rc "
        "- rr). beta must multiply "
        "the WHOLE difference of log-ratios: beta * [(pc - rc) - (pr - rr)].",
        lambda pc, pr, rc, rr, b: -F.logsigmoid((pc - pr) - b * (rc - rr)).mean(),
    ),
    _Mistake(
        "no_reference",
        "The reference model is ignored: you use the policy log-probs alone. DPO "
        "compares log-RATIOS "
        "log pi(y|x) - log pi_ref(y|x); the reference is what keeps the policy on a "
        "leash.",
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean(),
    ),
    _Mistake(
        "reference_swapped",
        "The reference log-probs of chosen and rejected are swapped: each policy "
        "log-prob must be compared with "
        "the reference log-prob of the SAME completion, (pc - rc) for chosen and (pr "
        "- rr) for rejected.",
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rr) - (pr - rc))).mean(),
    ),
    _Mistake(
        "no_beta",
        "beta is missing: the margin must be multiplied by beta, -log sigma(beta * "
        "margin). Without it the loss "
        "ignores the strength of the KL leash.",
        lambda pc, pr, rc, rr, b: -F.logsigmoid(_margin(pc, pr, rc, rr)).mean(),
    ),
    _Mistake(
        "beta_divides",
        "You divide the margin by beta; DPO multiplies it: -log sigma(beta * margin).",
        lambda pc, pr, rc, rr, b: -F.logsigmoid(_margin(pc, pr, rc, rr) / b).mean(),
    ),
    _Mistake(
        "sum_not_mean",
        "Sum instead of mean over the batch: your loss grows with the number of "
        "pairs. Use .mean(), so the "
        "loss (and the learning rate that suits it) does not depend on the batch size.",
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * _margin(pc, pr, rc, rr)).sum(),
    ),
    _Mistake(
        "missing_log",
        "The log is missing: you use sigma(...) where the loss has log sigma(...). Use "
        "torch.nn.functional.logsigmoid. Check: when the policy equals the reference "
        "the loss must be "
        "log 2 = 0.6931.",
        lambda pc, pr, rc, rr, b: -torch.sigmoid(b * _margin(pc, pr, rc, rr)).mean(),
    ),
    _Mistake(
        "missing_log",
        "The log is missing: you use 1 - sigma(...) (or sigma(-...)) where the loss "
        "has -log sigma(...). Use "
        "torch.nn.functional.logsigmoid. Check: when the policy equals the reference "
        "the loss must be "
        "log 2 = 0.6931.",
        lambda pc, pr, rc, rr, b: torch.sigmoid(-b * _margin(pc, pr, rc, rr)).mean(),
    ),
    _Mistake(
        "ipo_not_dpo",
        "You computed the IPO loss (d - 1/(2 beta))^2, not the DPO loss -log "
        "sigma(beta * d).",
        lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) - 1 / (2 * b)) ** 2).mean(),
    ),
]


def _dpo_hints(gots: list[torch.Tensor], wants: list[torch.Tensor]) -> list[str]:
    at_start = gots[1]  # the case policy == reference
    if at_start.dim() == 0 and not math.isclose(
        float(at_start), math.log(2), rel_tol=1e-3
    ):
        return [
            "A check you can do by hand: when the policy equals the reference every "
            "log-ratio is 0, so the loss is "
            "-log sigma(0) = log 2 = 0.6931 for any beta. Yours is "
            f"{float(at_start):.4f} there."
        ]
    return [
        "Your loss is right when the policy equals the reference (log 2) but wrong "
        "otherwise: check how you combine "
        "the four log-probs, beta * [(pc - rc) - (pr - rr)], and that you use "
        "-logsigmoid and .mean()."
    ]


def _dpo_stability(fn: Callable) -> _Outcome:
    # beta * margin = +300 and -300: log(sigmoid(-300)) is log(0) in floating point,
    # logsigmoid is exact.
    case = _Case(
        "",
        (
            torch.tensor([0.0, -3000.0]),
            torch.tensor([-3000.0, 0.0]),
            torch.tensor([0.0, 0.0]),
            torch.tensor([0.0, 0.0]),
            0.1,
        ),
    )
    got, problem = _call(fn, case, _PAIR_NAMES)
    if problem is not None or got is None or _finite(got):
        return _Outcome(True, [])
    return _Outcome(
        True,
        [
            "A remark: for a very large margin (beta * margin = -300) your loss is "
            "inf or nan, because "
            "log(sigmoid(x)) rounds sigmoid(x) to 0 first. "
            "torch.nn.functional.logsigmoid(x) computes the same thing "
            "without that problem.",
        ],
        note_only=True,
    )


def check_dpo_loss(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pc, pr, rc, rr, beta) = -mean log sigma(beta * [(pc-rc)-(pr-rr)])."""
    check = _pair_loss_check(
        "check_dpo_loss", 0, _dpo_reference, _DPO_MISTAKES, _dpo_hints, [_dpo_stability]
    )
    return _run_check(check, fn, quiet=quiet)


# --------------------------------------------------------------------------------------
# IPO loss
# --------------------------------------------------------------------------------------
_IPO_MISTAKES = [
    _Mistake(
        "per_pair_vector",
        _PER_PAIR_MESSAGE,
        lambda pc, pr, rc, rr, b: (_margin(pc, pr, rc, rr) - 1 / (2 * b)) ** 2,
    ),
    _Mistake(
        "wrong_sign",
        "Wrong sign of the target (or chosen and rejected swapped): your loss pulls "
        "the margin towards "
        "-1/(2 beta), which prefers the REJECTED completion. IPO's loss is (d - 1/(2 "
        "beta))^2 with "
        "d = (pc - rc) - (pr - rr).",
        lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) + 1 / (2 * b)) ** 2).mean(),
    ),
    _Mistake(
        "beta_placement",
        "beta is in the wrong place: your target margin is beta/2, IPO's is 1/(2 "
        "beta). (In Python `1/2*beta` "
        "means (1/2)*beta: write 1 / (2 * beta).) A LARGER beta must mean a SMALLER "
        "target margin: the policy "
        "stays closer to the reference.",
        lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) - b / 2) ** 2).mean(),
    ),
    _Mistake(
        "beta_placement",
        "beta is in the wrong place: you multiply the margin by beta, (beta * d - "
        "1/2)^2, as in DPO. IPO's loss "
        "is (d - 1/(2 beta))^2: the raw margin d against a target of 1/(2 beta). "
        "(Yours equals beta^2 times "
        "it, which rescales the gradient.)",
        lambda pc, pr, rc, rr, b: ((b * _margin(pc, pr, rc, rr) - 0.5) ** 2).mean(),
    ),
    _Mistake(
        "beta_placement",
        "The target margin is off by a factor 2: you use 1/beta, IPO's target is 1/(2 "
        "beta).",
        lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) - 1 / b) ** 2).mean(),
    ),
    _Mistake(
        "no_reference",
        "The reference model is ignored: d must be the difference of log-RATIOS, (pc "
        "- rc) - (pr - rr).",
        lambda pc, pr, rc, rr, b: ((pc - pr - 1 / (2 * b)) ** 2).mean(),
    ),
    _Mistake(
        "sum_not_mean",
        "Sum instead of mean over the batch: your loss grows with the number of "
        "pairs. Use .mean().",
        lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) - 1 / (2 * b)) ** 2).sum(),
    ),
    _Mistake(
        "missing_square",
        "The square is missing: IPO regresses the margin onto its target with a "
        "SQUARED error, "
        "(d - 1/(2 beta))^2.",
        lambda pc, pr, rc, rr, b: (_margin(pc, pr, rc, rr) - 1 / (2 * b)).mean(),
    ),
    _Mistake(
        "missing_square",
        "You use the absolute error |d - 1/(2 beta)|; IPO squares it: (d - 1/(2 "
        "beta))^2.",
        lambda pc, pr, rc, rr, b: (_margin(pc, pr, rc, rr) - 1 / (2 * b)).abs().mean(),
    ),
    _Mistake(
        "dpo_not_ipo",
        "You computed the DPO loss -log sigma(beta * d), not IPO's (d - 1/(2 beta))^2.",
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * _margin(pc, pr, rc, rr)).mean(),
    ),
]


def _ipo_hints(gots: list[torch.Tensor], wants: list[torch.Tensor]) -> list[str]:
    return [
        f"When the policy equals the reference d = 0, so the loss is (1/(2 beta))^2 = "
        f"{float(wants[1]):.4f} at beta = 0.5; yours is {_fmt(gots[1])} there."
    ]


def check_ipo_loss(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pc, pr, rc, rr, beta) = mean ((pc-rc)-(pr-rr) - 1/(2 beta))^2."""
    check = _pair_loss_check(
        "check_ipo_loss", 1, _ipo_reference, _IPO_MISTAKES, _ipo_hints
    )
    return _run_check(check, fn, quiet=quiet)

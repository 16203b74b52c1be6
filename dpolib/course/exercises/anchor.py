"""Checker for chapter 6's anchor: the teacher-forced KL that keeps other prompts put.

The student writes `fn(policy_logits, reference_logits, mask, counts)`. The logits are
(N, T, V): N anchor sentences, T positions, V tokens; `mask` (N, T, bool) marks the
positions of each sentence's completion; `counts` (N,) says how often each sentence
occurs. The answer is the count-weighted mean over the sentences of the sum over the
masked positions of KL(pi_ref(.|n, t) || pi_theta(.|n, t)), a differentiable 0-dim
tensor: what `dpolib.losses.token_kl_to_reference` computes and the anchor multiplies
by its weight.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...losses import token_kl_to_reference
from ._core import (
    CheckResult,
    _Case,
    _Check,
    _generator,
    _grad_check,
    _Mistake,
    _run_check,
)

_ANCHOR_NAMES = ("policy_logits", "reference_logits", "mask", "counts")
_SEED_OFFSET = 16  # its own random inputs, apart from the other checkers'


def _anchor_kl_reference(policy_logits, reference_logits, mask, counts):
    """sum_n c_n sum_t m_nt KL(ref_nt || pol_nt) / sum_n c_n."""
    return token_kl_to_reference(policy_logits, reference_logits, mask, counts)


# --------------------------------------------------------------------------------------
# The pieces the known-wrong variants are built from (plain torch, no dpolib)
# --------------------------------------------------------------------------------------
def _logp(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1)


def _token_kl(pol: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """KL(ref || pol) at every position, (N, T), from the two logit tensors."""
    ref_logp, pol_logp = _logp(ref), _logp(pol)
    return (ref_logp.exp() * (ref_logp - pol_logp)).sum(-1)


def _weighted(per_row: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    c = counts.float()
    return (per_row * c).sum() / c.sum()


def _rows(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (per_token * mask.float()).sum(-1)


_ANCHOR_MISTAKES = [
    _Mistake(
        "per_row_vector",
        "You return one KL per sentence (a vector of shape (N,)) instead of one "
        "number: combine the sentences with the count-weighted mean, "
        "(per_row * counts).sum() / counts.sum().",
        lambda p, r, m, c: _rows(_token_kl(p, r), m),
    ),
    _Mistake(
        "reversed_kl",
        "The KL goes the wrong way: you compute KL(pi_theta || pi_ref), the policy's "
        "probabilities weighting the log-ratio. The anchor uses KL(pi_ref || "
        "pi_theta) = sum_y pi_ref(y) (log pi_ref(y) - log pi_theta(y)). (With "
        "torch.nn.functional.kl_div(input, target) the target is the distribution "
        "the KL is taken under: input = the policy's log-probs, target = the "
        "reference's, with log_target=True.)",
        lambda p, r, m, c: _weighted(_rows(_token_kl(r, p), m), c),
    ),
    _Mistake(
        "cross_entropy",
        "You compute the cross-entropy sum_y pi_ref(y) * (-log pi_theta(y)), the "
        "reference's entropy is still in it: KL = cross-entropy - entropy of "
        "pi_ref. Use sum_y pi_ref(y) (log pi_ref(y) - log pi_theta(y)); it is 0 "
        "when the policy equals the reference.",
        lambda p, r, m, c: _weighted(_rows(-(_logp(r).exp() * _logp(p)).sum(-1), m), c),
    ),
    _Mistake(
        "unnormalised_logits",
        "You use the raw logits as log-probabilities. Logits are log-probabilities "
        "only up to a constant per position: turn them into log-probs with "
        "torch.log_softmax(logits, dim=-1) first (the reference's too).",
        lambda p, r, m, c: _weighted(
            _rows((_logp(r).exp() * (r.float() - p.float())).sum(-1), m), c
        ),
    ),
    _Mistake(
        "vocab_mean",
        "You average over the vocabulary (reduction='mean' in kl_div, or .mean(-1)) "
        "where the KL sums over the next tokens: sum the last dimension, then sum "
        "over the masked positions.",
        lambda p, r, m, c: _weighted(
            _rows((_logp(r).exp() * (_logp(r) - _logp(p))).mean(-1), m), c
        ),
    ),
    _Mistake(
        "not_masked",
        "The prompt and padding positions are counted: only the completion's "
        "positions (mask True) belong to the anchor's KL. Multiply the per-position "
        "KL by the mask before summing over the positions.",
        lambda p, r, m, c: _weighted(_token_kl(p, r).sum(-1), c),
    ),
    _Mistake(
        "mean_not_sum",
        "You average the KL over each sentence's positions; the anchor sums it (the "
        "KL of a whole completion is the sum of its per-token KLs, as its "
        "log-probability is the sum of its tokens'). Divide by counts.sum() only.",
        lambda p, r, m, c: _weighted(_rows(_token_kl(p, r), m) / m.float().sum(-1), c),
    ),
    _Mistake(
        "counts_ignored",
        "The counts are ignored: you average the sentences as if each occurred once. "
        "The anchor weights each sentence by how often it occurs in the corpus: "
        "(per_row * counts).sum() / counts.sum().",
        lambda p, r, m, c: _rows(_token_kl(p, r), m).mean(),
    ),
    _Mistake(
        "not_normalised",
        "You return the count-weighted SUM over the sentences; the anchor uses the "
        "weighted MEAN, so that its size does not depend on the corpus size: divide "
        "by counts.sum().",
        lambda p, r, m, c: (_rows(_token_kl(p, r), m) * c.float()).sum(),
    ),
    _Mistake(
        "wrong_normaliser",
        "You divide the count-weighted sum by the number of sentences; a weighted "
        "mean divides by the sum of the weights, counts.sum().",
        lambda p, r, m, c: (_rows(_token_kl(p, r), m) * c.float()).mean(),
    ),
]


def _mask(gen: torch.Generator, n: int, t: int) -> torch.Tensor:
    """Rows laid out as the course's batches are: prompt, completion, padding."""
    mask = torch.zeros(n, t, dtype=torch.bool)
    for i in range(n):
        start = 1 + int(torch.randint(0, 3, (1,), generator=gen))
        length = 1 + int(torch.randint(0, t - start, (1,), generator=gen))
        mask[i, start : start + length] = True
    return mask


def _anchor_cases(gen: torch.Generator) -> list[_Case]:
    """A hand-made pair of sentences, the policy equal to the reference (KL 0), and
    random batches with the policy's logits moved by three amounts."""
    ref = torch.tensor(
        [
            [[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 3.0]],
            [[0.0, 2.0, 0.0], [1.0, -1.0, 0.5], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        ]
    )
    pol = ref + torch.tensor(
        [
            [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 2.0], [0.5, 0.0, 0.0]],
            [[0.0, 0.0, 1.0], [0.0, 2.0, 0.0], [0.0, 0.0, -2.0], [1.0, 0.0, 0.0]],
        ]
    )
    mask = torch.tensor([[False, True, True, False], [False, False, True, True]])
    cases = [
        _Case(
            "a hand-made batch of 2 sentences, 4 positions, 3 tokens (counts 3 and 1)",
            (pol, ref, mask, torch.tensor([3.0, 1.0])),
        )
    ]
    ref = 2 * torch.randn(3, 6, 7, generator=gen)
    cases.append(
        _Case(
            "3 sentences where the policy equals the reference (the KL is 0)",
            (ref.clone(), ref, _mask(gen, 3, 6), torch.tensor([5.0, 1.0, 2.0])),
        )
    )
    for shift in (0.3, 1.0, 3.0):
        ref = 2 * torch.randn(6, 8, 10, generator=gen)
        pol = ref + shift * torch.randn(6, 8, 10, generator=gen)
        counts = torch.randint(1, 30, (6,), generator=gen).float()
        cases.append(
            _Case(
                f"6 random sentences, policy logits moved by {shift} per token",
                (pol, ref, _mask(gen, 6, 8), counts),
            )
        )
    return cases


def _anchor_hints(gots: list[torch.Tensor], wants: list[torch.Tensor]) -> list[str]:
    at_reference = gots[1]  # the case policy == reference
    if at_reference.dim() == 0 and abs(float(at_reference)) > 1e-5:
        return [
            "A check you can do by hand: when the policy equals the reference every "
            "KL is 0, whatever the mask and the counts. Yours is "
            f"{float(at_reference):.4f} there."
        ]
    return [
        "Your answer is 0 when the policy equals the reference but wrong otherwise: "
        "check, in this order, log_softmax of both logits, the sum over the last "
        "dimension of pi_ref * (log pi_ref - log pi_theta), the mask, the sum over "
        "positions, and the weighted mean with counts."
    ]


_KL_DIV_NOTE = (
    "If you use torch.nn.functional.kl_div(input, target): without "
    "log_target=True it takes the target for probabilities, and the log of a "
    "log-probability (a negative number) is nan. Pass the reference's log-probs "
    "with log_target=True, or its probabilities (softmax) without it."
)


def check_anchor_kl(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pol, ref, mask, c) = sum_n c_n sum_t m KL(ref||pol) / sum_n c_n."""
    cases = _anchor_cases(_generator(_SEED_OFFSET))
    check = _Check(
        "check_anchor_kl",
        names=_ANCHOR_NAMES,
        reference=_anchor_kl_reference,
        cases=cases,
        mistakes=_ANCHOR_MISTAKES,
        expected_shape="a single number (shape ()), the count-weighted mean over "
        "the sentences",
        post_checks=[_grad_check(_anchor_kl_reference, cases[3], (0,), _ANCHOR_NAMES)],
        hints=_anchor_hints,
    )
    result = _run_check(check, fn, quiet=True)
    if result.mistake == "not_finite":
        # the usual cause here: kl_div reads a target of log-probs as probabilities
        result.feedback.insert(1, _KL_DIV_NOTE)
    if not quiet:
        print(result)
        result.printed = True
    return result

"""The checker for the sequence log-probability: sum log p(target) over the completion
tokens of each row.

Its known-wrong variants cover the shape (per token, per batch), the reduction (mean
instead of sum), the mask (ignored, inverted), the normalisation (softmax, raw logits,
wrong dimension) and needless off-by-one shifts.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...logprobs import sequence_logprobs
from ._core import (
    CheckResult,
    _Case,
    _Check,
    _generator,
    _grad_check,
    _Mistake,
    _run_check,
)

_SEQ_NAMES = ("logits", "targets", "mask")


def _seq_reference(logits, targets, mask):
    return sequence_logprobs(logits, targets, mask)


def _pick(scores, targets):
    """scores[b, t, targets[b, t]]: each position's score of its own target."""
    return scores.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _masked_sum(tok, mask):
    return (tok * mask.float()).sum(-1)


def _token_logps(logits, targets):
    return _pick(torch.log_softmax(logits, dim=-1), targets)


def _shifted(logits, targets, mask, logit_shift: int, mask_from_targets: bool):
    """Token log-probs after a needless shift: position t reads logits t+logit_shift
    for target t+1-logit_shift.
    """
    lp = torch.log_softmax(logits, dim=-1)
    if logit_shift == 0:  # logits[:, :-1] scored against targets[:, 1:]
        tok = _pick(lp[:, :-1], targets[:, 1:])
        m = mask[:, 1:] if mask_from_targets else mask[:, :-1]
    else:  # logits[:, 1:] scored against targets[:, :-1]
        tok = _pick(lp[:, 1:], targets[:, :-1])
        m = mask[:, :-1] if mask_from_targets else mask[:, 1:]
    return _masked_sum(tok, m)


_SHIFT_MESSAGE = (
    "Off by one: you shift the logits or the targets by one position. Here they are "
    "already aligned: "
    "logits[:, t] is the distribution that predicts targets[:, t], and mask[:, t] "
    "says whether that target counts. "
    "Gather at the same position t, with no slicing."
)

_SEQ_MISTAKES = [
    _Mistake(
        "per_token",
        "Wrong shape: you return one log-prob per TOKEN, shape (B, T). Sum over the "
        "time dimension "
        "(.sum(dim=-1)) to get one log-prob per sequence, shape (B,).",
        lambda lg, t, m: _token_logps(lg, t) * m.float(),
    ),
    _Mistake(
        "batch_total",
        "Wrong shape: you return one number for the whole batch. Return one log-prob "
        "per sequence, shape (B,): "
        "sum over the time dimension only (.sum(dim=-1)). (Indexing with the mask, "
        "x[mask], flattens the batch.)",
        lambda lg, t, m: (_token_logps(lg, t) * m.float()).sum(),
    ),
    _Mistake(
        "mean_not_sum",
        "Mean instead of sum: you average the log-probs of the completion tokens. log "
        "pi(y|x) is a SUM over "
        "tokens (the log of a product of probabilities); the per-token mean is a "
        "different, length-normalised "
        "objective.",
        lambda lg, t, m: sequence_logprobs(lg, t, m, average=True),
    ),
    _Mistake(
        "mean_not_sum",
        "Mean instead of sum: you average over all T positions. log pi(y|x) is a SUM "
        "over the completion "
        "tokens: use .sum(dim=-1) after masking.",
        lambda lg, t, m: (_token_logps(lg, t) * m.float()).mean(-1),
    ),
    _Mistake(
        "not_masked",
        "Prompt and padding tokens are counted: you sum the log-probs at every "
        "position. Multiply by the mask "
        "(or use torch.where) so that only completion tokens, where mask is True, add "
        "to the sum.",
        lambda lg, t, m: _token_logps(lg, t).sum(-1),
    ),
    _Mistake(
        "mask_inverted",
        "The mask is inverted: you sum over the prompt and padding and leave out the "
        "completion. mask is True "
        "on the completion tokens, the ones to KEEP.",
        lambda lg, t, m: _masked_sum(_token_logps(lg, t), ~m),
    ),
    _Mistake(
        "probs_not_logprobs",
        "Probabilities instead of log-probabilities: you use softmax where the sum "
        "needs log_softmax. "
        "Use torch.log_softmax(logits, dim=-1) (log of a product = sum of logs).",
        lambda lg, t, m: _masked_sum(_pick(torch.softmax(lg, -1), t), m),
    ),
    _Mistake(
        "probs_not_logprobs",
        "You return the sequence's PROBABILITY (a product of softmax probabilities); "
        "the course works with its "
        "log: sum the log_softmax values instead (it is also far more accurate for "
        "long sequences).",
        lambda lg, t, m: torch.where(m, _pick(torch.softmax(lg, -1), t), 1.0).prod(-1),
    ),
    _Mistake(
        "unnormalised_logits",
        "You gather the raw logits: they are unnormalised scores, not "
        "log-probabilities. Normalise first with "
        "torch.log_softmax(logits, dim=-1), then gather the targets.",
        lambda lg, t, m: _masked_sum(_pick(lg, t), m),
    ),
    _Mistake(
        "wrong_softmax_dim",
        "log_softmax over the wrong dimension: you normalise over the time axis. "
        "Normalise over the vocabulary, "
        "the last dimension: torch.log_softmax(logits, dim=-1).",
        lambda lg, t, m: _masked_sum(_pick(torch.log_softmax(lg, 1), t), m),
    ),
    _Mistake("shifted", _SHIFT_MESSAGE, lambda lg, t, m: _shifted(lg, t, m, 0, True)),
    _Mistake("shifted", _SHIFT_MESSAGE, lambda lg, t, m: _shifted(lg, t, m, 0, False)),
    _Mistake("shifted", _SHIFT_MESSAGE, lambda lg, t, m: _shifted(lg, t, m, 1, True)),
    _Mistake("shifted", _SHIFT_MESSAGE, lambda lg, t, m: _shifted(lg, t, m, 1, False)),
]


def _seq_cases(gen: torch.Generator) -> list[_Case]:
    # A tiny case by hand: 2 rows, 3 positions, vocabulary 3; row 0 is prompt,
    # completion, completion,
    # row 1 is prompt, completion, padding.
    logits = torch.tensor(
        [
            [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]],
            [[1.0, 1.0, 1.0], [-2.0, 0.0, 2.0], [0.0, 4.0, 0.0]],
        ]
    )
    targets = torch.tensor([[1, 1, 2], [0, 2, 0]])
    mask = torch.tensor([[False, True, True], [False, True, False]])
    cases = [
        _Case(
            "a small batch (2 sequences, 3 positions, vocabulary of 3)",
            (logits, targets, mask),
        )
    ]
    for B, T, V in ((4, 7, 6), (3, 9, 11)):
        logits = 2 * torch.randn(B, T, V, generator=gen)
        targets = torch.randint(0, V, (B, T), generator=gen)
        mask = torch.zeros(B, T, dtype=torch.bool)
        for i in range(B):  # a prompt of 1-3 tokens, then a completion, then padding
            start = int(torch.randint(1, 4, (1,), generator=gen))
            stop = int(torch.randint(start + 2, T + 1, (1,), generator=gen))
            mask[i, start:stop] = True
        cases.append(
            _Case(
                f"a random batch (B={B}, T={T}, V={V}) with prompt, completion and "
                "padding",
                (logits, targets, mask),
            )
        )
    return cases


def check_sequence_logprobs(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(logits, targets, mask) = sum of log p(target) where mask."""
    cases = _seq_cases(_generator(3))
    check = _Check(
        "check_sequence_logprobs",
        names=_SEQ_NAMES,
        reference=_seq_reference,
        cases=cases,
        mistakes=_SEQ_MISTAKES,
        expected_shape="one summed log-prob per sequence, shape (B,)",
        post_checks=[_grad_check(_seq_reference, cases[1], (0,), _SEQ_NAMES)],
        hints=lambda g, w: [
            "Check the steps one by one: log_softmax over the vocabulary (dim=-1), "
            "gather the "
            "targets' entries, zero the positions where mask is False, sum over dim=-1."
        ],
    )
    return _run_check(check, fn, quiet=quiet)

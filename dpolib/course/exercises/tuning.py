"""Checker for chapter 7's stopping rule: stop after `patience` steps with no new best.

The student writes `fn(values, patience) -> (stop, keep)`. `values` is one logged
metric per step, higher is better (e.g. TRL's `logps/chosen`). `stop` is the index of
the step at which the rule fires: the first step that completes `patience` steps
without a strictly higher value, or the last index if that never happens. `keep` is
the index of the best value up to and including `stop` (its first occurrence). Indices
are 0-based, so `values[keep]` is the kept value. The rule may look only at the steps
it has seen, which is what most of the known-wrong variants below get wrong.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ._core import CheckResult, _Case, _Check, _generator, _Mistake, _run_check

_STOP_NAMES = ("values", "patience")


def _rule(
    values: Sequence[float], patience: int, *, late: int = 0, ties: bool = False
) -> tuple[int, int]:
    """(stop, keep) of the patience rule; `late` and `ties` make two wrong variants."""
    best = 0
    for i in range(1, len(values)):
        if values[i] > values[best] or (ties and values[i] == values[best]):
            best = i
        elif i - best == patience + late:
            return i, best
    return len(values) - 1, best


def _early_stop_reference(values: Sequence[float], patience: int) -> torch.Tensor:
    """(stop, keep) as a tensor of two indices: the first step with `patience` steps
    since the last strict improvement, and the index of the best value up to it."""
    return torch.tensor(_rule(values, patience), dtype=torch.float64)


def _pair(stop: int, keep: int) -> torch.Tensor:
    return torch.tensor([stop, keep], dtype=torch.float64)


def _argmax(values: Sequence[float]) -> int:
    """The index of the first occurrence of the largest value."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


_STOP_MISTAKES = [
    _Mistake(
        "global_max",
        "You keep the best value of the whole log, including steps after your rule "
        "stopped. When the rule fires, those steps have not happened yet: keep the "
        "best of values[0], ..., values[stop].",
        lambda v, p: _pair(_rule(v, p)[0], _argmax(v)),
    ),
    _Mistake(
        "never_stops",
        "Your rule never stops: it returns the last step and the best value overall. "
        "Stop at the first step that completes `patience` steps without a new best.",
        lambda v, p: _pair(len(v) - 1, _argmax(v)),
    ),
    _Mistake(
        "ties_improve",
        "A value equal to the best so far counts as an improvement in your rule "
        "(>= instead of >). Only a strictly higher value resets the count, and the "
        "kept step is the first occurrence of the best value.",
        lambda v, p: _pair(*_rule(v, p, ties=True)),
    ),
    _Mistake(
        "patience_off_by_one",
        "Your rule stops one step too late: it waits for patience + 1 steps without "
        "a new best. It should fire at the step i with i - best == patience, where "
        "best is the index of the best value so far.",
        lambda v, p: _pair(*_rule(v, p, late=1)),
    ),
    _Mistake(
        "patience_off_by_one",
        "Your rule stops one step too early: it fires after patience - 1 steps "
        "without a new best. It should fire at the step i with i - best == patience, "
        "where best is the index of the best value so far.",
        lambda v, p: _pair(*_rule(v, p, late=-1)),
    ),
    _Mistake(
        "keep_last",
        "You keep the step at which the rule stopped. By then the metric has not "
        "improved for `patience` steps: keep the best step seen, not the last one.",
        lambda v, p: _pair(_rule(v, p)[0], _rule(v, p)[0]),
    ),
    _Mistake(
        "lowest_not_highest",
        "Your rule tracks the lowest value, as for a loss. Here higher is better "
        "(logps/chosen rises while training helps): track the highest value.",
        lambda v, p: _pair(*_rule([-x for x in v], p)),
    ),
    _Mistake(
        "one_based",
        "Your indices start at 1. Python's start at 0: values[keep] must be the kept "
        "value, so the first logged step is index 0.",
        lambda v, p: _pair(*_rule(v, p)) + 1,
    ),
    _Mistake(
        "swapped",
        "You return (keep, stop); the order is (stop, keep).",
        lambda v, p: _pair(*reversed(_rule(v, p))),
    ),
]


def _stop_cases(gen: torch.Generator) -> list[_Case]:
    cases = [
        _Case(
            "a rise, a new best, then a fall (patience 2)",
            ((-2.0, -1.2, -0.6, -0.3, -0.35, -0.2, -0.25, -0.4, -0.5), 2),
            True,
        ),
        _Case(
            "a best value repeated, then a higher one (patience 2)",
            ((-1.0, -0.5, -0.5, -0.5, -0.4, -0.45), 2),
            True,
        ),
        _Case(
            "a log whose best comes after the rule has stopped (patience 3)",
            ((-1.0, -0.5, -0.7, -0.8, -0.9, -0.1, -0.2), 3),
            True,
        ),
        _Case(
            "a log that improves at every step (patience 2)",
            ((-3.0, -2.0, -1.0, -0.5), 2),
            True,
        ),
        _Case(
            "a fall right after the start (patience 1)", ((-1.0, -1.5, -0.5), 1), True
        ),
    ]
    for patience in (3, 5):
        walk = torch.cumsum(0.3 * torch.randn(40, generator=gen), 0) - 2.0
        cases.append(
            _Case(
                f"a random log of 40 steps (patience {patience})",
                (tuple(round(float(x), 4) for x in walk), patience),
            )
        )
    return cases


def check_early_stop(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(values, patience) = (stop, keep), the patience rule (higher: better)."""
    check = _Check(
        "check_early_stop",
        names=_STOP_NAMES,
        reference=_early_stop_reference,
        cases=_stop_cases(_generator(7)),
        mistakes=_STOP_MISTAKES,
        expected_shape="two integers, (stop, keep)",
        numbers_ok=True,  # two step indices: a tuple of ints is the natural answer
        hints=lambda g, w: [
            "stop is the first index i such that no value after values[best] up to "
            "values[i] is higher and i - best == patience (the last index if that "
            "never happens); keep is best, the index of the highest value up to stop."
        ],
    )
    return _run_check(check, fn, quiet=quiet)

"""The checker for the model-state memory of one trained model (chapter 1).

bytes = n_params * (2 w + m + 4 k): weights and gradients in the training precision
(w bytes each), an fp32 master copy of the weights (m = 4, or 0 when training in fp32)
and k optimizer moments in fp32 (Adam: k = 2). Mixed-precision Adam: 16 bytes/param.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..memory import BYTES_PER_PARAM, TrainingRecipe, model_memory
from ._core import CheckResult, _Case, _Check, _Mistake, _run_check

_MEMORY_NAMES = ("n_params", "precision", "n_moments")


def _memory_reference(n_params: float, precision: str, n_moments: int) -> torch.Tensor:
    recipe = TrainingRecipe(precision=precision, n_moments=n_moments)
    total = model_memory("policy", n_params, trained=True, recipe=recipe).total
    return torch.tensor(total, dtype=torch.float64)


def _variant(weights: int, grads: int, master: int, moment: int) -> Callable:
    # a wrong formula as bytes per parameter; negative numbers mean "the precision's w"
    def fn(n: float, precision: str, k: int) -> torch.Tensor:
        w = BYTES_PER_PARAM[precision]

        def pick(b: int) -> int:
            return w if b < 0 else b

        per = pick(weights) + pick(grads) + pick(moment) * k
        per += 0 if master == 0 else (master if precision != "fp32" else 0)
        return torch.tensor(n * per, dtype=torch.float64)

    return fn


def _always_master(n: float, precision: str, k: int) -> torch.Tensor:
    return torch.tensor(
        n * (2 * BYTES_PER_PARAM[precision] + 4 + 4 * k), dtype=torch.float64
    )


_MEMORY_MISTAKES = [
    _Mistake(
        "no_master_copy",
        "The fp32 master copy of the weights is missing. In mixed precision the "
        "optimizer "
        "updates a 4-byte copy of every weight (a 16-bit weight cannot hold a small "
        "update), "
        "so add 4 bytes per parameter unless the precision is already fp32.",
        _variant(-1, -1, 0, 4),
    ),
    _Mistake(
        "master_copy_in_fp32",
        "You add a master copy in fp32 training too. When the weights are fp32 "
        "already, the "
        "optimizer updates them in place: the master copy is only for 16-bit weights.",
        _always_master,
    ),
    _Mistake(
        "no_gradients",
        "The gradients are missing: backward() stores one gradient per trained "
        "weight, in "
        "the weights' precision.",
        _variant(-1, 0, 4, 4),
    ),
    _Mistake(
        "moments_in_training_precision",
        "Adam's moments are stored in fp32 (4 bytes each), not in the 16-bit training "
        "precision: their small, slowly changing values need the range and precision.",
        _variant(-1, -1, 4, -1),
    ),
    _Mistake(
        "weights_only",
        "You count the weights only, as for a frozen model. A trained model also "
        "holds its "
        "gradients and optimizer states: 16 bytes per parameter for mixed-precision "
        "Adam.",
        _variant(-1, 0, 0, 0),
    ),
    _Mistake(
        "gigabytes",
        "Your numbers are the right ones divided by 1e9: return bytes, not GB (the "
        "check "
        "compares bytes; divide by GB only when you print).",
        lambda n, p, k: _memory_reference(n, p, k) / 1e9,
    ),
]


def _memory_cases(gen: torch.Generator | None = None) -> list[_Case]:
    # fixed settings: the generator is accepted (like every checker's cases) and unused
    return [
        _Case("a 7B model, bf16 weights, Adam", (7e9, "bf16", 2), True),
        _Case("a 1M-parameter model trained in fp32 with Adam", (1e6, "fp32", 2), True),
        _Case(
            "a 125M model, fp16 weights, SGD with momentum", (125e6, "fp16", 1), True
        ),
        _Case("a 300M model, bf16 weights, plain SGD", (3e8, "bf16", 0), True),
    ]


def check_training_memory(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(n_params, precision, n_moments) = bytes of a trained model's states."""
    check = _Check(
        "check_training_memory",
        names=_MEMORY_NAMES,
        reference=_memory_reference,
        cases=_memory_cases(),
        mistakes=_MEMORY_MISTAKES,
        expected_shape="a single number of bytes",
        numbers_ok=True,
        hints=lambda g, w: [
            "Per parameter: weights and gradients in the training precision "
            "(bf16/fp16 2 "
            "bytes, fp32 4), an fp32 master copy (4 bytes) unless the precision is "
            "fp32, "
            "and 4 bytes per optimizer moment."
        ],
    )
    return _run_check(check, fn, quiet=quiet)

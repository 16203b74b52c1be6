"""Checkers for the course's implementation exercises: run a student's function, explain what is wrong.

Each `check_*` runs the student's function on fixed and seeded random inputs and compares it with
dpolib's reference (`dpolib.losses`, `dpolib.logprobs`, `dpolib.course.bandit`). When they disagree it compares the answer
with known-wrong variants (wrong sign, beta on one term only, mean instead of sum, ...) to name the
mistake in the words of the course. It prints a short report and returns a `CheckResult`, which is
truthy when the function passed, so a grader can write `assert check_dpo_loss(my_dpo_loss)`.

The shared machinery (running the function safely, diagnosing, rendering the report) is in `_core`; each
checker module holds its inputs, its known-wrong variants and its extra checks: `losses` (DPO and IPO loss),
`rewards` (implicit reward, gradient weight), `logprobs` (sequence log-probs) and `bandit` (closed-form optimum).
"""

from __future__ import annotations

from typing import Callable

from ...logprobs import sequence_logprobs
from ...losses import compute_implicit_reward, dpo_gradient_weight, dpo_loss

# Not public: what tests/test_exercises.py reaches in for (each checker's variants, inputs and reference, the
# comparison), and the library functions the checkers compare against, all importable from here as before the split.
from ..bandit import optimal_policy
from ._core import _SEED, CheckResult, _clone, _close, _codes
from .bandit import _BANDIT_MISTAKES, _bandit_cases, check_bandit_optimum
from .logprobs import _SEQ_MISTAKES, _seq_cases, check_sequence_logprobs
from .losses import (
    _DPO_MISTAKES,
    _IPO_MISTAKES,
    _dpo_reference,
    _ipo_reference,
    _pair_cases,
    check_dpo_loss,
    check_ipo_loss,
)
from .rewards import (
    _REWARD_MISTAKES,
    _WEIGHT_MISTAKES,
    _reward_cases,
    _weight_cases,
    check_gradient_weight,
    check_implicit_reward,
)

__all__ = [
    "CheckResult",
    "CHECKERS",
    "GENERIC_MISTAKES",
    "MISTAKE_CODES",
    "check_bandit_optimum",
    "check_dpo_loss",
    "check_gradient_weight",
    "check_implicit_reward",
    "check_ipo_loss",
    "check_sequence_logprobs",
]

# The mistakes each checker can name (CheckResult.mistake), besides the GENERIC_MISTAKES any checker reports.
MISTAKE_CODES: dict[str, tuple[str, ...]] = {
    "check_dpo_loss": _codes(_DPO_MISTAKES, "no_grad", "partial_grad"),
    "check_implicit_reward": _codes(_REWARD_MISTAKES),
    "check_sequence_logprobs": _codes(_SEQ_MISTAKES, "no_grad", "partial_grad"),
    "check_gradient_weight": _codes(_WEIGHT_MISTAKES),
    "check_bandit_optimum": _codes(_BANDIT_MISTAKES, "overflow", "small_beta"),
    "check_ipo_loss": _codes(_IPO_MISTAKES, "no_grad", "partial_grad"),
}
GENERIC_MISTAKES = (
    "not_callable",
    "not_implemented",
    "exception",
    "returned_none",
    "not_a_tensor",
    "wrong_shape",
    "not_finite",
    "wrong_value",
)

CHECKERS: dict[str, Callable[..., CheckResult]] = {
    "check_dpo_loss": check_dpo_loss,
    "check_implicit_reward": check_implicit_reward,
    "check_sequence_logprobs": check_sequence_logprobs,
    "check_gradient_weight": check_gradient_weight,
    "check_bandit_optimum": check_bandit_optimum,
    "check_ipo_loss": check_ipo_loss,
}

"""Checkers for the course's implementation exercises: run a student's function, explain
what is wrong.

Each `check_*` runs the student's function on fixed and seeded random inputs and
compares it with dpolib's reference (`dpolib.losses`, `dpolib.logprobs`,
`dpolib.course.bandit`). When they disagree it compares the answer with known-wrong
variants (wrong sign, beta on one term only, mean instead of sum, ...) to name the
mistake in the words of the course. It prints a short report and returns a
`CheckResult`, which is truthy when the function passed, so a grader can write `assert
check_dpo_loss(my_dpo_loss)`.

Every checker runs the student's function under the same guard (in `_core`): a per-call
time limit, `sys.exit()` caught, a function that runs dpolib's own reference code failed
(`calls_reference`), and an answer of the wrong type named (`not_a_tensor`).

The shared machinery (running the function safely, diagnosing, rendering the report) is
in `_core`; each checker module holds its inputs, its known-wrong variants and its extra
checks: `losses` (DPO and IPO loss), `rewards` (implicit reward, gradient weight),
`logprobs` (sequence log-probs), `bandit` (closed-form optimum) and `anchor` (the
anchor's teacher-forced KL). Tests import private names from the module that defines
them.
"""

from __future__ import annotations

from typing import Callable

from ._core import CheckResult, _codes
from .anchor import _ANCHOR_MISTAKES, check_anchor_kl
from .bandit import _BANDIT_MISTAKES, check_bandit_optimum
from .logprobs import _SEQ_MISTAKES, check_sequence_logprobs
from .losses import _DPO_MISTAKES, _IPO_MISTAKES, check_dpo_loss, check_ipo_loss
from .memory import _MEMORY_MISTAKES, check_training_memory
from .practice import _RPO_MISTAKES, _SIMPO_MISTAKES, check_rpo_loss, check_simpo_loss
from .rewards import (
    _REWARD_MISTAKES,
    _WEIGHT_MISTAKES,
    check_gradient_weight,
    check_implicit_reward,
)
from .rl import _CLIP_MISTAKES, check_clipped_surrogate
from .trl import TRL_MISTAKE_CODES, check_trl_ipo_loss
from .tuning import _STOP_MISTAKES, check_early_stop

__all__ = [
    "CheckResult",
    "CHECKERS",
    "GENERIC_MISTAKES",
    "MISTAKE_CODES",
    "check_anchor_kl",
    "check_bandit_optimum",
    "check_clipped_surrogate",
    "check_dpo_loss",
    "check_early_stop",
    "check_gradient_weight",
    "check_implicit_reward",
    "check_ipo_loss",
    "check_rpo_loss",
    "check_training_memory",
    "check_sequence_logprobs",
    "check_simpo_loss",
    "check_trl_ipo_loss",
]

# The mistakes each checker can name (CheckResult.mistake), besides the GENERIC_MISTAKES
# any checker reports.
MISTAKE_CODES: dict[str, tuple[str, ...]] = {
    "check_dpo_loss": _codes(_DPO_MISTAKES, "no_grad", "partial_grad"),
    "check_implicit_reward": _codes(_REWARD_MISTAKES),
    "check_sequence_logprobs": _codes(_SEQ_MISTAKES, "no_grad", "partial_grad"),
    "check_gradient_weight": _codes(_WEIGHT_MISTAKES),
    "check_bandit_optimum": _codes(_BANDIT_MISTAKES, "overflow", "small_beta"),
    "check_ipo_loss": _codes(_IPO_MISTAKES, "no_grad", "partial_grad"),
    "check_trl_ipo_loss": TRL_MISTAKE_CODES,
    "check_early_stop": _codes(_STOP_MISTAKES),
    "check_clipped_surrogate": _codes(_CLIP_MISTAKES, "no_grad", "partial_grad"),
    "check_training_memory": _codes(_MEMORY_MISTAKES),
    "check_rpo_loss": _codes(_RPO_MISTAKES, "no_grad", "partial_grad"),
    "check_simpo_loss": _codes(_SIMPO_MISTAKES, "no_grad", "partial_grad"),
    "check_anchor_kl": _codes(_ANCHOR_MISTAKES, "no_grad", "partial_grad"),
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
    "calls_reference",  # the function runs dpolib's own reference code
    "time_limit",  # a call ran past the per-call time limit (a loop that never ends)
    "exited",  # the function called sys.exit()
)

CHECKERS: dict[str, Callable[..., CheckResult]] = {
    "check_dpo_loss": check_dpo_loss,
    "check_implicit_reward": check_implicit_reward,
    "check_sequence_logprobs": check_sequence_logprobs,
    "check_gradient_weight": check_gradient_weight,
    "check_bandit_optimum": check_bandit_optimum,
    "check_ipo_loss": check_ipo_loss,
    "check_trl_ipo_loss": check_trl_ipo_loss,
    "check_early_stop": check_early_stop,
    "check_clipped_surrogate": check_clipped_surrogate,
    "check_training_memory": check_training_memory,
    "check_rpo_loss": check_rpo_loss,
    "check_simpo_loss": check_simpo_loss,
    "check_anchor_kl": check_anchor_kl,
}

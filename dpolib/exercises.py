"""Checkers for the course's implementation exercises: run a student's function, explain what is wrong.

Each `check_*` runs the student's function on fixed and seeded random inputs and compares it with
dpolib's reference (`dpolib.losses`, `dpolib.logprobs`, `dpolib.bandit`). When they disagree it compares the answer
with known-wrong variants (wrong sign, beta on one term only, mean instead of sum, ...) to name the
mistake in the words of the course. It prints a short report and returns a `CheckResult`, which is
truthy when the function passed, so a grader can write `assert check_dpo_loss(my_dpo_loss)`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .bandit import optimal_policy
from .logprobs import sequence_logprobs
from .losses import compute_implicit_reward, dpo_gradient_weight, dpo_loss

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

# float32 arithmetic in the student's code differs from the reference in the last digits only.
_RTOL, _ATOL = 1e-4, 1e-6
_SEED = 20230529  # fixed: every student sees the same "random" inputs, so feedback is repeatable


@dataclass
class CheckResult:
    """The verdict of one checker: `passed`, the feedback lines, and a short code for the diagnosed mistake."""

    name: str
    passed: bool
    feedback: list[str]
    mistake: str | None = None  # e.g. "wrong_sign", "beta_policy_only"; None when passed or not diagnosed
    printed: bool = field(default=False, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = f"{self.name}: " + ("passed." if self.passed else "not yet.")
        return "\n".join([head] + [f"  - {line}" for line in self.feedback])

    def _ipython_display_(self) -> None:
        # The checker already printed the report; showing it again as the cell's value is noise.
        if not self.printed:
            print(self)


@dataclass
class _Case:
    label: str  # how the feedback names this input, e.g. "the worked example (beta = 0.1)"
    args: tuple
    show_inputs: bool = False  # small hand-made cases are worth printing in full


@dataclass
class _Mistake:
    code: str
    message: str
    fn: Callable[..., torch.Tensor]  # computes the wrong answer from the same arguments


@dataclass
class _Outcome:
    ok: bool
    lines: list[str]
    mistake: str | None = None
    note_only: bool = False  # a remark that does not fail the check


def _clone(args: tuple, grad_idx: Sequence[int] = ()) -> tuple:
    out = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            a = a.detach().clone()
            if i in grad_idx:
                a.requires_grad_(True)
        out.append(a)
    return tuple(out)


def _fmt(x: torch.Tensor) -> str:
    x = x.detach().cpu()
    if x.dim() == 0:
        return f"{float(x):.4f}"
    if x.dim() == 1:
        vals = ", ".join(f"{float(v):.4f}" for v in x[:6])
        return f"[{vals}{', ...' if x.numel() > 6 else ''}]"
    return f"a tensor of shape {tuple(x.shape)}"


def _fmt_args(names: Sequence[str], args: tuple) -> str:
    parts = []
    for n, a in zip(names, args):
        if isinstance(a, torch.Tensor) and a.dim() <= 1:
            parts.append(f"{n}={_fmt(a)}")
        elif isinstance(a, torch.Tensor):
            parts.append(f"{n} of shape {tuple(a.shape)}")
        else:
            parts.append(f"{n}={a}")
    return ", ".join(parts)


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    if got.shape != want.shape:
        return False
    return bool(torch.allclose(got.detach().cpu().double(), want.detach().cpu().double(), rtol=_RTOL, atol=_ATOL))


def _as_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    try:
        return torch.as_tensor(out, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def _call(fn: Callable, case: _Case, names: Sequence[str]) -> tuple[torch.Tensor | None, _Outcome | None]:
    """Run fn on a copy of the case's inputs; an exception or a non-tensor answer becomes feedback."""
    try:
        out = fn(*_clone(case.args))
    except NotImplementedError:
        return None, _Outcome(False, [
            "Not implemented yet: replace the `raise NotImplementedError` line with your code, run that cell, "
            "then run this check again."
        ], "not_implemented")
    except Exception as e:  # the student's code may raise anything; name it instead of crashing the notebook
        return None, _Outcome(False, [
            f"Your function raised {type(e).__name__}: {e}",
            f"It was called with {_fmt_args(names, case.args)}.",
        ], "exception")
    if out is None:
        return None, _Outcome(False, ["Your function returned None: is the `return` statement missing?"], "returned_none")
    t = _as_tensor(out)
    if t is None:
        return None, _Outcome(False, [f"Your function returned a {type(out).__name__}; return a torch.Tensor."], "not_a_tensor")
    return t, None


def _run_check(
    name: str,
    fn: Any,
    *,
    names: Sequence[str],
    reference: Callable[..., torch.Tensor],
    cases: list[_Case],
    mistakes: list[_Mistake],
    expected_shape: str,
    post_checks: Sequence[Callable[[Callable], _Outcome]] = (),
    hints: Callable[[list[torch.Tensor], list[torch.Tensor]], list[str]] | None = None,
    reduce_wrong_shape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    reduce_note: str = "",
    quiet: bool = False,
) -> CheckResult:
    """Judge fn, print the report unless quiet, return the verdict."""
    result = _judge(name, fn, names, reference, cases, mistakes, expected_shape, post_checks, hints,
                    reduce_wrong_shape, reduce_note)
    if not quiet:
        print(result)
        result.printed = True
    return result


def _judge(
    name: str,
    fn: Any,
    names: Sequence[str],
    reference: Callable[..., torch.Tensor],
    cases: list[_Case],
    mistakes: list[_Mistake],
    expected_shape: str,
    post_checks: Sequence[Callable[[Callable], _Outcome]],
    hints: Callable[[list[torch.Tensor], list[torch.Tensor]], list[str]] | None,
    reduce_wrong_shape: Callable[[torch.Tensor], torch.Tensor] | None,
    reduce_note: str,
) -> CheckResult:
    """Reference first, then the student's answers; when they differ, the first known mistake that explains them."""
    if not callable(fn):
        return CheckResult(name, False, [
            f"{name} expects your function itself, got a {type(fn).__name__}. "
            f"Write {name}(my_function), not {name}(my_function(...))."
        ], "not_callable")
    with torch.no_grad():
        wants = [reference(*_clone(c.args)) for c in cases]
    gots = []
    for case in cases:
        got, problem = _call(fn, case, names)
        if problem is not None:
            return CheckResult(name, False, problem.lines, problem.mistake)
        gots.append(got)

    if all(_close(g, w) for g, w in zip(gots, wants)):
        notes: list[str] = []
        for check in post_checks:
            outcome = check(fn)
            if not outcome.ok:
                return CheckResult(name, False, outcome.lines, outcome.mistake)
            notes += outcome.lines
        lines = [f"Matches dpolib's reference on {len(cases)} inputs (fixed and random). Well done."] + notes
        return CheckResult(name, True, lines, None)

    # Wrong: find the first case that differs, to show concrete numbers.
    i = next(k for k, (g, w) in enumerate(zip(gots, wants)) if not _close(g, w))
    case, got, want = cases[i], gots[i], wants[i]
    example = []
    if case.show_inputs:
        example.append(f"Input: {_fmt_args(names, case.args)}.")
    if got.shape == want.shape:
        example.append(f"On {case.label}: expected {_fmt(want)}, got {_fmt(got)}.")
    else:
        example.append(f"On {case.label}: expected {_fmt(want)} (shape {tuple(want.shape)}), "
                       f"got {_fmt(got)} (shape {tuple(got.shape)}).")

    found = _diagnose(gots, cases, mistakes)
    if found is not None:
        return CheckResult(name, False, [found.message] + example, found.code)

    if any(g.shape != w.shape for g, w in zip(gots, wants)):
        lines = [f"Wrong shape: the answer should be {expected_shape}; yours has shape {tuple(got.shape)}."]
        code = "wrong_shape"
        if reduce_wrong_shape is not None:
            try:
                reduced = [reduce_wrong_shape(g) for g in gots]
            except Exception:  # noqa: BLE001 - an unexpected shape simply gets no second diagnosis
                reduced = None
            if reduced is not None and all(_close(r, w) for r, w in zip(reduced, wants)):
                lines.append(reduce_note + " Apart from that, your numbers are right.")
            elif reduced is not None:
                inner = _diagnose(reduced, cases, mistakes)
                if inner is not None:
                    lines += [reduce_note, "And after that fix: " + inner.message]
        return CheckResult(name, False, lines + example, code)

    if not all(bool(torch.isfinite(g.detach().double()).all()) for g in gots):
        lines = ["Your function returns nan or inf where the right answer is an ordinary number: "
                 "look for a log of 0 or of a negative number, a division by 0, or exp of a large number."]
        return CheckResult(name, False, lines + example, "not_finite")

    lines = ["Your numbers differ from the reference, and not in one of the common ways this checker knows."]
    if hints is not None:
        lines += hints(gots, wants)
    return CheckResult(name, False, lines + example, "wrong_value")


def _diagnose(gots: list[torch.Tensor], cases: list[_Case], mistakes: list[_Mistake]) -> _Mistake | None:
    """The first known-wrong variant that reproduces the student's answers on every case."""
    for m in mistakes:
        try:
            with torch.no_grad():
                ok = all(_close(g, m.fn(*_clone(c.args))) for g, c in zip(gots, cases))
        except Exception:  # noqa: BLE001 - a variant that cannot run on these inputs is not the match
            ok = False
        if ok:
            return m
    return None


def _grad_check(reference: Callable, case: _Case, grad_idx: Sequence[int], names: Sequence[str]) -> Callable[[Callable], _Outcome]:
    """A post-check: the answer must carry gradients to the inputs in grad_idx, and the right ones."""

    def check(fn: Callable) -> _Outcome:
        args = _clone(case.args, grad_idx)
        try:
            with warnings.catch_warnings():  # float(tensor) warns; the diagnosis below says it better
                warnings.simplefilter("ignore")
                out = fn(*args)
        except Exception as e:  # noqa: BLE001 - e.g. an in-place change of an input that requires grad
            return _Outcome(False, [
                f"Your function raised {type(e).__name__} when its inputs require gradients: {e}",
                "Do not modify the input tensors in place (`x -= y`, `x[...] = ...`); compute new tensors instead.",
            ], "exception")
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return _Outcome(False, [
                "Not differentiable: the values are right, but no gradient can flow back to "
                f"{names[grad_idx[0]]}. Something cut the autograd graph: .item(), float(...), .detach(), "
                ".numpy(), math.log / np.log, or a new torch.tensor(...) built from a result. Keep to torch "
                "operations on the input tensors all the way to the answer, so that .backward() reaches the policy.",
            ], "no_grad")
        inputs = [args[i] for i in grad_idx]
        grads = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
        ref_args = _clone(case.args, grad_idx)
        ref_grads = torch.autograd.grad(reference(*ref_args).sum(), [ref_args[i] for i in grad_idx])
        for i, g, rg in zip(grad_idx, grads, ref_grads):
            if g is None or not _close(g, rg):
                return _Outcome(False, [
                    f"The values are right, but the gradient with respect to {names[i]} is "
                    + ("missing" if g is None else "wrong")
                    + ": is part of the computation detached (.detach(), .data, torch.no_grad())?",
                ], "partial_grad")
        return _Outcome(True, [])

    return check


def _rand_logps(gen: torch.Generator, n: int) -> torch.Tensor:
    # Summed log-probs of short completions: negative, tens of nats.
    return -(10 + 50 * torch.rand(n, generator=gen))


# ---------------------------------------------------------------------------------------------
# DPO loss
# ---------------------------------------------------------------------------------------------
_PAIR_NAMES = ("policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps", "beta")


def _dpo_reference(pc, pr, rc, rr, beta):
    return dpo_loss(pc, pr, rc, rr, beta).loss


def _pair_cases(gen: torch.Generator) -> list[_Case]:
    """The worked example of the loss chapter, policy = reference, and random batches at three betas."""
    cases = [
        _Case("the worked example (beta = 0.1, 4 pairs)", (
            torch.tensor([-50.0, -45.0, -55.0, -48.0]), torch.tensor([-52.0, -48.0, -58.0, -46.0]),
            torch.tensor([-51.0, -46.0, -56.0, -49.0]), torch.tensor([-51.0, -46.0, -56.0, -49.0]), 0.1), True),
    ]
    pc, pr = _rand_logps(gen, 5), _rand_logps(gen, 5)
    cases.append(_Case("a batch where the policy equals the reference (beta = 0.5)", (pc, pr, pc.clone(), pr.clone(), 0.5)))
    for beta in (0.1, 0.5, 2.0):
        pc, pr = _rand_logps(gen, 6), _rand_logps(gen, 6)
        rc = pc + 3 * torch.randn(6, generator=gen)
        rr = pr + 3 * torch.randn(6, generator=gen)
        cases.append(_Case(f"a random batch of 6 pairs (beta = {beta})", (pc, pr, rc, rr, beta)))
    return cases


def _margin(pc, pr, rc, rr):
    return (pc - rc) - (pr - rr)


_DPO_MISTAKES = [
    _Mistake("per_pair_vector",
             "You return one loss per pair (a vector) instead of the batch loss, a single number: "
             "average the per-pair losses with .mean().",
             lambda pc, pr, rc, rr, b: -F.logsigmoid(b * _margin(pc, pr, rc, rr))),
    _Mistake("wrong_sign",
             "Wrong sign: you return the log-likelihood log sigma(...) itself, not its negative, so your loss is "
             "negative and minimising it would push the chosen completions DOWN. The loss is -log sigma(beta * margin).",
             lambda pc, pr, rc, rr, b: F.logsigmoid(b * _margin(pc, pr, rc, rr)).mean()),
    _Mistake("swapped",
             "Chosen and rejected are swapped (or the sign inside the sigmoid is flipped): your loss rewards the "
             "rejected completion. The margin is (chosen log-ratio) - (rejected log-ratio), "
             "[(pc - rc) - (pr - rr)].",
             lambda pc, pr, rc, rr, b: -F.logsigmoid(-b * _margin(pc, pr, rc, rr)).mean()),
    _Mistake("beta_policy_only",
             "beta multiplies the policy term only: you compute beta * (pc - pr) - (rc - rr), the bracket error of the "
             "source text's one-line loss. beta must multiply the WHOLE difference of log-ratios: "
             "beta * [(pc - rc) - (pr - rr)].",
             lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr) - (rc - rr)).mean()),
    _Mistake("beta_reference_only",
             "beta multiplies the reference term only: you compute (pc - pr) - beta * (rc - rr). beta must multiply "
             "the WHOLE difference of log-ratios: beta * [(pc - rc) - (pr - rr)].",
             lambda pc, pr, rc, rr, b: -F.logsigmoid((pc - pr) - b * (rc - rr)).mean()),
    _Mistake("no_reference",
             "The reference model is ignored: you use the policy log-probs alone. DPO compares log-RATIOS "
             "log pi(y|x) - log pi_ref(y|x); the reference is what keeps the policy on a leash.",
             lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean()),
    _Mistake("reference_swapped",
             "The reference log-probs of chosen and rejected are swapped: each policy log-prob must be compared with "
             "the reference log-prob of the SAME completion, (pc - rc) for chosen and (pr - rr) for rejected.",
             lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rr) - (pr - rc))).mean()),
    _Mistake("no_beta",
             "beta is missing: the margin must be multiplied by beta, -log sigma(beta * margin). Without it the loss "
             "ignores the strength of the KL leash.",
             lambda pc, pr, rc, rr, b: -F.logsigmoid(_margin(pc, pr, rc, rr)).mean()),
    _Mistake("beta_divides",
             "You divide the margin by beta; DPO multiplies it: -log sigma(beta * margin).",
             lambda pc, pr, rc, rr, b: -F.logsigmoid(_margin(pc, pr, rc, rr) / b).mean()),
    _Mistake("sum_not_mean",
             "Sum instead of mean over the batch: your loss grows with the number of pairs. Use .mean(), so the "
             "loss (and the learning rate that suits it) does not depend on the batch size.",
             lambda pc, pr, rc, rr, b: -F.logsigmoid(b * _margin(pc, pr, rc, rr)).sum()),
    _Mistake("missing_log",
             "The log is missing: you use sigma(...) where the loss has log sigma(...). Use "
             "torch.nn.functional.logsigmoid. Check: when the policy equals the reference the loss must be "
             "log 2 = 0.6931.",
             lambda pc, pr, rc, rr, b: -torch.sigmoid(b * _margin(pc, pr, rc, rr)).mean()),
    _Mistake("missing_log",
             "The log is missing: you use 1 - sigma(...) (or sigma(-...)) where the loss has -log sigma(...). Use "
             "torch.nn.functional.logsigmoid. Check: when the policy equals the reference the loss must be "
             "log 2 = 0.6931.",
             lambda pc, pr, rc, rr, b: torch.sigmoid(-b * _margin(pc, pr, rc, rr)).mean()),
    _Mistake("ipo_not_dpo",
             "You computed the IPO loss (d - 1/(2 beta))^2, not the DPO loss -log sigma(beta * d).",
             lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) - 1 / (2 * b)) ** 2).mean()),
]


def _dpo_hints(gots: list[torch.Tensor], wants: list[torch.Tensor]) -> list[str]:
    at_start = gots[1]  # the case policy == reference
    if at_start.dim() == 0 and not math.isclose(float(at_start), math.log(2), rel_tol=1e-3):
        return [f"A check you can do by hand: when the policy equals the reference every log-ratio is 0, so the loss is "
                f"-log sigma(0) = log 2 = 0.6931 for any beta. Yours is {float(at_start):.4f} there."]
    return ["Your loss is right when the policy equals the reference (log 2) but wrong otherwise: check how you combine "
            "the four log-probs, beta * [(pc - rc) - (pr - rr)], and that you use -logsigmoid and .mean()."]


def _dpo_stability(fn: Callable) -> _Outcome:
    # beta * margin = +300 and -300: log(sigmoid(-300)) is log(0) in floating point, logsigmoid is exact.
    case = _Case("", (torch.tensor([0.0, -3000.0]), torch.tensor([-3000.0, 0.0]),
                      torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0]), 0.1))
    got, problem = _call(fn, case, _PAIR_NAMES)
    if problem is not None or got is None or bool(torch.isfinite(got.detach().double()).all()):
        return _Outcome(True, [])
    return _Outcome(True, [
        "A remark: for a very large margin (beta * margin = -300) your loss is inf or nan, because "
        "log(sigmoid(x)) rounds sigmoid(x) to 0 first. torch.nn.functional.logsigmoid(x) computes the same thing "
        "without that problem.",
    ], note_only=True)


def check_dpo_loss(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pc, pr, rc, rr, beta) = -mean log sigma(beta * [(pc - rc) - (pr - rr)]), a differentiable scalar."""
    gen = torch.Generator().manual_seed(_SEED)
    cases = _pair_cases(gen)
    return _run_check(
        "check_dpo_loss", fn, names=_PAIR_NAMES, reference=_dpo_reference, cases=cases, mistakes=_DPO_MISTAKES,
        expected_shape="a single number (shape ()), the mean loss over the pairs",
        post_checks=[_grad_check(_dpo_reference, cases[2], (0, 1), _PAIR_NAMES), _dpo_stability],
        hints=_dpo_hints, reduce_wrong_shape=lambda g: g.mean() if g.dim() == 1 else g.sum(),
        reduce_note="You return one loss per pair instead of their mean, a single number: add .mean().", quiet=quiet,
    )


# ---------------------------------------------------------------------------------------------
# IPO loss
# ---------------------------------------------------------------------------------------------
def _ipo_reference(pc, pr, rc, rr, beta):
    return dpo_loss(pc, pr, rc, rr, beta, loss_type="ipo").loss


_IPO_MISTAKES = [
    _Mistake("per_pair_vector",
             "You return one loss per pair (a vector) instead of the batch loss, a single number: "
             "average the per-pair losses with .mean().",
             lambda pc, pr, rc, rr, b: (_margin(pc, pr, rc, rr) - 1 / (2 * b)) ** 2),
    _Mistake("wrong_sign",
             "Wrong sign of the target (or chosen and rejected swapped): your loss pulls the margin towards "
             "-1/(2 beta), which prefers the REJECTED completion. IPO's loss is (d - 1/(2 beta))^2 with "
             "d = (pc - rc) - (pr - rr).",
             lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) + 1 / (2 * b)) ** 2).mean()),
    _Mistake("beta_placement",
             "beta is in the wrong place: your target margin is beta/2, IPO's is 1/(2 beta). (In Python `1/2*beta` "
             "means (1/2)*beta: write 1 / (2 * beta).) A LARGER beta must mean a SMALLER target margin: the policy "
             "stays closer to the reference.",
             lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) - b / 2) ** 2).mean()),
    _Mistake("beta_placement",
             "beta is in the wrong place: you multiply the margin by beta, (beta * d - 1/2)^2, as in DPO. IPO's loss "
             "is (d - 1/(2 beta))^2: the raw margin d against a target of 1/(2 beta). (Yours equals beta^2 times "
             "it, which rescales the gradient.)",
             lambda pc, pr, rc, rr, b: ((b * _margin(pc, pr, rc, rr) - 0.5) ** 2).mean()),
    _Mistake("beta_placement",
             "The target margin is off by a factor 2: you use 1/beta, IPO's target is 1/(2 beta).",
             lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) - 1 / b) ** 2).mean()),
    _Mistake("no_reference",
             "The reference model is ignored: d must be the difference of log-RATIOS, (pc - rc) - (pr - rr).",
             lambda pc, pr, rc, rr, b: ((pc - pr - 1 / (2 * b)) ** 2).mean()),
    _Mistake("sum_not_mean",
             "Sum instead of mean over the batch: your loss grows with the number of pairs. Use .mean().",
             lambda pc, pr, rc, rr, b: ((_margin(pc, pr, rc, rr) - 1 / (2 * b)) ** 2).sum()),
    _Mistake("missing_square",
             "The square is missing: IPO regresses the margin onto its target with a SQUARED error, "
             "(d - 1/(2 beta))^2.",
             lambda pc, pr, rc, rr, b: (_margin(pc, pr, rc, rr) - 1 / (2 * b)).mean()),
    _Mistake("missing_square",
             "You use the absolute error |d - 1/(2 beta)|; IPO squares it: (d - 1/(2 beta))^2.",
             lambda pc, pr, rc, rr, b: (_margin(pc, pr, rc, rr) - 1 / (2 * b)).abs().mean()),
    _Mistake("dpo_not_ipo",
             "You computed the DPO loss -log sigma(beta * d), not IPO's (d - 1/(2 beta))^2.",
             lambda pc, pr, rc, rr, b: -F.logsigmoid(b * _margin(pc, pr, rc, rr)).mean()),
]


def check_ipo_loss(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pc, pr, rc, rr, beta) = mean (d - 1/(2 beta))^2 with d = (pc - rc) - (pr - rr), a differentiable scalar."""
    gen = torch.Generator().manual_seed(_SEED + 1)
    cases = _pair_cases(gen)
    return _run_check(
        "check_ipo_loss", fn, names=_PAIR_NAMES, reference=_ipo_reference, cases=cases, mistakes=_IPO_MISTAKES,
        expected_shape="a single number (shape ()), the mean loss over the pairs",
        post_checks=[_grad_check(_ipo_reference, cases[2], (0, 1), _PAIR_NAMES)],
        hints=lambda g, w: [f"When the policy equals the reference d = 0, so the loss is (1/(2 beta))^2 = "
                            f"{float(w[1]):.4f} at beta = 0.5; yours is {_fmt(g[1])} there."],
        reduce_wrong_shape=lambda g: g.mean() if g.dim() == 1 else g.sum(),
        reduce_note="You return one loss per pair instead of their mean, a single number: add .mean().", quiet=quiet,
    )


# ---------------------------------------------------------------------------------------------
# Implicit reward
# ---------------------------------------------------------------------------------------------
_REWARD_NAMES = ("policy_logps", "reference_logps", "beta")

_REWARD_MISTAKES = [
    _Mistake("no_beta",
             "beta is missing: the implicit reward is beta * (log pi - log pi_ref), not the bare log-ratio.",
             lambda p, r, b: p - r),
    _Mistake("wrong_sign",
             "Sign flipped: you compute beta * (log pi_ref - log pi). The reward is positive when the POLICY gives "
             "the completion more probability than the reference: beta * (policy_logps - reference_logps).",
             lambda p, r, b: b * (r - p)),
    _Mistake("ratio",
             "Ratio instead of difference: you divide the log-probs. A log-ratio is a DIFFERENCE of logs, "
             "log(pi / pi_ref) = log pi - log pi_ref: use beta * (policy_logps - reference_logps).",
             lambda p, r, b: b * p / r),
    _Mistake("ratio",
             "Ratio instead of difference: you divide the log-probs (and beta is missing too). A log-ratio is a "
             "DIFFERENCE of logs: beta * (policy_logps - reference_logps).",
             lambda p, r, b: p / r),
    _Mistake("ratio",
             "You use the probability ratio pi / pi_ref = exp(log pi - log pi_ref); the implicit reward uses its LOG: "
             "beta * (policy_logps - reference_logps), no exp.",
             lambda p, r, b: b * torch.exp(p - r)),
    _Mistake("beta_divides",
             "You divide by beta; the implicit reward MULTIPLIES the log-ratio by beta.",
             lambda p, r, b: (p - r) / b),
    _Mistake("wrong_shape",
             "Wrong shape: you return one number for the whole batch (a mean). The implicit reward is one number "
             "PER SEQUENCE: keep the shape of the inputs, (B,), with no .mean() or .sum().",
             lambda p, r, b: (b * (p - r)).mean()),
    _Mistake("wrong_shape",
             "Wrong shape: you return one number for the whole batch (a sum). The implicit reward is one number "
             "PER SEQUENCE: keep the shape of the inputs, (B,), with no .mean() or .sum().",
             lambda p, r, b: (b * (p - r)).sum()),
]


def _reward_cases(gen: torch.Generator) -> list[_Case]:
    cases = [
        _Case("the chosen completions of the worked example (beta = 0.1)",
              (torch.tensor([-50.0, -45.0, -55.0, -48.0]), torch.tensor([-51.0, -46.0, -56.0, -49.0]), 0.1), True),
        _Case("the rejected completions of the worked example (beta = 0.1)",
              (torch.tensor([-52.0, -48.0, -58.0, -46.0]), torch.tensor([-51.0, -46.0, -56.0, -49.0]), 0.1), True),
    ]
    for beta in (0.5, 2.0):
        p = _rand_logps(gen, 7)
        cases.append(_Case(f"a random batch of 7 sequences (beta = {beta})", (p, p + 3 * torch.randn(7, generator=gen), beta)))
    return cases


def check_implicit_reward(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(policy_logps, reference_logps, beta) = beta * (policy_logps - reference_logps), shape (B,)."""
    cases = _reward_cases(torch.Generator().manual_seed(_SEED + 2))
    return _run_check(
        "check_implicit_reward", fn, names=_REWARD_NAMES, reference=compute_implicit_reward, cases=cases,
        mistakes=_REWARD_MISTAKES, expected_shape="one reward per sequence, the shape of the inputs (B,)", quiet=quiet,
    )


# ---------------------------------------------------------------------------------------------
# Sequence log-probs
# ---------------------------------------------------------------------------------------------
_SEQ_NAMES = ("logits", "targets", "mask")


def _token_logps(logits, targets):
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _shifted(logits, targets, mask, logit_shift: int, mask_from_targets: bool):
    """Token log-probs after a needless shift: position t reads logits t+logit_shift for target t+1-logit_shift."""
    lp = torch.log_softmax(logits, dim=-1)
    if logit_shift == 0:  # logits[:, :-1] scored against targets[:, 1:]
        tok = lp[:, :-1].gather(-1, targets[:, 1:].unsqueeze(-1)).squeeze(-1)
        m = mask[:, 1:] if mask_from_targets else mask[:, :-1]
    else:  # logits[:, 1:] scored against targets[:, :-1]
        tok = lp[:, 1:].gather(-1, targets[:, :-1].unsqueeze(-1)).squeeze(-1)
        m = mask[:, :-1] if mask_from_targets else mask[:, 1:]
    return (tok * m.float()).sum(-1)


_SHIFT_MESSAGE = (
    "Off by one: you shift the logits or the targets by one position. Here they are already aligned: "
    "logits[:, t] is the distribution that predicts targets[:, t], and mask[:, t] says whether that target counts. "
    "Gather at the same position t, with no slicing."
)

_SEQ_MISTAKES = [
    _Mistake("per_token",
             "Wrong shape: you return one log-prob per TOKEN, shape (B, T). Sum over the time dimension "
             "(.sum(dim=-1)) to get one log-prob per sequence, shape (B,).",
             lambda lg, t, m: _token_logps(lg, t) * m.float()),
    _Mistake("batch_total",
             "Wrong shape: you return one number for the whole batch. Return one log-prob per sequence, shape (B,): "
             "sum over the time dimension only (.sum(dim=-1)). (Indexing with the mask, x[mask], flattens the batch.)",
             lambda lg, t, m: (_token_logps(lg, t) * m.float()).sum()),
    _Mistake("mean_not_sum",
             "Mean instead of sum: you average the log-probs of the completion tokens. log pi(y|x) is a SUM over "
             "tokens (the log of a product of probabilities); the per-token mean is a different, length-normalised "
             "objective.",
             lambda lg, t, m: sequence_logprobs(lg, t, m, average=True)),
    _Mistake("mean_not_sum",
             "Mean instead of sum: you average over all T positions. log pi(y|x) is a SUM over the completion "
             "tokens: use .sum(dim=-1) after masking.",
             lambda lg, t, m: (_token_logps(lg, t) * m.float()).mean(-1)),
    _Mistake("not_masked",
             "Prompt and padding tokens are counted: you sum the log-probs at every position. Multiply by the mask "
             "(or use torch.where) so that only completion tokens, where mask is True, add to the sum.",
             lambda lg, t, m: _token_logps(lg, t).sum(-1)),
    _Mistake("mask_inverted",
             "The mask is inverted: you sum over the prompt and padding and leave out the completion. mask is True "
             "on the completion tokens, the ones to KEEP.",
             lambda lg, t, m: (_token_logps(lg, t) * (~m).float()).sum(-1)),
    _Mistake("probs_not_logprobs",
             "Probabilities instead of log-probabilities: you use softmax where the sum needs log_softmax. "
             "Use torch.log_softmax(logits, dim=-1) (log of a product = sum of logs).",
             lambda lg, t, m: (torch.softmax(lg, -1).gather(-1, t.unsqueeze(-1)).squeeze(-1) * m.float()).sum(-1)),
    _Mistake("probs_not_logprobs",
             "You return the sequence's PROBABILITY (a product of softmax probabilities); the course works with its "
             "log: sum the log_softmax values instead (it is also far more accurate for long sequences).",
             lambda lg, t, m: torch.where(m, torch.softmax(lg, -1).gather(-1, t.unsqueeze(-1)).squeeze(-1), 1.0).prod(-1)),
    _Mistake("unnormalised_logits",
             "You gather the raw logits: they are unnormalised scores, not log-probabilities. Normalise first with "
             "torch.log_softmax(logits, dim=-1), then gather the targets.",
             lambda lg, t, m: (lg.gather(-1, t.unsqueeze(-1)).squeeze(-1) * m.float()).sum(-1)),
    _Mistake("wrong_softmax_dim",
             "log_softmax over the wrong dimension: you normalise over the time axis. Normalise over the vocabulary, "
             "the last dimension: torch.log_softmax(logits, dim=-1).",
             lambda lg, t, m: (torch.log_softmax(lg, 1).gather(-1, t.unsqueeze(-1)).squeeze(-1) * m.float()).sum(-1)),
    _Mistake("shifted", _SHIFT_MESSAGE, lambda lg, t, m: _shifted(lg, t, m, 0, True)),
    _Mistake("shifted", _SHIFT_MESSAGE, lambda lg, t, m: _shifted(lg, t, m, 0, False)),
    _Mistake("shifted", _SHIFT_MESSAGE, lambda lg, t, m: _shifted(lg, t, m, 1, True)),
    _Mistake("shifted", _SHIFT_MESSAGE, lambda lg, t, m: _shifted(lg, t, m, 1, False)),
]


def _seq_cases(gen: torch.Generator) -> list[_Case]:
    # A tiny case by hand: 2 rows, 3 positions, vocabulary 3; row 0 is prompt, completion, completion,
    # row 1 is prompt, completion, padding.
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]],
                           [[1.0, 1.0, 1.0], [-2.0, 0.0, 2.0], [0.0, 4.0, 0.0]]])
    targets = torch.tensor([[1, 1, 2], [0, 2, 0]])
    mask = torch.tensor([[False, True, True], [False, True, False]])
    cases = [_Case("a small batch (2 sequences, 3 positions, vocabulary of 3)", (logits, targets, mask))]
    for B, T, V in ((4, 7, 6), (3, 9, 11)):
        logits = 2 * torch.randn(B, T, V, generator=gen)
        targets = torch.randint(0, V, (B, T), generator=gen)
        mask = torch.zeros(B, T, dtype=torch.bool)
        for i in range(B):  # a prompt of 1-3 tokens, then a completion, then padding
            start = int(torch.randint(1, 4, (1,), generator=gen))
            stop = int(torch.randint(start + 2, T + 1, (1,), generator=gen))
            mask[i, start:stop] = True
        cases.append(_Case(f"a random batch (B={B}, T={T}, V={V}) with prompt, completion and padding", (logits, targets, mask)))
    return cases


def check_sequence_logprobs(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(logits (B,T,V), targets (B,T), mask (B,T) bool) = per-row sum of log p(target) over masked positions, (B,)."""
    gen = torch.Generator().manual_seed(_SEED + 3)
    cases = _seq_cases(gen)
    return _run_check(
        "check_sequence_logprobs", fn, names=_SEQ_NAMES, reference=lambda lg, t, m: sequence_logprobs(lg, t, m),
        cases=cases, mistakes=_SEQ_MISTAKES, expected_shape="one summed log-prob per sequence, shape (B,)",
        post_checks=[_grad_check(lambda lg, t, m: sequence_logprobs(lg, t, m), cases[1], (0,), _SEQ_NAMES)],
        hints=lambda g, w: ["Check the steps one by one: log_softmax over the vocabulary (dim=-1), gather the "
                            "targets' entries, zero the positions where mask is False, sum over dim=-1."],
        quiet=quiet,
    )


# ---------------------------------------------------------------------------------------------
# DPO gradient weight
# ---------------------------------------------------------------------------------------------
_WEIGHT_NAMES = ("chosen_rewards", "rejected_rewards")

_WEIGHT_MISTAKES = [
    _Mistake("wrong_sign",
             "Sign flipped: you compute sigma(r_w - r_l). The weight must be LARGE when the implicit reward orders the "
             "pair WRONGLY (rejected above chosen): sigma(r_hat(y_l) - r_hat(y_w)) = "
             "sigmoid(rejected_rewards - chosen_rewards).",
             lambda w, l: torch.sigmoid(w - l)),
    _Mistake("no_sigmoid",
             "The sigmoid is missing: you return the reward difference itself. The weight is "
             "sigma(r_l - r_w), a number between 0 and 1: torch.sigmoid(rejected_rewards - chosen_rewards).",
             lambda w, l: l - w),
    _Mistake("no_sigmoid",
             "The sigmoid is missing (and the sign is flipped): you return r_w - r_l. The weight is "
             "sigma(r_l - r_w), a number between 0 and 1: torch.sigmoid(rejected_rewards - chosen_rewards).",
             lambda w, l: w - l),
    _Mistake("log_sigmoid",
             "You take log sigma(...); the weight is sigma(...) itself, a number between 0 and 1. (log sigma is in the "
             "loss; its derivative gives the weight.)",
             lambda w, l: F.logsigmoid(l - w)),
    _Mistake("sigmoid_difference",
             "You subtract two sigmoids, sigma(r_l) - sigma(r_w). The weight is the sigmoid OF the difference: "
             "sigma(r_l - r_w).",
             lambda w, l: torch.sigmoid(l) - torch.sigmoid(w)),
    _Mistake("wrong_shape",
             "Wrong shape: you return one number for the batch (a mean). The weight is one number PER PAIR: keep the "
             "shape (B,), no .mean().",
             lambda w, l: torch.sigmoid(l - w).mean()),
]


def _weight_cases(gen: torch.Generator) -> list[_Case]:
    return [
        _Case("the rewards of the worked example", (torch.tensor([0.1, 0.1, 0.1, 0.1]), torch.tensor([-0.1, -0.2, -0.2, 0.3])), True),
        _Case("random rewards for 6 pairs", (2 * torch.randn(6, generator=gen), 2 * torch.randn(6, generator=gen))),
        _Case("random rewards for 5 pairs", (torch.randn(5, generator=gen), 3 * torch.randn(5, generator=gen))),
    ]


def check_gradient_weight(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(chosen_rewards, rejected_rewards) = sigma(r_hat(y_l) - r_hat(y_w)), one weight per pair (B,)."""
    cases = _weight_cases(torch.Generator().manual_seed(_SEED + 4))
    return _run_check(
        "check_gradient_weight", fn, names=_WEIGHT_NAMES, reference=dpo_gradient_weight, cases=cases,
        mistakes=_WEIGHT_MISTAKES, expected_shape="one weight per pair, shape (B,)",
        hints=lambda g, w: ["The weight is sigma(r_l - r_w): 0.5 when the two rewards are equal, near 1 when the "
                            "rejected completion has the higher reward."],
        quiet=quiet,
    )


# ---------------------------------------------------------------------------------------------
# Closed-form optimum on a bandit
# ---------------------------------------------------------------------------------------------
_BANDIT_NAMES = ("pi_ref", "rewards", "beta")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.sum()


_BANDIT_MISTAKES = [
    _Mistake("beta_multiplies",
             "beta multiplies the reward; it must DIVIDE it: pi_ref * exp(r / beta) / Z. (With your version a larger "
             "beta moves the policy further from the reference; it should keep it closer.)",
             lambda p, r, b: _normalise(p * torch.exp(r * b))),
    _Mistake("not_normalised",
             "Not normalised: your probabilities do not sum to 1. Divide by Z = sum_y pi_ref(y) exp(r(y)/beta).",
             lambda p, r, b: p * torch.exp(r / b)),
    _Mistake("pi_ref_ignored",
             "pi_ref is ignored: you return softmax(r / beta). The optimum REWEIGHTS the reference: "
             "pi_ref * exp(r / beta) / Z.",
             lambda p, r, b: torch.softmax(r / b, -1)),
    _Mistake("wrong_sign",
             "Sign flipped: exp(-r / beta) moves probability towards the LOW-reward responses. Use exp(+r / beta).",
             lambda p, r, b: _normalise(p * torch.exp(-r / b))),
    _Mistake("wrong_normaliser",
             "Wrong normaliser: you divide by sum_y exp(r(y)/beta), so the result does not sum to 1. Z must be weighted "
             "by the reference: Z = sum_y pi_ref(y) exp(r(y)/beta).",
             lambda p, r, b: p * torch.exp(r / b) / torch.exp(r / b).sum()),
    _Mistake("log_space_pi_ref",
             "In log space you add pi_ref itself; add its LOG: softmax(log(pi_ref) + r / beta).",
             lambda p, r, b: torch.softmax(p + r / b, -1)),
]


def _bandit_overflow(fn: Callable) -> _Outcome:
    case = _Case("small beta", (torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64),
                                torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64), 0.001))
    got, problem = _call(fn, case, _BANDIT_NAMES)
    if problem is not None:
        return _Outcome(False, ["Your function works for moderate beta but fails for beta = 0.001:"] + problem.lines, problem.mistake)
    want = optimal_policy(*case.args)
    if _close(got, want):
        return _Outcome(True, [])
    if not bool(torch.isfinite(got.detach().double()).all()):
        return _Outcome(False, [
            "Overflow for small beta: with beta = 0.001 and rewards up to 3, exp(r / beta) = exp(3000) is inf, and "
            "inf / inf is nan. Work in log space: log pi_ref + r / beta, then torch.softmax (or subtract "
            "torch.logsumexp before exp). The answer here is almost all mass on the best response.",
            f"Input: {_fmt_args(_BANDIT_NAMES, case.args)}: expected {_fmt(want)}, got {_fmt(got)}.",
        ], "overflow")
    return _Outcome(False, [
        f"Your function is right for moderate beta but wrong for beta = 0.001: expected {_fmt(want)}, got {_fmt(got)}. "
        "As beta -> 0 all the probability goes to the highest-reward response.",
    ], "small_beta")


def _bandit_cases(gen: torch.Generator) -> list[_Case]:
    f64 = dict(dtype=torch.float64)
    cases = [_Case("a 3-response bandit (beta = 1)",
                   (torch.tensor([0.5, 0.3, 0.2], **f64), torch.tensor([1.0, 0.0, 2.0], **f64), 1.0), True)]
    for K, beta in ((5, 0.5), (6, 2.0)):
        pi_ref = _normalise(torch.rand(K, generator=gen, **f64) + 0.05)
        cases.append(_Case(f"a random {K}-response bandit (beta = {beta})", (pi_ref, torch.randn(K, generator=gen, **f64), beta)))
    return cases


def check_bandit_optimum(fn: Callable, *, quiet: bool = False) -> CheckResult:
    """Check fn(pi_ref (K,), rewards (K,), beta) = pi_ref * exp(rewards / beta) / Z, also for tiny beta (no overflow)."""
    cases = _bandit_cases(torch.Generator().manual_seed(_SEED + 5))
    return _run_check(
        "check_bandit_optimum", fn, names=_BANDIT_NAMES, reference=optimal_policy, cases=cases,
        mistakes=_BANDIT_MISTAKES, expected_shape="one probability per response, the shape of pi_ref (K,)",
        post_checks=[_bandit_overflow],
        hints=lambda g, w: ["pi*(y) = pi_ref(y) exp(r(y) / beta) / Z with Z = sum_y pi_ref(y) exp(r(y) / beta); "
                            "the result must be positive and sum to 1."],
        quiet=quiet,
    )


def _codes(mistakes: list[_Mistake], *extra: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys([m.code for m in mistakes] + list(extra)))


# The mistakes each checker can name (CheckResult.mistake), besides the GENERIC_MISTAKES any checker reports.
MISTAKE_CODES: dict[str, tuple[str, ...]] = {
    "check_dpo_loss": _codes(_DPO_MISTAKES, "no_grad", "partial_grad"),
    "check_implicit_reward": _codes(_REWARD_MISTAKES),
    "check_sequence_logprobs": _codes(_SEQ_MISTAKES, "no_grad", "partial_grad"),
    "check_gradient_weight": _codes(_WEIGHT_MISTAKES),
    "check_bandit_optimum": _codes(_BANDIT_MISTAKES, "overflow", "small_beta"),
    "check_ipo_loss": _codes(_IPO_MISTAKES, "no_grad", "partial_grad"),
}
GENERIC_MISTAKES = ("not_callable", "not_implemented", "exception", "returned_none", "not_a_tensor",
                    "wrong_shape", "not_finite", "wrong_value")

CHECKERS: dict[str, Callable[..., CheckResult]] = {
    "check_dpo_loss": check_dpo_loss,
    "check_implicit_reward": check_implicit_reward,
    "check_sequence_logprobs": check_sequence_logprobs,
    "check_gradient_weight": check_gradient_weight,
    "check_bandit_optimum": check_bandit_optimum,
    "check_ipo_loss": check_ipo_loss,
}

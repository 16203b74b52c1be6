"""The machinery every checker shares: run the student's function safely, compare, diagnose, report.

A checker describes itself with a `_Check` (the reference, the inputs, the known-wrong variants, extra checks)
and hands it to `_run_check`, which returns a `CheckResult`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

# float32 arithmetic in the student's code differs from the reference in the last digits only.
_RTOL, _ATOL = 1e-4, 1e-6
_SEED = 20230529  # fixed: every student sees the same "random" inputs, so feedback is repeatable


@dataclass
class CheckResult:
    """The verdict of one checker: `passed`, the feedback lines, and a short code for the diagnosed mistake."""

    name: str
    passed: bool
    feedback: list[str]
    mistake: str | None = (
        None  # e.g. "wrong_sign", "beta_policy_only"; None when passed or not diagnosed
    )
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
    label: (
        str  # how the feedback names this input, e.g. "the worked example (beta = 0.1)"
    )
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


@dataclass
class _Check:
    """What one checker compares the student's function with, and how it explains a difference."""

    name: str  # the checker's name, e.g. "check_dpo_loss"
    names: Sequence[str]  # the function's argument names, for the feedback
    reference: Callable[..., torch.Tensor]
    cases: list[_Case]
    mistakes: list[
        _Mistake
    ]  # tried in order; the first that reproduces every answer is the diagnosis
    expected_shape: str  # completes "the answer should be ..."
    post_checks: Sequence[
        Callable[[Callable], _Outcome]
    ] = ()  # run once the values are right
    hints: Callable[[list[torch.Tensor], list[torch.Tensor]], list[str]] | None = (
        None  # for undiagnosed answers
    )
    reduce_wrong_shape: Callable[[torch.Tensor], torch.Tensor] | None = (
        None  # turns a wrong shape into the right one
    )
    reduce_note: str = ""  # says what reduce_wrong_shape fixed


def _generator(offset: int) -> torch.Generator:
    """The seeded generator of one checker's random inputs; each checker has its own offset."""
    return torch.Generator().manual_seed(_SEED + offset)


def _rand_logps(gen: torch.Generator, n: int) -> torch.Tensor:
    # Summed log-probs of short completions: negative, tens of nats.
    return -(10 + 50 * torch.rand(n, generator=gen))


def _codes(mistakes: list[_Mistake], *extra: str) -> tuple[str, ...]:
    """The distinct mistake codes of a checker, in the order it tries them, then those of its post-checks."""
    return tuple(dict.fromkeys([m.code for m in mistakes] + list(extra)))


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
    return bool(
        torch.allclose(
            got.detach().cpu().double(),
            want.detach().cpu().double(),
            rtol=_RTOL,
            atol=_ATOL,
        )
    )


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x.detach().double()).all())


def _as_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    try:
        return torch.as_tensor(out, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def _call(
    fn: Callable, case: _Case, names: Sequence[str]
) -> tuple[torch.Tensor | None, _Outcome | None]:
    """Run fn on a copy of the case's inputs; an exception or a non-tensor answer becomes feedback."""
    try:
        out = fn(*_clone(case.args))
    except NotImplementedError:
        return None, _Outcome(
            False,
            [
                "Not implemented yet: replace the `raise NotImplementedError` line with your code, run that cell, "
                "then run this check again."
            ],
            "not_implemented",
        )
    except Exception as e:  # the student's code may raise anything; name it instead of crashing the notebook
        return None, _Outcome(
            False,
            [
                f"Your function raised {type(e).__name__}: {e}",
                f"It was called with {_fmt_args(names, case.args)}.",
            ],
            "exception",
        )
    if out is None:
        return None, _Outcome(
            False,
            ["Your function returned None: is the `return` statement missing?"],
            "returned_none",
        )
    t = _as_tensor(out)
    if t is None:
        return None, _Outcome(
            False,
            [f"Your function returned a {type(out).__name__}; return a torch.Tensor."],
            "not_a_tensor",
        )
    return t, None


def _run_check(check: _Check, fn: Any, *, quiet: bool = False) -> CheckResult:
    """Judge fn, print the report unless quiet, return the verdict."""
    result = _judge(check, fn)
    if not quiet:
        print(result)
        result.printed = True
    return result


def _judge(check: _Check, fn: Any) -> CheckResult:
    """Reference first, then the student's answers; when they differ, the first known mistake that explains them."""
    name = check.name
    if not callable(fn):
        return CheckResult(
            name,
            False,
            [
                f"{name} expects your function itself, got a {type(fn).__name__}. "
                f"Write {name}(my_function), not {name}(my_function(...))."
            ],
            "not_callable",
        )
    with torch.no_grad():
        wants = [check.reference(*_clone(c.args)) for c in check.cases]
    gots = []
    for case in check.cases:
        got, problem = _call(fn, case, check.names)
        if problem is not None:
            return CheckResult(name, False, problem.lines, problem.mistake)
        gots.append(got)

    if all(_close(g, w) for g, w in zip(gots, wants)):
        notes: list[str] = []
        for post_check in check.post_checks:
            outcome = post_check(fn)
            if not outcome.ok:
                return CheckResult(name, False, outcome.lines, outcome.mistake)
            notes += outcome.lines
        lines = [
            f"Matches dpolib's reference on {len(check.cases)} inputs (fixed and random). Well done."
        ] + notes
        return CheckResult(name, True, lines, None)
    return _explain(check, gots, wants)


def _explain(
    check: _Check, gots: list[torch.Tensor], wants: list[torch.Tensor]
) -> CheckResult:
    """The verdict on answers that differ from the reference: the diagnosis, then the first differing example."""
    i = next(k for k, (g, w) in enumerate(zip(gots, wants)) if not _close(g, w))
    case, got, want = check.cases[i], gots[i], wants[i]
    example = []
    if case.show_inputs:
        example.append(f"Input: {_fmt_args(check.names, case.args)}.")
    if got.shape == want.shape:
        example.append(f"On {case.label}: expected {_fmt(want)}, got {_fmt(got)}.")
    else:
        example.append(
            f"On {case.label}: expected {_fmt(want)} (shape {tuple(want.shape)}), "
            f"got {_fmt(got)} (shape {tuple(got.shape)})."
        )

    found = _diagnose(gots, check.cases, check.mistakes)
    if found is not None:
        return CheckResult(check.name, False, [found.message] + example, found.code)

    if any(g.shape != w.shape for g, w in zip(gots, wants)):
        lines = [
            f"Wrong shape: the answer should be {check.expected_shape}; yours has shape {tuple(got.shape)}."
        ]
        return CheckResult(
            check.name,
            False,
            lines + _after_reshape(check, gots, wants) + example,
            "wrong_shape",
        )

    if not all(_finite(g) for g in gots):
        lines = [
            "Your function returns nan or inf where the right answer is an ordinary number: "
            "look for a log of 0 or of a negative number, a division by 0, or exp of a large number."
        ]
        return CheckResult(check.name, False, lines + example, "not_finite")

    lines = [
        "Your numbers differ from the reference, and not in one of the common ways this checker knows."
    ]
    if check.hints is not None:
        lines += check.hints(gots, wants)
    return CheckResult(check.name, False, lines + example, "wrong_value")


def _after_reshape(
    check: _Check, gots: list[torch.Tensor], wants: list[torch.Tensor]
) -> list[str]:
    """For answers of the wrong shape: what remains wrong once reduce_wrong_shape has fixed the shape."""
    if check.reduce_wrong_shape is None:
        return []
    try:
        reduced = [check.reduce_wrong_shape(g) for g in gots]
    except Exception:  # noqa: BLE001 - an unexpected shape simply gets no second diagnosis
        return []
    if all(_close(r, w) for r, w in zip(reduced, wants)):
        return [check.reduce_note + " Apart from that, your numbers are right."]
    inner = _diagnose(reduced, check.cases, check.mistakes)
    if inner is not None:
        return [check.reduce_note, "And after that fix: " + inner.message]
    return []


def _diagnose(
    gots: list[torch.Tensor], cases: list[_Case], mistakes: list[_Mistake]
) -> _Mistake | None:
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


def _grad_check(
    reference: Callable, case: _Case, grad_idx: Sequence[int], names: Sequence[str]
) -> Callable[[Callable], _Outcome]:
    """A post-check: the answer must carry gradients to the inputs in grad_idx, and the right ones."""

    def check(fn: Callable) -> _Outcome:
        args = _clone(case.args, grad_idx)
        try:
            with (
                warnings.catch_warnings()
            ):  # float(tensor) warns; the diagnosis below says it better
                warnings.simplefilter("ignore")
                out = fn(*args)
        except Exception as e:  # noqa: BLE001 - e.g. an in-place change of an input that requires grad
            return _Outcome(
                False,
                [
                    f"Your function raised {type(e).__name__} when its inputs require gradients: {e}",
                    "Do not modify the input tensors in place (`x -= y`, `x[...] = ...`); compute new tensors instead.",
                ],
                "exception",
            )
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return _Outcome(
                False,
                [
                    "Not differentiable: the values are right, but no gradient can flow back to "
                    f"{names[grad_idx[0]]}. Something cut the autograd graph: .item(), float(...), .detach(), "
                    ".numpy(), math.log / np.log, or a new torch.tensor(...) built from a result. Keep to torch "
                    "operations on the input tensors all the way to the answer, so that .backward() reaches the policy.",
                ],
                "no_grad",
            )
        inputs = [args[i] for i in grad_idx]
        grads = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
        ref_args = _clone(case.args, grad_idx)
        ref_grads = torch.autograd.grad(
            reference(*ref_args).sum(), [ref_args[i] for i in grad_idx]
        )
        for i, g, rg in zip(grad_idx, grads, ref_grads):
            if g is None or not _close(g, rg):
                return _Outcome(
                    False,
                    [
                        f"The values are right, but the gradient with respect to {names[i]} is "
                        + ("missing" if g is None else "wrong")
                        + ": is part of the computation detached (.detach(), .data, torch.no_grad())?",
                    ],
                    "partial_grad",
                )
        return _Outcome(True, [])

    return check

"""The machinery every checker shares: run the student's function safely, compare,
diagnose, report.

A checker describes itself with a `_Check` (the reference, the inputs, the known-wrong
variants, extra checks) and hands it to `_run_check`, which returns a `CheckResult`.
`_run_check` calls the student's function only through a `_Guarded` wrapper, so every
checker gets the same protections: a per-call time limit, `sys.exit()` caught, a
function that runs dpolib's own reference code failed, and an answer of the wrong type
named.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

# float32 arithmetic in the student's code differs from the reference in the last digits
# only.
_RTOL, _ATOL = 1e-4, 1e-6
# fixed: every student sees the same "random" inputs, so feedback is repeatable
_SEED = 20230529
# Seconds one call of the student's function may take. The inputs are tiny (the
# reference needs milliseconds), so
# only a loop that never ends, or work far beyond what the exercise needs, gets near it.
_TIME_LIMIT = 10.0


@dataclass
class CheckResult:
    """The verdict of one checker: `passed`, the feedback lines, and a short code for
    the diagnosed mistake.
    """

    name: str
    passed: bool
    feedback: list[str]
    mistake: str | None = (
        None  # e.g. "wrong_sign", "beta_policy_only"; None when passed or not diagnosed
    )
    printed: bool = field(default=False, repr=False, compare=False)
    # "module.qualname" of each dpolib function the checker's reference runs: what the
    # student may not call
    # (and what the student edition must not show before the exercise).
    references: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = f"{self.name}: " + ("passed." if self.passed else "not yet.")
        return "\n".join([head] + [f"  - {line}" for line in self.feedback])

    def _ipython_display_(self) -> None:
        # The checker already printed the report; showing it again as the cell's value
        # is noise.
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
    """What one checker compares the student's function with, and how it explains a
    difference.
    """

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
    # dpolib functions or modules the student's function may call although the reference
    # runs them too (a
    # checker that hands the student a model lists dpolib.model here; model, tokenizer,
    # errors and runtime
    # always are allowed).
    allowed: Sequence[Any] = ()
    time_limit: float | None = None  # seconds per call; None: _TIME_LIMIT
    # the answer is a plain quantity (a byte count, say): a Python number is accepted
    numbers_ok: bool = False


def _generator(offset: int) -> torch.Generator:
    """The seeded generator of one checker's random inputs; each checker has its own
    offset.
    """
    return torch.Generator().manual_seed(_SEED + offset)


def _rand_logps(gen: torch.Generator, n: int) -> torch.Tensor:
    # Summed log-probs of short completions: negative, tens of nats.
    return -(10 + 50 * torch.rand(n, generator=gen))


def _codes(mistakes: list[_Mistake], *extra: str) -> tuple[str, ...]:
    """The distinct mistake codes of a checker, in the order it tries them, then those
    of its post-checks.
    """
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


# --------------------------------------------------------------------------------------
# Calling the student's function under guard
# --------------------------------------------------------------------------------------
_DPOLIB = Path(__file__).resolve().parents[2]  # the dpolib package folder
# dpolib code a student's function may always run: the network, the tokenizer, messages,
# devices, the machinery.
_SHARED = {
    _DPOLIB / "model.py",
    _DPOLIB / "tokenizer.py",
    _DPOLIB / "errors.py",
    _DPOLIB / "runtime.py",
    Path(__file__).resolve(),
}
_TORCH = str(Path(torch.__file__).resolve().parent)


class _Verdict(BaseException):
    """Fails the whole check from wherever the student's function was called (a cheat,
    a time-out, an exit).

    A BaseException, so that neither the student's `except Exception` nor a
    checker's own handler stops it.
    """

    def __init__(self, lines: list[str], mistake: str) -> None:
        super().__init__(lines[0])
        self.lines, self.mistake = lines, mistake


class _TimeUp(BaseException):
    """Raised inside the student's function when its call runs past the time limit."""


def _qualified(code: types.CodeType) -> str:
    path = Path(code.co_filename).resolve()
    module = ".".join(path.relative_to(_DPOLIB.parent).with_suffix("").parts)
    qualname = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
    return f"{module.removesuffix('.__init__')}.{qualname}"


def _allowed_files_and_codes(allowed: Sequence[Any]) -> tuple[set[Path], set[Any]]:
    files, codes = set(_SHARED), set()
    for obj in allowed:
        # getattr: a module built in memory has no __file__ attribute at all
        is_module = isinstance(obj, types.ModuleType)
        file = getattr(obj, "__file__", None) if is_module else None
        if file:
            files.add(Path(file).resolve())
        else:
            code = getattr(getattr(obj, "__func__", obj), "__code__", None)
            if code is not None:
                codes.add(code)
    return files, codes


def _reference_code(check: _Check) -> tuple[dict[Any, str], type | None]:
    """The dpolib code objects the reference runs on the first case (name for each),
    and the type it returns.
    """
    files, codes = _allowed_files_and_codes(check.allowed)
    seen: dict[Any, str] = {}
    skipped: set[Any] = set()

    def record(frame: types.FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if code in seen or code in skipped:
            return None
        path = Path(code.co_filename)
        caller = frame.f_back
        while caller is not None and caller.f_code not in codes:
            caller = caller.f_back
        if caller is not None:  # run by an allowed function: allowed too
            return None
        if (
            code not in codes
            and path.suffix == ".py"
            and _DPOLIB in path.resolve().parents
            and path.resolve() not in files
        ):
            seen[code] = _qualified(code)
        else:
            skipped.add(code)
        return None

    previous = sys.gettrace()
    sys.settrace(record)
    try:
        with torch.no_grad():
            out = check.reference(*_clone(check.cases[0].args))
    finally:
        sys.settrace(previous)
    return seen, type(out)


class _Guarded:
    """The student's function, called with a time limit, with `sys.exit()` caught, and
    watched for dpolib's reference code: what any checker calls instead of the
    function itself, so that all get the same rules.
    """

    def __init__(
        self,
        fn: Callable,
        forbidden: dict[Any, str],
        time_limit: float,
        expects: type | None = None,
    ) -> None:
        self.fn, self.forbidden, self.time_limit = fn, forbidden, time_limit
        # the type of the reference's answer: a torch.Tensor asks for a torch.Tensor
        self.expects = expects
        self.called: str | None = (
            None  # the first reference function the student's code ran
        )
        self._deadline = 0.0
        self._alarm = False
        self._running = False

    # The trace function: sees every Python call made while the student's function runs.
    def _trace(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if not self._running:
            return None
        name = self.forbidden.get(frame.f_code)
        if name is not None and self.called is None:
            self.called = name
        if time.monotonic() > self._deadline:
            raise _TimeUp
        if self._alarm or frame.f_code.co_filename.startswith(_TORCH):
            return (
                None  # with SIGALRM no per-line tracing is needed until the time is up
            )
        return self._line

    def _line(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        # Without SIGALRM (another thread, Windows) a loop in Python code is stopped
        # between two lines. In
        # the main thread the alarm repeats and re-arms this on every frame, so a bare
        # `except:` cannot
        # swallow the time-out for good: the next line, in the handler itself, raises
        # again.
        # (Only on "line": raised on the "exception" event it would be the one a bare
        # `except:` catches.)
        if event == "line" and self._running and time.monotonic() > self._deadline:
            raise _TimeUp
        return self._line

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if not self._running:
            return
        # Trace every line of the student's frames from now on (see _line), then
        # interrupt.
        sys.settrace(self._trace)
        while frame is not None and frame.f_code is not _Guarded.__call__.__code__:
            frame.f_trace = self._line
            frame = frame.f_back
        raise _TimeUp

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._running:  # a post-check calling through a helper that guards again
            return self.fn(*args, **kwargs)
        self.called = None
        self._deadline = time.monotonic() + self.time_limit
        use_alarm = (
            hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0]
            == 0  # no other timer to disturb
        )
        previous_handler = None
        if use_alarm:
            previous_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            # repeats every 0.5 s, in case a bare `except:` in the student's code
            # swallowed the first one
            signal.setitimer(signal.ITIMER_REAL, self.time_limit, 0.5)
        self._alarm = use_alarm
        previous_trace = sys.gettrace()
        self._running = True
        sys.settrace(self._trace)
        # (the function itself is the first call the trace function sees: dpolib's
        # reference too)
        try:
            out = self.fn(*args, **kwargs)
        except _TimeUp:
            raise self._timeout() from None
        except SystemExit as e:
            raise _Verdict(
                [
                    "Your function called sys.exit() (or exit(), or raised "
                    f"SystemExit: {e.code!r}). A function "
                    "must return its answer; in a notebook an exit would stop the "
                    "kernel. Remove the exit and "
                    "return the value."
                ],
                "exited",
            ) from None
        finally:
            # from here on the trace function and the alarm handler stand down
            self._running = False
            sys.settrace(previous_trace)
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous_handler)
        if (
            time.monotonic() > self._deadline
        ):  # the time-out was swallowed by a bare `except:`
            raise self._timeout()
        if self.called is not None:
            raise _Verdict(
                [
                    f"Your function calls dpolib's own `{self.called}`, the reference "
                    "this checker compares "
                    "with, so it cannot pass: the exercise is to write the "
                    "computation yourself, with torch "
                    "operations on the inputs."
                ],
                "calls_reference",
            )
        return out

    def _timeout(self) -> _Verdict:
        return _Verdict(
            [
                f"Your function did not return within {self.time_limit:g} s (dpolib's "
                "reference needs "
                "milliseconds on these inputs), so the checker stopped it. Look for a "
                "loop that never ends "
                "(a `while` whose condition never becomes false) or work far beyond "
                "what the exercise needs."
            ],
            "time_limit",
        )


def _type_name(x: Any) -> str:
    module = type(x).__module__.split(".")[0]
    return type(x).__name__ if module == "builtins" else f"{module}.{type(x).__name__}"


def _call(
    fn: Callable, case: _Case, names: Sequence[str]
) -> tuple[torch.Tensor | None, _Outcome | None]:
    """Run fn on a copy of the case's inputs; an exception or an answer of the wrong
    type becomes feedback.
    """
    try:
        out = fn(*_clone(case.args))
    except NotImplementedError:
        return None, _Outcome(
            False,
            [
                "Not implemented yet: replace the `raise NotImplementedError` line "
                "with your code, run that cell, "
                "then run this check again."
            ],
            "not_implemented",
        )
    # the student's code may raise anything; name it instead of crashing the notebook
    except Exception as e:
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
    expects = getattr(fn, "expects", None)
    if isinstance(expects, type) and issubclass(expects, torch.Tensor):
        if not isinstance(out, torch.Tensor):
            # Converting a list or an array here would pass a function whose answer
            # breaks the next cell.
            return None, _Outcome(
                False,
                [
                    f"Your function returned a {_type_name(out)}, not a torch.Tensor. "
                    "Return a tensor computed with torch operations on the input "
                    "tensors "
                    "(a list, a NumPy array or a Python number breaks the cells that "
                    "use your function, and "
                    "cuts autograd's graph)."
                ],
                "not_a_tensor",
            )
        return out, None
    t = _as_tensor(out)
    if t is None:
        return None, _Outcome(
            False,
            [f"Your function returned a {type(out).__name__}; return a torch.Tensor."],
            "not_a_tensor",
        )
    return t, None


def _run_check(check: _Check, fn: Any, *, quiet: bool = False) -> CheckResult:
    """Judge fn under guard, print the report unless quiet, return the verdict."""
    forbidden, expects = _reference_code(check)
    if check.numbers_ok:
        expects = None
    limit = _TIME_LIMIT if check.time_limit is None else check.time_limit
    try:
        if not callable(fn):
            result = CheckResult(
                check.name,
                False,
                [
                    f"{check.name} expects your function itself, got a "
                    f"{type(fn).__name__}. "
                    f"Write {check.name}(my_function), not "
                    f"{check.name}(my_function(...))."
                ],
                "not_callable",
            )
        else:
            result = _judge(check, _Guarded(fn, forbidden, limit, expects))
    except _Verdict as v:
        result = CheckResult(check.name, False, v.lines, v.mistake)
    except _TimeUp:  # a time-out that fired just as the student's function returned
        result = CheckResult(
            check.name, False, _Guarded(fn, {}, limit)._timeout().lines, "time_limit"
        )
    result.references = tuple(sorted(set(forbidden.values())))
    if not quiet:
        print(result)
        result.printed = True
    return result


def _judge(check: _Check, fn: Any) -> CheckResult:
    """The student's answers first, then the reference; when they differ, the first
    known mistake that explains them. (The reference runs after the student's calls,
    so its answers are nowhere to be found while the student's code runs.)
    """
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
    gots = []
    for case in check.cases:
        got, problem = _call(fn, case, check.names)
        if problem is not None:
            return CheckResult(name, False, problem.lines, problem.mistake)
        assert got is not None  # _call returns an answer or a problem
        gots.append(got)
    with torch.no_grad():
        wants = [check.reference(*_clone(c.args)) for c in check.cases]

    if all(_close(g, w) for g, w in zip(gots, wants)):
        notes: list[str] = []
        for post_check in check.post_checks:
            outcome = post_check(fn)
            if not outcome.ok:
                return CheckResult(name, False, outcome.lines, outcome.mistake)
            notes += outcome.lines
        lines = [
            f"Matches dpolib's reference on {len(check.cases)} inputs (fixed and "
            "random). Well done."
        ] + notes
        return CheckResult(name, True, lines, None)
    return _explain(check, gots, wants)


def _explain(
    check: _Check, gots: list[torch.Tensor], wants: list[torch.Tensor]
) -> CheckResult:
    """The verdict on answers that differ from the reference: the diagnosis, then the
    first differing example.
    """
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
            f"Wrong shape: the answer should be {check.expected_shape}; yours has "
            f"shape {tuple(got.shape)}."
        ]
        return CheckResult(
            check.name,
            False,
            lines + _after_reshape(check, gots, wants) + example,
            "wrong_shape",
        )

    if not all(_finite(g) for g in gots):
        lines = [
            "Your function returns nan or inf where the right answer is an ordinary "
            "number: "
            "look for a log of 0 or of a negative number, a division by 0, or exp of "
            "a large number."
        ]
        return CheckResult(check.name, False, lines + example, "not_finite")

    lines = [
        "Your numbers differ from the reference, and not in one of the common ways "
        "this checker knows."
    ]
    if check.hints is not None:
        lines += check.hints(gots, wants)
    return CheckResult(check.name, False, lines + example, "wrong_value")


def _after_reshape(
    check: _Check, gots: list[torch.Tensor], wants: list[torch.Tensor]
) -> list[str]:
    """For answers of the wrong shape: what remains wrong once reduce_wrong_shape has
    fixed the shape.
    """
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
    """The first known-wrong variant that matches the student's answers on all cases."""
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
    """A post-check: the answer must carry gradients to the inputs in grad_idx, and the
    right ones.
    """

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
                    f"Your function raised {type(e).__name__} when its inputs require "
                    f"gradients: {e}",
                    "Do not modify the input tensors in place (`x -= y`, `x[...] = "
                    "...`); compute new tensors instead.",
                ],
                "exception",
            )
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return _Outcome(
                False,
                [
                    "Not differentiable: the values are right, but no gradient can "
                    "flow back to "
                    f"{names[grad_idx[0]]}. Something cut the autograd graph: "
                    ".item(), float(...), .detach(), "
                    ".numpy(), math.log / np.log, or a new torch.tensor(...) built "
                    "from a result. Keep to torch "
                    "operations on the input tensors all the way to the answer, so "
                    "that .backward() reaches the policy.",
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
                        "The values are right, but the gradient with respect to "
                        f"{names[i]} is "
                        + ("missing" if g is None else "wrong")
                        + ": is part of the computation detached (.detach(), .data, "
                        "torch.no_grad())?",
                    ],
                    "partial_grad",
                )
        return _Outcome(True, [])

    return check

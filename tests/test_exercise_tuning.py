"""check_early_stop passes correct rules, names the wrong ones, never crashes."""

from __future__ import annotations

import numpy as np
import pytest

from dpolib.course.exercises._core import CheckResult, _generator
from dpolib.course.exercises.tuning import (
    _early_stop_reference,
    _stop_cases,
    check_early_stop,
)


def expect(result: CheckResult, mistake: str, *phrases: str) -> None:
    text = str(result)
    assert not result.passed and not bool(result), text
    assert result.mistake == mistake, text
    for phrase in phrases:
        assert phrase.lower() in text.lower(), f"{phrase!r} not in:\n{text}"


# --- what a student might write ---------------------------------------------------
def stop_right(values, patience):
    best, since = 0, 0
    for i in range(1, len(values)):
        if values[i] > values[best]:
            best, since = i, 0
        else:
            since += 1
            if since == patience:
                return i, best
    return len(values) - 1, best


def stop_right_numpy(values, patience):  # another correct way: a running maximum
    v = np.asarray(values)
    for i in range(len(v)):
        best = int(np.argmax(v[: i + 1]))
        if i - best == patience:
            return np.array([i, best])
    return np.array([len(v) - 1, int(np.argmax(v))])


def stop_global_best(values, patience):
    stop, _ = stop_right(values, patience)
    return stop, int(np.argmax(values))


def stop_ties(values, patience):
    best, since = 0, 0
    for i in range(1, len(values)):
        if values[i] >= values[best]:
            best, since = i, 0
        else:
            since += 1
            if since == patience:
                return i, best
    return len(values) - 1, best


def stop_late(values, patience):
    best, since = 0, 0
    for i in range(1, len(values)):
        if values[i] > values[best]:
            best, since = i, 0
        else:
            since += 1
            if since > patience:
                return i, best
    return len(values) - 1, best


def stop_keep_last(values, patience):
    stop, _ = stop_right(values, patience)
    return stop, stop


def stop_lowest(values, patience):
    return stop_right([-v for v in values], patience)


def stop_one_based(values, patience):
    stop, keep = stop_right(values, patience)
    return stop + 1, keep + 1


def stop_swapped(values, patience):
    stop, keep = stop_right(values, patience)
    return keep, stop


def test_correct_rules_pass():
    for fn in (stop_right, stop_right_numpy, lambda v, p: list(stop_right(v, p))):
        result = check_early_stop(fn, quiet=True)
        assert result.passed and bool(result) and result.mistake is None, str(result)
        assert "passed" in str(result)


def test_reference_on_a_hand_checked_log():
    # best -0.3 at 3, new best -0.2 at 5, then two steps without one: stop at 7, keep 5
    values = (-2.0, -1.2, -0.6, -0.3, -0.35, -0.2, -0.25, -0.4, -0.5)
    assert _early_stop_reference(values, 2).tolist() == [7, 5]
    assert _early_stop_reference(values, 3).tolist() == [8, 5]  # never fires
    assert _early_stop_reference((-1.0, -0.5, -0.5, -0.5), 2).tolist() == [3, 1]


@pytest.mark.parametrize(
    "fn, mistake, phrase",
    [
        (stop_global_best, "global_max", "have not happened yet"),
        (stop_ties, "ties_improve", ">= instead of >"),
        (stop_late, "patience_off_by_one", "too late"),
        (stop_keep_last, "keep_last", "keep the best step seen"),
        (stop_lowest, "lowest_not_highest", "higher is better"),
        (stop_one_based, "one_based", "start at 1"),
        (stop_swapped, "swapped", "(keep, stop)"),
        (lambda v, p: (len(v) - 1, int(np.argmax(v))), "never_stops", "never stops"),
    ],
)
def test_known_mistakes_are_named(fn, mistake, phrase):
    expect(check_early_stop(fn, quiet=True), mistake, phrase)


def test_every_mistake_is_told_apart_from_the_reference():
    # each variant differs from the reference on some case, else it could not be named
    from dpolib.course.exercises.tuning import _STOP_MISTAKES

    cases = _stop_cases(_generator(7))
    for m in _STOP_MISTAKES:
        assert any(
            m.fn(*c.args).tolist() != _early_stop_reference(*c.args).tolist()
            for c in cases
        ), m.code


def test_bad_answers_get_feedback_not_a_crash():
    expect(check_early_stop(lambda v, p: None, quiet=True), "returned_none", "None")
    expect(check_early_stop(lambda v, p: {"stop": 1}, quiet=True), "not_a_tensor")
    expect(
        check_early_stop(lambda v, p: stop_right(v, p)[0], quiet=True),
        "wrong_shape",
        "(stop, keep)",
    )
    expect(check_early_stop(lambda v, p: 1 / 0, quiet=True), "exception", "Zero")
    expect(check_early_stop(stop_right(range(3), 1), quiet=True), "not_callable")

    def stub(values, patience):
        raise NotImplementedError()

    expect(check_early_stop(stub, quiet=True), "not_implemented")
    expect(check_early_stop(lambda v, p: (0, 0), quiet=True), "wrong_value", "keep is")


def test_the_report_is_printed(capsys):
    check_early_stop(stop_right)
    assert capsys.readouterr().out.startswith("check_early_stop: passed.")

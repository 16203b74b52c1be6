"""check_training_memory passes the reference formula and names the common mistakes,
written the way a student would."""

from __future__ import annotations

import pytest

from dpolib.course.exercises.memory import (
    _MEMORY_MISTAKES,
    _memory_cases,
    _memory_reference,
    check_training_memory,
)
from dpolib.course.memory import TrainingRecipe, model_memory


def expect(result, mistake: str, *phrases: str) -> None:
    text = str(result)
    assert not result.passed and not bool(result), text
    assert result.mistake == mistake, text
    for phrase in phrases:
        assert phrase.lower() in text.lower(), f"{phrase!r} not in:\n{text}"


def right(n_params, precision, n_moments):
    w = {"fp32": 4, "bf16": 2, "fp16": 2}[precision]
    master = 0 if precision == "fp32" else 4
    return n_params * (w + w + master + 4 * n_moments)


def no_master(n_params, precision, n_moments):
    w = {"fp32": 4, "bf16": 2, "fp16": 2}[precision]
    return n_params * (2 * w + 4 * n_moments)


def master_always(n_params, precision, n_moments):
    w = {"fp32": 4, "bf16": 2, "fp16": 2}[precision]
    return n_params * (2 * w + 4 + 4 * n_moments)


def no_grads(n_params, precision, n_moments):
    w = {"fp32": 4, "bf16": 2, "fp16": 2}[precision]
    return n_params * (w + (0 if precision == "fp32" else 4) + 4 * n_moments)


def moments_16bit(n_params, precision, n_moments):
    w = {"fp32": 4, "bf16": 2, "fp16": 2}[precision]
    return n_params * (2 * w + (0 if precision == "fp32" else 4) + w * n_moments)


def in_gb(n_params, precision, n_moments):
    return right(n_params, precision, n_moments) / 1e9


def sixteen_always(n_params, precision, n_moments):
    return 16 * n_params


def test_a_right_answer_passes_and_the_library_call_does_not():
    assert check_training_memory(right, quiet=True)

    def library(n, p, k):
        recipe = TrainingRecipe(precision=p, n_moments=k)
        return model_memory("m", n, trained=True, recipe=recipe).total

    # handing back dpolib's own calculator is the cheat every checker refuses
    assert check_training_memory(library, quiet=True).mistake == "calls_reference"
    # 16 bytes per parameter for mixed-precision Adam
    assert float(_memory_reference(1.0, "bf16", 2)) == 16


@pytest.mark.parametrize(
    "fn, mistake, phrase",
    [
        (no_master, "no_master_copy", "master copy"),
        (master_always, "master_copy_in_fp32", "in place"),
        (no_grads, "no_gradients", "gradients are missing"),
        (moments_16bit, "moments_in_training_precision", "fp32 (4 bytes each)"),
        (lambda n, p, k: n * {"fp32": 4, "bf16": 2, "fp16": 2}[p], "weights_only", ""),
        (in_gb, "gigabytes", "return bytes"),
    ],
)
def test_names_the_mistake(fn, mistake, phrase):
    expect(check_training_memory(fn, quiet=True), mistake, phrase)


def test_an_unknown_mistake_gets_the_rule_and_an_example():
    result = check_training_memory(sixteen_always, quiet=True)
    expect(result, "wrong_value", "master copy (4 bytes)", "expected")


def test_generic_failures():
    def unfinished(n, p, k):
        raise NotImplementedError

    expect(check_training_memory(unfinished, quiet=True), "not_implemented")
    expect(check_training_memory(lambda n, p, k: None, quiet=True), "returned_none")
    expect(check_training_memory(right(7e9, "bf16", 2), quiet=True), "not_callable")


def test_known_wrong_variants_are_all_distinguishable():
    cases = _memory_cases()
    answers = {
        m.code: tuple(float(m.fn(*c.args)) for c in cases) for m in _MEMORY_MISTAKES
    }
    answers["right"] = tuple(float(_memory_reference(*c.args)) for c in cases)
    assert len(set(answers.values())) == len(answers)

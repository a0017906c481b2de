"""The arithmetic task: deterministic problems, disjoint splits, stable ids, a true grader."""

from __future__ import annotations

import pytest

from selfimprove.tasks.arithmetic import ArithmeticTask, prompt_id, split_of
from selfimprove.tasks.base import Problem, Task
from selfimprove.toy import formats


def test_is_a_task() -> None:
    assert isinstance(ArithmeticTask(), Task)


def test_load_is_deterministic_and_seed_dependent() -> None:
    task = ArithmeticTask()
    a, b = task.load(50, seed=3), task.load(50, seed=3)
    assert a == b
    assert [p.prompt_id for p in task.load(50, seed=4)] != [p.prompt_id for p in a]
    assert len({p.prompt_id for p in a}) == 50


def test_problems_are_consistent() -> None:
    for p in ArithmeticTask(min_digits=2, max_digits=4).load(100, seed=0):
        a, b, c = formats.parse_question(p.question)
        x = int(p.reference)
        assert x * a + b == c and 2 <= a <= 9 and 0 <= b < a and 10 <= x <= 9999
        assert p.prompt_id == prompt_id(p.question)


def test_splits_are_disjoint() -> None:
    task = ArithmeticTask(max_digits=2)  # a small problem space, so overlap would show
    train = {p.question for p in task.load(1500, seed=0, split="train")}
    evals = {p.question for p in task.load(200, seed=0, split="eval")}
    assert not train & evals
    assert all(split_of(q) == "eval" for q in evals)
    with pytest.raises(ValueError):
        task.load(1, seed=0, split="test")


def test_prompt_id_is_derived_from_text() -> None:
    assert prompt_id("x*7+3=2775") == prompt_id("x*7+3=2775") != prompt_id("x*7+3=2776")
    assert prompt_id("x*7+3=2775").startswith("arith-")


def test_grader_hand_cases() -> None:
    task = ArithmeticTask()
    p = Problem(prompt_id("x*7+3=2775"), "x*7+3=2775", "396", {"x": 396, "a": 7, "b": 3, "c": 2775})
    assert task.generation_prompt(p) == "x*7+3=2775\nsolve:\n"
    assert task.grade(p, "02/7=0r2 27/7=3r6 67/7=9r4 45/7=6r3\nx=396")
    assert task.grade(p, "x=0396")  # leading zeros are the same number
    assert not task.grade(p, "02/7=0r2 27/7=3r6 67/7=9r4 45/7=7r3\nx=397")
    assert not task.grade(p, "x=39")
    assert not task.grade(p, "x = 396")  # not the format
    assert not task.grade(p, "")
    assert not task.grade(p, "x=3９6")  # unicode digits are not digits here
    assert task.extract_answer("junk\nx=12\nx=13") == "12"


def test_solution_is_correct_long_division() -> None:
    assert formats.solution(7, 3, 2775) == "02/7=0r2 27/7=3r6 67/7=9r4 45/7=6r3\nx=396"
    for p in ArithmeticTask().load(200, seed=1):
        a, b, c = p.meta["a"], p.meta["b"], p.meta["c"]
        assert formats.extract_answer(formats.solution(a, b, c)) == p.reference


def test_slip_changes_one_digit_and_propagates() -> None:
    # the first quotient digit 0 -> 5: later steps are unchanged, the answer gains a digit
    assert formats.solution(7, 3, 2775, slip=(2, 5)) == "02/7=5r2 27/7=3r6 67/7=9r4 45/7=6r3\nx=5396"
    # a wrong remainder propagates into the next steps
    assert formats.solution(7, 3, 2775, slip=(7, 5)) == "02/7=0r2 27/7=3r5 57/7=8r1 15/7=2r1\nx=382"
    assert formats.solution_digits(7, 3, 2775) == 4 * 4 + 3


def test_difficulty_knobs_are_checked() -> None:
    with pytest.raises(ValueError):
        ArithmeticTask(min_digits=3, max_digits=2)
    with pytest.raises(ValueError):
        ArithmeticTask(min_a=1)

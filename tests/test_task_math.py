"""MATH500: boxed extraction, math-verify in a process pool with timeouts, references, cross pairs."""

from __future__ import annotations

import random
import re
import threading
import time

import pytest

from selfimprove.tasks.base import grade_many
from selfimprove.tasks.math import MathTask, extract_math_answer, last_boxed, verify_many
from selfimprove.tasks.timeouts import TimeoutPool
from tests.fixtures.tasks.support import dataset, fixture

LABELLED = fixture("math_answers.yaml")


@pytest.fixture(scope="module")
def task() -> MathTask:
    return MathTask(dataset("math500", "test.jsonl"))


@pytest.fixture(scope="module")
def pool(task: MathTask) -> list:
    return task.problems("train") + task.problems("eval")


def normalize_reference(s: str) -> str:
    """A light string normal form of a MATH reference, independent of math-verify (for cross pairs)."""
    s = re.sub(r"\\text\{\s*([^{}]*)\}", r"\1", s)
    for a, b in [("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("dfrac", "frac"), ("tfrac", "frac")]:
        s = s.replace(a, b)
    for a in ("^\\circ", "^{\\circ}", "$"):
        s = s.replace(a, "")
    return re.sub(r"\s+", "", s)


def test_split_sizes_and_disjoint(task: MathTask, pool: list) -> None:
    train, ev = task.problems("train"), task.problems("eval")
    assert len(pool) == 500 and 200 < len(train) < 300
    assert not {p.prompt_id for p in train} & {p.prompt_id for p in ev}
    other = MathTask(dataset("math500", "test.jsonl"), split_seed=1)
    assert {p.prompt_id for p in other.problems("eval")} != {p.prompt_id for p in ev}
    assert task.load(30, seed=1, split="eval") == task.load(30, seed=1, split="eval")


def test_last_boxed_nested_and_fbox() -> None:
    assert last_boxed(r"$\boxed{1}$ then $\boxed{\frac{a}{\sqrt{b_{2}}}}$") == r"\frac{a}{\sqrt{b_{2}}}"
    assert last_boxed(r"\fbox{7}") == "7"
    assert last_boxed(r"\boxed 5.") == "5"
    assert last_boxed(r"\boxed{\{1,2\}}") == r"\{1,2\}"
    assert last_boxed(r"\boxed{3} and \boxed{4") == "3"  # an unclosed last box: the last complete one
    assert last_boxed("no box") is None


def test_every_reference_solution_grades_correct(task: MathTask, pool: list) -> None:
    """Acceptance (a): all 500 MATH500 solutions through extraction + math-verify."""
    before = task.timeouts
    graded = task.grade_many(pool, [p.meta["solution"] for p in pool])
    assert [p.meta["unique_id"] for p, ok in zip(pool, graded, strict=True) if not ok] == []
    assert task.timeouts == before


def test_labelled_answers(task: MathTask) -> None:
    """Acceptance (b): hand-written model answers, extraction and grade both as labelled."""
    assert len(LABELLED) >= 100
    answers = [extract_math_answer(c["completion"]) for c in LABELLED]
    outs = verify_many([(c["reference"], a) for c, a in zip(LABELLED, answers, strict=True)])
    wrong = [
        (c["completion"], a, o)
        for c, a, o in zip(LABELLED, answers, outs, strict=True)
        if a != c["answer"] or (o.ok and bool(o.value)) is not c["correct"]
    ]
    assert wrong == []


def test_cross_pairs(task: MathTask, pool: list) -> None:
    """Acceptance (c): a pair grades correct exactly when the normalised references are equal."""
    rng = random.Random(0)
    pairs = [tuple(rng.sample(range(len(pool)), 2)) for _ in range(2000)]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pool):
        groups.setdefault(normalize_reference(p.reference), []).append(i)
    same = [(i, j) for ids in groups.values() for i in ids for j in ids if i != j]
    pairs += rng.sample(same, 400)  # pairs with equal references, from every answer group
    graded = task.grade_many([pool[j] for _, j in pairs], [pool[i].meta["solution"] for i, _ in pairs])
    expected = [normalize_reference(pool[i].reference) == normalize_reference(pool[j].reference) for i, j in pairs]
    mismatches = [
        (pool[i].meta["unique_id"], pool[j].meta["unique_id"])
        for (i, j), got, want in zip(pairs, graded, expected, strict=True)
        if got is not want
    ]
    assert mismatches == []
    assert len(pairs) >= 2000 and sum(expected) >= 300


def slow_identity(x: float) -> float:
    """A pool job that sleeps `x` seconds (for the timeout tests)."""
    time.sleep(x)
    return x


def boom(x: int) -> int:
    raise ValueError(f"bad item {x}")


def test_timeout_pool_kills_slow_items_and_recovers() -> None:
    with TimeoutPool(slow_identity, workers=2, timeout_s=2.0) as tp:
        outs = tp.map([0.0, 30.0, 0.1, 0.0])
        assert [o.value for o in outs] == [0.0, None, 0.1, 0.0]
        assert [o.timed_out for o in outs] == [False, True, False, False]
        assert tp.timeouts == 1 and tp.restarts == 1
        assert [o.value for o in tp.map([0.0, 0.0])] == [0.0, 0.0]  # the pool still works


def test_timeout_pool_reports_errors() -> None:
    with TimeoutPool(boom, workers=1, timeout_s=5.0) as tp:
        (out,) = tp.map([3])
        assert not out.ok and "bad item 3" in (out.error or "")


def test_pool_rejects_unimportable_functions() -> None:
    with pytest.raises(ValueError, match="top-level"):
        TimeoutPool(lambda x: x)


def test_grading_from_a_worker_thread(task: MathTask, pool: list) -> None:
    """math-verify's SIGALRM timeout fails outside the main thread; the process pool does not."""
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.extend(grade_many(task, pool[:3], ["$\\boxed{0}$"] * 3)))
    thread.start()
    thread.join(60)
    expected = [p.reference.strip() == "0" for p in pool[:3]]
    assert results == expected


def test_metrics_and_single_grade(task: MathTask, pool: list) -> None:
    p = pool[0]
    assert task.grade(p, f"So the answer is $\\boxed{{{p.reference}}}$.")
    (outcome,) = task.grade_outcomes([p], ["no answer"])
    assert outcome.ok and not outcome.value and not outcome.timed_out
    assert task.grade(p, "no answer") is False


def test_fewshot_prompt_uses_short_train_solutions(task: MathTask) -> None:
    problem = task.problems("eval")[0]
    prompt = task.generation_prompt(problem)
    assert prompt.startswith(task.instruction) and prompt.endswith(f"Problem: {problem.question}\nSolution:")
    shots = task.shot_problems(problem)
    train_ids = {p.prompt_id for p in task.problems("train")}
    assert len(shots) == 4 and all(s.prompt_id in train_ids and len(s.meta["solution"]) <= 700 for s in shots)
    assert prompt.count("\\boxed") >= 4

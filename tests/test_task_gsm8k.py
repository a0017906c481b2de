"""GSM8K: loading, references through the model-answer path, labelled answers, cross pairs, prompts."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from selfimprove.tasks.base import BenchmarkTask, Task
from selfimprove.tasks.data import stable_id
from selfimprove.tasks.gsm8k import GSM8KTask, extract_number, numbers_equal, shot_solution
from tests.fixtures.tasks.support import dataset, fixture

LABELLED = fixture("gsm8k_answers.yaml")


@pytest.fixture(scope="module")
def task() -> GSM8KTask:
    return GSM8KTask(dataset("gsm8k", "train.jsonl"), dataset("gsm8k", "test.jsonl"))


def test_protocol_and_sizes(task: GSM8KTask) -> None:
    assert isinstance(task, Task) and isinstance(task, BenchmarkTask)
    assert task.kind == "math"
    assert len(task.problems("train")) == 7473 and len(task.problems("eval")) == 1319
    first = task.problems("eval")[0]
    assert first.reference == "18"
    assert first.prompt_id == stable_id("gsm8k", first.question)
    assert first.meta["source"].endswith("test.jsonl:line 1")


def test_train_and_eval_are_disjoint_and_loads_are_seeded(task: GSM8KTask) -> None:
    train = {p.prompt_id for p in task.problems("train")}
    assert not train & {p.prompt_id for p in task.problems("eval")}
    a, b = task.load(50, seed=3, split="eval"), task.load(50, seed=3, split="eval")
    assert a == b
    assert [p.prompt_id for p in task.load(20, seed=3, split="eval")] == [p.prompt_id for p in a[:20]]
    assert [p.prompt_id for p in task.load(50, seed=4, split="eval")] != [p.prompt_id for p in a]
    assert {p.prompt_id for p in task.load(200, seed=0, split="train")} <= train
    with pytest.raises(ValueError, match="only 1319"):
        task.load(2000, seed=0, split="eval")


def test_every_reference_solution_grades_correct(task: GSM8KTask) -> None:
    """Acceptance (a): all 7473 + 1319 reference solutions, as written and as a shot shows them."""
    failures = [
        p.meta["source"]
        for side in ("train", "eval")
        for p in task.problems(side)
        if not (task.grade(p, p.meta["solution"]) and task.grade(p, shot_solution(p.meta["solution"])))
    ]
    assert failures == []


@pytest.mark.parametrize("case", LABELLED, ids=lambda c: c["completion"][:40])
def test_labelled_answers(case: dict[str, object]) -> None:
    """Acceptance (b): hand-written model answers, extraction and grade both as labelled."""
    completion, reference = str(case["completion"]), str(case["reference"])
    assert extract_number(completion) == case["answer"]
    assert numbers_equal(extract_number(completion), reference) is case["correct"]


def test_labelled_fixture_is_large_and_mixed() -> None:
    assert len(LABELLED) >= 100
    assert sum(c["correct"] for c in LABELLED) >= 40 and sum(not c["correct"] for c in LABELLED) >= 20
    assert sum(c["answer"] is None for c in LABELLED) >= 5


def test_cross_pairs(task: GSM8KTask) -> None:
    """Acceptance (c): one question's reference solution graded against another's question."""
    pool = task.problems("train") + task.problems("eval")
    rng = random.Random(0)
    pairs = [tuple(rng.sample(range(len(pool)), 2)) for _ in range(2500)]
    by_ref: dict[Fraction, list[int]] = {}
    for i, p in enumerate(pool):
        by_ref.setdefault(Fraction(p.reference), []).append(i)
    same = [ids for ids in by_ref.values() if len(ids) > 1]
    pairs += [tuple(rng.sample(rng.choice(same), 2)) for _ in range(500)]  # equal references too
    n_equal = 0
    for i, j in pairs:
        equal = Fraction(pool[i].reference) == Fraction(pool[j].reference)
        n_equal += equal
        assert task.grade(pool[j], pool[i].meta["solution"]) is equal, (pool[i].prompt_id, pool[j].prompt_id)
    assert len(pairs) >= 2000 and n_equal >= 500


def test_fewshot_prompt(task: GSM8KTask) -> None:
    problem = task.problems("eval")[0]
    prompt = task.generation_prompt(problem)
    assert prompt.endswith(f"Question: {problem.question}\nAnswer:")
    assert prompt.count("Question: ") == 5 and prompt.count("\nThe answer is") == 4
    assert "<<" not in prompt and "####" not in prompt
    shots = task.shot_problems(problem)
    train_ids = {p.prompt_id for p in task.problems("train")}
    assert len(shots) == 4 and all(s.prompt_id in train_ids for s in shots)
    # a train problem that is itself a shot gets a different shot in its place
    own = task.shot_problems(shots[0])
    assert shots[0].prompt_id not in {s.prompt_id for s in own} and len(own) == 4
    assert task.stop == ("\n\nQuestion:",)
    assert GSM8KTask(shots=0).generation_prompt(problem).count("Question: ") == 1

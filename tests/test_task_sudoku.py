"""4x4 Sudoku: the 288 grids, unique-solution puzzles, extraction and grading of labelled answers."""

from __future__ import annotations

import itertools

import pytest

from selfimprove.tasks.base import Problem
from selfimprove.tasks.sudoku import (
    Grid,
    Sudoku4Task,
    all_grids,
    count_solutions,
    grid_text,
    is_valid_grid,
    parse_grid_text,
)
from tests.fixtures.tasks.support import fixture

LABELLED = fixture("sudoku_answers.yaml")


def brute_force_solutions(puzzle: Grid, limit: int = 2) -> list[Grid]:
    """An independent backtracking solver (up to `limit` solutions), to check uniqueness."""
    cells = list(puzzle)
    found: list[Grid] = []

    def ok(i: int, v: int) -> bool:
        r, c = divmod(i, 4)
        box = [(r // 2 * 2 + dr) * 4 + c // 2 * 2 + dc for dr in range(2) for dc in range(2)]
        peers = [r * 4 + k for k in range(4)] + [k * 4 + c for k in range(4)] + box
        return all(cells[j] != v for j in peers if j != i)

    def solve(i: int) -> None:
        if len(found) >= limit:
            return
        if i == 16:
            found.append(tuple(cells))
            return
        if cells[i]:
            if ok(i, cells[i]):
                solve(i + 1)
            return
        for v in range(1, 5):
            if ok(i, v):
                cells[i] = v
                solve(i + 1)
                cells[i] = 0

    solve(0)
    return found


def test_exactly_288_grids() -> None:
    grids = all_grids()
    assert len(grids) == 288 == len(set(grids))
    assert all(is_valid_grid(g) for g in grids)
    # independently: all 16-cell fillings with valid rows that pass the checker are exactly these
    rows = list(itertools.permutations(range(1, 5)))
    assert sum(is_valid_grid(a + b + c + d) for a, b, c, d in itertools.product(rows, repeat=4)) == 288
    assert len(brute_force_solutions((0,) * 16, limit=1000)) == 288


@pytest.mark.parametrize("blanks", [0, 4, 8, 10, 12, (6, 10)])
def test_every_generated_puzzle_has_exactly_one_solution(blanks: int | tuple[int, int]) -> None:
    task = Sudoku4Task(blanks=blanks)
    lo, hi = (blanks, blanks) if isinstance(blanks, int) else blanks
    for split in ("train", "eval"):
        for p in task.load(60, seed=7, split=split):
            puzzle = parse_grid_text(p.question)
            assert lo <= puzzle.count(0) == p.meta["blanks"] <= hi
            sols = brute_force_solutions(puzzle)
            assert sols == [parse_grid_text(p.reference)] and count_solutions(puzzle) == 1
            assert task.grade(p, p.reference)


def test_splits_seeds_and_ids() -> None:
    task = Sudoku4Task()
    train, ev = task.load(200, seed=0, split="train"), task.load(200, seed=0, split="eval")
    assert not {p.prompt_id for p in train} & {p.prompt_id for p in ev}
    assert len({p.prompt_id for p in train}) == 200
    assert task.load(200, seed=0, split="train") == train
    assert task.load(200, seed=1, split="train") != train
    again = Sudoku4Task().load(200, seed=0, split="train")
    assert [p.prompt_id for p in again] == [p.prompt_id for p in train]


@pytest.mark.parametrize("case", LABELLED["cases"], ids=lambda c: c["puzzle"] + ":" + c["completion"][:30])
def test_labelled_answers(case: dict) -> None:
    """Acceptance (b): hand-written model answers; extraction and grade as labelled."""
    task = Sudoku4Task()
    spec = LABELLED["puzzles"][case["puzzle"]]
    problem = Problem("p", spec["puzzle"], spec["solution"])
    want = spec["solution"] if case["answer"] == "solution" else case["answer"]
    assert task.extract_answer(case["completion"]) == want
    assert task.grade(problem, case["completion"]) is case["correct"]


def test_labelled_fixture_size() -> None:
    cases = LABELLED["cases"]
    assert len(cases) >= 100 and sum(not c["correct"] for c in cases) >= 30
    for spec in LABELLED["puzzles"].values():
        assert is_valid_grid(parse_grid_text(spec["solution"]))


def test_prompt_format() -> None:
    task = Sudoku4Task()
    problem = task.load(1, seed=0, split="eval")[0]
    prompt = task.generation_prompt(problem)
    assert prompt.endswith(f"Puzzle:\n{problem.question}\nSolution:")
    assert prompt.count("Puzzle:\n") == 5
    assert grid_text(parse_grid_text(problem.question)) == problem.question
    assert "_" in problem.question and "_" not in problem.reference

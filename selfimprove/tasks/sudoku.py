"""4x4 Sudoku: all 288 valid grids, puzzles with exactly one solution, text grids in prompts and answers.

A grid is a tuple of 16 ints in row order; 0 marks a blank in a puzzle. The text form is four lines
of four space-separated cells, `_` for a blank.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from typing import Any

from selfimprove.tasks.base import Problem
from selfimprove.tasks.data import Split, check_fraction, in_eval_split, normalize_split, stable_id
from selfimprove.tasks.prompts import FewShotTask

Grid = tuple[int, ...]
N = 4
BLANK = "_"
_UNITS: tuple[tuple[int, ...], ...] = (
    tuple(tuple(r * N + c for c in range(N)) for r in range(N))
    + tuple(tuple(r * N + c for r in range(N)) for c in range(N))
    + tuple(tuple((br + r) * N + bc + c for r in range(2) for c in range(2)) for br in (0, 2) for bc in (0, 2))
)


def is_valid_grid(grid: Grid) -> bool:
    """Every row, column and 2x2 box holds 1..4 exactly once."""
    return len(grid) == N * N and all({grid[i] for i in unit} == {1, 2, 3, 4} for unit in _UNITS)


@functools.cache
def all_grids() -> tuple[Grid, ...]:
    """All valid 4x4 Sudoku grids, in lexicographic order (there are 288)."""
    rows = list(itertools.permutations(range(1, N + 1)))
    out = []
    for a, b, c, d in itertools.product(rows, repeat=4):
        grid = a + b + c + d
        if is_valid_grid(grid):
            out.append(grid)
    return tuple(out)


@functools.cache
def _masks() -> tuple[tuple[int, ...], ...]:
    """masks[cell][value]: bit i set when grid i has `value` at `cell` (value 0 matches every grid)."""
    full = (1 << len(all_grids())) - 1
    out = []
    for cell in range(N * N):
        row = [full] + [0] * N
        for i, g in enumerate(all_grids()):
            row[g[cell]] |= 1 << i
        out.append(tuple(row))
    return tuple(out)


def count_solutions(puzzle: Grid) -> int:
    """How many valid grids agree with the puzzle's clues."""
    masks = _masks()
    bits = masks[0][0]
    for cell, v in enumerate(puzzle):
        if v:
            bits &= masks[cell][v]
    return bits.bit_count()


def solutions(puzzle: Grid) -> list[Grid]:
    """Every valid grid that agrees with the puzzle's clues."""
    return [g for g in all_grids() if consistent(puzzle, g)]


def make_puzzle(solution: Grid, blanks: int, rng: random.Random, tries: int = 200) -> Grid | None:
    """Blank `blanks` cells of `solution` so that the puzzle still has exactly one solution."""
    if not 0 <= blanks <= N * N - 4:  # a 4x4 puzzle needs at least 4 clues
        raise ValueError(f"blanks must lie in [0, 12], got {blanks}")
    for _ in range(tries):
        order = list(range(N * N))
        rng.shuffle(order)
        puzzle = list(solution)
        removed = 0
        for cell in order:
            if removed == blanks:
                break
            keep = puzzle[cell]
            puzzle[cell] = 0
            if count_solutions(tuple(puzzle)) == 1:
                removed += 1
            else:
                puzzle[cell] = keep
        if removed == blanks:
            return tuple(puzzle)
    return None


def grid_text(grid: Grid) -> str:
    """Four lines of four space-separated cells; 0 is written `_`."""
    cells = [str(v) if v else BLANK for v in grid]
    return "\n".join(" ".join(cells[r * N : (r + 1) * N]) for r in range(N))


def parse_grid_text(text: str) -> Grid:
    """The inverse of `grid_text` (blanks `_`, `.` or `0`)."""
    cells = [0 if c in "_.0" else int(c) for c in re.findall(r"[0-4_.]", text)]
    if len(cells) != N * N:
        raise ValueError(f"expected 16 cells, got {len(cells)}")
    return tuple(cells)


_ROW = re.compile(r"^[^0-9]*?([1-4])\D{0,3}([1-4])\D{0,3}([1-4])\D{0,3}([1-4])[^0-9]*$")
_ROW_LABEL = re.compile(r"^\s*(?:[-*>]\s*)?(?:row\s*\d\s*[:.)-]?|r\d\s*[:.)-]|\d\s*[:.)]\s)\s*", re.IGNORECASE)
_NEXT_SHOT = re.compile(r"\n\s*Puzzle\s*:", re.IGNORECASE)
_DECOR = re.compile(r"^[\s|+\-=:*`_#]*$")


def extract_grid(completion: str) -> Grid | None:
    """The last run of four grid rows in the completion (separators, tables, row labels tolerated).

    Text from a following 'Puzzle:' on (a base model writing the next few-shot example) is ignored.
    """
    nxt = _NEXT_SHOT.search(completion)
    if nxt and nxt.start() > 0:
        completion = completion[: nxt.start()]
    rows: list[tuple[int, ...]] = []
    found: Grid | None = None
    for raw in completion.splitlines():
        line = _ROW_LABEL.sub("", raw.strip())
        if not line.strip() or _DECOR.match(line):
            if not line.strip() and len(rows) >= N:
                found = tuple(v for r in rows[-N:] for v in r)
            continue
        m = _ROW.match(line)
        if m and len(re.findall(r"\d", line)) == N:
            rows.append(tuple(int(g) for g in m.groups()))
            if len(rows) >= N:
                found = tuple(v for r in rows[-N:] for v in r)
            continue
        digits = re.findall(r"[1-4]", line)
        if len(re.findall(r"\d", line)) == N * N and len(digits) == N * N:
            found = tuple(int(d) for d in digits)
        rows = []
    return found


def consistent(puzzle: Grid, grid: Grid) -> bool:
    """The grid keeps every clue of the puzzle."""
    return all(p == 0 or p == v for p, v in zip(puzzle, grid, strict=True))


class Sudoku4Task(FewShotTask):
    """4x4 Sudoku puzzles generated from the 288 grids; `blanks` (the difficulty) cells are empty.

    'train' and 'eval' are split by a seeded hash of the puzzle, so a puzzle never lies on both sides.
    """

    name = "sudoku4"
    kind = "sudoku"
    instruction = (
        "Solve each 4x4 Sudoku. Fill the blanks (_) with 1-4 so that every row, every column and "
        "every 2x2 box contains 1, 2, 3 and 4 exactly once. Write the solution as four lines of "
        "four numbers."
    )
    q_prefix = "Puzzle:\n"
    a_prefix = "Solution:"
    a_sep = "\n"

    def __init__(
        self,
        blanks: int | tuple[int, int] = (6, 10),
        *,
        eval_fraction: float = 0.5,
        split_seed: int = 0,
        shots: int = 4,
        style: str = "fewshot",
        tokenizer: Any = None,
        shot_seed: int = 0,
    ) -> None:
        super().__init__(shots=shots, style=style, tokenizer=tokenizer, shot_seed=shot_seed)
        lo, hi = (blanks, blanks) if isinstance(blanks, int) else blanks
        if not 0 <= lo <= hi <= N * N - 4:
            raise ValueError(f"blanks must lie in [0, 12], got {blanks}")
        self.blanks = (lo, hi)
        self.eval_fraction, self.split_seed = check_fraction(eval_fraction), split_seed

    def _problem(self, puzzle: Grid, solution: Grid) -> Problem:
        text = grid_text(puzzle)
        blanks = puzzle.count(0)
        return Problem(
            prompt_id=stable_id("sudoku4", text),
            question=text,
            reference=grid_text(solution),
            meta={"blanks": blanks},
        )

    def _side_of(self, problem: Problem) -> Split:
        return "eval" if in_eval_split(problem.prompt_id, self.split_seed, self.eval_fraction) else "train"

    def generate(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        """`n` distinct puzzles of one side, deterministic for `seed`."""
        side = normalize_split(split)
        rng = random.Random(f"sudoku4:{seed}:{self.blanks}")
        grids = all_grids()
        out: dict[str, Problem] = {}
        attempts = 0
        while len(out) < n:
            attempts += 1
            if attempts > 200 * n + 1000:
                raise ValueError(f"could not generate {n} distinct {side} puzzles with blanks {self.blanks}")
            solution = grids[rng.randrange(len(grids))]
            puzzle = make_puzzle(solution, rng.randint(*self.blanks), rng)
            if puzzle is None:
                continue
            problem = self._problem(puzzle, solution)
            if self._side_of(problem) == side and problem.prompt_id not in out:
                out[problem.prompt_id] = problem
        return list(out.values())

    def load(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        return self.generate(n, seed, split)

    def problems(self, split: str = "train") -> list[Problem]:
        """A fixed pool of 64 puzzles per side (the shots come from the train pool)."""
        side = normalize_split(split)
        with self._lock:
            if side not in self._sides:
                self._sides[side] = self.generate(64, seed=-1, split=side)
            return self._sides[side]

    def shot_answer(self, problem: Problem) -> str:
        return problem.reference

    def question_text(self, problem: Problem) -> str:
        return problem.question

    @property
    def stop(self) -> tuple[str, ...]:
        return ("\n\nPuzzle:",) if self.style == "fewshot" else ()

    def extract_answer(self, completion: str) -> str | None:
        grid = extract_grid(completion)
        return grid_text(grid) if grid is not None else None

    def grade(self, problem: Problem, completion: str) -> bool:
        grid = extract_grid(completion)
        if grid is None:
            return False
        return is_valid_grid(grid) and consistent(parse_grid_text(problem.question), grid)

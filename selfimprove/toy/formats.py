"""Every text format of the embedded world, in one place.

The task is the inverse problem `x*a+b=c` (a in 2..9, 0 <= b < a): find x. Since b < a, x is the
quotient and b the remainder of c/a.

Generation (solving) is written long division of c by a, one fixed-width step per digit of c:

    x*7+3=2775\\nsolve:\\n                  <- generation prompt
    02/7=0r2 27/7=3r6 67/7=9r4 45/7=6r3\\n <- (remainder*10+digit)/a=quotient digit r new remainder
    x=396                                 <- quotient digits without leading zeros

Verification (checking) re-solves and compares digit by digit. Checks see the candidate's final answer
only, zero-padded to the width of c so that its digit j sits under quotient digit j ("x=?" when the
sample has none). The check writes its own division; after each step comes the candidate's digit at
that position and a mark, ✓ if it equals the quotient digit just written, else ✗. Comparing one digit
with the one 4 characters back is a skill a tiny model learns; comparing whole digit strings at the end
was not (docs/results_toy.md). Four formats:

- MC:          "x*7+3=2775\\nx=0396\\nok?" -> one verdict token, MC_CORRECT or MC_INCORRECT.
- CoT-Binary:  "...\\ncheck:" -> " 02/7=0r2:0✓ 27/7=3r6:3✓ 67/7=9r4:9✓ 45/7=6r3:6✓ ✓"  (✓ iff all marks are)
- CoT-Score:   "...\\nscore:" -> " 02/7=0r2:0✓ ... 45/7=6r3:7✗ s=4"   (see `match_score`)
- Tournament:  "x*7+3=2775\\nA:x=0397\\nB:x=0396\\nvs:" -> " 02/7=0r2:0✓0✓ ... 45/7=6r3:7✗6✓ =>B"

Parsers return None on unparseable text and never raise.
"""

from __future__ import annotations

import re

MC_CORRECT = "✓"
MC_INCORRECT = "✗"
NO_ANSWER = "?"

_QUESTION = re.compile(r"x\*([2-9])\+([0-9])=([0-9]+)")
_ANSWER = re.compile(r"^x=([0-9]+)$", re.MULTILINE)


# --------------------------------------------------------------------------- problems and solving


def question(a: int, b: int, c: int) -> str:
    return f"x*{a}+{b}={c}"


def parse_question(text: str) -> tuple[int, int, int]:
    """(a, b, c) of a question; raises ValueError on anything else."""
    m = _QUESTION.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not an arithmetic question: {text!r}")
    return int(m[1]), int(m[2]), int(m[3])


def generation_prompt(q: str) -> str:
    return f"{q}\nsolve:\n"


def extract_answer(completion: str) -> str | None:
    """The first `x=<digits>` line, normalised (no leading zeros), or None."""
    m = _ANSWER.search(completion)
    return str(int(m[1])) if m else None


class _Slip:
    """Writes digit strings, replacing the digit at one global position (a sampling slip)."""

    def __init__(self, at: int | None = None, digit: int = 0) -> None:
        self.at, self.digit, self.pos = at, digit, 0

    def put(self, s: str) -> str:
        if self.at is not None and self.pos <= self.at < self.pos + len(s):
            i = self.at - self.pos
            s = s[:i] + str(self.digit) + s[i + 1 :]
        self.pos += len(s)
        return s


def solution(a: int, b: int, c: int, slip: tuple[int, int] | None = None) -> str:
    """The written long division; `slip=(position, digit)` overwrites one digit of the trace and
    every later value is recomputed from the written (wrong) ones, like a model's own mistake."""
    return _solve(a, b, c, _Slip(*slip) if slip else _Slip())


def solution_digits(a: int, b: int, c: int) -> int:
    """How many digit positions `solution` writes (the range of slip positions)."""
    w = _Slip()
    _solve(a, b, c, w)
    return w.pos


def _solve(a: int, b: int, c: int, w: _Slip) -> str:
    r, steps, qs = 0, [], ""
    for ch in str(c):
        n = int(w.put(f"{r * 10 + int(ch):02d}"))
        q = w.put(str(min(9, n // a)))
        rem = n - int(q) * a
        r = int(w.put(str(rem if 0 <= rem <= 9 else n % a)))
        steps.append(f"{n:02d}/{a}={q}r{r}")
        qs += q
    x = w.put(qs.lstrip("0") or "0")
    return f"{' '.join(steps)}\nx={x}"


# --------------------------------------------------------------------------- checking


def aligned(cand: str | None, width: int) -> str:
    """A candidate's digits aligned with the quotient digits of the division: zero-padded to `width`
    (the number of digits of c); `?` digits for a missing answer, `-` digits for one too long to be x."""
    if cand is None:
        return NO_ANSWER * width
    padded = cand.zfill(width)
    return padded if len(padded) == width else "-" * width


def match_score(marks: str) -> int:
    """CoT-Score scale: 10 if every digit matches, else 1 + the number of matching digits (at most 9)."""
    n = marks.count(MC_CORRECT)
    return 10 if n == len(marks) else 1 + min(8, n)


def _marked_division(cands: list[str | None], a: int, b: int, c: int) -> tuple[str, list[int]]:
    """' <step>:<digit><mark> ...': the check's own division, each step followed by each candidate's
    digit at that position and its mark (✓ equal to the quotient digit just written, else ✗); and each
    candidate's `match_score`."""
    steps = solution(a, b, c).split("\n", 1)[0].split(" ")
    quotient = str(c // a).zfill(len(steps))  # the digit each step writes after "=" (b < a)
    digits = [aligned(cand, len(steps)) for cand in cands]
    marks = [
        "".join(MC_CORRECT if d == q else MC_INCORRECT for d, q in zip(ds, quotient, strict=True)) for ds in digits
    ]
    body = " ".join(
        step + ":" + "".join(ds[j] + ms[j] for ds, ms in zip(digits, marks, strict=True))
        for j, step in enumerate(steps)
    )
    return f" {body}", [match_score(m) for m in marks]


def _candidate(q: str, cand: str | None) -> str:
    """How prompts show a candidate answer: aligned with c's digits (see `aligned`); as-is if longer, or
    if `q` is not an arithmetic question (the embedded formats also serve other tasks' plumbing tests)."""
    if cand is None:
        return NO_ANSWER
    m = _QUESTION.fullmatch(q.strip())
    return cand.zfill(len(m[3])) if m else cand


def mc_prompt(q: str, cand: str | None) -> str:
    return f"{q}\nx={_candidate(q, cand)}\nok?"


def mc_target(q: str, cand: str | None) -> str:
    a, b, c = parse_question(q)
    return MC_CORRECT if cand is not None and int(cand) * a + b == c else MC_INCORRECT


def cot_binary_prompt(q: str, cand: str | None) -> str:
    return f"{q}\nx={_candidate(q, cand)}\ncheck:"


def cot_binary_target(q: str, cand: str | None) -> str:
    body, (score,) = _marked_division([cand], *parse_question(q))
    return f"{body} {MC_CORRECT if score == 10 else MC_INCORRECT}"


def cot_score_prompt(q: str, cand: str | None) -> str:
    return f"{q}\nx={_candidate(q, cand)}\nscore:"


def cot_score_target(q: str, cand: str | None) -> str:
    body, (score,) = _marked_division([cand], *parse_question(q))
    return f"{body} s={score}"


def tournament_prompt(q: str, cand_a: str | None, cand_b: str | None) -> str:
    return f"{q}\nA:x={_candidate(q, cand_a)}\nB:x={_candidate(q, cand_b)}\nvs:"


def tournament_target(q: str, cand_a: str | None, cand_b: str | None) -> str:
    """One division marking A's then B's digit at each step, then the winner: more matching digits;
    ties go to A."""
    body, (score_a, score_b) = _marked_division([cand_a, cand_b], *parse_question(q))
    return f"{body} =>{'B' if score_b > score_a else 'A'}"


# --------------------------------------------------------------------------- parsers (never raise)

_VERDICT = re.compile(rf"(?<!\S)([{MC_CORRECT}{MC_INCORRECT}])(?!\S)")
_SCORE = re.compile(r"(?<![\w=])s=([0-9]+)")
_WINNER = re.compile(r"=>([AB])(?![\w])")


def parse_cot_binary(text: str) -> float | None:
    """1.0 for a correct verdict, 0.0 for incorrect; None if there is none or both appear. The
    verdict is a free-standing symbol: runs of digit marks such as `✓✓✗✓` are not verdicts."""
    if not isinstance(text, str):
        return None
    found = set(_VERDICT.findall(text))
    if len(found) != 1:
        return None
    return 1.0 if found == {MC_CORRECT} else 0.0


def parse_cot_score(text: str) -> int | None:
    """The `s=N` score in 1..10; None if missing, out of range, or several different ones."""
    if not isinstance(text, str):
        return None
    found = set(_SCORE.findall(text))
    if len(found) != 1:
        return None
    (v,) = found
    return int(v) if v in {str(i) for i in range(1, 11)} else None


def parse_tournament(text: str) -> int | None:
    """0 if A wins, 1 if B wins; None if no winner or conflicting winners."""
    if not isinstance(text, str):
        return None
    winners = set(_WINNER.findall(text))
    if len(winners) != 1:
        return None
    return 0 if winners == {"A"} else 1

"""Every text format of the embedded world, in one place.

The task is the inverse problem `x*a+b=c` (a in 2..9, 0 <= b < a): find x. Since b < a, x is the
quotient and b the remainder of c/a.

Generation (solving) is written long division of c by a, one fixed-width step per digit of c:

    x*7+3=2775\\nsolve:\\n                  <- generation prompt
    02/7=0r2 27/7=3r6 67/7=9r4 45/7=6r3\\n <- (remainder*10+digit)/a=quotient digit r new remainder
    x=396                                 <- quotient digits without leading zeros

Verification (checking) uses a *different* computation: multiply the candidate back with written
carries (the initial carry is b), then compare with c. Checks see the candidate's final answer only
("x=?" when the sample has none). Four formats:

- MC:          "x*7+3=2775\\nx=396\\nok?" -> one verdict token, MC_CORRECT or MC_INCORRECT.
- CoT-Binary:  "...\\ncheck:" -> " 6*7+3=45 9*7+4=67 3*7+6=27 =2775|2775 ✓"
- CoT-Score:   "...\\nscore:" -> " 6*7+3=45 ... =2775|2775 s=10"   (closeness score, see `closeness`)
- Tournament:  "x*7+3=2775\\nA:x=396\\nB:x=397\\nvs:" -> " A 6*7+3=45 ... =2775|2775\\nB ... =>A"

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


def multiply_steps(cand: str, a: int, b: int) -> tuple[str, int]:
    """Written multiplication cand*a+b from the right, carry starting at b: (steps, value)."""
    carry, steps = b, []
    for ch in reversed(cand):
        v = int(ch) * a + carry
        steps.append(f"{ch}*{a}+{carry}={v:02d}")
        carry = v // 10
    return " ".join(steps), int(cand) * a + b


def closeness(value: int, c: int) -> int:
    """CoT-Score scale: 10 if value == c, else 1 + (leading digits shared with c), at most 9.
    More shared leading digits means a smaller relative error."""
    if value == c:
        return 10
    s, t = str(value), str(c)
    if len(s) != len(t):
        return 1
    k = next(i for i in range(len(s)) if s[i] != t[i])
    return 1 + min(8, k)


def _check_body(cand: str | None, a: int, b: int, c: int) -> tuple[str, int]:
    """' <steps> =<value>|<c>' and the closeness score; ' ?' (score 1) for a missing answer."""
    if cand is None:
        return f" {NO_ANSWER}", 1
    steps, value = multiply_steps(cand, a, b)
    return f" {steps} ={value}|{c}", closeness(value, c)


def _candidate(cand: str | None) -> str:
    return NO_ANSWER if cand is None else cand


def mc_prompt(q: str, cand: str | None) -> str:
    return f"{q}\nx={_candidate(cand)}\nok?"


def mc_target(q: str, cand: str | None) -> str:
    a, b, c = parse_question(q)
    return MC_CORRECT if cand is not None and int(cand) * a + b == c else MC_INCORRECT


def cot_binary_prompt(q: str, cand: str | None) -> str:
    return f"{q}\nx={_candidate(cand)}\ncheck:"


def cot_binary_target(q: str, cand: str | None) -> str:
    body, score = _check_body(cand, *parse_question(q))
    return f"{body} {MC_CORRECT if score == 10 else MC_INCORRECT}"


def cot_score_prompt(q: str, cand: str | None) -> str:
    return f"{q}\nx={_candidate(cand)}\nscore:"


def cot_score_target(q: str, cand: str | None) -> str:
    body, score = _check_body(cand, *parse_question(q))
    return f"{body} s={score}"


def tournament_prompt(q: str, cand_a: str | None, cand_b: str | None) -> str:
    return f"{q}\nA:x={_candidate(cand_a)}\nB:x={_candidate(cand_b)}\nvs:"


def tournament_target(q: str, cand_a: str | None, cand_b: str | None) -> str:
    """Both checks, then the winner: the closer candidate (CoT-Score scale); ties go to A."""
    abc = parse_question(q)
    body_a, score_a = _check_body(cand_a, *abc)
    body_b, score_b = _check_body(cand_b, *abc)
    return f" A{body_a}\nB{body_b}\n=>{'B' if score_b > score_a else 'A'}"


# --------------------------------------------------------------------------- parsers (never raise)

_SCORE = re.compile(r"(?<![\w=])s=([0-9]+)")
_WINNER = re.compile(r"=>([AB])(?![\w])")


def parse_cot_binary(text: str) -> float | None:
    """1.0 for a correct verdict, 0.0 for incorrect; None if there is none or both appear."""
    if not isinstance(text, str):
        return None
    yes, no = MC_CORRECT in text, MC_INCORRECT in text
    if yes == no:
        return None
    return 1.0 if yes else 0.0


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

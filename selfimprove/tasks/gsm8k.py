"""GSM8K: grade-school word problems; the reference is the number after `#### `, graded by numeric equality."""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from selfimprove.tasks.base import Problem, TaskDataError
from selfimprove.tasks.data import Split, datasets_dir, dedupe, read_rows, require_str, stable_id
from selfimprove.tasks.prompts import FewShotTask

_MINUS = "-\u2212\u2013"  # hyphen, unicode minus, en dash
# A number as models write it: sign, optional currency, thousands separators, decimals, or a fraction.
_NUM = re.compile(
    rf"(?<![\w.,/])(?P<sign>[{_MINUS}])?(?:[$€£]\s?)?(?P<sign2>[{_MINUS}])?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+)(?![\d.]))?"
)
_LATEX_FRAC = re.compile(rf"(?P<sign>[{_MINUS}])?\\[dt]?frac\{{(?P<num>\d+)\}}\{{(?P<den>\d+)\}}")
# Anchors after which the final answer follows.
_ANCHOR = re.compile(
    r"####|\\boxed\{|(?:final\s+)?answer(?:\s+is)?\s*(?:\*\*)?\s*[:=]|(?:final\s+)?answer\s+is\b|"
    r"\bresult\s+is\b",
    re.IGNORECASE,
)
# A base model that keeps writing the next few-shot example.
_NEXT_SHOT = re.compile(r"\n\s*(?:Question|Q|Problem)\s*(?:\d+\s*)?:", re.IGNORECASE)
_REF = re.compile(rf"^[{_MINUS}]?(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?$")


def _value(m: re.Match[str]) -> Fraction:
    num = Fraction(m.group("num").replace(",", ""))
    den = m.group("den")
    if den is not None:
        if int(den) == 0:
            return num
        num /= int(den)
    negative = bool(m.group("sign")) or bool(m.groupdict().get("sign2"))
    return -num if negative else num


def format_number(value: Fraction) -> str:
    """Canonical text: integers plainly, terminating decimals as decimals, otherwise `a/b`."""
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        return f"{value.numerator}/{value.denominator}"
    text = f"{float(value):.12f}".rstrip("0").rstrip(".")
    return text if Fraction(text) == value else f"{value.numerator}/{value.denominator}"


def parse_number(text: str) -> Fraction | None:
    """The value of a string that is one number (commas, `$`, decimals, `a/b`, `\\frac{a}{b}` allowed)."""
    s = text.strip().rstrip(".").strip()
    s = re.sub(r"^\*+|\*+$", "", s).strip()
    for pat in (_LATEX_FRAC, _NUM):
        m = pat.fullmatch(s)
        if m:
            return _value(m)
    return None


def _numbers(text: str) -> list[tuple[int, Fraction]]:
    found = [(m.start(), _value(m)) for m in _LATEX_FRAC.finditer(text)]
    spans = [range(m.start(), m.end()) for m in _LATEX_FRAC.finditer(text)]
    for m in _NUM.finditer(text):
        if not any(m.start() in r for r in spans):
            found.append((m.start(), _value(m)))
    return sorted(found, key=lambda t: t[0])


def _window_value(window: str) -> Fraction | None:
    """The answer in the text right after an anchor: after its last `=`, else its first number."""
    end = re.search(r"\.(?!\d)|\n|;|!|\?", window)
    sentence = window[: end.start()] if end else window
    tail = sentence.rsplit("=", 1)[1] if "=" in sentence else sentence
    nums = _numbers(tail) or _numbers(sentence)
    return nums[0][1] if nums else None


def extract_number(completion: str) -> str | None:
    """The final numeric answer: the number after the last answer anchor, else the last number."""
    text = completion
    nxt = _NEXT_SHOT.search(text)
    if nxt and nxt.start() > 0:
        text = text[: nxt.start()]
    text = _unlatex(text)
    for anchor in reversed(list(_ANCHOR.finditer(text))):
        if anchor.start() < 4 and anchor.group(0).lower().startswith("answer"):
            continue  # an echoed "Answer:" prefix, not a final answer
        value = _window_value(text[anchor.end() : anchor.end() + 120])
        if value is not None:
            return format_number(value)
    nums = _numbers(text)
    return format_number(nums[-1][1]) if nums else None


def numbers_equal(a: str | None, b: str | None) -> bool:
    """Exact numeric equality of two number strings; False if either is not a number."""
    if a is None or b is None:
        return False
    x, y = parse_number(a), parse_number(b)
    return x is not None and y is not None and x == y


def _unlatex(text: str) -> str:
    """LaTeX spacing and grouping models put in numbers: `10{,}000`, `10\\,000`, `\\$5`."""
    return text.replace("\\$", "$").replace("\\,", "").replace("{,}", ",").replace("\\!", "")


def reference_answer(solution: str, where: str = "") -> str:
    """The canonical number after `#### ` in a GSM8K solution; TaskDataError if it is not one."""
    if "####" not in solution:
        raise TaskDataError(f"{where}: reference solution has no '#### <answer>' line")
    raw = solution.rsplit("####", 1)[1].strip()
    value = parse_number(raw) if _REF.match(raw) else None
    if value is None:
        raise TaskDataError(f"{where}: unparseable reference answer {raw!r} after '####'")
    return format_number(value)


def shot_solution(solution: str) -> str:
    """A worked solution as a shot shows it: no `<<calc>>` annotations, ending 'The answer is N.'"""
    body, _, final = solution.rpartition("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return f"{body}\nThe answer is {final.strip()}."


class GSM8KTask(FewShotTask):
    """GSM8K. 'train' prompts come from train.jsonl, 'eval' prompts from test.jsonl."""

    name = "gsm8k"
    kind = "math"
    instruction = "Solve the following math word problems. Finish each answer with 'The answer is N.'"
    chat_instruction = (
        "Solve the math word problem step by step. "
        "Finish your response with 'The answer is N.' where N is the final number."
    )

    def __init__(
        self,
        train_path: str | Path | None = None,
        eval_path: str | Path | None = None,
        *,
        shots: int = 4,
        style: str = "fewshot",
        tokenizer: Any = None,
        shot_seed: int = 0,
    ) -> None:
        super().__init__(shots=shots, style=style, tokenizer=tokenizer, shot_seed=shot_seed)
        root = datasets_dir() / "gsm8k"
        self.paths: dict[Split, str | Path] = {
            "train": train_path or root / "train.jsonl",
            "eval": eval_path or root / "test.jsonl",
        }

    def _read_side(self, side: Split) -> list[Problem]:
        problems = []
        for where, row in read_rows(self.paths[side]):
            question = require_str(row, "question", where)
            solution = require_str(row, "answer", where)
            problems.append(
                Problem(
                    prompt_id=stable_id("gsm8k", question),
                    question=question.strip(),
                    reference=reference_answer(solution, where),
                    meta={"solution": solution, "source": where},
                )
            )
        problems = dedupe(problems)
        if side == "eval":  # keep the sides disjoint even if a file repeats a question of the other
            train_ids = {p.prompt_id for p in self.problems("train")}
            problems = [p for p in problems if p.prompt_id not in train_ids]
        return problems

    def shot_answer(self, problem: Problem) -> str:
        return shot_solution(problem.meta["solution"])

    def extract_answer(self, completion: str) -> str | None:
        return extract_number(completion)

    def grade(self, problem: Problem, completion: str) -> bool:
        return numbers_equal(self.extract_answer(completion), problem.reference)

    def same_answers(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Equal numeric values (`10{,}000` = `10,000` = `10000`); non-numbers compare as stripped text."""
        out = []
        for a, b in pairs:
            x, y = parse_number(_unlatex(a)), parse_number(_unlatex(b))
            out.append(x == y if x is not None and y is not None else a.strip() == b.strip())
        return out

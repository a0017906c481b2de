"""NQ-open: short factual answers; SQuAD-normalised exact match against any accepted answer, plus F1."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfimprove.tasks.base import Problem, TaskDataError
from selfimprove.tasks.data import (
    Split,
    check_fraction,
    datasets_dir,
    dedupe,
    hash_side,
    read_rows,
    require_str,
    stable_id,
)
from selfimprove.tasks.prompts import FewShotTask

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NEXT_SHOT = re.compile(r"\n\s*(?:Question|Q)\s*:", re.IGNORECASE)
_ANCHOR = re.compile(
    r"(?:final\s+)?answer(?:\s+is)?\s*(?:\*\*)?\s*:\s*(?:\*\*)?|(?:final\s+)?answer\s+(?:is|would be)\b:?",
    re.IGNORECASE,
)
_ABBREV = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Ft|vs|No|Co|Inc|Ltd|Lt|Gen|Col|Capt|Sgt|Prof|Rev|approx)|"
    r"\b[A-Z]|\b(?:[A-Za-z]\.)+[A-Za-z])$"
)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _same(prediction: str, answer: str) -> bool:
    pred, gold = normalize_answer(prediction), normalize_answer(answer)
    if pred and gold:
        return pred == gold
    # an answer that normalises to nothing (upstream has "A+", ")", "---"): compare it as written
    return prediction.strip().lower() == answer.strip().lower()


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
    """Normalised exact match against any accepted answer."""
    return any(_same(prediction, a) for a in answers)


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    """Best SQuAD token F1 over the accepted answers."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for ans in answers:
        gold = normalize_answer(ans).split()
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def _first_sentence(text: str) -> str:
    """Text up to the first sentence end ('. ' before a capital), not after an initial or abbreviation."""
    for m in re.finditer(r"\.\s+(?=[A-Z(\"'])", text):
        if not _ABBREV.search(text[: m.start()]):
            return text[: m.start()]
    return text


def _strip(answer: str) -> str:
    return answer.strip().rstrip(" .!;,").strip().strip("*_`\"'“”‘’").strip()


def answer_candidates(completion: str) -> list[str]:
    """The short answer (first sentence of the answer line), then other readings of the line.

    The answer line is the text after the last 'answer is' / 'Answer:' anchor, else the first line.
    Readings: the first sentence (not cut after an initial or 'Dr.'), the text before the first
    '. ', the whole line. Grading accepts any, so 'Portugal. The Man.', 'Paris. It is the capital.'
    and 'Washington, D.C. It is ...' all work.
    """
    text = completion
    nxt = _NEXT_SHOT.search(text)
    if nxt and nxt.start() > 0:
        text = text[: nxt.start()]
    anchors = [a for a in _ANCHOR.finditer(text) if text[a.end() :].split("\n", 1)[0].strip(" *:")]
    if anchors:
        line = text[anchors[-1].end() :].split("\n", 1)[0]
    else:
        lines = [ln for ln in text.split("\n") if ln.strip()]
        if not lines:
            return []
        line = lines[0]
    line = line.strip().strip("*_`").strip()
    out: list[str] = []
    naive = re.split(r"\.\s+", line, maxsplit=1)[0]
    for cand in (_strip(_first_sentence(line)), _strip(naive), _strip(line)):
        if cand and cand not in out:
            out.append(cand)
    return out


def extract_short_answer(completion: str) -> str | None:
    """The short answer in a completion (see `answer_candidates`), or None."""
    cands = answer_candidates(completion)
    return cands[0] if cands else None


class NQOpenTask(FewShotTask):
    """NQ-open dev, split into 'train' and 'eval' by a seeded hash of the question."""

    name = "nq_open"
    kind = "qa"
    instruction = "Answer these questions with a short answer."
    chat_instruction = "Answer the question with a short answer of a few words. Finish with 'The answer is X.'"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        eval_fraction: float = 0.5,
        split_seed: int = 0,
        shots: int = 4,
        style: str = "fewshot",
        tokenizer: Any = None,
        shot_seed: int = 0,
    ) -> None:
        super().__init__(shots=shots, style=style, tokenizer=tokenizer, shot_seed=shot_seed)
        self.path = path or datasets_dir() / "nq_open" / "dev.jsonl"
        self.eval_fraction, self.split_seed = check_fraction(eval_fraction), split_seed

    def _read_all(self) -> list[Problem]:
        problems = []
        for where, row in read_rows(self.path):
            question = require_str(row, "question", where)
            answers = row.get("answer", row.get("answers"))
            if answers is None:
                raise TaskDataError(f"{where}: missing field 'answer'")
            if isinstance(answers, str):
                answers = [answers]
            if (
                not isinstance(answers, (list, tuple))
                or not answers
                or not all(isinstance(a, str) and a.strip() for a in answers)
            ):
                raise TaskDataError(f"{where}: unparseable reference answer {answers!r:.80} (need non-empty strings)")
            problems.append(
                Problem(
                    prompt_id=stable_id("nq", question),
                    question=question.strip(),
                    reference=answers[0],
                    meta={"answers": list(answers), "source": where},
                )
            )
        return dedupe(problems)

    def _read_side(self, side: Split) -> list[Problem]:
        return hash_side(self._read_all(), side, self.split_seed, self.eval_fraction)

    def question_text(self, problem: Problem) -> str:
        q = problem.question.strip()
        return q if q.endswith("?") else q + "?"

    def shot_answer(self, problem: Problem) -> str:
        ans = problem.meta["answers"][0]
        return f"The answer is {ans}." if self.style == "chat" else ans

    @property
    def stop(self) -> tuple[str, ...]:
        return ("\n\n", "\nQuestion:") if self.style == "fewshot" else ()

    @staticmethod
    def answers(problem: Problem) -> list[str]:
        return list(problem.meta.get("answers") or [problem.reference])

    def extract_answer(self, completion: str) -> str | None:
        return extract_short_answer(completion)

    def grade(self, problem: Problem, completion: str) -> bool:
        return any(exact_match(c, self.answers(problem)) for c in answer_candidates(completion))

    def same_answers(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """SQuAD-normalised equality, as the grader compares an answer with a reference."""
        return [_same(a, b) for a, b in pairs]

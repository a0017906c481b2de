"""Verifier prompts and parsers: the embedded model's own formats, or natural language for real LLMs.

`embedded` uses the formats the toy models were pretrained on (selfimprove.toy.formats). `fewshot`
prompts a base model with two worked verifications per task kind (the paper's setting); `chat` wraps
the same instruction in the tokenizer's chat template for instruct models; `chat_verdict_first` asks for
the verdict first and pre-fills the assistant turn with its marker ("Verdict:", "Score:", "Winner:"), so
the next token is the verdict: the format for small instruct models, which never reach a verdict asked
for at the end of a written check (docs/results.md §6). Any method's template can be
overridden from the experiment YAML (`verification.templates`), with the placeholders {question},
{response}, {answer} (and {response_a}, {response_b} for the tournament).
Parsers never raise: they return None on output they cannot read.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Protocol

from selfimprove.toy import formats
from selfimprove.verification.base import Candidate


class PromptBook(Protocol):
    mc_verdicts: tuple[str, str]  # continuations whose log-probs MC compares: (correct, incorrect)

    def prompt(self, method: str, cand: Candidate, other: Candidate | None = None) -> str: ...
    def parse(self, method: str, text: str) -> float | None: ...


class EmbeddedPrompts:
    """The toy model's pretraining formats; checks see the candidate's final answer only."""

    mc_verdicts = (formats.MC_CORRECT, formats.MC_INCORRECT)

    def prompt(self, method: str, cand: Candidate, other: Candidate | None = None) -> str:
        if method == "tournament":
            assert other is not None
            return formats.tournament_prompt(cand.question, cand.answer, other.answer)
        build = {
            "mc": formats.mc_prompt,
            "cot_binary": formats.cot_binary_prompt,
            "cot_score": formats.cot_score_prompt,
        }
        return build[method](cand.question, cand.answer)

    def parse(self, method: str, text: str) -> float | None:
        if method == "cot_binary":
            return formats.parse_cot_binary(text)
        if method == "cot_score":
            v = formats.parse_cot_score(text)
            return None if v is None else (v - 1) / 9
        v = formats.parse_tournament(text)
        return None if v is None else float(v)


# --------------------------------------------------------------------------- natural language

SHOTS: dict[str, list[tuple[str, str, bool]]] = {
    "math": [
        (
            "A pen costs $3 and a notebook costs $5. How much do 2 pens and 1 notebook cost?",
            "2 pens cost 2 * 3 = 6 dollars. Adding the notebook gives 6 + 5 = 11. The answer is 11.",
            True,
        ),
        (
            "Tom has 12 apples and gives away a third of them. How many are left?",
            "A third of 12 is 3, so 12 - 3 = 9 are left. The answer is 9.",
            False,
        ),
    ],
    "qa": [
        ("who wrote the novel pride and prejudice", "Jane Austen", True),
        ("what is the capital city of australia", "Sydney", False),
    ],
    "sudoku": [
        ("Solve the 4x4 sudoku:\n1 . . 4\n. 4 1 .\n4 . . 1\n. 1 4 .", "1 2 3 4\n3 4 1 2\n4 3 2 1\n2 1 4 3", True),
        ("Solve the 4x4 sudoku:\n1 . . 4\n. 4 1 .\n4 . . 1\n. 1 4 .", "1 3 2 4\n3 4 1 2\n4 2 3 1\n2 1 4 3", False),
    ],
}
SHOTS["custom"] = SHOTS["math"]

CHECKS = {
    True: "Checking each step, the reasoning and the final answer are right.",
    False: "Checking each step, there is a mistake, so the final answer is wrong.",
}

TEMPLATES: dict[str, str] = {
    "mc": "Question: {question}\nProposed answer: {response}\nIs the proposed answer correct (Correct or Incorrect)?\n"
    "Verdict:",
    "cot_binary": "Question: {question}\nProposed answer: {response}\nCheck the proposed answer step by step, then end "
    "with 'Verdict: Correct' or 'Verdict: Incorrect'.\nCheck:",
    "cot_score": "Question: {question}\nProposed answer: {response}\nCheck the proposed answer step by step, then rate "
    "how likely it is to be correct with 'Score: N' where N is an integer from 1 to 10.\nCheck:",
    "tournament": "Question: {question}\nResponse A: {response_a}\nResponse B: {response_b}\nCompare the two responses "
    "step by step, then end with 'Winner: A' or 'Winner: B'.\nComparison:",
}


# chat_verdict_first: the verdict before the reasons, and the assistant turn opened with the verdict's marker
VERDICT_FIRST: dict[str, str] = {
    "cot_binary": "Question: {question}\nProposed answer: {response}\nIs the proposed answer correct? Reply with "
    "'Verdict: Correct' or 'Verdict: Incorrect' first, then explain briefly.",
    "cot_score": "Question: {question}\nProposed answer: {response}\nRate the proposed answer from 1 to 10, where 1 "
    "means it is surely wrong and 10 means it is surely right. Reply with the score first, then explain briefly.",
    "tournament": "Question: {question}\nResponse A: {response_a}\nResponse B: {response_b}\nWhich response is "
    "correct? Reply with 'Winner: A' or 'Winner: B' first, then explain briefly.",
}
PREFILLS = {"cot_binary": "Verdict:", "cot_score": "Score:", "tournament": "Winner:"}
CHAT_STYLES = ("chat", "chat_verdict_first")  # the styles that render through the verifier's chat template


def _shot_output(method: str, ok: bool) -> str:
    if method == "mc":
        return " Correct" if ok else " Incorrect"
    if method == "cot_binary":
        return f" {CHECKS[ok]} Verdict: {'Correct' if ok else 'Incorrect'}"
    return f" {CHECKS[ok]} Score: {9 if ok else 2}"


class NaturalPrompts:
    """Few-shot (base models) or chat-template (instruct models) verification prompts, task-kind aware.

    In `chat_verdict_first` style a written check's prompt ends with the assistant turn pre-filled with
    the method's marker (`PREFILLS`); the generated text continues it and is parsed with the marker
    in front, so the row's `raw` is what the model wrote after the prompt.
    """

    def __init__(self, kind: str, style: str, tokenizer: Any = None, templates: dict[str, str] | None = None) -> None:
        self.chat = style in CHAT_STYLES
        if self.chat and tokenizer is None:
            raise ValueError(f"{style}-style verification needs the verifier's tokenizer")
        self.kind = kind if kind in SHOTS else "custom"
        self.style = style
        self.tokenizer = tokenizer
        self.prefills = PREFILLS if style == "chat_verdict_first" else {}
        first = VERDICT_FIRST if style == "chat_verdict_first" else {}
        self.templates = {**TEMPLATES, **first, **(templates or {})}
        self.mc_verdicts = ("Correct", "Incorrect") if self.chat else (" Correct", " Incorrect")

    def _fill(self, method: str, question: str, response: str, answer: str | None, response_b: str = "") -> str:
        return self.templates[method].format(
            question=question, response=response, answer=answer or "", response_a=response, response_b=response_b
        )

    def prompt(self, method: str, cand: Candidate, other: Candidate | None = None) -> str:
        body = self._fill(
            method, cand.question, cand.completion.strip(), cand.answer, other.completion.strip() if other else ""
        )
        if self.chat:
            messages = [{"role": "user", "content": body}]
            opened = str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            return opened + self.prefills.get(method, "")
        if method == "tournament":
            return body
        shots = [self._fill(method, q, r, None) + _shot_output(method, ok) for q, r, ok in SHOTS[self.kind]]
        return "\n\n".join([*shots, body])

    def parse(self, method: str, text: str) -> float | None:
        text = self.prefills.get(method, "") + text
        if method == "cot_binary":
            return parse_verdict(text)
        if method == "cot_score":
            v = parse_score(text)
            return None if v is None else (v - 1) / 9
        v = parse_winner(text)
        return None if v is None else float(v)


def _norm(text: object) -> str:
    return unicodedata.normalize("NFKC", text).casefold() if isinstance(text, str) else ""


_VERDICT = re.compile(r"verdict\s*[:：\-]?\s*\**\s*(not correct|incorrect|correct|wrong|right)\b")
_ANY_VERDICT = re.compile(r"\b(not correct|incorrect|correct|wrong)\b")
_WORDS = {
    w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"])
}
_SCORE = re.compile(
    r"score\s*(?:is|of|[:=：])?\s*\**\s*(\d+(?:\.\d+)?|" + "|".join(_WORDS) + r")\b(?:\s*(?:/|out of)\s*10)?"
)
_WINNER = re.compile(r"(?:winner|better response|better)\s*(?:is|[:：])?\s*\**\s*(?:response\s*)?\(?([ab])\b")


def _verdict(word: str) -> float:
    return 1.0 if word in ("correct", "right") else 0.0


def parse_verdict(text: str) -> float | None:
    """1.0 / 0.0 from 'Verdict: Correct/Incorrect' (the last one wins over earlier prose); without a
    verdict line, the only verdict word used; None if none or conflicting."""
    t = _norm(text)
    marked = {_verdict(m) for m in _VERDICT.findall(t)}
    if marked:
        return marked.pop() if len(marked) == 1 else None
    loose = {_verdict(m) for m in _ANY_VERDICT.findall(t)}
    return loose.pop() if len(loose) == 1 else None


def parse_score(text: str) -> int | None:
    """The integer score 1..10 after 'Score', digits or a word; None if missing, out of range,
    fractional or conflicting."""
    values = set()
    for m in _SCORE.findall(_norm(text)):
        v = float(_WORDS[m]) if m in _WORDS else float(m)
        if not v.is_integer():
            return None
        values.add(int(v))
    if len(values) != 1:
        return None
    (v,) = values
    return v if 1 <= v <= 10 else None


def parse_winner(text: str) -> int | None:
    """0 if 'Winner: A', 1 if 'Winner: B'; None if missing or conflicting."""
    winners = set(_WINNER.findall(_norm(text)))
    return (0 if winners == {"a"} else 1) if len(winners) == 1 else None


def prompt_book(style: str, kind: str, tokenizer: Any = None, templates: dict[str, str] | None = None) -> PromptBook:
    if style == "embedded":
        return EmbeddedPrompts()
    return NaturalPrompts(kind, style, tokenizer, templates)

"""The word-problem task: seeded and split by hash, references right, both prompt styles, grading."""

from __future__ import annotations

import re

import pytest

from selfimprove.tasks.registry import get_task
from selfimprove.tasks.word_arithmetic import WordArithmeticTask
from selfimprove.toy.tokenizer import build_tokenizer

TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant\n{% endif %}"
)


def test_problems_are_seeded_disjoint_and_right() -> None:
    task = WordArithmeticTask(ops=["add", "sub", "mul"], lo=1, hi=20)
    train, again = task.load(50, 0, "train"), WordArithmeticTask(ops=["add", "sub", "mul"], lo=1, hi=20).load(50, 0)
    assert [p.question for p in train] == [p.question for p in again]
    assert {p.prompt_id for p in train}.isdisjoint({p.prompt_id for p in task.problems("eval")})
    for p in train:
        a, b = (int(x) for x in re.findall(r"\d+", p.question))
        want = {"add": a + b, "sub": a - b, "mul": a * b}[p.meta["op"]]
        assert p.reference == str(want) and int(p.reference) >= 0, p
        assert p.meta["solution"].endswith(f"The answer is {want}.")


def test_fewshot_and_chat_prompts() -> None:
    fewshot = get_task("word_arithmetic", shots=2)
    p = fewshot.load(1, 0, "eval")[0]
    text = fewshot.generation_prompt(p)
    assert text.startswith("Solve each problem.") and text.endswith(f"Question: {p.question}\nAnswer:")
    assert text.count("The answer is ") == 1 + 2 and fewshot.stop  # the instruction, then 2 shots == ("\n\nQuestion:",)
    tok = build_tokenizer()
    tok.chat_template = TEMPLATE
    chat = get_task("word_arithmetic", style="chat", shots=1, tokenizer=tok)
    text = chat.generation_prompt(p)
    assert text.count("<bos>user\n") == 2 and text.endswith("<bos>assistant\n") and chat.stop == ()


def test_grading() -> None:
    task = WordArithmeticTask()
    p = task.load(1, 0)[0]
    assert task.grade(p, f"So the total is 3 + 4. The answer is {p.reference}.")
    assert not task.grade(p, f"The answer is {int(p.reference) + 1}.")
    assert task.grade(p, f"... = {p.reference}")  # no anchor: the last number
    assert not task.grade(p, "I do not know.")


def test_bad_knobs_are_refused() -> None:
    with pytest.raises(ValueError, match="ops must be a non-empty subset"):
        WordArithmeticTask(ops=["div"])
    with pytest.raises(ValueError, match="lo <= hi"):
        WordArithmeticTask(lo=30, hi=20)

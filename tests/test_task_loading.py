"""Loading (JSONL, Parquet), malformed rows, stable ids, seeded splits, chat prompts, custom tasks, registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from selfimprove.tasks.base import BenchmarkTask, Task, TaskDataError
from selfimprove.tasks.custom import CustomTask
from selfimprove.tasks.data import datasets_dir, in_eval_split, read_rows
from selfimprove.tasks.gsm8k import GSM8KTask
from selfimprove.tasks.math import MathTask
from selfimprove.tasks.nq import NQOpenTask
from selfimprove.tasks.registry import get_task, task_names
from selfimprove.tasks.sudoku import Sudoku4Task
from tests.fixtures.tasks.support import dataset

GSM_ROWS = [
    {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
    {"question": "A box holds 1,000 pens; 250 are sold. How many are left?", "answer": "1000-250=750\n#### 750"},
    {"question": "It is 5 degrees and drops 8. What is it now?", "answer": "5-8=-3\n#### -3"},
    {"question": "What is 2,000 + 1,250?", "answer": "#### 3,250"},
    {"question": "Ann has 2 cats. How many cats?", "answer": "#### 2"},
    {"question": "Bob has 9 dogs and gives 4 away. How many?", "answer": "9-4=5\n#### 5"},
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def make_tokenizer() -> Any:
    """A tiny offline tokenizer with a chat template (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "<s>": 1, "</s>": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>", eos_token="</s>")
    out.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    return out


# -- malformed rows name file and line (acceptance e) --------------------------------------------


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({"answer": "#### 3"}, "missing field 'question'"),
        ({"question": "q?"}, "missing field 'answer'"),
        ({"question": "q?", "answer": "no final line"}, "no '#### <answer>' line"),
        ({"question": "q?", "answer": "#### three"}, "unparseable reference answer 'three'"),
        ({"question": "q?", "answer": "#### 1/2"}, "unparseable reference answer '1/2'"),
        ({"question": "", "answer": "#### 3"}, "field 'question' must be a non-empty string"),
        ('{"question": "q?", "answer": ', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_gsm8k_malformed_row_names_file_and_line(tmp_path: Path, bad_row: Any, message: str) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [*GSM_ROWS[:2], bad_row, GSM_ROWS[2]])
    with pytest.raises(TaskDataError, match="line 3") as err:
        GSM8KTask(path, path).load(1, 0, "train")
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({"solution": "x", "answer": "1"}, "missing field 'problem'"),
        ({"problem": "p", "solution": "no box here"}, "unparseable reference answer None"),
        ({"problem": "p", "answer": "  "}, "unparseable reference answer"),
    ],
)
def test_math_malformed_row_names_file_and_line(tmp_path: Path, bad_row: dict, message: str) -> None:
    good = {"problem": "1+1?", "solution": "$\\boxed{2}$", "answer": "2"}
    path = write_jsonl(tmp_path / "math.jsonl", [good, bad_row])
    with pytest.raises(TaskDataError, match="line 2") as err:
        MathTask(path).problems("train")
    assert str(path) in str(err.value) and message in str(err.value)


def test_math_answer_from_boxed_when_field_missing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "math.jsonl", [{"problem": "1+1?", "solution": "So $\\boxed{2}$."}])
    task = MathTask(path, eval_fraction=0.0)
    assert [p.reference for p in task.problems("train")] == ["2"]


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({"answer": ["x"]}, "missing field 'question'"),
        ({"question": "q"}, "missing field 'answer'"),
        ({"question": "q", "answer": []}, "unparseable reference answer"),
        ({"question": "q", "answer": [1, 2]}, "unparseable reference answer"),
        ({"question": "q", "answer": [""]}, "unparseable reference answer"),
    ],
)
def test_nq_malformed_row_names_file_and_line(tmp_path: Path, bad_row: dict, message: str) -> None:
    path = write_jsonl(tmp_path / "dev.jsonl", [{"question": "who?", "answer": ["me"]}] * 3 + [bad_row])
    with pytest.raises(TaskDataError, match="line 4") as err:
        NQOpenTask(path).problems("eval")
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_is_a_task_data_error(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="no such dataset file"):
        GSM8KTask(tmp_path / "nope.jsonl").problems("train")


# -- Parquet and upstream formats ----------------------------------------------------------------


def test_parquet_loads_like_jsonl_and_names_rows(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "train.jsonl", GSM_ROWS)
    parquet = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(GSM_ROWS), parquet)
    a, b = GSM8KTask(jsonl, jsonl), GSM8KTask(parquet, parquet)
    assert [(p.prompt_id, p.reference) for p in a.problems("train")] == [
        (p.prompt_id, p.reference) for p in b.problems("train")
    ]
    assert [p.reference for p in a.problems("train")] == ["7", "750", "-3", "3250", "2", "5"]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([*GSM_ROWS[:4], {"question": "q", "answer": "#### x"}]), bad)
    with pytest.raises(TaskDataError, match=r"bad\.parquet:row 5: unparseable"):
        GSM8KTask(bad, bad).problems("train")


def test_nq_parquet_with_list_answers(tmp_path: Path) -> None:
    rows = [{"question": f"who is {i}", "answer": [f"person {i}", f"p{i}"]} for i in range(20)]
    path = tmp_path / "nq.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    task = NQOpenTask(path)
    every = task.problems("train") + task.problems("eval")
    assert len(every) == 20 and all(task.grade(p, p.meta["answers"][1]) for p in every)


def test_read_rows_reports_locations() -> None:
    where, row = next(read_rows(dataset("math500", "test.jsonl")))
    assert where.endswith("math500/test.jsonl:line 1") and set(row) >= {"problem", "solution", "answer"}


# -- ids and splits ------------------------------------------------------------------------------


def test_prompt_ids_come_from_content_not_position(tmp_path: Path) -> None:
    fwd = write_jsonl(tmp_path / "a.jsonl", GSM_ROWS)
    rev = write_jsonl(tmp_path / "b.jsonl", GSM_ROWS[::-1])
    ids_fwd = {p.question: p.prompt_id for p in GSM8KTask(fwd, fwd).problems("train")}
    ids_rev = {p.question: p.prompt_id for p in GSM8KTask(rev, rev).problems("train")}
    assert ids_fwd == ids_rev and len(set(ids_fwd.values())) == len(GSM_ROWS)


def test_hash_split_is_seeded_and_stable() -> None:
    ids = [f"id-{i}" for i in range(4000)]
    frac = sum(in_eval_split(i, 0, 0.25) for i in ids) / len(ids)
    assert 0.22 < frac < 0.28
    assert [in_eval_split(i, 0, 0.5) for i in ids] == [in_eval_split(i, 0, 0.5) for i in ids]
    assert [in_eval_split(i, 0, 0.5) for i in ids] != [in_eval_split(i, 1, 0.5) for i in ids]


def test_split_names() -> None:
    task = NQOpenTask(dataset("nq_open", "dev.jsonl"))
    assert task.load(5, 0, "test") == task.load(5, 0, "eval")
    with pytest.raises(ValueError, match="unknown split"):
        task.load(5, 0, "validation")


def test_default_datasets_dir_matches_the_test_layout() -> None:
    assert datasets_dir().resolve() == dataset("gsm8k", "test.jsonl").parents[1].resolve()


# -- prompt styles -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gsm8k", "math500", "nq_open", "sudoku4"])
def test_chat_style_prompts(name: str) -> None:
    task = get_task(name, style="chat", tokenizer=make_tokenizer())
    problem = task.load(1, seed=0, split="eval")[0]
    prompt = task.generation_prompt(problem)
    assert prompt.count("<|user|>") == 5 and prompt.count("<|assistant|>") == 5
    assert prompt.endswith("<|assistant|>\n") and problem.question.strip() in prompt
    assert isinstance(task, BenchmarkTask) and task.stop == ()
    no_shots = get_task(name, style="chat", shots=0, tokenizer=make_tokenizer())
    assert no_shots.generation_prompt(problem).count("<|user|>") == 1


def test_chat_style_needs_a_tokenizer() -> None:
    task = GSM8KTask(style="chat")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        task.generation_prompt(task.problems("eval")[0])
    with pytest.raises(ValueError, match="style must be"):
        GSM8KTask(style="instruct")


# -- custom tasks and the registry ---------------------------------------------------------------


def test_custom_task_from_yaml_numeric(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", GSM_ROWS)
    spec = {
        "name": "mini",
        "path": "data.jsonl",
        "question_field": "question",
        "answer_field": "answer",
        "answer_regex": "####\\s*(.+)$",
        "extractor": "number",
        "grader": "numeric",
        "eval_fraction": 0.5,
        "shots": 2,
    }
    (tmp_path / "mini.yaml").write_text(yaml.safe_dump(spec))
    task = get_task(str(tmp_path / "mini.yaml"))
    assert isinstance(task, CustomTask) and isinstance(task, Task) and task.name == "mini"
    every = task.problems("train") + task.problems("eval")
    assert len(every) == 6 and not {p.prompt_id for p in task.problems("train")} & {
        p.prompt_id for p in task.problems("eval")
    }
    by_q = {p.question: p for p in every}
    p = by_q[GSM_ROWS[1]["question"]]
    assert p.reference == "750" and task.grade(p, "So 750 pens are left.") and not task.grade(p, "The answer is 75.")
    n_shots = len([s for s in task.problems("train") if s.prompt_id != p.prompt_id][:2])
    assert task.generation_prompt(p).count("Question: ") == n_shots + 1 and n_shots >= 1
    assert get_task("custom", spec=str(tmp_path / "mini.yaml")).name == "mini"
    assert get_task(f"custom:{tmp_path / 'mini.yaml'}", shots=0).generation_prompt(p).count("Question: ") == 1


def test_custom_task_malformed_reference(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"q": "a", "a": "1"}, {"q": "b", "a": "one"}])
    spec = {"name": "n", "path": str(tmp_path / "d.jsonl"), "question_field": "q", "answer_field": "a"}
    with pytest.raises(TaskDataError, match=r"d\.jsonl:line 2: unparseable reference answer 'one'"):
        get_task({**spec, "extractor": "number", "grader": "numeric"}).problems("train")
    with pytest.raises(ValueError, match="extractor must be one of"):
        get_task({**spec, "extractor": "magic"})


@pytest.mark.parametrize(
    ("extractor", "grader", "answer", "completion", "correct"),
    [
        ("last_line", "exact", "Paris", "Thinking...\nParis", True),
        ("last_line", "exact", "Paris", "Thinking...\nparis", False),
        ("last_line", "normalized_em", "Paris", "Thinking...\nThe Paris.", True),
        ("regex", "normalized_em", "blue whale", "I think ANSWER=[Blue Whale] is right", True),
        ("regex", "exact", "42", "ANSWER=[41] no, ANSWER=[42]", True),
        ("regex", "exact", "42", "no tagged answer", False),
        ("boxed", "math_verify", "\\frac{1}{2}", "so $\\boxed{0.5}$", True),
        ("boxed", "math_verify", "\\frac{1}{2}", "so $\\boxed{0.6}$", False),
        ("boxed", "exact", "x+1", "so $\\boxed{x+1}$", True),
        ("number", "numeric", "1200", "It costs $1,200.00 in total.", True),
        ("last_line", "numeric", "12", "Work...\n12 apples", True),
    ],
)
def test_custom_extractors_and_graders(
    tmp_path: Path, extractor: str, grader: str, answer: str, completion: str, correct: bool
) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "question one", "a": answer}])
    spec = {
        "name": "c",
        "path": str(path),
        "question_field": "q",
        "answer_field": "a",
        "extractor": extractor,
        "grader": grader,
        "eval_fraction": 0.0,
        "extractor_regex": r"ANSWER=\[([^\]]*)\]",
    }
    task = get_task(spec)
    (p,) = task.problems("train")
    assert task.grade(p, completion) is correct


def test_registry() -> None:
    assert {"gsm8k", "math500", "nq_open", "sudoku4", "custom"} <= set(task_names())
    assert isinstance(get_task("gsm8k"), GSM8KTask) and isinstance(get_task("sudoku", blanks=8), Sudoku4Task)
    assert get_task({"task": "math500", "shots": 2}).shots == 2  # type: ignore[attr-defined]
    for name in ("gsm8k", "math500", "nq_open", "sudoku4"):
        task = get_task(name)
        assert isinstance(task, Task) and isinstance(task, BenchmarkTask) and task.name == name
    with pytest.raises(ValueError, match="unknown task"):
        get_task("imagenet")


@pytest.mark.parametrize("name", ["math500", "nq_open", "sudoku4"])
def test_eval_fraction_outside_0_1_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="eval_fraction must lie in"):
        get_task(name, eval_fraction=1.5)


def test_latin1_jsonl_names_file_and_line(tmp_path: Path) -> None:
    """Issue 14.9: a JSONL file saved as Latin-1 is a clear error, not a bare UnicodeDecodeError."""
    from selfimprove.tasks.custom import CustomTask

    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"q": "1+1", "a": "2"}\n' + '{"q": "café?", "a": "3"}\n'.encode("latin-1"))
    task = CustomTask({"name": "l1", "path": str(path), "question_field": "q", "answer_field": "a"})
    with pytest.raises(TaskDataError, match=rf"{path}:line 2: not UTF-8 text \(byte 0xe9 at column 11\)"):
        task.load(1, 0, "train")


def test_empty_custom_file_names_the_file(tmp_path: Path) -> None:
    from selfimprove.tasks.custom import CustomTask

    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    task = CustomTask({"name": "e", "path": str(path), "question_field": "q", "answer_field": "a"})
    with pytest.raises(TaskDataError, match=rf"{path}: no rows \(the file is empty\)"):
        task.load(1, 0, "train")
    path.write_text('{"q": "1+1", "a": "2"}\n')
    with pytest.raises(TaskDataError, match=rf"{path} \(train side\): asked for 5 problems"):
        CustomTask({"name": "e", "path": str(path), "question_field": "q", "answer_field": "a"}).load(5, 0)

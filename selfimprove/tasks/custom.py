"""A task defined in YAML: a JSONL/Parquet file, its field names, an answer extractor and a grader.

```yaml
name: my_task
path: data.jsonl            # relative to the YAML file; JSONL or Parquet
eval_path: test.jsonl       # optional; without it one file is split by a seeded hash
question_field: question
answer_field: answer        # a string (or a list of strings for normalized_em / exact)
answer_regex: "####\\s*(.+)"  # optional: pull the reference out of the answer field (group 1)
solution_field: solution    # optional: the worked answer shots show (default: the answer field)
extractor: number           # number | boxed | last_line | regex
extractor_regex: "..."      # for extractor: regex (last match, group 1 if any)
grader: numeric             # numeric | exact | normalized_em | math_verify
```
Further keys: `kind`, `instruction`, `chat_instruction`, `q_prefix`, `a_prefix`, `eval_fraction`,
`split_seed`, `shots`, `style`, `shot_seed`, `timeout_s`, `workers`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from selfimprove.tasks.base import Problem, TaskDataError
from selfimprove.tasks.data import Split, check_fraction, dedupe, hash_side, read_rows, require_str, stable_id
from selfimprove.tasks.gsm8k import extract_number, format_number, parse_number
from selfimprove.tasks.math import last_boxed, verify_many
from selfimprove.tasks.nq import exact_match
from selfimprove.tasks.prompts import FewShotTask

EXTRACTORS = ("number", "boxed", "last_line", "regex")
GRADERS = ("numeric", "exact", "normalized_em", "math_verify")
_KNOWN = {
    "name", "path", "eval_path", "question_field", "answer_field", "answer_regex", "solution_field",
    "extractor", "extractor_regex", "grader", "kind", "instruction", "chat_instruction", "q_prefix",
    "a_prefix", "eval_fraction", "split_seed", "shots", "style", "shot_seed", "timeout_s", "workers",
    "tokenizer",
}  # fmt: skip


def _number_of(text: str) -> str | None:
    value = parse_number(text)
    return format_number(value) if value is not None else extract_number(text)


class CustomTask(FewShotTask):
    """A task from a spec mapping (see the module docstring); `base_dir` resolves relative paths."""

    def __init__(self, spec: Mapping[str, Any], base_dir: str | Path | None = None, *, tokenizer: Any = None) -> None:
        unknown = set(spec) - _KNOWN
        if unknown:
            raise ValueError(f"custom task: unknown keys {sorted(unknown)}")
        for key in ("name", "path", "question_field", "answer_field"):
            if not spec.get(key):
                raise ValueError(f"custom task: missing key {key!r}")
        super().__init__(
            shots=int(spec.get("shots", 4)),
            style=str(spec.get("style", "fewshot")),
            tokenizer=tokenizer if tokenizer is not None else spec.get("tokenizer"),
            shot_seed=int(spec.get("shot_seed", 0)),
        )
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        self.name = str(spec["name"])
        self.kind = str(spec.get("kind", "custom"))
        self.path = self._resolve(spec["path"], base)
        self.eval_path = self._resolve(spec["eval_path"], base) if spec.get("eval_path") else None
        self.question_field = str(spec["question_field"])
        self.answer_field = str(spec["answer_field"])
        self.solution_field = str(spec.get("solution_field") or self.answer_field)
        self.answer_regex = re.compile(spec["answer_regex"], re.S) if spec.get("answer_regex") else None
        self.extractor = str(spec.get("extractor", "last_line"))
        self.grader = str(spec.get("grader", "exact"))
        if self.extractor not in EXTRACTORS:
            raise ValueError(f"custom task: extractor must be one of {EXTRACTORS}, got {self.extractor!r}")
        if self.grader not in GRADERS:
            raise ValueError(f"custom task: grader must be one of {GRADERS}, got {self.grader!r}")
        self.extractor_regex = re.compile(spec["extractor_regex"]) if spec.get("extractor_regex") else None
        if self.extractor == "regex" and self.extractor_regex is None:
            raise ValueError("custom task: extractor 'regex' needs extractor_regex")
        for key in ("instruction", "chat_instruction", "q_prefix", "a_prefix"):
            if key in spec:
                setattr(self, key, str(spec[key]))
        self.eval_fraction = check_fraction(float(spec.get("eval_fraction", 0.5)))
        self.split_seed = int(spec.get("split_seed", 0))
        self.workers, self.timeout_s = int(spec.get("workers", 2)), float(spec.get("timeout_s", 5.0))
        self.timeouts = 0

    @staticmethod
    def _resolve(path: str | Path, base: Path) -> str | Path:
        s = str(path)
        return s if s.startswith("hub:") or Path(s).is_absolute() else base / s

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> CustomTask:
        """Read a spec file; relative data paths are relative to it. `overrides` replace spec keys."""
        path = Path(path)
        spec = yaml.safe_load(path.read_text())
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: a custom task spec must be a YAML mapping")
        tokenizer = overrides.pop("tokenizer", None)
        return cls({**spec, **overrides}, base_dir=path.parent, tokenizer=tokenizer)

    # -- data -----------------------------------------------------------------------------------
    def _reference(self, row: Mapping[str, Any], where: str) -> tuple[str, list[str]]:
        if self.answer_field not in row:
            raise TaskDataError(f"{where}: missing field {self.answer_field!r}")
        raw = row[self.answer_field]
        answers = [raw] if isinstance(raw, str) else raw
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise TaskDataError(f"{where}: unparseable reference answer {raw!r:.80}")
        if self.answer_regex is not None:
            out = []
            for a in answers:
                m = self.answer_regex.search(a)
                if not m:
                    raise TaskDataError(f"{where}: reference {a!r:.60} does not match answer_regex")
                out.append(m.group(1) if m.groups() else m.group(0))
            answers = out
        answers = [a.strip() for a in answers]
        if not all(answers):
            raise TaskDataError(f"{where}: empty reference answer")
        if self.grader == "numeric":
            nums = [_number_of(a) if parse_number(a) is not None else None for a in answers]
            if any(n is None for n in nums):
                raise TaskDataError(f"{where}: unparseable reference answer {answers[0]!r:.60} (not a number)")
            answers = [n for n in nums if n is not None]
        return answers[0], answers

    def _read_file(self, source: str | Path) -> list[Problem]:
        problems = []
        rows = list(read_rows(source))
        if not rows:
            raise TaskDataError(f"{source}: no rows (the file is empty)")
        for where, row in rows:
            question = require_str(row, self.question_field, where)
            reference, answers = self._reference(row, where)
            solution = row.get(self.solution_field)
            meta: dict[str, Any] = {"answers": answers, "source": where}
            if isinstance(solution, str):
                meta["solution"] = solution
            problems.append(Problem(stable_id(self.name, question), question.strip(), reference, meta=meta))
        return dedupe(problems)

    def _read_side(self, side: Split) -> list[Problem]:
        if self.eval_path is not None:
            if side == "train":
                return self._read_file(self.path)
            train_ids = {p.prompt_id for p in self.problems("train")}
            return [p for p in self._read_file(self.eval_path) if p.prompt_id not in train_ids]
        return hash_side(self._read_file(self.path), side, self.split_seed, self.eval_fraction)

    def load(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        try:
            return super().load(n, seed, split)
        except TaskDataError:
            raise
        except ValueError as e:
            source = self.eval_path if self.eval_path is not None and split != "train" else self.path
            raise TaskDataError(f"{source} ({split} side): {e}") from None

    def shot_answer(self, problem: Problem) -> str:
        return str(problem.meta.get("solution") or problem.reference).strip()

    # -- answers --------------------------------------------------------------------------------
    def grading_config(self) -> str:
        """The settings answers and verdicts depend on (part of every cached row's grading key)."""
        regexes = {
            k: getattr(self, k).pattern if getattr(self, k) else None for k in ("answer_regex", "extractor_regex")
        }
        return json.dumps({"extractor": self.extractor, "grader": self.grader, **regexes}, sort_keys=True)

    def extract_answer(self, completion: str) -> str | None:
        if self.extractor == "number":
            return extract_number(completion)
        if self.extractor == "boxed":
            return last_boxed(completion)
        if self.extractor == "regex":
            assert self.extractor_regex is not None
            matches = list(self.extractor_regex.finditer(completion))
            if not matches:
                return None
            m = matches[-1]
            ans = (m.group(1) if m.groups() else m.group(0)) or ""
            return ans.strip() or None
        lines = [ln.strip() for ln in completion.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else None

    def _answers(self, problem: Problem) -> list[str]:
        return list(problem.meta.get("answers") or [problem.reference])

    def _grade_answer(self, problem: Problem, answer: str | None) -> bool:
        if answer is None:
            return False
        if self.grader == "numeric":
            got = _number_of(answer)
            return got is not None and any(parse_number(got) == parse_number(a) for a in self._answers(problem))
        if self.grader == "exact":
            return answer.strip() in [a.strip() for a in self._answers(problem)]
        return exact_match(answer, self._answers(problem))

    def grade_many(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[bool]:
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        if self.grader != "math_verify":
            return [self._grade_answer(p, self.extract_answer(c)) for p, c in zip(problems, completions, strict=True)]
        pairs = [(p.reference, self.extract_answer(c)) for p, c in zip(problems, completions, strict=True)]
        outs = verify_many(pairs, workers=self.workers, timeout_s=self.timeout_s)
        self.timeouts += sum(o.timed_out for o in outs)
        return [o.ok and bool(o.value) for o in outs]

    def grade(self, problem: Problem, completion: str) -> bool:
        return self.grade_many([problem], [completion])[0]

"""Reading benchmark rows (JSONL, Parquet, optionally the HF hub), stable ids and seeded splits."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from selfimprove.tasks.base import Problem, TaskDataError

Split = Literal["train", "eval"]
HUB_PREFIX = "hub:"

_SPLIT_ALIASES: dict[str, Split] = {"train": "train", "eval": "eval", "test": "eval", "dev": "eval"}


def normalize_split(split: str) -> Split:
    """'train' (the self-improvement prompts) or 'eval' (held out); 'test' and 'dev' mean 'eval'."""
    try:
        return _SPLIT_ALIASES[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'eval'") from None


def datasets_dir() -> Path:
    """Where the reference datasets lie: $SELFIMPROVE_DATASETS, else `shared/datasets` in or beside the repo."""
    env = os.environ.get("SELFIMPROVE_DATASETS")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo / "shared" / "datasets", repo.parent / "shared" / "datasets"):
        if cand.is_dir():
            return cand
    return repo.parent / "shared" / "datasets"


def stable_hash(*parts: object) -> str:
    """Hex sha256 of the parts, joined unambiguously."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()


def stable_id(prefix: str, text: str) -> str:
    """A prompt id from the row's content (whitespace-normalised), never from its position."""
    return f"{prefix}-{stable_hash(' '.join(text.split()))[:16]}"


def unit_interval(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    return int(stable_hash(*parts)[:15], 16) / 16**15


def in_eval_split(prompt_id: str, split_seed: int, eval_fraction: float) -> bool:
    """Seeded hash split of one file: the same prompt always lands on the same side."""
    return unit_interval("split", split_seed, prompt_id) < eval_fraction


def check_fraction(eval_fraction: float) -> float:
    """`eval_fraction` if it lies in [0, 1]; a clear error otherwise."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must lie in [0, 1], got {eval_fraction}")
    return eval_fraction


def hash_side(problems: Sequence[Problem], side: str, split_seed: int, eval_fraction: float) -> list[Problem]:
    """The problems of one file that fall on `side` ("train" or "eval") of the seeded hash split."""
    return [p for p in problems if in_eval_split(p.prompt_id, split_seed, eval_fraction) == (side == "eval")]


def seeded_sample(problems: Sequence[Problem], n: int, seed: int) -> list[Problem]:
    """`n` problems in a seeded order; the first `n` for a seed are a prefix of the first `n + 1`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n > len(problems):
        raise ValueError(f"asked for {n} problems but the split holds only {len(problems)}")
    return sorted(problems, key=lambda p: stable_hash("order", seed, p.prompt_id))[:n]


def read_rows(source: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location, row) from a .jsonl/.json-lines or .parquet file, or `hub:name[:config]:split`.

    The location is `file:line N` (JSONL) or `file:row N` (Parquet), 1-based, for error messages.
    """
    s = str(source)
    if s.startswith(HUB_PREFIX):
        yield from _hub_rows(s[len(HUB_PREFIX) :])
        return
    path = Path(source)
    if not path.is_file():
        raise TaskDataError(f"{path}: no such dataset file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"{path}:row {i}", row
        return
    with path.open("rb") as fh:
        for i, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TaskDataError(
                    f"{path}:line {i}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                    "save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskDataError(f"{path}:line {i}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise TaskDataError(f"{path}:line {i}: expected a JSON object, got {type(row).__name__}")
            yield f"{path}:line {i}", row


def _hub_rows(spec: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows through `datasets.load_dataset` (imported lazily; needs network or a warm HF cache)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"hub source must be 'hub:name:split' or 'hub:name:config:split', got {spec!r}")
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError as e:  # pragma: no cover - optional dependency
        raise TaskDataError("hub sources need the `datasets` package (pip install datasets)") from e
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    ds = datasets.load_dataset(name, config, split=split)
    for i, row in enumerate(ds, start=1):
        yield f"{HUB_PREFIX}{spec}:row {i}", dict(row)


def require_str(row: dict[str, Any], key: str, where: str) -> str:
    """A non-empty string field, or a TaskDataError naming file and line."""
    if key not in row:
        raise TaskDataError(f"{where}: missing field {key!r}")
    val = row[key]
    if not isinstance(val, str) or not val.strip():
        raise TaskDataError(f"{where}: field {key!r} must be a non-empty string, got {val!r:.80}")
    return val


def dedupe(problems: Sequence[Problem]) -> list[Problem]:
    """Drop repeated prompt ids (identical questions), keeping the first."""
    seen: set[str] = set()
    out: list[Problem] = []
    for p in problems:
        if p.prompt_id not in seen:
            seen.add(p.prompt_id)
            out.append(p)
    return out

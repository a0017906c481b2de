"""The pretraining corpus is deterministic, mixes all formats, and only uses train problems."""

from __future__ import annotations

import itertools
import random

from selfimprove.tasks.arithmetic import ArithmeticTask, split_of
from selfimprove.toy import corpus, formats


def _take(seed: int, n: int) -> list[str]:
    return list(itertools.islice(corpus.documents(seed), n))


def test_deterministic_for_a_seed() -> None:
    assert _take(0, 300) == _take(0, 300)
    assert _take(0, 300) != _take(1, 300)


def test_mixes_every_format_and_uses_train_problems_only() -> None:
    docs = _take(0, 2000)
    kinds = {
        "gen": sum("\nsolve:\n" in d for d in docs),
        "cot_binary": sum("\ncheck:" in d for d in docs),
        "cot_score": sum("\nscore:" in d for d in docs),
        "mc": sum("\nok?" in d for d in docs),
        "tournament": sum("\nvs:" in d for d in docs),
    }
    for kind, share in corpus.MIX.items():
        assert abs(kinds[kind] / len(docs) - share) < 0.05, (kind, kinds)
    assert all(split_of(d.split("\n", 1)[0]) == "train" for d in docs)


def test_check_documents_are_right() -> None:
    for d in _take(0, 500):
        q, rest = d.split("\n", 1)
        a, b, c = formats.parse_question(q)
        if rest.startswith("x=") and "\ncheck:" in rest:
            cand = rest[2:].split("\n", 1)[0]
            ok = cand != "?" and int(cand) * a + b == c
            assert formats.parse_cot_binary(d.split("check:", 1)[1]) == (1.0 if ok else 0.0)


def test_candidates_mix_correct_and_wrong() -> None:
    rng = random.Random(0)
    problems = ArithmeticTask().load(300, seed=0)
    cands = [corpus.candidate(p, rng) for p in problems]
    right = sum(c == p.reference for c, p in zip(cands, problems, strict=True))
    assert 0.3 < right / len(cands) < 0.5
    wrong = [(c, p) for c, p in zip(cands, problems, strict=True) if c is not None and c != p.reference]
    # slips are local: most wrong answers keep the length of the true one
    assert sum(len(c) == len(p.reference) for c, p in wrong) / len(wrong) > 0.5

"""Verifier parsers on adversarial text, natural-language prompts, and the ensemble selection."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from selfimprove.assets.filtered import filtered_rows
from selfimprove.resources.engine import Generation, Sampling
from selfimprove.spec import FilterSpec, VerificationSpec
from selfimprove.verification import Candidate, sample_scores, verify
from selfimprove.verification.prompts import NaturalPrompts, parse_score, parse_verdict, parse_winner

CAND = Candidate("s1", "p1", "What is 2 + 3?", "2 + 3 = 5. The answer is 5.", "5", True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The steps add up. Verdict: Correct", 1.0),
        ("Verdict: **Incorrect**", 0.0),
        ("verdict - not correct", 0.0),
        ("I think it is correct.", 1.0),
        ("The first step is wrong. Verdict: Correct", 1.0),  # the verdict line wins over prose
        ("", None),
        ("no opinion here", None),
        ("Verdict: Correct\nVerdict: Incorrect", None),  # two conflicting verdicts
        ("It is correct... or incorrect", None),
        ("ＶＥＲＤＩＣＴ： ＣＯＲＲＥＣＴ", 1.0),  # full-width unicode
        ("Let me check: 2 + 3 = 5, so the proposed ans", None),  # cut at max tokens
        (None, None),
    ],
)
def test_parse_verdict(text: str, expected: float | None) -> None:
    assert parse_verdict(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Score: 7", 7),
        ("score 10/10", 10),
        ("Score: 3 out of 10", 3),
        ("Score: seven", 7),
        ("**Score:** 9", 9),
        ("Score: 0", None),  # out of range
        ("Score: 11", None),
        ("Score: 7.5", None),
        ("Score: 7 ... final Score: 8", None),  # conflicting
        ("Score: 8 and again Score: 8", 8),
        ("I would rate it highly", None),
        ("", None),
        ("Ｓｃｏｒｅ： ６", 6),
        ("The check is fine. Scor", None),  # cut at max tokens
    ],
)
def test_parse_score(text: str, expected: int | None) -> None:
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Winner: A", 0),
        ("winner is B", 1),
        ("The better response is (B).", 1),
        ("Winner: A. Winner: B", None),
        ("", None),
    ],
)
def test_parse_winner(text: str, expected: int | None) -> None:
    assert parse_winner(text) == expected


def test_fewshot_prompts_end_where_the_verdict_goes() -> None:
    book = NaturalPrompts("math", "fewshot")
    mc = book.prompt("mc", CAND)
    assert mc.endswith(
        "Proposed answer: 2 + 3 = 5. The answer is 5.\nIs the proposed answer correct (Correct or Incorrect)?\nVerdict:"
    )
    assert mc.count("Verdict: Correct") + mc.count("Verdict: Incorrect") == 2  # two worked shots
    assert book.mc_verdicts == (" Correct", " Incorrect")
    assert book.parse("cot_score", "Score: 10") == 1.0 and book.parse("cot_score", "Score: 1") == 0.0
    custom = NaturalPrompts("qa", "fewshot", templates={"cot_binary": "Q={question} A={answer} ->"})
    assert custom.prompt("cot_binary", CAND).endswith("Q=What is 2 + 3? A=5 ->")


class ChatTokenizerDouble:
    """A stand-in for an instruct tokenizer's chat template (real ones are tested in the task tests)."""

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool, add_generation_prompt: bool) -> str:
        assert not tokenize and add_generation_prompt
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|>"


def test_chat_prompts_use_the_template() -> None:
    book = NaturalPrompts("qa", "chat", tokenizer=ChatTokenizerDouble())
    p = book.prompt("cot_binary", CAND)
    assert p.startswith("<|user|>Question: What is 2 + 3?") and p.endswith("<|assistant|>")
    assert book.mc_verdicts == ("Correct", "Incorrect")


def test_verdict_first_chat_prefills_the_marker_and_parses_the_continuation() -> None:
    book = NaturalPrompts("math", "chat_verdict_first", tokenizer=ChatTokenizerDouble())
    cot = book.prompt("cot_binary", CAND)
    assert cot.startswith("<|user|>Question: What is 2 + 3?") and cot.endswith("<|assistant|>Verdict:")
    assert "Reply with 'Verdict: Correct' or 'Verdict: Incorrect' first" in cot
    assert book.prompt("cot_score", CAND).endswith("<|assistant|>Score:")
    assert book.prompt("tournament", CAND, CAND).endswith("<|assistant|>Winner:")
    assert book.prompt("mc", CAND).endswith("Verdict:<|assistant|>")  # MC as in chat style
    assert book.mc_verdicts == ("Correct", "Incorrect")
    # SmolLM2-135M's continuations after the marker (docs/results.md §6): the next token is the verdict
    assert book.parse("cot_binary", " Correct\nThe proposed answer is correct,") == 1.0
    assert book.parse("cot_binary", " Incorrect. The correct answer is 9.") == 0.0
    assert book.parse("cot_score", " 10\n\nThe") == 1.0
    assert book.parse("tournament", " A\n\nThe answer is 3") == 0.0
    assert book.parse("cot_score", " N: 10") is None  # the strict parser is unchanged
    # the same continuation in plain chat style has no marker in front of it
    assert NaturalPrompts("math", "chat", tokenizer=ChatTokenizerDouble()).parse("cot_score", " 10") is None
    with pytest.raises(ValueError, match="chat_verdict_first-style verification needs the verifier's tokenizer"):
        NaturalPrompts("math", "chat_verdict_first")


class VerdictEngineDouble:
    """A stand-in engine (no model needed): a chat tokenizer and a fixed continuation after any prompt."""

    tokenizer = ChatTokenizerDouble()

    def generate(self, prompts: list[str], n: int, sampling: Sampling, seed: int) -> list[Generation]:
        return [Generation(i, j, " Incorrect. 2 + 3 is 5.", 4, "eos", 0) for i in range(len(prompts)) for j in range(n)]


def test_verify_in_verdict_first_style_gets_the_tokenizer() -> None:
    # verify() hands the engine's tokenizer to the chat styles only (a lazy engine stays unloaded otherwise);
    # chat_verdict_first must get it too
    spec = VerificationSpec(style="chat_verdict_first", max_new_tokens=8)
    rows = verify("cot_binary", VerdictEngineDouble(), [CAND], spec, seed=0)
    assert [(r["ok"], r["score"]) for r in rows] == [(True, 0.0)]
    assert rows[0]["verifier_prompt"].endswith("<|assistant|>Verdict:")


def test_unparseable_output_policies() -> None:
    rows = [
        {"sample_id": "a", "method": "cot_binary", "ok": True, "score": 1.0},
        {"sample_id": "a", "method": "cot_binary", "ok": True, "score": 0.0},
        {"sample_id": "b", "method": "cot_binary", "ok": False, "score": math.nan},
    ]
    assert sample_scores(rows, ["a", "b"], "cot_binary", "zero") == [0.5, 0.0]
    assert sample_scores(rows, ["a", "b"], "cot_binary", "neutral") == [0.5, 0.5]
    drop = sample_scores(rows, ["a", "b"], "cot_binary", "drop")
    assert drop[0] == 0.5 and math.isnan(drop[1])


def test_and_ensemble_selection_hand_case() -> None:
    # one prompt, four samples; quantile alpha=0.5 keeps the top 2 of each verifier:
    #   mc keeps s0, s1; cot_score keeps s1, s2 -> AND keeps only s1
    ids = [f"s{i}" for i in range(4)]
    gens = pa.table(
        {
            "sample_id": ids,
            "prompt_id": ["p"] * 4,
            "sample_index": list(range(4)),
            "prompt": ["q"] * 4,
            "completion": ["c"] * 4,
            "answer": ["1"] * 4,
            "correct": [False, True, False, False],
            "seed": [0] * 4,
        }
    )
    mc, cs = [0.9, 0.8, 0.1, 0.2], [0.1, 0.9, 0.8, 0.2]
    ver = pa.Table.from_pylist(
        [
            {"sample_id": s, "method": m, "ok": True, "score": v}
            for m, vals in (("mc", mc), ("cot_score", cs))
            for s, v in zip(ids, vals, strict=True)
        ]
    )
    f = FilterSpec(kind="quantile", alpha=0.5, ensemble="and")
    out = filtered_rows(gens, ver, ["mc", "cot_score"], f, "neutral")
    assert out.column("sample_id").to_pylist() == ["s1"]
    assert out.column("rule").to_pylist() == ["mc AND cot_score: quantile(alpha=0.5, ties=drop)"]
    assert np.isclose(out.column("score").to_pylist()[0], (0.8 + 0.9) / 2)
    alone = filtered_rows(gens, ver, ["mc"], f, "neutral")
    assert alone.column("sample_id").to_pylist() == ["s0", "s1"]


def test_identical_check_prompts_share_one_generation(micro_model: object) -> None:
    """Candidates with the same answer to the same question get their checks from one generation, and
    the rows equal generating every candidate's checks one by one (sampled, k=2, so this is not trivial)."""
    from selfimprove.resources.transformers_engine import TransformersEngine
    from selfimprove.spec import VerificationSpec
    from selfimprove.verification.prompts import EmbeddedPrompts
    from selfimprove.verification.sampled import verify_sampled

    engine = TransformersEngine.from_path(micro_model)
    seen: list[list[str]] = []
    generate = engine.generate

    def counting_generate(prompts, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(list(prompts))
        return generate(prompts, *args, **kwargs)

    engine.generate = counting_generate  # type: ignore[method-assign]
    q = "x*7+3=45"
    cands = [Candidate(f"s{i}", "p1", q, "", ans, ans == "6") for i, ans in enumerate(["6", "5", "6", None, "6"])]
    spec = VerificationSpec(methods=["cot_binary"], k=2, temperature=1.0, max_new_tokens=30)
    rows = verify_sampled("cot_binary", engine, cands, spec, 3, EmbeddedPrompts())
    assert len(seen) == 1 and len(seen[0]) == 3  # "6", "5" and no answer
    one_by_one = [verify_sampled("cot_binary", engine, [c], spec, 3, EmbeddedPrompts()) for c in cands]
    assert rows == [r for rs in one_by_one for r in rs]
    assert [r["sample_id"] for r in rows] == ["s0", "s0", "s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"]
    engine.close()

"""The verification formats: targets, and parsers that return None on bad text and never raise."""

from __future__ import annotations

import pytest

from selfimprove.toy import formats as f

Q = "x*7+3=2775"


def test_check_targets() -> None:
    assert f.cot_binary_target(Q, "396") == " 6*7+3=45 9*7+4=67 3*7+6=27 =2775|2775 ✓"
    assert f.cot_binary_target(Q, "397") == " 7*7+3=52 9*7+5=68 3*7+6=27 =2782|2775 ✗"
    assert f.cot_binary_target(Q, None) == " ? ✗"
    assert f.cot_score_target(Q, "397").endswith("=2782|2775 s=3")
    assert f.mc_prompt(Q, "396") == "x*7+3=2775\nx=396\nok?"
    assert (f.mc_target(Q, "396"), f.mc_target(Q, "397"), f.mc_target(Q, None)) == ("✓", "✗", "✗")
    assert f.tournament_target(Q, "397", "396").endswith("\n=>B")
    assert f.tournament_target(Q, "396", "396").endswith("\n=>A")  # ties go to A


def test_targets_parse_back() -> None:
    assert f.parse_cot_binary(f.cot_binary_target(Q, "396")) == 1.0
    assert f.parse_cot_binary(f.cot_binary_target(Q, "39")) == 0.0
    assert f.parse_cot_score(f.cot_score_target(Q, "396")) == 10
    assert f.parse_tournament(f.tournament_target(Q, "1", "396")) == 1


@pytest.mark.parametrize(("value", "c", "score"), [(2775, 2775, 10), (2782, 2775, 3), (2875, 2775, 2), (12, 2775, 1)])
def test_closeness_scale(value: int, c: int, score: int) -> None:
    assert f.closeness(value, c) == score


ADVERSARIAL = ["", " ", "✓✗", "s=", "=>", "\x00", "🙂" * 50, "s=١٠", "=>C", None, 12]


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_parsers_never_raise(text: object) -> None:
    assert f.parse_cot_binary(text) is None  # type: ignore[arg-type]
    assert f.parse_cot_score(text) is None  # type: ignore[arg-type]
    assert f.parse_tournament(text) is None  # type: ignore[arg-type]


def test_parse_cot_binary() -> None:
    assert f.parse_cot_binary(" 6*7+3=45 =2775|2775 ✓") == 1.0
    assert f.parse_cot_binary("ok ✗ ✗") == 0.0
    assert f.parse_cot_binary(" 6*7+3=45 =27") is None  # truncated, no verdict
    assert f.parse_cot_binary("✓ then ✗") is None  # conflicting


def test_parse_cot_score() -> None:
    assert f.parse_cot_score(" 6*7+3=45 =2775|2775 s=10") == 10
    assert f.parse_cot_score("s=1") == 1
    assert f.parse_cot_score("s=0") is None and f.parse_cot_score("s=11") is None  # out of range
    assert f.parse_cot_score("s=07") is None and f.parse_cot_score("s=123") is None
    assert f.parse_cot_score("s=3 s=4") is None  # conflicting
    assert f.parse_cot_score("s=4 s=4") == 4
    assert f.parse_cot_score("xs=4") is None and f.parse_cot_score("s=") is None


def test_parse_tournament() -> None:
    assert f.parse_tournament(" A ... =2775|2775\nB ... =2782|2775\n=>A") == 0
    assert f.parse_tournament("=>B") == 1
    assert f.parse_tournament("=>A =>B") is None  # conflicting
    assert f.parse_tournament("=>AB") is None and f.parse_tournament("=> A") is None
    assert f.parse_tournament(" A 6*7+3=45 =27") is None  # truncated


def test_question_round_trip() -> None:
    assert f.parse_question(f.question(7, 3, 2775)) == (7, 3, 2775)
    with pytest.raises(ValueError):
        f.parse_question("x*1+3=4")

"""The verification formats: targets, and parsers that return None on bad text and never raise."""

from __future__ import annotations

import pytest

from selfimprove.toy import formats as f

Q = "x*7+3=2775"


def test_check_targets() -> None:
    # the check re-solves by division; after each step, the candidate's digit at that position and a mark
    assert f.cot_binary_prompt(Q, "396") == "x*7+3=2775\nx=0396\ncheck:"  # aligned with c's digits
    assert f.cot_binary_target(Q, "396") == " 02/7=0r2:0✓ 27/7=3r6:3✓ 67/7=9r4:9✓ 45/7=6r3:6✓ ✓"
    assert f.cot_binary_target(Q, "397") == " 02/7=0r2:0✓ 27/7=3r6:3✓ 67/7=9r4:9✓ 45/7=6r3:7✗ ✗"
    assert f.cot_binary_target(Q, None) == " 02/7=0r2:?✗ 27/7=3r6:?✗ 67/7=9r4:?✗ 45/7=6r3:?✗ ✗"
    assert f.cot_binary_target(Q, "12345").endswith("45/7=6r3:-✗ ✗")  # longer than c: cannot be x
    assert f.cot_binary_prompt(Q, "12345") == "x*7+3=2775\nx=12345\ncheck:"
    assert f.cot_binary_target("x*3+1=7", "2") == " 07/3=2r1:2✓ ✓"
    assert f.cot_score_target(Q, "397").endswith("45/7=6r3:7✗ s=4")
    assert f.mc_prompt(Q, "396") == "x*7+3=2775\nx=0396\nok?"
    assert (f.mc_target(Q, "396"), f.mc_target(Q, "397"), f.mc_target(Q, None)) == ("✓", "✗", "✗")
    assert f.tournament_prompt(Q, "397", None) == "x*7+3=2775\nA:x=0397\nB:x=?\nvs:"
    assert f.tournament_target(Q, "397", "396") == " 02/7=0r2:0✓0✓ 27/7=3r6:3✓3✓ 67/7=9r4:9✓9✓ 45/7=6r3:7✗6✓ =>B"
    assert f.tournament_target(Q, "396", "396").endswith(" =>A")  # ties go to A


def test_targets_parse_back() -> None:
    assert f.parse_cot_binary(f.cot_binary_target(Q, "396")) == 1.0
    assert f.parse_cot_binary(f.cot_binary_target(Q, "39")) == 0.0
    assert f.parse_cot_score(f.cot_score_target(Q, "396")) == 10
    assert f.parse_tournament(f.tournament_target(Q, "1", "396")) == 1


@pytest.mark.parametrize(("marks", "score"), [("✓✓✓✓", 10), ("✓✓✓✗", 4), ("✗✗✗✗", 1), ("✓" * 11 + "✗", 9)])
def test_match_score_scale(marks: str, score: int) -> None:
    assert f.match_score(marks) == score


@pytest.mark.parametrize(
    ("cand", "width", "digits"), [("396", 4, "0396"), ("7", 1, "7"), (None, 2, "??"), ("123", 2, "--")]
)
def test_aligned(cand: str | None, width: int, digits: str) -> None:
    assert f.aligned(cand, width) == digits


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
    assert f.parse_cot_binary(" 02/7=0r2:0✓ 27/7=3r6:3✗") is None  # digit marks are not a verdict
    assert f.parse_cot_binary(" 02/7=0r2:0✓ 27/7=3r6:3✗ ✗") == 0.0
    assert f.parse_cot_binary(" 07/3=2r1:2✓ ✓\n") == 1.0


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

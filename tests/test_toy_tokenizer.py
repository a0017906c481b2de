"""The character-level tokenizer loads with AutoTokenizer and round-trips every corpus character."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from selfimprove.toy import formats
from selfimprove.toy.tokenizer import ALPHABET, save_tokenizer


def test_round_trip_and_specials(tmp_path: Path) -> None:
    save_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    text = "x*7+3=2775\nx=396\ncheck: 6*7+3=45 =2775|2775 ✓ s=10 =>B ✗"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.decode([tok.bos_token_id, *ids, tok.eos_token_id], skip_special_tokens=True) == text
    assert tok(ALPHABET, add_special_tokens=False)["input_ids"] == list(range(4, 4 + len(ALPHABET)))
    assert tok.decode(tok("é", add_special_tokens=False)["input_ids"]) == "<unk>"


def test_verdicts_are_single_tokens(tmp_path: Path) -> None:
    save_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    yes = tok(formats.MC_CORRECT, add_special_tokens=False)["input_ids"]
    no = tok(formats.MC_INCORRECT, add_special_tokens=False)["input_ids"]
    assert len(yes) == len(no) == 1 and yes != no and tok.unk_token_id not in yes + no

"""A character-level tokenizer that `AutoTokenizer.from_pretrained` loads with no custom code.

One token per character of a fixed alphabet (digits, letters, punctuation, the verdict symbols),
plus the special tokens <bos>, <eos>, <pad>, <unk>. Unknown characters map to <unk>.
"""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from selfimprove.toy.formats import MC_CORRECT, MC_INCORRECT

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0..3
ALPHABET = string.digits + string.ascii_letters + " \n!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" + MC_CORRECT + MC_INCORRECT


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer; ids are fixed: specials first, then `ALPHABET` in order."""
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *ALPHABET])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))  # no merges: one token per char
    core.decoder = decoders.Fuse()
    core.add_special_tokens(list(SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )


def save_tokenizer(out_dir: str | Path) -> None:
    build_tokenizer().save_pretrained(str(out_dir))

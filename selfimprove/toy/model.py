"""The embedded model family: small LlamaForCausalLM configs and their pretraining budgets."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import LlamaConfig, LlamaForCausalLM

from selfimprove.toy.tokenizer import build_tokenizer


@dataclass(frozen=True)
class ToySize:
    """Architecture plus pretraining budget (steps of `batch_size` packed rows of `seq_len` tokens)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    steps: int
    batch_size: int = 8
    seq_len: int = 256
    lr: float = 3e-3
    warmup: int = 30


SIZES: dict[str, ToySize] = {
    "micro": ToySize(hidden=32, layers=1, heads=2, intermediate=64, steps=100, batch_size=8, seq_len=128),
    "xs": ToySize(hidden=64, layers=2, heads=4, intermediate=192, steps=300),
    "s": ToySize(hidden=96, layers=3, heads=4, intermediate=256, steps=600),
    "m": ToySize(hidden=112, layers=4, heads=4, intermediate=384, steps=900),
    "default": ToySize(hidden=128, layers=4, heads=4, intermediate=512, steps=1400),
    "l": ToySize(hidden=160, layers=5, heads=5, intermediate=640, steps=1000),
}


def llama_config(size: str) -> LlamaConfig:
    """The Llama config of a named size, with the toy tokenizer's special-token ids."""
    if size not in SIZES:
        raise KeyError(f"unknown toy size {size!r}; known: {sorted(SIZES)}")
    s, tok = SIZES[size], build_tokenizer()
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.heads,
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def build_model(size: str) -> LlamaForCausalLM:
    """A freshly initialised model (seed torch first for reproducible weights)."""
    return LlamaForCausalLM(llama_config(size))


def n_params(model: LlamaForCausalLM) -> int:
    return sum(p.numel() for p in model.parameters())

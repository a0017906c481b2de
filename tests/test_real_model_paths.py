"""Real-LLM code paths without real weights: a randomly initialised Qwen2 checkpoint with a locally
trained BPE tokenizer and a chat template runs GSM8K through the pipeline (few-shot and chat styles)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from selfimprove.definitions import build_definitions
from selfimprove.resources.warehouse import Warehouse
from selfimprove.spec import parse_spec
from selfimprove.state import from_state
from selfimprove.tasks.data import datasets_dir

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def qwen2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qwen2_random")
    lines = [
        json.loads(x)["question"] for x in (datasets_dir() / "gsm8k" / "train.jsonl").read_text().splitlines()[:400]
    ]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(
        lines,
        trainers.BpeTrainer(
            vocab_size=600, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    return out


@pytest.mark.parametrize("style", ["fewshot", "chat"])
def test_gsm8k_with_a_local_qwen2_checkpoint(qwen2_path: Path, tmp_path: Path, style: str) -> None:
    options: dict[str, object] = {"shots": 2, "style": style}
    if style == "chat":
        options["tokenizer"] = str(qwen2_path)
    spec = parse_spec(
        {
            "name": "real",
            "model": {"path": str(qwen2_path)},
            "task": {"name": "gsm8k", "train_prompts": 2, "eval_prompts": 2, "options": options},
            "generation": {"n": 2, "temperature": 1.0, "max_new_tokens": 12},
            "verification": {
                "methods": ["mc", "cot_binary"],
                "max_new_tokens": 12,
                "style": "chat" if style == "chat" else "auto",
            },
            "distill": {"epochs": 1, "batch_size": 4},
            "eval": {"samples": 1},
            "gap": {"bootstrap": 20, "max_parse_failure_rate": 1.0},  # a random-init model never writes a verdict
            "rounds": 1,
        }
    )
    assert spec.verification.style == style
    defs = build_definitions([spec], root=str(tmp_path))
    assert defs.resolve_job_def("real_job").execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    wh = Warehouse(str(tmp_path))
    prompts = [r for r in wh.read("prompts", "real").to_pylist() if r["split"] == "train"]
    for r in prompts:
        if style == "chat":  # the tokenizer's own template: 2 shot turns, then the question
            assert r["prompt"].count("<|im_start|>user") == 3 and r["prompt"].endswith("<|im_start|>assistant\n")
        else:
            assert r["prompt"].endswith(f"Question: {r['question']}\nAnswer:")
    gens = wh.read("generations", "real", 0)
    assert gens.num_rows == 4 and set(gens.column("correct").to_pylist()) == {False}  # random weights
    ver = wh.read("verifications", "real", 0).to_pylist()
    mc = [r for r in ver if r["method"] == "mc"]
    assert len(mc) == 4 and all(0.0 < r["score"] < 1.0 for r in mc)
    assert all("Proposed answer" in r["verifier_prompt"] for r in ver)
    if style == "chat":
        assert all(r["verifier_prompt"].startswith("<|im_start|>user") for r in ver)
    ckpt = wh.read("checkpoint", "real", 0).to_pylist()[0]
    assert (from_state(ckpt["path"]) / "adapter_model.safetensors").is_file()
    assert set(wh.read("generations", "real", 0).column("weight_digest").to_pylist()) != {ckpt["weight_digest"]}


def test_pickle_weights_load_only_when_the_spec_opts_in(micro_model: Path, tmp_path: Path) -> None:
    """Issue 14.9: safetensors only; a `pytorch_model.bin` folder is refused with a reason unless allow_pickle."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from selfimprove.resources.models import ModelLoadError, load_model, weight_digest

    folder = tmp_path / "pickled"
    shutil.copytree(micro_model, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(micro_model / "model.safetensors"), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pickle weights only \(pytorch_model.bin\).*model.allow_pickle: true"):
        load_model(folder)
    spec = parse_spec({"name": "p", "model": {"path": str(folder), "allow_pickle": True}})
    net, _ = load_model(folder, allow_pickle=spec.model.allow_pickle)
    assert weight_digest(net) == weight_digest(load_model(micro_model)[0])

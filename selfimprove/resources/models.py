"""Loading local HF checkpoints (full models or peft adapters) and hashing their weights."""

from __future__ import annotations

import hashlib
import inspect
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from selfimprove.state import from_state


class ModelLoadError(RuntimeError):
    """A model path that is missing or does not hold a loadable checkpoint."""


def weight_digest(model: torch.nn.Module) -> str:
    """Content hash of the weights a model holds: names, dtypes, shapes and bytes, in name order.

    It depends only on the tensors, never on the path or file times, so a copied checkpoint has the
    same digest and any changed weight gives a new one.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


def last_logits(model: torch.nn.Module, keep: int) -> dict[str, int]:
    """`{"logits_to_keep": keep}` when the model's forward takes it, else `{}`; the caller then slices the last
    `keep` positions itself. Every transformers causal LM takes it and so computes only those logits (over a
    49k vocabulary a full [batch, length, vocabulary] tensor is gigabytes); a remote-code model may not, and
    gets the same logits at full memory rather than a TypeError. A peft model is asked about its base model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"logits_to_keep": keep} if _takes_logits_to_keep(type(base)) else {}


@lru_cache(maxsize=64)
def _takes_logits_to_keep(cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


def text_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a text with no special tokens added."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Prompt token ids as both engines and the trainer feed them: the tokenizer's BOS, then the text.

    A text that already starts with the BOS token (a chat template writing its own, e.g. SmolLM2's
    `<|im_start|>` or Llama 3's `<|begin_of_text|>`) gets no second one.
    """
    ids = text_ids(tokenizer, text)
    bos = tokenizer.bos_token_id
    return [bos, *ids] if bos is not None and ids[:1] != [bos] else ids


def prompt_text(tokenizer: Any, text: str) -> str:
    """The prompt as text, for trainers that tokenize it themselves (TRL): the BOS token once, as `prompt_ids`."""
    bos = tokenizer.bos_token or ""
    return text if text.startswith(bos) else bos + text


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base_path(path: str | Path) -> str:
    """The base model a peft adapter folder was trained on (a relative base lies relative to the adapter)."""
    cfg = json.loads((Path(path) / "adapter_config.json").read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{path}/adapter_config.json names no base_model_name_or_path")
    return str(base) if Path(base).is_absolute() else str((Path(path) / base).resolve())


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _check_weights(path: Path, allow_pickle: bool) -> None:
    """Safetensors only: a folder whose weights are pickle files loads only when the spec opts in."""
    if allow_pickle or any(path.glob("*.safetensors")):
        return
    pickled = sorted(f.name for f in path.iterdir() if f.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise ModelLoadError(
            f"{path} holds pickle weights only ({', '.join(pickled)}): loading pickle can run code. Convert them "
            "to safetensors, or set model.allow_pickle: true if you trust the files"
        )


def _check_model_dir(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist")
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is not a folder")
    if not (path / "config.json").is_file() and not is_adapter(path):
        raise ModelLoadError(f"model path {path} holds no config.json or adapter_config.json")


def load_model(
    path: str | Path,
    device: str = "cpu",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from a local folder; a peft adapter is loaded on its base and merged.

    A relative path is one a manifest recorded: it lies in the state folder (`selfimprove.state`).
    Weights must be safetensors unless `allow_pickle` (the spec's `model.allow_pickle`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = from_state(path).resolve()
    _check_model_dir(path)
    torch_dtype = getattr(torch, dtype)
    adapter = is_adapter(path)
    base_path = Path(adapter_base_path(path)) if adapter else path
    if adapter:
        _check_model_dir(base_path)
        _check_weights(path, allow_pickle)
    _check_weights(base_path, allow_pickle)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            base_path,
            dtype=torch_dtype,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
        )
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, path).merge_and_unload()
        tok_path = path if (path / "tokenizer.json").is_file() or not adapter else base_path
        tokenizer = AutoTokenizer.from_pretrained(tok_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(f"could not load the model at {path}: {exc}") from exc
    model.to(device).eval()
    return model, tokenizer

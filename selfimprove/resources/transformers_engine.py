"""The transformers engine: batched sampling with a KV cache, and teacher-forced scoring."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from selfimprove.resources.engine import Generation, Sampling, sample_seed
from selfimprove.resources.models import load_model, weight_digest

log = logging.getLogger(__name__)


class TransformersEngine:
    """Engine on a local HF checkpoint. Each sample draws its randomness from its own seed.

    Sampling uses inverse-CDF draws from a per-sample stream of uniforms, so sample i of a prompt
    is the same whatever batch it lands in and whatever `n` is (up to floating-point effects of
    batch shape; batches are formed in request order).
    """

    engine_name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 256, path: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.path = path
        self.device = next(model.parameters()).device
        self.weight_digest = weight_digest(model)
        self.eos_id: int | None = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)
        self.share_prefill = True  # the samples of one prompt share its prefill (False: one prefill per sample)

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 256,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
    ) -> TransformersEngine:
        model, tokenizer = load_model(
            path, device=device, dtype=dtype, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle
        )
        return cls(model, tokenizer, batch_size=batch_size, path=str(path))

    def encode(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = self.tokenizer.bos_token_id
        return [bos, *ids] if bos is not None else ids

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        sampling: Sampling,
        seed: int,
        first_sample: int = 0,
    ) -> list[Generation]:
        encoded = [self.encode(p) for p in prompts]
        requests = [(p, i) for p in range(len(prompts)) for i in range(first_sample, first_sample + n)]
        out: list[Generation] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            seeds = [sample_seed(seed, prompts[p], i) for p, i in chunk]
            rows = self._generate_batch([encoded[p] for p, _ in chunk], seeds, sampling)
            for (p, i), s, (ids, reason) in zip(chunk, seeds, rows, strict=True):
                text = self._decode(ids)
                text, reason = _cut_at_stop(text, sampling.stop, reason)
                out.append(Generation(p, i, text, len(ids), reason, s))
        return out

    def _generate_batch(
        self, prompts: list[list[int]], seeds: list[int], sampling: Sampling
    ) -> list[tuple[list[int], str]]:
        from transformers import DynamicCache

        b, steps = len(prompts), sampling.max_new_tokens
        row_of = {p: r for r, p in enumerate(dict.fromkeys(tuple(p) for p in prompts))}
        distinct = list(row_of)  # the samples of one prompt share its prefill
        index = torch.tensor([row_of[tuple(p)] for p in prompts]) if len(distinct) < b else None
        if not self.share_prefill:
            distinct, index = [tuple(p) for p in prompts], None
        width = max(len(p) for p in distinct)
        ids = torch.full((len(distinct), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(distinct), width), dtype=torch.long)
        for r, p in enumerate(distinct):  # left padding
            ids[r, width - len(p) :] = torch.tensor(p)
            mask[r, width - len(p) :] = 1
        uniforms = torch.stack([torch.rand(steps, generator=torch.Generator().manual_seed(s)) for s in seeds])
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache)
        logits = out.logits[:, -1, :].float()
        if index is not None:  # one KV cache row per sample, copied from its prompt's row
            cache.batch_select_indices(index.to(self.device))
            logits, mask, positions = (x[index.to(x.device)] for x in (logits, mask, positions))
        tokens = torch.full((b, steps), self.pad_id, dtype=torch.long)
        active = torch.arange(b)  # rows still generating; finished rows leave the batch and its KV cache
        stopped_by_string = [False] * b
        stop_len = [steps] * b  # tokens generated by a row up to and including its stop string
        step_input, step_pos = ids, positions[:, -1:]  # step_input is the sampled token from t = 1 on
        for t in range(steps):
            if t > 0:
                logits = (
                    self.model(input_ids=step_input, attention_mask=mask, position_ids=step_pos, past_key_values=cache)
                    .logits[:, -1, :]
                    .float()
                )
            nxt = _sample(logits, sampling, uniforms[active, t].to(logits.device)).cpu()
            tokens[active, t] = nxt
            finished = nxt == self.eos_id if self.eos_id is not None else torch.zeros_like(nxt, dtype=torch.bool)
            if sampling.stop:
                for j in torch.nonzero(~finished).flatten().tolist():
                    r = int(active[j])
                    if any(s in self._decode(tokens[r, : t + 1].tolist()) for s in sampling.stop):
                        finished[j], stopped_by_string[r], stop_len[r] = True, True, t + 1
            if bool(finished.all()):
                break
            step_input = nxt[:, None].to(self.device)
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=self.device)], dim=1)
            step_pos = step_pos[:, -1:] + 1
            if bool(finished.any()):
                keep = torch.nonzero(~finished).flatten()
                cache.batch_select_indices(keep.to(self.device))
                active, step_input, mask, step_pos = (
                    x[keep.to(x.device)] for x in (active, step_input, mask, step_pos)
                )
        results = []
        for r in range(b):
            row = tokens[r].tolist()
            if stopped_by_string[r]:
                results.append((row[: stop_len[r]], "stop"))
            elif self.eos_id is not None and self.eos_id in row:
                results.append((row[: row.index(self.eos_id)], "eos"))
            else:
                results.append((row, "length"))
        return results

    @torch.inference_mode()
    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.batch_size):
            pairs = [
                (self.encode(p), list(self.tokenizer(c, add_special_tokens=False)["input_ids"]))
                for p, c in zip(
                    prompts[start : start + self.batch_size],
                    continuations[start : start + self.batch_size],
                    strict=True,
                )
            ]
            width = max(len(p) + len(c) for p, c in pairs)
            ids = torch.full((len(pairs), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, (p, c) in enumerate(pairs):  # right padding
                ids[r, : len(p) + len(c)] = torch.tensor(p + c)
                mask[r, : len(p) + len(c)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for r, (p, c) in enumerate(pairs):
                positions = torch.arange(len(p) - 1, len(p) + len(c) - 1)
                out.append(logp[r, positions, torch.tensor(c, dtype=torch.long)].tolist() if c else [])
        return out

    def close(self) -> None:
        self.model = None


def _sample(logits: torch.Tensor, sampling: Sampling, u: torch.Tensor) -> torch.Tensor:
    """Greedy at temperature 0; else inverse-CDF sampling with top-p, one uniform per row."""
    if sampling.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    sorted_p, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    if sampling.top_p < 1.0:
        keep = (sorted_p.cumsum(-1) - sorted_p) < sampling.top_p  # the smallest prefix reaching top_p
        sorted_p = sorted_p * keep
    cdf = sorted_p.cumsum(-1)
    pick = (cdf < (u * cdf[:, -1])[:, None]).sum(-1).clamp(max=probs.shape[-1] - 1)
    return order.gather(-1, pick[:, None]).squeeze(-1)


def _cut_at_stop(text: str, stop: tuple[str, ...], reason: str) -> tuple[str, str]:
    cuts = [text.index(s) for s in stop if s in text]
    return (text[: min(cuts)], "stop") if cuts else (text, reason)

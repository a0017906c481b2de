"""SFT on the filtered samples (rejection-sampling fine-tuning): loss on completion tokens only, each sample's
mean token loss weighted by its filter weight. A plain loop: per-sample weights and per-sample loss means are
what TRL 1.16's SFTTrainer does not do without a subclass and a collator of our own (docs/architecture.md)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from selfimprove import faults
from selfimprove.resources.models import last_logits, prompt_ids, text_ids
from selfimprove.resources.updates.base import TrainExample, Update

if TYPE_CHECKING:
    from selfimprove.spec import DistillSpec

log = logging.getLogger(__name__)


def encode(tokenizer: Any, ex: TrainExample) -> tuple[list[int], list[int]]:
    """Token ids and labels; prompt positions are masked with -100."""
    prompt = prompt_ids(tokenizer, ex.prompt)
    completion = text_ids(tokenizer, ex.completion)
    if tokenizer.eos_token_id is not None:
        completion.append(tokenizer.eos_token_id)
    return prompt + completion, [-100] * len(prompt) + completion


def completion_start(labels: list[int]) -> int:
    """The position of the first completion token (the first label that is not -100)."""
    return next((i for i, t in enumerate(labels) if t != -100), len(labels))


def fit(
    model: Any, tokenizer: Any, examples: Sequence[TrainExample], spec: DistillSpec, seed: int, device: str
) -> list[float]:
    import torch

    from selfimprove.resources.batching import length_batches, shuffled_batches

    encoded = [encode(tokenizer, ex) for ex in examples]
    weights = torch.tensor([ex.weight for ex in examples], dtype=torch.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=0.0)
    order_gen = torch.Generator().manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    curve: list[float] = []
    lengths = [len(x) for x, _ in encoded]
    for epoch in range(spec.epochs):
        if spec.group_by_length:
            batches = length_batches(lengths, spec.batch_size, order_gen)
        else:
            batches = shuffled_batches(len(encoded), spec.batch_size, order_gen)
        for batch in batches:
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                x, y = encoded[i]
                ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            # Logits only from the position before the batch's earliest completion token on: over the prompts
            # they are unused, and a [batch, length, vocabulary] float tensor (with its log-softmax and
            # gradient) is gigabytes for a 49k vocabulary (docs/benchmarks.md, "SFT memory").
            start = max(0, min(completion_start(encoded[i][1]) for i in batch) - 1)
            keep = width - start
            logits = model(input_ids=ids, attention_mask=mask, **last_logits(model, keep)).logits[:, -keep:-1].float()
            target = labels[:, start + 1 :]
            tok_loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none"
            ).view(target.shape)
            valid = (target != -100).float()
            per_sample = (tok_loss * valid).sum(1) / valid.sum(1).clamp(min=1)
            w = weights[batch].to(device)
            loss = (per_sample * w).sum() / w.sum().clamp(min=1e-12)
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(round(loss.item(), 5))
            faults.point("lora:step")
        log.info("LoRA SFT epoch %d/%d: loss %.4f", epoch + 1, spec.epochs, curve[-1])
    return curve


SFT = Update("sft", "filtered", fit, "SFT on the filtered samples, per-sample weights, completion-only loss")

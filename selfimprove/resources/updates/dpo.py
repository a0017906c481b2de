"""DPO and RPO on preference pairs with TRL's DPOTrainer, on the peft model the trainer prepared.

The reference is the round's starting model: TRL copies a continued adapter into a frozen "ref" adapter
(removed again before saving) and uses the base with adapters disabled for a new one. RPO adds TRL's
"sft" loss (mean NLL of the chosen completions' tokens) with weight `distill.rpo_alpha`. Prompts get the
tokenizer's BOS as text, as the engine and the SFT update put it before a prompt; TRL appends EOS.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from selfimprove.resources.models import prompt_text
from selfimprove.resources.updates.base import PreferencePair, Update

if TYPE_CHECKING:
    from selfimprove.spec import DistillSpec

log = logging.getLogger(__name__)


def fit(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    spec: DistillSpec,
    seed: int,
    device: str,
    *,
    rpo: bool = False,
) -> list[float]:
    import datasets
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()
    rows = [{"prompt": prompt_text(tokenizer, p.prompt), "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    with tempfile.TemporaryDirectory(prefix="selfimprove-dpo-") as out:
        args = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=spec.batch_size,
            num_train_epochs=spec.epochs,
            learning_rate=spec.learning_rate,
            lr_scheduler_type="constant",  # as the SFT update: AdamW at a constant rate, no decay, no clipping
            weight_decay=0.0,
            max_grad_norm=0.0,
            beta=spec.beta,
            loss_type=["sigmoid", "sft"] if rpo else ["sigmoid"],
            loss_weights=[1.0, spec.rpo_alpha] if rpo else None,
            max_length=None,
            gradient_checkpointing=spec.gradient_checkpointing,
            use_cpu=device == "cpu",
            seed=seed,
            data_seed=seed,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
        )
        trainer = DPOTrainer(
            model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer
        )
        trainer.train()
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
    steps = [h for h in trainer.state.log_history if "rewards/margins" in h]  # TRL's per-step logs
    curve = [round(float(h["loss"]), 5) for h in steps]
    first, last = steps[0], steps[-1]
    # a margin can grow while the chosen completions get less likely too (logps/chosen falling): say both
    log.info(
        "LoRA %s: %d steps, loss %.4f, reward margin %.4f, rewards/chosen %.4f, logps/chosen %.3f -> %.3f, "
        "logps/rejected %.3f -> %.3f",
        "RPO" if rpo else "DPO",
        len(curve),
        curve[-1],
        last["rewards/margins"],
        last["rewards/chosen"],
        first["logps/chosen"],
        last["logps/chosen"],
        first["logps/rejected"],
        last["logps/rejected"],
    )
    return curve


DPO = Update("dpo", "pairs", fit, "DPO on (chosen, rejected) pairs from the verifier's ranking (TRL DPOTrainer)")
RPO = Update("rpo", "pairs", partial(fit, rpo=True), "DPO + rpo_alpha x SFT loss on the chosen (TRL DPOTrainer)")

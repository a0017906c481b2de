"""The distillation updates, one registry (`distill.update` names one): adding an update is one module that
defines an `Update` and one line here.

- `sft`: rejection-sampling fine-tuning on the filtered samples (the paper's Alg. 1), per-sample weights;
- `dpo`: DPO on (chosen, rejected) pairs from the verifier's ranking within each prompt (TRL's DPOTrainer);
- `rpo`: DPO plus an SFT loss on the chosen completions (the paper's App. D alternative; TRL loss_type
  ["sigmoid", "sft"] weighted 1 : `distill.rpo_alpha`).
"""

from selfimprove.resources.updates import dpo, sft
from selfimprove.resources.updates.base import PreferencePair, TrainExample, Update

UPDATES: dict[str, Update] = {u.name: u for u in (sft.SFT, dpo.DPO, dpo.RPO)}

__all__ = ["UPDATES", "PreferencePair", "TrainExample", "Update"]

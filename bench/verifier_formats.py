"""Parse rates of the written verifiers' prompt formats on a real model (docs/results.md §6), on the stored
samples of an experiment's round 0, through the shipped verification path (`verification.verify`: prompt
books, engine, strict parsers). Greedy checks; one row per format × method with the parse failures, the
mean score (unparsed rows at 0.5) and the within-prompt and pooled AUROC against the grades:

    .venv/bin/python bench/verifier_formats.py [--experiment smollm2_word_arithmetic] [--formats chat,...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from selfimprove import metrics
from selfimprove.assets.verifications import candidates
from selfimprove.render import md_table
from selfimprove.resources.transformers_engine import TransformersEngine
from selfimprove.resources.warehouse import Warehouse
from selfimprove.spec import VerificationSpec
from selfimprove.state import from_state, warehouse_root
from selfimprove.verification import sample_scores, verify
from selfimprove.verification.prompts import TEMPLATES, VERDICT_FIRST

SCORE_EXAMPLE = (
    "Question: {question}\nProposed answer: {response}\nHow likely is the proposed answer to be correct, from 1 "
    "(surely wrong) to 10 (surely right)? Reply with the score first, for example 'Score: 3', then explain briefly."
)
# name -> (style, template overrides, max_new_tokens)
FORMATS: dict[str, tuple[str, dict[str, str], int]] = {
    "chat": ("chat", {}, 48),  # check step by step, then the verdict
    "ask_first": ("chat", dict(VERDICT_FIRST), 16),  # the verdict asked first, no pre-filled marker
    "prefill_only": ("chat_verdict_first", dict(TEMPLATES), 8),  # the step-by-step instruction, marker pre-filled
    "chat_verdict_first": ("chat_verdict_first", {}, 8),  # the shipped style
    "score_example": ("chat_verdict_first", {"cot_score": SCORE_EXAMPLE}, 8),  # CoT-Score with 'Score: 3' shown
}
METHODS = ["cot_binary", "cot_score", "tournament"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="smollm2_word_arithmetic")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    wh = Warehouse(warehouse_root())
    gens = wh.read("generations", args.experiment, 0)
    questions = {r["prompt_id"]: r["question"] for r in wh.read("prompts", args.experiment).to_pylist()}
    cands = candidates(gens, questions)
    model = from_state(wh.read("base_model", args.experiment).to_pylist()[0]["path"])
    engine = TransformersEngine.from_path(model, batch_size=64)
    ids = [c.sample_id for c in cands]
    prompt_ids = [c.prompt_id for c in cands]
    y = np.asarray([c.correct for c in cands], float)
    rows = []
    for name in args.formats.split(","):
        style, templates, tokens = FORMATS[name]
        spec = VerificationSpec(style=style, templates=templates, max_new_tokens=tokens, temperature=0.0)
        for method in METHODS:
            if method == "cot_score" or name != "score_example":
                t = time.perf_counter()
                vrows = verify(method, engine, cands, spec, seed=0)
                s = np.asarray(sample_scores(vrows, ids, method, "neutral"))
                within, mixed = metrics.within_prompt_auroc(prompt_ids, s, y)
                rows.append(
                    {
                        "format": name,
                        "method": method,
                        "max tokens": tokens,
                        "parse failures": f"{sum(not r['ok'] for r in vrows)} / {len(vrows)}",
                        "mean score": float(s.mean()),
                        "AUROC within prompt": within,
                        "mixed prompts": mixed,
                        "AUROC pooled": metrics.auroc(s, y),
                        "seconds": round(time.perf_counter() - t),
                        "first output": vrows[0]["raw"][:40],
                    }
                )
                print(md_table(rows[-1:], list(rows[-1])), flush=True)
    print(f"\n{len(cands)} samples, {int(y.sum())} correct, model {model}\n")
    print(md_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()

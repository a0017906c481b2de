"""Distillation updates: the registry matches the spec, and DPO / RPO on TRL train a real LoRA adapter."""

import json
from pathlib import Path

import pytest
import torch

from selfimprove.resources.models import load_model
from selfimprove.resources.trainer import train_lora
from selfimprove.resources.updates import UPDATES, PreferencePair, TrainExample
from selfimprove.spec import DistillSpec


def test_registry_is_what_the_spec_accepts() -> None:
    assert set(UPDATES) == {"sft", "dpo", "rpo"}
    assert {u.data for u in UPDATES.values()} == {"filtered", "pairs"}
    assert all(DistillSpec(update=name).update == name for name in UPDATES)


def _logp(path: Path, prompt: str, completion: str) -> float:
    """Sum of log-probs of `completion` after `prompt` (BOS first, EOS last), under the model at `path`."""
    model, tok = load_model(path)
    ids = [tok.bos_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
    comp = [*tok(completion, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    x = torch.tensor([ids + comp])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), -1)
    return float(sum(logp[len(ids) - 1 + i, t] for i, t in enumerate(comp)))


@pytest.mark.slow
@pytest.mark.parametrize("update", ["dpo", "rpo"])
def test_preference_update_moves_the_margin(update: str, micro_model: Path, tmp_path: Path) -> None:
    """After DPO (or RPO) on 8 copies of one pair, the chosen completion's log-prob rises relative to the
    rejected one's (the implicit reward margin), the adapter saves without TRL's "ref" copy, and a second
    round continues it."""
    prompt, chosen, rejected = "12*3+4=", "x=40\n", "x=41\n"
    pairs = [PreferencePair(prompt, chosen, rejected)] * 8
    spec = DistillSpec(update=update, epochs=2, batch_size=4, learning_rate=0.01, beta=0.1)
    before = _logp(micro_model, prompt, chosen) - _logp(micro_model, prompt, rejected)
    m1 = train_lora(micro_model, pairs, spec, tmp_path / "r0", seed=0)
    out = tmp_path / "r0"
    after = _logp(out, prompt, chosen) - _logp(out, prompt, rejected)
    assert after > before + 0.2, (before, after)  # measured: dpo +0.5 or more, rpo +0.27 (its sft term lifts both)
    if update == "rpo":  # the sft term: the chosen completion itself became likelier
        assert _logp(out, prompt, chosen) > _logp(micro_model, prompt, chosen) + 1.0
    assert m1["update"] == update and m1["n_examples"] == 8 and len(m1["loss_curve"]) == 4
    assert not (out / "ref").exists()
    assert (out / "adapter_config.json").is_file()
    assert json.loads((out / "manifest.json").read_text())["update"] == update
    m2 = train_lora(micro_model, pairs, spec, tmp_path / "r1", seed=1, init_adapter=out)
    assert m2["weight_digest"] != m1["weight_digest"]


@pytest.mark.slow
def test_preference_update_is_reproducible(micro_model: Path, tmp_path: Path) -> None:
    pairs = [PreferencePair("7*2+1=", "x=15\n", "x=16\n"), PreferencePair("3*3+3=", "x=12\n", "x=13\n")] * 2
    spec = DistillSpec(update="dpo", epochs=1, batch_size=2)
    a = train_lora(micro_model, pairs, spec, tmp_path / "a", seed=3)
    b = train_lora(micro_model, pairs, spec, tmp_path / "b", seed=3)
    assert a["weight_digest"] == b["weight_digest"] and a["loss_curve"] == b["loss_curve"]


def test_no_pairs_is_a_clear_error(micro_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no training examples for the dpo update"):
        train_lora(micro_model, [], DistillSpec(update="dpo"), tmp_path / "x", seed=0)
    assert TrainExample("p", "c").weight == 1.0


@pytest.mark.slow
def test_dpo_round_through_dagster(micro_model: Path, tmp_path: Path) -> None:
    """A 1-round experiment with distill.update: dpo: the pairs asset follows the verifier's ranking and the
    checkpoint trains on it (lineage pairs -> checkpoint, not filtered -> checkpoint). The packaged default model
    (the micro model's samples are all wrong and tie) with the oracle verifier, so that prompts have pairs."""
    import dagster as dg

    from selfimprove.definitions import build_definitions
    from selfimprove.resources.warehouse import Warehouse
    from tests.conftest import MICRO_SPEC, micro_spec

    spec = micro_spec(
        name="micro_dpo",
        rounds=1,
        model={"embedded": "default"},
        task={**MICRO_SPEC["task"], "train_prompts": 12},
        generation={**MICRO_SPEC["generation"], "n": 6, "max_new_tokens": 96, "temperature": 1.0},
        verification={"methods": ["oracle"]},
        distill={**MICRO_SPEC["distill"], "update": "dpo"},
    )
    defs = build_definitions([spec], root=str(tmp_path / "wh"))
    graph = defs.resolve_asset_graph()
    parents = {p.to_user_string() for p in graph.get(dg.AssetKey(["micro_dpo", "round_0", "checkpoint"])).parent_keys}
    assert "micro_dpo/round_0/pairs" in parents and "micro_dpo/round_0/filtered" not in parents
    result = defs.resolve_job_def("micro_dpo_job").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    wh = Warehouse(str(tmp_path / "wh"))
    pairs = wh.read("pairs", "micro_dpo", 0).to_pylist()
    assert pairs and all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    assert all(p["chosen_correct"] and not p["rejected_correct"] for p in pairs)  # the oracle ranks right over wrong
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    per_prompt: dict[str, int] = {}
    for p in pairs:
        per_prompt[p["prompt_id"]] = per_prompt.get(p["prompt_id"], 0) + 1
    assert max(per_prompt.values()) <= spec.distill.pairs_per_prompt
    ckpt = wh.read("checkpoint", "micro_dpo", 0).to_pylist()[0]
    assert ckpt["update"] == "dpo" and ckpt["n_examples"] == len(pairs)


def test_sft_takes_logits_only_where_completions_are(micro_model: Path) -> None:
    """SFT's first loss equals the completion-only loss over full logits, computed by hand, while the LM head
    sees only the positions from the batch's earliest completion on (full-vocabulary logits over the prompts
    were 2.85 of the 14.1 GiB peak of SFT on SmolLM2-135M, activations most of the rest: docs/benchmarks.md)."""
    from peft import LoraConfig, get_peft_model

    from selfimprove.resources.updates.sft import encode, fit

    model, tok = load_model(micro_model)
    examples = [TrainExample("12*3+4=", "x=40\n", 1.0), TrainExample("7*2+1+1+1=", "x=17\n", 0.5)]
    enc = [encode(tok, ex) for ex in examples]
    width = max(len(x) for x, _ in enc)
    with torch.no_grad():  # the reference: full logits, completion tokens only, per-sample means, weighted
        per = []
        for x, y in enc:
            logp = torch.log_softmax(model(input_ids=torch.tensor([x])).logits[0, :-1].float(), -1)
            toks = [(i, t) for i, t in enumerate(y[1:]) if t != -100]
            per.append(-sum(float(logp[i, t]) for i, t in toks) / len(toks))
    expected = (per[0] * 1.0 + per[1] * 0.5) / 1.5
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    seen: list[int] = []
    peft_model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    spec = DistillSpec(epochs=1, batch_size=2, learning_rate=1e-3, group_by_length=False)
    curve = fit(peft_model, tok, examples, spec, seed=0, device="cpu")
    assert curve[0] == pytest.approx(expected, abs=1e-4)  # the adapter starts at zero: the base model's loss
    earliest = min(y.index(next(t for t in y if t != -100)) for _, y in enc)  # the first completion label
    assert seen == [width - (earliest - 1)] and seen[0] < width

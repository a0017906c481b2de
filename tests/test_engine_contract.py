"""The engine contract, checked on the transformers engine with the session's micro toy model.

Every test compares the engine with something computed independently: a direct (unpadded, uncached)
forward pass, a hand-written decoding loop, or the softmax itself (chi-square goodness of fit).
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from selfimprove.resources.engine import Engine, Generation, Sampling, sample_seed
from selfimprove.resources.models import ModelLoadError, load_model, weight_digest
from selfimprove.resources.transformers_engine import TransformersEngine

PROMPT = "x*7+3=2775\n"
OTHERS = ["x*2+0=4\n", "x*9+9=123456789\n", "x*3+1=10\n"]  # shorter and longer: rows get left-padded
REASONS = {"eos", "stop", "length"}


@pytest.fixture(scope="module")
def engine(micro_model: Path) -> Iterator[TransformersEngine]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the micro model's matrices are tiny: a second thread only adds sync cost
    try:
        yield TransformersEngine.from_path(micro_model, batch_size=64)
    finally:
        torch.set_num_threads(threads)


def _with_batch_size(engine: TransformersEngine, batch_size: int) -> TransformersEngine:
    """The same weights behind another batch size."""
    return TransformersEngine(engine.model, engine.tokenizer, batch_size=batch_size, path=engine.path)


def _key(g: Generation) -> tuple[int, str, int, str, int]:
    """Everything of a generation except prompt_index (which depends on the prompt list)."""
    return g.sample_index, g.text, g.num_tokens, g.finish_reason, g.sample_seed


def _of_prompt(gens: list[Generation], prompt_index: int) -> list[tuple[int, str, int, str, int]]:
    return [_key(g) for g in gens if g.prompt_index == prompt_index]


@torch.inference_mode()
def _next_logits(engine: TransformersEngine, ids: list[int]) -> torch.Tensor:
    """Next-token logits of one unpadded sequence, with no cache."""
    return engine.model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def _hand_decode(engine: TransformersEngine, prompt: str, sampling: Sampling, seed: int, i: int) -> list[int]:
    """Sample i of `prompt` by hand: full forward pass per step, inverse-CDF draw from the sample's own
    uniform stream (torch.rand seeded by sample_seed), greedy at temperature 0. Stops before EOS;
    ignores stop strings."""
    ids = engine.encode(prompt)
    gen = torch.Generator().manual_seed(sample_seed(seed, prompt, i))
    uniforms = torch.rand(sampling.max_new_tokens, generator=gen)
    out: list[int] = []
    for t in range(sampling.max_new_tokens):
        logits = _next_logits(engine, ids + out)
        if sampling.temperature <= 0:
            tok = int(logits.argmax())
        else:
            probs = torch.softmax(logits / sampling.temperature, dim=-1)
            sorted_p, order = torch.sort(probs, descending=True, stable=True)
            sorted_p = sorted_p * (_nucleus_mask(sorted_p, sampling.top_p))
            cdf = sorted_p.cumsum(-1)
            pick = min(int(torch.searchsorted(cdf, uniforms[t] * cdf[-1])), len(cdf) - 1)
            tok = int(order[pick])
        if tok == engine.eos_id:
            break
        out.append(tok)
    return out


def _nucleus_mask(sorted_p: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest prefix of the descending probabilities whose mass reaches top_p."""
    if top_p >= 1.0:
        return torch.ones_like(sorted_p, dtype=torch.bool)
    return (sorted_p.cumsum(-1) - sorted_p) < top_p


def _num_text_tokens(engine: TransformersEngine, text: str) -> int:
    return len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------- shapes and seeds


def test_shapes_ordering_and_fields(engine: TransformersEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.engine_name == "transformers"
    prompts = [PROMPT, *OTHERS]
    sampling = Sampling(temperature=1.0, max_new_tokens=24)
    gens = engine.generate(prompts, 3, sampling, seed=11, first_sample=2)
    assert len(gens) == len(prompts) * 3
    assert [(g.prompt_index, g.sample_index) for g in gens] == [(p, i) for p in range(4) for i in (2, 3, 4)]
    for g in gens:
        assert g.finish_reason in REASONS - {"stop"}  # no stop strings were given
        assert 0 <= g.num_tokens <= sampling.max_new_tokens
        assert g.sample_seed == sample_seed(11, prompts[g.prompt_index], g.sample_index)
        assert "<eos>" not in g.text
        assert g.num_tokens == _num_text_tokens(engine, g.text)  # one token per character / special
        if g.finish_reason == "length":
            assert g.num_tokens == sampling.max_new_tokens
    assert engine.generate(prompts, 0, sampling, seed=11) == []


def test_same_seed_same_samples_other_seed_other_samples(engine: TransformersEngine) -> None:
    prompts = [PROMPT, OTHERS[0]]
    sampling = Sampling(temperature=1.0, max_new_tokens=20)
    a = engine.generate(prompts, 4, sampling, seed=5)
    b = engine.generate(prompts, 4, sampling, seed=5)
    c = engine.generate(prompts, 4, sampling, seed=6)
    assert a == b
    assert len({g.text for g in a}) == len(a)  # different sample indices draw different samples
    assert all(x.sample_seed != y.sample_seed for x, y in zip(a, c, strict=True))
    assert sum(x.text != y.text for x, y in zip(a, c, strict=True)) >= len(a) - 1


def test_batch_invariance(engine: TransformersEngine) -> None:
    """A prompt's samples do not depend on the prompts sharing its batch nor on the batch size."""
    sampling = Sampling(temperature=1.0, max_new_tokens=32)
    alone = _of_prompt(engine.generate([PROMPT], 8, sampling, seed=3), 0)
    mixed = _of_prompt(engine.generate([OTHERS[1], OTHERS[0], PROMPT, OTHERS[2]], 8, sampling, seed=3), 2)
    small = _with_batch_size(engine, 3).generate([OTHERS[0], PROMPT, OTHERS[1]], 8, sampling, seed=3)
    single = _with_batch_size(engine, 1).generate([PROMPT], 8, sampling, seed=3)
    assert len(alone) == 8
    assert alone == mixed == _of_prompt(small, 1) == _of_prompt(single, 0)


def test_shared_prefill_changes_no_sample(engine: TransformersEngine) -> None:
    """The samples of one prompt share its prefill (one KV cache row copied to each sample): every row equals
    the row with one prefill per sample, with a batch cut in the middle of a prompt's samples too."""
    sampling = Sampling(temperature=1.0, max_new_tokens=32)
    prompts = [OTHERS[0], PROMPT, OTHERS[1]]
    shared = _with_batch_size(engine, 5).generate(prompts, 8, sampling, seed=5)
    separate = _with_batch_size(engine, 5)
    separate.share_prefill = False
    assert [_key(g) for g in shared] == [_key(g) for g in separate.generate(prompts, 8, sampling, seed=5)]


def test_n_invariance(engine: TransformersEngine) -> None:
    """Sample i is the same whatever n is, and first_sample continues a prompt's sample stream."""
    sampling = Sampling(temperature=1.0, max_new_tokens=32)
    prompts = [PROMPT, OTHERS[1]]
    eight = engine.generate(prompts, 8, sampling, seed=9)
    four = engine.generate(prompts, 4, sampling, seed=9)
    rest = engine.generate(prompts, 4, sampling, seed=9, first_sample=4)
    for p in range(2):
        assert _of_prompt(four, p) == _of_prompt(eight, p)[:4]
        assert _of_prompt(rest, p) == _of_prompt(eight, p)[4:]
        assert [k[0] for k in _of_prompt(rest, p)] == [4, 5, 6, 7]


# --------------------------------------------------------------------------- the sampled distribution

_Z_999 = 3.0902  # standard normal quantile for p = 0.001 (upper tail)


def _chi2_critical(df: int) -> float:
    """Wilson-Hilferty approximation of the p=0.001 chi-square critical value; it errs high for small df
    (df=1: 11.2 vs 10.8), i.e. conservatively."""
    k = 2.0 / (9.0 * df)
    return df * (1.0 - k + _Z_999 * math.sqrt(k)) ** 3


def _chi2(counts: Counter[int], probs: torch.Tensor, n: int) -> tuple[float, int]:
    """Pearson statistic and df over tokens with expected count >= 5; the others are merged into one
    bin (itself merged into the smallest bin when its expected count is below 5)."""
    expected = (probs.double() * n).tolist()
    big = [t for t, e in enumerate(expected) if e >= 5]
    bins = [(counts[t], expected[t]) for t in big]
    rest_obs = n - sum(o for o, _ in bins)
    rest_exp = n - sum(e for _, e in bins)
    if rest_exp >= 5 or (rest_exp > 0 and not bins):
        bins.append((rest_obs, rest_exp))
    elif rest_obs or rest_exp > 0:
        j = min(range(len(bins)), key=lambda i: bins[i][1])
        bins[j] = (bins[j][0] + rest_obs, bins[j][1] + rest_exp)
    stat = sum((o - e) ** 2 / e for o, e in bins)
    return stat, len(bins) - 1


def _first_tokens(engine: TransformersEngine, prompt: str, n: int, sampling: Sampling, seed: int) -> Counter[int]:
    """Token ids of n single-token samples (an empty "eos" sample is the EOS token)."""
    vocab = engine.tokenizer.get_vocab()
    counts: Counter[int] = Counter()
    for g in engine.generate([prompt], n, sampling, seed=seed):
        if g.finish_reason == "eos":
            assert g.text == "" and g.num_tokens == 0
            counts[engine.eos_id] += 1
        else:
            assert g.num_tokens == 1 and g.finish_reason == "length"
            counts[vocab[g.text]] += 1
    return counts


def _spread_prompt(engine: TransformersEngine) -> str:
    """The candidate prompt whose next-token distribution (T=0.7) has the most tokens worth a chi-square bin."""
    candidates = ["x*2+0=4\nx=2\nok?", PROMPT, "x*4+1=", "zq~"]
    return max(
        candidates, key=lambda p: int((torch.softmax(_next_logits(engine, engine.encode(p)) / 0.7, -1) > 0.005).sum())
    )


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_frequencies_match_softmax(engine: TransformersEngine, temperature: float) -> None:
    prompt, n = _spread_prompt(engine), 2000
    logits = _next_logits(engine, engine.encode(prompt))
    probs = torch.softmax(logits / temperature, dim=-1)
    counts = _first_tokens(engine, prompt, n, Sampling(temperature=temperature, max_new_tokens=1), seed=101)
    assert sum(counts.values()) == n
    stat, df = _chi2(counts, probs, n)
    assert df >= 5
    assert stat < _chi2_critical(df), f"chi2={stat:.1f} df={df} at T={temperature}"
    # the test has power: the same draws are rejected against a distribution with the ranks reversed
    sorted_p, order = torch.sort(probs, descending=True, stable=True)
    reversed_ranks = torch.empty_like(probs)
    reversed_ranks[order] = sorted_p.flip(0)
    wrong_stat, wrong_df = _chi2(counts, reversed_ranks, n)
    assert wrong_stat > _chi2_critical(wrong_df), f"chi2={wrong_stat:.1f} df={wrong_df}"


def test_top_p_keeps_to_the_nucleus(engine: TransformersEngine) -> None:
    prompt, n, top_p = _spread_prompt(engine), 1500, 0.5
    probs = torch.softmax(_next_logits(engine, engine.encode(prompt)), dim=-1)
    sorted_p, order = torch.sort(probs, descending=True, stable=True)
    keep = _nucleus_mask(sorted_p, top_p)
    nucleus = set(order[keep].tolist())
    assert 3 <= len(nucleus) < len(probs) // 2
    counts = _first_tokens(engine, prompt, n, Sampling(temperature=1.0, top_p=top_p, max_new_tokens=1), seed=7)
    assert set(counts) <= nucleus, f"tokens outside the nucleus: {set(counts) - nucleus}"
    renormalised = torch.zeros_like(probs)
    renormalised[order[keep]] = sorted_p[keep] / sorted_p[keep].sum()
    stat, df = _chi2(counts, renormalised, n)
    assert stat < _chi2_critical(df), f"chi2={stat:.1f} df={df}"


# --------------------------------------------------------------------------- decoding loop


def test_greedy_equals_argmax_by_hand(engine: TransformersEngine) -> None:
    prompts = [PROMPT, *OTHERS, "x*2+0=4\nx=2\nok?"]
    sampling = Sampling(temperature=0.0, max_new_tokens=12)
    gens = engine.generate(prompts, 2, sampling, seed=0)
    again = engine.generate(prompts, 1, sampling, seed=123)  # greedy ignores the seed
    for g in gens:
        want = _hand_decode(engine, prompts[g.prompt_index], sampling, 0, g.sample_index)
        assert g.text == engine._decode(want)
        assert g.num_tokens == len(want)
        assert g.finish_reason == ("length" if len(want) == sampling.max_new_tokens else "eos")
    assert [g.text for g in again] == [g.text for g in gens if g.sample_index == 0]


def test_sampling_with_eos_equals_hand_loop(engine: TransformersEngine) -> None:
    """KV cache + left padding + EOS handling give the same tokens as an uncached, unpadded loop."""
    prompts = [PROMPT, "x*2+0=4\nx=2\nok?", OTHERS[0]]
    sampling = Sampling(temperature=1.0, max_new_tokens=30)
    gens = engine.generate(prompts, 8, sampling, seed=21)
    reasons = Counter(g.finish_reason for g in gens)
    assert reasons["eos"] >= 1 and reasons["length"] >= 1, reasons  # both kinds of ending are exercised
    for g in gens:
        want = _hand_decode(engine, prompts[g.prompt_index], sampling, 21, g.sample_index)
        assert g.text == engine._decode(want)
        assert g.num_tokens == len(want)
        assert g.finish_reason == ("length" if len(want) == sampling.max_new_tokens else "eos")
        assert "<eos>" not in g.text
        assert g.text.count("<pad>") == want.count(engine.pad_id)  # no padding leaks into the text


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_stop_strings_cut_text_and_count_tokens(engine: TransformersEngine, pad_is_eos: bool) -> None:
    """Stop strings end a row, cut the text and count only generated tokens, also with tokenizers
    (most HF chat models) whose pad token is their EOS token."""
    if pad_is_eos:
        engine = _with_batch_size(engine, engine.batch_size)
        engine.pad_id = engine.eos_id
    prompts = [PROMPT, OTHERS[1], "x*2+0=4\nx=2\nok?"]
    stop = ("\n", "==")
    sampling = Sampling(temperature=1.0, max_new_tokens=30, stop=stop)
    free = Sampling(temperature=1.0, max_new_tokens=30)  # same uniforms: stop strings change no draw
    gens = engine.generate(prompts, 6, sampling, seed=4)
    assert Counter(g.finish_reason for g in gens)["stop"] >= 3
    for g in gens:
        want = _hand_decode(engine, prompts[g.prompt_index], free, 4, g.sample_index)
        # the first step whose decoded text holds a stop string
        k = next((k for k in range(1, len(want) + 1) if any(s in engine._decode(want[:k]) for s in stop)), None)
        assert not any(s in g.text for s in stop)
        if k is None:
            assert g.finish_reason == ("length" if len(want) == sampling.max_new_tokens else "eos")
            assert (g.text, g.num_tokens) == (engine._decode(want), len(want))
        else:
            text = engine._decode(want[:k])
            assert g.finish_reason == "stop"
            assert g.text == text[: min(text.index(s) for s in stop if s in text)]
            assert g.num_tokens == k, "num_tokens counts the generated tokens up to the stop string, no padding"


# --------------------------------------------------------------------------- scoring


def test_score_equals_direct_log_softmax(engine: TransformersEngine) -> None:
    pairs = [
        (PROMPT, "2775-3=2772\n02:0r2"),
        (OTHERS[0], "x=2"),
        (OTHERS[1], "1"),
        ("x*2+0=4\nx=2\nok?", "✓"),
        (OTHERS[2], ""),
    ]
    scores = engine.score([p for p, _ in pairs], [c for _, c in pairs])
    assert len(scores) == len(pairs)
    with torch.inference_mode():
        for (prompt, cont), got in zip(pairs, scores, strict=True):
            p_ids = engine.encode(prompt)
            c_ids = engine.tokenizer(cont, add_special_tokens=False)["input_ids"]
            assert len(got) == len(c_ids)
            if not c_ids:
                continue
            logits = engine.model(input_ids=torch.tensor([p_ids + c_ids])).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            want = [float(logp[len(p_ids) - 1 + j, c]) for j, c in enumerate(c_ids)]
            assert got == pytest.approx(want, abs=1e-5)
            assert all(v <= 0 for v in got)
    alone = engine.score([pairs[1][0]], [pairs[1][1]])
    assert alone[0] == pytest.approx(scores[1], abs=1e-5)
    with pytest.raises(ValueError):
        engine.score([PROMPT], [])


# --------------------------------------------------------------------------- loading and digests


def test_missing_path_raises(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelLoadError, match="no_such_model") as exc:
        load_model(missing)
    assert str(missing.resolve()) in str(exc.value)


def test_folder_without_config_raises(micro_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no_config"
    shutil.copytree(micro_model, folder)
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError) as exc:
        load_model(folder)
    assert str(folder.resolve()) in str(exc.value)


def test_corrupt_safetensors_raises(micro_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "corrupt"
    shutil.copytree(micro_model, folder)
    (folder / "model.safetensors").write_bytes(b"this is not a safetensors file" * 64)
    with pytest.raises(ModelLoadError) as exc:
        load_model(folder)
    assert str(folder.resolve()) in str(exc.value)


def test_weight_digest_follows_content_not_path(engine: TransformersEngine, micro_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(micro_model, copy)
    model, tokenizer = load_model(copy)
    digest = weight_digest(model)
    assert len(digest) == 32
    assert digest == engine.weight_digest == weight_digest(engine.model)
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[0] += 1e-3
    perturbed = weight_digest(model)
    assert perturbed != digest
    saved = tmp_path / "perturbed"
    model.save_pretrained(saved)
    tokenizer.save_pretrained(str(saved))
    reloaded = TransformersEngine.from_path(saved)
    assert reloaded.weight_digest == perturbed


class NoLogitsToKeep(torch.nn.Module):
    """Stands in for a remote-code model whose forward does not take `logits_to_keep` (it returns every
    position's logits): the engine must give the same samples and scores, not a TypeError."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None):  # type: ignore[no-untyped-def]
        kwargs = {"attention_mask": attention_mask, "position_ids": position_ids, "past_key_values": past_key_values}
        return self.inner(input_ids=input_ids, **kwargs)


def test_a_model_without_logits_to_keep_gives_the_same_samples_and_scores(engine: TransformersEngine) -> None:
    from selfimprove.resources.models import last_logits

    plain = TransformersEngine(NoLogitsToKeep(engine.model), engine.tokenizer, batch_size=64, path=engine.path)
    assert last_logits(plain.model, 3) == {} and last_logits(engine.model, 3) == {"logits_to_keep": 3}
    sampling = Sampling(temperature=0.9, max_new_tokens=12)
    prompts = [PROMPT, *OTHERS]
    assert plain.generate(prompts, 3, sampling, seed=5) == engine.generate(prompts, 3, sampling, seed=5)
    continuations = ["2775\n", "4", "123", ""]
    for a, b in zip(plain.score(prompts, continuations), engine.score(prompts, continuations), strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_lora_model_is_asked_about_its_base_model(micro_model: Path) -> None:
    """SFT trains a peft model, whose forward takes **kwargs: its logits stay cut to the completions."""
    from peft import LoraConfig, get_peft_model

    from selfimprove.resources.models import last_logits

    model, _ = load_model(micro_model)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert last_logits(lora, 7) == {"logits_to_keep": 7}

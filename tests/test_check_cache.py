"""Written checks cached by their verifier prompt: `CheckedEngine` over the real transformers engine (micro model).

The tests count the samples the wrapped engine is asked for, and compare the served checks with the
engine's own samples: by the engine rule a cached check must equal the one the engine would write.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from selfimprove.resources.engine import Generation, Sampling
from selfimprove.resources.transformers_engine import TransformersEngine
from selfimprove.verification.checks import CheckedEngine, check_key, known_checks

PROMPTS = ["x*7+3=2775\n", "x*2+0=4\n", "x*3+1=10\n"]
SAMPLING = Sampling(temperature=0.8, max_new_tokens=12)


class Counted:
    """Test double: passes calls to the real engine and records how many samples it was asked for."""

    def __init__(self, engine: TransformersEngine) -> None:
        self.engine, self.asked = engine, 0

    def generate(
        self, prompts: Sequence[str], n: int, sampling: Sampling, seed: int, first_sample: int = 0
    ) -> list[Generation]:
        self.asked += len(prompts) * n
        return self.engine.generate(prompts, n, sampling, seed, first_sample)


@pytest.fixture(scope="module")
def engine(micro_model: Path) -> Iterator[TransformersEngine]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield TransformersEngine.from_path(micro_model, batch_size=64)
    finally:
        torch.set_num_threads(threads)


def texts(gens: list[Generation]) -> list[tuple[int, int, str]]:
    return [(g.prompt_index, g.sample_index, g.text) for g in gens]


def test_known_checks_are_never_generated_again(engine: TransformersEngine) -> None:
    inner = Counted(engine)
    checked = CheckedEngine(inner, engine.weight_digest, engine.engine_name, {})
    first = checked.generate(PROMPTS[:2], 2, SAMPLING, seed=3)
    assert inner.asked == 4 and (checked.generated, checked.reused) == (4, 0)
    # raising k: only index 2 of each prompt is new; a repeated and a new prompt in the same call
    again = checked.generate([PROMPTS[1], PROMPTS[0], PROMPTS[2], PROMPTS[0]], 3, SAMPLING, seed=3)
    assert inner.asked == 4 + 2 * 1 + 3  # index 2 of the two known prompts, 0..2 of the new one (once)
    assert (checked.generated, checked.reused) == (9, 4 * 3 - 5)  # 12 checks served, 5 of them new
    assert texts(again) == texts(engine.generate([PROMPTS[1], PROMPTS[0], PROMPTS[2], PROMPTS[0]], 3, SAMPLING, 3))
    assert texts(first) == texts(engine.generate(PROMPTS[:2], 2, SAMPLING, 3))
    # another seed or sampling is another check
    checked.generate(PROMPTS[:1], 1, SAMPLING, seed=4)
    checked.generate(PROMPTS[:1], 1, Sampling(temperature=0.5, max_new_tokens=12), seed=3)
    assert inner.asked == 9 + 2


def test_checks_from_earlier_rows_load_no_engine(engine: TransformersEngine) -> None:
    """Rows of an earlier table carry their check key: every check known, the engine is never touched."""
    gens = engine.generate(PROMPTS, 2, SAMPLING, seed=0)
    rows = [
        {
            "check_key": check_key(engine.weight_digest, engine.engine_name, SAMPLING, 0, PROMPTS[g.prompt_index], i),
            "verification_index": i,
            "seed": 0,
            "verifier_prompt": PROMPTS[g.prompt_index],
            "raw": g.text,
        }
        for g in gens
        for i in [g.sample_index]
    ] + [{"check_key": None, "verification_index": 0, "seed": 0, "verifier_prompt": "mc", "raw": "x"}]

    class Unloadable:
        def generate(self, *args: object, **kwargs: object) -> list[Generation]:
            raise AssertionError("a fully cached call must not touch the engine")

    checked = CheckedEngine(Unloadable(), engine.weight_digest, engine.engine_name, known_checks(rows))
    assert texts(checked.generate(PROMPTS, 2, SAMPLING, seed=0)) == texts(gens)
    other = CheckedEngine(Unloadable(), "other-weights", engine.engine_name, known_checks(rows))
    with pytest.raises(AssertionError, match="must not touch"):
        other.generate(PROMPTS[:1], 1, SAMPLING, seed=0)


def test_a_copy_of_a_checked_engine_does_not_recurse() -> None:
    """copy/pickle build the object without __init__ and look up special names first: they must not reach
    the wrapped engine through __getattr__ (which would recurse while `engine` is unset)."""
    import copy
    import pickle

    checked = CheckedEngine({"not": "an engine"}, "w", "transformers", {})
    assert copy.copy(checked).engine == {"not": "an engine"}
    assert pickle.loads(pickle.dumps(checked)).weight_digest == "w"

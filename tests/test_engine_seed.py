"""The per-sample seed rule of the engine contract."""

from selfimprove.resources.engine import Sampling, sample_seed


def test_sample_seed_depends_only_on_seed_prompt_and_index() -> None:
    a = sample_seed(0, "Q:1+1", 3)
    assert a == sample_seed(0, "Q:1+1", 3)
    assert 0 <= a < 2**63
    others = {sample_seed(1, "Q:1+1", 3), sample_seed(0, "Q:1+2", 3), sample_seed(0, "Q:1+1", 4)}
    assert a not in others and len(others) == 3


def test_sampling_json_is_canonical() -> None:
    assert Sampling(temperature=0.7, top_p=0.9).to_json() == Sampling(top_p=0.9, temperature=0.7).to_json()
    assert '"temperature": 0.7' in Sampling(temperature=0.7).to_json()

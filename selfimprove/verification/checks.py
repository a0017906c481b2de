"""Written checks cached by the content of their verifier prompt.

A written check (a CoT verifier's generation) is sample `i` of its verifier prompt, so by the engine
rule it depends only on (verifier weights, engine, prompt, sampling, seed, i). `check_key` hashes
exactly those, and `CheckedEngine` serves any check whose key it already holds, asking the wrapped
engine only for the others. An answer already checked (by an earlier sample with the same answer to
the same question, an earlier N, an earlier run) is never checked again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from selfimprove.resources.engine import Generation, Sampling, sample_seed

CHECK_VERSION = "1"


def check_key(weight_digest: str, engine_name: str, sampling: Sampling, seed: int, prompt: str, index: int) -> str:
    """The cache key of check `index` of a verifier prompt."""
    parts = (weight_digest, engine_name, sampling.to_json(), seed, index, CHECK_VERSION, prompt)
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


class CheckedEngine:
    """An engine whose `generate` reuses known checks (key -> Generation) and records the new ones.

    `generated` counts the checks the wrapped engine produced, `reused` those served from `known`. The
    wrapped engine is touched only when some check is missing, so a lazy engine stays unloaded when every
    check is known. A check known from an earlier table carries its text only (num_tokens 0,
    finish_reason "cached"); the sampled verifiers read nothing else.
    """

    def __init__(self, engine: Any, weight_digest: str, engine_name: str, known: dict[str, Generation]):
        self.engine, self.known = engine, known
        self.weight_digest, self.engine_name = weight_digest, engine_name
        self.generated = self.reused = 0

    def __getattr__(self, name: str) -> Any:  # tokenizer, score, ...: the wrapped engine's
        if name.startswith("_") or name == "engine":  # not yet set (a copy, an unpickled one): no recursion
            raise AttributeError(name)
        return getattr(self.engine, name)

    def key(self, prompt: str, index: int, sampling: Sampling, seed: int) -> str:
        return check_key(self.weight_digest, self.engine_name, sampling, seed, prompt, index)

    def generate(
        self, prompts: Sequence[str], n: int, sampling: Sampling, seed: int, first_sample: int = 0
    ) -> list[Generation]:
        wanted = range(first_sample, first_sample + n)
        keys = [[self.key(p, i, sampling, seed) for i in wanted] for p in prompts]
        missing: dict[tuple[int, int], list[int]] = {}  # (first, count) of the missing indices -> prompts
        pending: set[str] = set()
        for j, row in enumerate(keys):
            gaps = [i for i, k in zip(wanted, row, strict=True) if k not in self.known and k not in pending]
            if gaps:
                missing.setdefault((gaps[0], gaps[-1] - gaps[0] + 1), []).append(j)
                pending.update(row)
        before = self.generated
        for (first, count), group in missing.items():
            for g in self.engine.generate([prompts[j] for j in group], count, sampling, seed, first):
                k = self.key(prompts[group[g.prompt_index]], g.sample_index, sampling, seed)
                if k not in self.known:
                    self.known[k] = g
                    self.generated += 1
        out = []
        for j, row in enumerate(keys):
            for i, k in zip(wanted, row, strict=True):
                g = self.known[k]
                out.append(Generation(j, i, g.text, g.num_tokens, g.finish_reason, g.sample_seed))
        self.reused += len(out) - (self.generated - before)
        return out


def known_checks(rows: Iterable[dict[str, Any]]) -> dict[str, Generation]:
    """The checks recorded in earlier verification rows (those with a `check_key`)."""
    known: dict[str, Generation] = {}
    for r in rows:
        k = r.get("check_key")
        if k:
            i = int(r["verification_index"])
            seed = sample_seed(int(r["seed"]), r["verifier_prompt"], i)
            known[k] = Generation(0, i, r["raw"], 0, "cached", seed)
    return known

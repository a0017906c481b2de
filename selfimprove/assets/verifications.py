"""The verifications asset: the model (or a cross-verifier) scores the round's samples."""

import dagster as dg
import pyarrow as pa
from dagster import AssetExecutionContext

from selfimprove.assets.common import Experiment, digest, output
from selfimprove.assets.models import resolve_model
from selfimprove.resources.engine import Engine
from selfimprove.resources.engines import EngineResource
from selfimprove.verification import Candidate, verify

CODE_VERSION = "1"


def candidates(generations: pa.Table, questions: dict[str, str]) -> list[Candidate]:
    cols = ["sample_id", "prompt_id", "completion", "answer", "correct"]
    return [
        Candidate(r["sample_id"], r["prompt_id"], questions[r["prompt_id"]], r["completion"], r["answer"], r["correct"])
        for r in generations.select(cols).to_pylist()
    ]


def verification_rows(exp: Experiment, engine: Engine, cands: list[Candidate], generator_digest: str) -> pa.Table:
    spec = exp.spec.verification
    rows = []
    for method in spec.methods:
        for row in verify(method, engine, cands, spec, exp.spec.seed):
            row.update(
                seed=exp.spec.seed,
                verifier_digest=engine.weight_digest,
                generator_digest=generator_digest,
                engine=engine.engine_name,
            )
            row["cache_key"] = digest(
                row["verifier_digest"],
                row["engine"],
                row["verifier_prompt"],
                spec.model_dump_json(),
                row["verification_index"],
                row["seed"],
                CODE_VERSION,
            )
            rows.append(row)
    return pa.Table.from_pylist(rows)


def verifications_asset(exp: Experiment, r: int) -> dg.AssetsDefinition:
    spec = exp.spec.verification
    who = "a cross-verifier" if spec.verifier else "the round's own model"

    @dg.asset(
        key=exp.key("verifications", r),
        ins={
            "generations": dg.AssetIn(exp.key("generations", r)),
            "prompts": dg.AssetIn(exp.key("prompts")),
            "model": dg.AssetIn(exp.model_key(r)),
        },
        group_name=exp.group(r),
        kinds={"pytorch", "parquet"},
        code_version=CODE_VERSION,
        pool="model",
        description=f"Round {r}: {who} verifies every sample with {', '.join(spec.methods)}.",
    )
    def verifications(
        context: AssetExecutionContext,
        generations: pa.Table,
        prompts: pa.Table,
        model: pa.Table,
        engines: EngineResource,
    ) -> dg.Output[pa.Table]:
        manifest = model.to_pylist()[0]
        if spec.verifier is None:
            engine = engines.get(manifest["path"], exp.spec.model)
        else:
            engine = engines.get(resolve_model(spec.verifier), spec.verifier)
        questions = dict(
            zip(prompts.column("prompt_id").to_pylist(), prompts.column("question").to_pylist(), strict=True)
        )
        cands = candidates(generations, questions)
        table = verification_rows(exp, engine, cands, manifest["weight_digest"])
        numbers: dict[str, float | int | str] = {"verifier_digest": engine.weight_digest}
        for method in spec.methods:
            ok = [r["ok"] for r in table.select(["method", "ok"]).to_pylist() if r["method"] == method]
            numbers[f"{method}_parse_failure_rate"] = 1 - sum(ok) / max(1, len(ok))
        context.log.info(f"round {r}: {table.num_rows} verification rows")
        return output(table, numbers, ["sample_id", "method", "raw", "score", "ok"])

    return verifications

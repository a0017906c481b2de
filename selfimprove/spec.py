"""Experiment specs: one YAML file per experiment, validated with pydantic."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from selfimprove.filters import FILTERS
from selfimprove.resources.engine import Sampling


class SpecError(ValueError):
    """An experiment spec that does not validate; the message names the file and the field."""


class Strict(BaseModel):
    """A spec section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _dagster_name(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", v):
        raise ValueError(f"{v!r} is not a valid Dagster name (letters, digits and _ only)")
    return v


DagsterName = Annotated[str, AfterValidator(_dagster_name)]


def _group_path(v: str) -> str:
    for part in v.split("/") if v else []:
        _dagster_name(part)
    return v


GroupPath = Annotated[str, AfterValidator(_group_path)]  # Dagster nests groups at "/": `smollm2`, `a/b`
STUDIES_GROUP = "studies"  # the UI group every study's assets and members are shown in (`studies/<study>`)


def _not_the_studies_group(v: str) -> str:
    if v.split("/")[0] == STUDIES_GROUP:
        raise ValueError(f"{v!r}: {STUDIES_GROUP!r} is the group of the studies (studies/<study>); choose another")
    return v


def _known_method(v: str) -> str:
    from selfimprove.verification import VERIFIERS  # the registry imports this module only for typing

    if v not in VERIFIERS:
        raise ValueError(f"unknown verification method {v!r}; known: {', '.join(repr(m) for m in VERIFIERS)}")
    return v


def _each_once(v: list[str]) -> list[str]:
    if not v or len(set(v)) != len(v):
        raise ValueError("list at least one method, each once")
    return v


def _known_filter(v: str) -> str:
    if v not in FILTERS:
        raise ValueError(f"unknown filter kind {v!r}; known: {', '.join(repr(k) for k in FILTERS)}")
    return v


Int = Annotated[int, Field(strict=True)]  # `n: true` or `n: "8"` is an error, not 1 or 8
BIG = 10_000_000  # upper bound of counts (prompts, tokens); each field has its own where less makes sense
_DEVICE_RE = re.compile(r"cpu|mps|(cuda|xpu|npu)(:\d+)?")
DType = Literal["float32", "float16", "bfloat16", "float64"]


def _known_device(v: str) -> str:
    if not _DEVICE_RE.fullmatch(v):
        raise ValueError(f"unknown device {v!r}: use cpu, cuda, cuda:N, mps, xpu[:N] or npu[:N]")
    return v


def _known_size(v: str | None) -> str | None:
    from selfimprove.toy.model import SIZES

    if v is not None and v not in SIZES:
        raise ValueError(f"unknown embedded size {v!r}: use one of {sorted(SIZES)}")
    return v


def _known_task(v: str) -> str:
    from selfimprove.tasks.registry import task_names

    if v not in task_names() and not v.startswith("custom:") and not v.endswith((".yaml", ".yml")):
        raise ValueError(f"unknown task {v!r}: use one of {task_names()} or a custom-task YAML path")
    return v


def _known_engine(v: str) -> str:
    from selfimprove.resources.engines import ENGINES  # the engine registry imports this module's ModelSpec

    if v not in ENGINES:
        raise ValueError(f"unknown engine {v!r}; known: {', '.join(repr(k) for k in ENGINES)}")
    return v


def _known_pretrained(v: str | None) -> str | None:
    from selfimprove.resources.pretrained import PretrainedError, recipe

    try:
        return v if v is None else recipe(v).name
    except PretrainedError as e:  # pydantic reports a ValueError with the field's path
        raise ValueError(str(e)) from None


def _known_update(v: str) -> str:
    from selfimprove.resources.updates import UPDATES  # the updates import this module only for typing

    if v not in UPDATES:
        raise ValueError(f"unknown distill update {v!r}; known: {', '.join(repr(k) for k in UPDATES)}")
    return v


FilterKind = Annotated[str, AfterValidator(_known_filter)]
UpdateName = Annotated[str, AfterValidator(_known_update)]
MethodList = Annotated[list[Annotated[str, AfterValidator(_known_method)]], AfterValidator(_each_once)]


class ModelSpec(Strict):
    """An embedded size (trained locally), a buildable pretrained model by name, or a local HF checkpoint path."""

    embedded: Annotated[str | None, AfterValidator(_known_size)] = None
    # built once by `selfimprove models build NAME` (resources/pretrained.py)
    pretrained: Annotated[str | None, AfterValidator(_known_pretrained)] = None
    path: str | None = None
    engine: Annotated[str, AfterValidator(_known_engine)] = "transformers"
    device: Annotated[str, AfterValidator(_known_device)] = "cpu"  # cpu, cuda, cuda:N, mps, xpu[:N], npu[:N]
    dtype: DType = "float32"
    batch_size: Int = Field(256, gt=0, le=1 << 20)
    trust_remote_code: bool = False
    allow_pickle: bool = False  # load pytorch_model.bin & co. (pickle can run code); safetensors only by default
    seed: Int = Field(0, ge=0, lt=1 << 32)  # pretraining seed of an embedded size
    # vLLM engine only (engine: vllm); ignored by the transformers engine. See docs/scale-out.md.
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)  # share of GPU memory vLLM may take
    tensor_parallel_size: Int = Field(1, gt=0, le=1024)  # GPUs one model is split over
    max_model_len: Int | None = Field(None, gt=0, le=1 << 24)  # context length; None: the model config's
    enforce_eager: bool = False  # skip torch.compile / CUDA graphs: faster start, slower decoding
    lora_mode: Literal["lora", "merge"] = "lora"  # adapters: LoRARequest on the base, or merged first

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if [self.embedded, self.pretrained, self.path].count(None) != 2:
            raise ValueError(
                "give exactly one of model.embedded (a size), model.pretrained (a name) or model.path (a local folder)"
            )
        return self


class TaskSpec(Strict):
    name: Annotated[str, AfterValidator(_known_task)] = "arithmetic"  # a registered task or a custom-task YAML
    options: dict[str, object] = Field(default_factory=dict)
    train_prompts: Int = Field(64, gt=0, le=BIG)
    eval_prompts: Int = Field(200, gt=0, le=BIG)


class SamplingSpec(Strict):
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: Int = Field(96, gt=0, le=1 << 20)

    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_new_tokens)


class GenerationSpec(SamplingSpec):
    n: Int = Field(8, gt=0, le=100_000)
    shard_prompts: Int = Field(16, gt=0, le=BIG)


class VerificationSpec(SamplingSpec):
    methods: MethodList = ["mc"]
    k: Int = Field(1, gt=0, le=10_000)
    temperature: float = Field(0.0, ge=0)
    tournament_rounds: Int = Field(2, gt=0, le=1000)
    on_parse_failure: Literal["drop", "zero", "neutral"] = "neutral"
    verifier: ModelSpec | None = None  # cross-verification: another model verifies
    # prompt style: the embedded formats, few-shot natural language (base models) or a chat template;
    # chat_verdict_first: the chat template with the verdict asked first and the assistant turn pre-filled with
    # its marker (small instruct models; verification/prompts.py); "auto" resolves to "embedded" for an
    # embedded verifier and "fewshot" otherwise
    style: Literal["auto", "embedded", "fewshot", "chat", "chat_verdict_first"] = "auto"
    templates: dict[str, str] = Field(default_factory=dict)  # per-method prompt overrides


class FilterSpec(Strict):
    # majority: keep the samples whose answer is the prompt's most frequent (no verifier; filters.majority_filter)
    kind: FilterKind = "quantile"
    alpha: float = Field(0.5, gt=0, le=1)  # quantile: keep the top alpha of each prompt
    tau: float = 0.5  # threshold
    k: Int = Field(1, gt=0, le=100_000)  # top-k per prompt
    # quantile / top-k: samples tied at the cut (filters.TIES); "drop" keeps what is strictly above the cut when
    # more than k samples reach it (or the top-scored ones if none is above), so binary verdicts keep a prompt's 1s
    ties: Literal["keep", "drop"] = "drop"
    beta: float = Field(0.1, gt=0)  # reweight: exp(score / beta)
    ensemble: Literal["and", "mean", "rank"] = "and"
    empty: Literal["skip", "best"] = "skip"


class DistillSpec(Strict):
    mode: Literal["continue", "fresh", "merge"] = "continue"  # adapter lineage over rounds
    # the update (resources/updates): sft on the filtered samples, or dpo / rpo (dpo + sft loss on the chosen)
    # on pairs from the verifier's ranking within each prompt (TRL's DPOTrainer)
    update: UpdateName = "sft"
    beta: float = Field(0.1, gt=0)  # dpo / rpo: strength of the implicit KL to the round's starting model
    rpo_alpha: float = Field(1.0, ge=0)  # rpo: weight of the sft loss on the chosen completions
    pairs_per_prompt: Int = Field(
        4, gt=0, le=100_000
    )  # dpo / rpo: at most this many (chosen, rejected) pairs per prompt
    r: Int = Field(8, gt=0, le=4096)
    lora_alpha: Int = Field(16, gt=0, le=1 << 20)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    learning_rate: float = Field(2e-3, gt=0)
    epochs: Int = Field(2, gt=0, le=10_000)
    batch_size: Int = Field(32, gt=0, le=1 << 20)
    group_by_length: bool = True  # batches of similar lengths (little padding); False: plain shuffled batches
    gradient_checkpointing: bool = False
    dtype: DType = "float32"


class EvalSpec(Strict):
    samples: Int = Field(4, ge=0, le=100_000)  # sampled completions per held-out prompt (mean sampled accuracy)


class GapSpec(Strict):
    bootstrap: Int = Field(1000, gt=0, le=1_000_000)
    block_distill_if_gap_le_zero: bool = False
    max_parse_failure_rate: float = Field(0.2, ge=0, le=1)


class RayResources(Strict):
    """What one Ray actor or task asks the cluster for (Ray's own resource names)."""

    num_cpus: float = Field(1, ge=0)
    num_gpus: float = Field(0, ge=0)
    memory: Int | None = Field(None, gt=0)  # bytes of heap memory to reserve
    resources: dict[str, float] = Field(default_factory=dict)  # custom resources, e.g. {"accelerator_type:H100": 0.01}


class ExecutionSpec(Strict):
    """Where the model stages run. Rows never depend on it: any backend and any worker count give the same
    tables (docs/scale-out.md)."""

    backend: Literal["in_process", "ray"] = "in_process"
    # Ray only: "auto" joins the cluster this machine belongs to (or $RAY_ADDRESS), "host:port" a head node,
    # "ray://host:10001" a Ray Client server; None starts a one-node Ray inside the process.
    address: str | None = None
    workers: Int = Field(1, gt=0, le=100_000)  # engine actors; each loads the round's model once and takes whole shards
    worker_resources: RayResources = RayResources()
    train_resources: RayResources = RayResources()  # the LoRA step, run as one Ray task
    threads_per_worker: Int | None = Field(None, gt=0, le=4096)  # torch threads per actor; None: num_cpus
    max_restarts: Int = Field(3, ge=0, le=1000)  # restarts of a dead actor (its shard is retried)
    start_timeout: float = Field(600, gt=0)  # seconds for every worker to be placed and load its model
    runtime_env: dict[str, object] = Field(default_factory=dict)  # passed to ray.init (env_vars, working_dir, ...)

    @model_validator(mode="after")
    def _ray_only(self) -> ExecutionSpec:
        if self.backend == "in_process":
            set_fields = sorted(self.model_fields_set - {"backend"})
            if set_fields:
                raise ValueError(f"{', '.join(set_fields)} apply to backend: ray only")
        return self

    @property
    def threads(self) -> int:
        return self.threads_per_worker or max(1, int(self.worker_resources.num_cpus))


class ExperimentSpec(Strict):
    name: Annotated[DagsterName, AfterValidator(_not_the_studies_group)]
    description: str = ""
    # the UI group the experiment's own group nests in ("" = top level)
    group: Annotated[GroupPath, AfterValidator(_not_the_studies_group)] = ""
    model: ModelSpec
    task: TaskSpec = TaskSpec()
    generation: GenerationSpec = GenerationSpec()
    verification: VerificationSpec = VerificationSpec()
    filter: FilterSpec = FilterSpec()
    distill: DistillSpec = DistillSpec()
    eval: EvalSpec = EvalSpec()
    gap: GapSpec = GapSpec()
    execution: ExecutionSpec = ExecutionSpec()
    rounds: Int = Field(3, ge=1, le=1000)
    seed: Int = Field(0, ge=0, lt=1 << 32)

    @model_validator(mode="after")
    def _resolve_style(self) -> ExperimentSpec:
        v = self.verification
        if v.style == "auto":
            style = "embedded" if (v.verifier or self.model).embedded is not None else "fewshot"
            object.__setattr__(self, "verification", v.model_copy(update={"style": style}))
        return self


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: object, source: str, what: str = "experiment") -> M:
    """`data` as a `model`, or a SpecError naming the source and every invalid field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors())
        raise SpecError(f"{source}: invalid {what} spec: {problems}") from None


def read_yaml(path: str | Path, what: str = "experiment") -> object:
    """The parsed YAML of a spec file, or a SpecError naming the file."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    except FileNotFoundError:
        raise SpecError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the {what} file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None


def parse_spec(data: object, source: str = "<spec>") -> ExperimentSpec:
    return validate(ExperimentSpec, data, source)


def load_spec(path: str | Path) -> ExperimentSpec:
    return parse_spec(read_yaml(path), str(path))

"""The package's layering, checked on the source: no import cycles among module-level imports, nothing in the
lower layers imports the Dagster layers, no module grows past ~400 lines, and each registry is the one list of
its concept (the spec validates against it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from selfimprove.spec import SpecError, parse_spec

PACKAGE = Path(__file__).resolve().parents[1] / "selfimprove"
LOWER = ("resources", "verification", "tasks", "toy", "spec", "filters", "metrics", "render", "verdicts")
DAGSTER_LAYERS = ("pipelines", "assets", "definitions", "cli", "runs")
MAX_LINES = 420  # "~400": the largest module today is metrics.py


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _graph() -> dict[str, set[str]]:
    """Module -> selfimprove modules it imports, at module level or lazily inside functions (a lazy import is
    still a dependency); only `if TYPE_CHECKING:` blocks are left out."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for node in tree.body
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("selfimprove"):
                graph[m] |= {t for t in [node.module, *(f"{node.module}.{a.name}" for a in node.names)] if t in mods}
            elif isinstance(node, ast.Import):
                graph[m] |= {a.name for a in node.names if a.name in mods}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                out.append(sorted([v, *comp]))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_cycle_detector_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_lower_layers_never_import_the_dagster_layers() -> None:
    upward = [
        (m, d) for m, deps in _graph().items() for d in deps if _layer(m) in LOWER and _layer(d) in DAGSTER_LAYERS
    ]
    assert upward == []


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}


@pytest.mark.parametrize(
    ("section", "field", "known"),
    [
        ({"verification": {"methods": ["mc", "nope"]}}, "verification.methods.1", "'tournament'"),
        ({"filter": {"kind": "median"}}, "filter.kind", "'reweight'"),
        ({"model": {"embedded": "micro", "engine": "tgi"}}, "model.engine", "'vllm'"),
        ({"distill": {"update": "ppo"}}, "distill.update", "'rpo'"),
    ],
)
def test_spec_validates_names_against_the_registries(section: dict, field: str, known: str) -> None:
    data = {"name": "x", "model": {"embedded": "micro"}, **section}
    with pytest.raises(SpecError) as info:
        parse_spec(data, "x.yaml")
    assert f"{field}: " in str(info.value) and known in str(info.value)


def test_registering_a_verifier_makes_it_a_valid_method() -> None:
    """Adding a verifier is one module plus one `register` call: the spec then accepts its name."""
    from selfimprove.verification import VERIFIERS, Verifier, register

    register(Verifier("always_yes", lambda engine, cands, spec, seed, book: [], needs_model=False))
    try:
        spec = parse_spec({"name": "x", "model": {"embedded": "micro"}, "verification": {"methods": ["always_yes"]}})
        assert spec.verification.methods == ["always_yes"]
        with pytest.raises(ValueError, match="registered twice"):
            register(Verifier("always_yes", lambda *a: []))
    finally:
        del VERIFIERS["always_yes"]

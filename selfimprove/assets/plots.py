"""Figures of the report and of studies, as PNG bytes, and where they are kept.

Rendering uses matplotlib's Agg canvas on a bare `Figure` (no pyplot, no global backend state), so it
is safe in any Dagster process. PNGs go to the warehouse under `_artifacts/plots/<kind>=<name>/`, a
folder that is not a stage table (its name starts with `_`, so neither `Warehouse.stages()` nor the
SQL catalog sees it), written atomically through the warehouse's fsspec filesystem. In the Dagster UI
each figure is a markdown metadata entry with the PNG inlined as a base64 data URI; the UI shows such an
entry behind "[Show Markdown]" when it is 1000 characters or more, so `md_chart` also draws a small inline
SVG chart under that size, which the asset page shows as it is.
"""

from __future__ import annotations

import base64
import io
import math
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ARTIFACTS = "_artifacts/plots"
DPI = 120  # 960 px wide for a 8-inch figure: readable in the UI
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

Row = Mapping[str, Any]


# --------------------------------------------------------------------------- storage


def artifact_path(kind: str, name: str, figure: str) -> str:
    """Path of a figure relative to the warehouse root, e.g. `_artifacts/plots/experiment=demo/gap.png`."""
    return f"{ARTIFACTS}/{kind}={name}/{figure}.png"


def md_image(png: bytes, alt: str) -> str:
    """Markdown showing the PNG inline (a base64 data URI; Dagster's metadata markdown renders it)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def png_once(path: Path, render: Callable[[], bytes]) -> bytes:
    """The PNG at `path`, rendered and written (atomically) the first time: a figure of data that never
    changes, such as a saved checkpoint's loss curve, is drawn once, not on every cached rerun."""
    if path.is_file():
        return path.read_bytes()
    png = render()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:  # a figure kept is a saving, never a failure: a read-only or full folder just keeps none
        tmp.write_bytes(png)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
    return png


MD_INLINE_LIMIT = 1000  # Dagster's UI renders markdown metadata inline below this many characters
_SVG_SAFE = "=',/:.-"  # left as they are in the SVG data URI (no spaces, parentheses or '#')


def md_chart(series: Mapping[str, Sequence[float | None]], width: int = 320, height: int = 90) -> str:
    """Markdown of a small line chart (an inline SVG data URI under MD_INLINE_LIMIT characters, so the asset
    page shows it without a click): one line per series (up to 4 fit) over the same x (round, logged step), the y range,
    each series' name at its last point. Long series are thinned until it fits; None and NaN are skipped."""
    vals = [float(v) for ys in series.values() for v in ys if v is not None and not math.isnan(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    for most in (40, 20, 10, 5, 2):
        md = _svg_chart(series, lo, hi, most, width, height)
        if len(md) < MD_INLINE_LIMIT:
            break
    return md


def _svg_chart(
    series: Mapping[str, Sequence[float | None]], lo: float, hi: float, most: int, width: int, height: int
) -> str:
    pad, left, right = 6, 30, 70
    size = f"width='{width}' height='{height}' font-size='10' font-family='sans-serif'"
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' {size}>"]
    parts.append(f"<text x='0' y='9'>{hi:.3g}</text><text x='0' y='{height - 1}'>{lo:.3g}</text>")
    for i, (name, ys) in enumerate(series.items()):
        step = max(1, math.ceil(len(ys) / most))
        pts = [(x, float(y)) for x, y in enumerate(ys) if (x % step == 0 or x == len(ys) - 1) and y is not None]
        sx = (width - right - left) / max(1, len(ys) - 1)
        xy = [(left + x * sx, pad + (hi - y) / (hi - lo) * (height - 2 * pad)) for x, y in pts if not math.isnan(y)]
        if not xy:
            continue
        color = _COLORS[i % len(_COLORS)]
        coords = ",".join(f"{x:.0f},{y:.0f}" for x, y in xy)
        parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{coords}'/>")
        parts.append(f"<text x='{xy[-1][0] + 4:.0f}' y='{xy[-1][1] + 3:.0f}' fill='{color}'>{name}</text>")
    svg = "".join(parts) + "</svg>"
    return f"![chart](data:image/svg+xml,{urllib.parse.quote(svg, safe=_SVG_SAFE)})"


def _figure(figsize: tuple[float, float]) -> Figure:
    """A bare figure on the Agg canvas (matplotlib is imported on first use, not when Dagster loads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _err(rows: Sequence[Row], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and asymmetric error bars (value - lo, hi - value) of `key` with `key_lo`/`key_hi`."""
    v = np.array([_num(r[key]) for r in rows])
    lo = np.array([_num(r.get(f"{key}_lo")) for r in rows])
    hi = np.array([_num(r.get(f"{key}_hi")) for r in rows])
    return v, np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0).clip(min=0.0)


# --------------------------------------------------------------------------- report figures


def accuracy_gap_figure(rows: Sequence[Row], title: str) -> bytes:
    """Left: J(f) and J(f[w]) per round. Right: the gap with its 95% CI per round, and zero."""
    gen = [r for r in rows if r.get("gap") is not None]
    rounds = [r["round"] for r in gen]
    fig = _figure((8, 3.2))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(rounds, [_num(r["j_f"]) for r in gen], "o-", label="J(f): sampling accuracy")
    ax1.plot(rounds, [_num(r["j_fw"]) for r in gen], "s--", label="J(f[w]): after the filter")
    ax1.set(xlabel="round", ylabel="accuracy", title="accuracy on train prompts")
    ax1.legend(fontsize=7)
    gap, err = _err(gen, "gap")
    ax2.errorbar(rounds, gap, yerr=err, fmt="o-", capsize=4, color=_COLORS[3], label="gap (95% CI)")
    ax2.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax2.set(xlabel="round", ylabel="J(f[w]) - J(f)", title="generation-verification gap")
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.set_xticks(rounds)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def loss_figure(losses: Sequence[float], title: str) -> bytes:
    """The training loss per logged step of one distillation."""
    fig = _figure((5, 3))
    ax = fig.subplots()
    ax.plot(range(1, len(losses) + 1), losses, "o-", markersize=3)
    ax.set(xlabel="logged step", ylabel="training loss", title=title)
    return _png(fig)


def heldout_figure(rows: Sequence[Row], title: str) -> bytes:
    """Held-out greedy and sampled accuracy of the model each round starts from."""
    rounds = [r["round"] for r in rows]
    fig = _figure((5, 3.2))
    ax = fig.subplots()
    for key, style, label in (("eval_greedy", "o-", "greedy"), ("eval_sampled", "s--", "sampled (mean)")):
        ax.plot(rounds, [_num(r.get(key)) for r in rows], style, label=label)
    ax.set(xlabel="model of round (0 = base)", ylabel="held-out accuracy", title=title)
    ax.set_xticks(rounds)
    ax.legend(fontsize=7)
    return _png(fig)


def pass_at_k_figure(
    curves: Mapping[int, Mapping[int, float]], title: str, maj: Mapping[int, Mapping[int, float]] | None = None
) -> bytes:
    """pass@k against k (log2 axis), one curve per round; maj@k (majority vote) dashed in the same colour."""
    fig = _figure((5, 3.2))
    ax = fig.subplots()
    ks: set[int] = set()
    for i, (r, curve) in enumerate(sorted(curves.items())):
        k = sorted(curve)
        ks.update(k)
        ax.plot(k, [curve[x] for x in k], "o-", color=_COLORS[i % len(_COLORS)], label=f"round {r} pass@k")
        m = (maj or {}).get(r)
        if m:
            km = sorted(m)
            ax.plot(km, [m[x] for x in km], "s--", color=_COLORS[i % len(_COLORS)], ms=3, label=f"round {r} maj@k")
    if ks:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ks), [str(k) for k in sorted(ks)])
    ax.set(xlabel="k", ylabel="pass@k, maj@k", title=title)
    ax.legend(fontsize=7)
    return _png(fig)


def score_histogram_figure(panels: Mapping[tuple[int, str], tuple[np.ndarray, np.ndarray]], title: str) -> bytes:
    """Verifier scores split by correctness, each class as fractions: one panel per (round, method); NaN scores
    (unparseable verifier output) counted in the title, not drawn."""
    rounds = sorted({r for r, _ in panels})
    methods = list(dict.fromkeys(m for _, m in panels))
    fig = _figure((3.4 * len(methods) + 0.4, 2.3 * len(rounds) + 0.5))
    axes = np.atleast_2d(fig.subplots(len(rounds), len(methods), squeeze=False))
    bins = np.linspace(0.0, 1.0, 11)
    for i, r in enumerate(rounds):
        for j, m in enumerate(methods):
            ax = axes[i, j]
            scores, correct = panels.get((r, m), (np.zeros(0), np.zeros(0, dtype=bool)))
            ok = ~np.isnan(scores)
            groups = [scores[ok & correct], scores[ok & ~correct]]
            ax.hist(  # each class normalised to sum 1, so a rare class stays visible
                groups,
                bins=bins,
                weights=[np.full(len(x), 1.0 / max(1, len(x))) for x in groups],
                color=[_COLORS[2], _COLORS[3]],
                label=[f"correct (n={len(groups[0])})", f"incorrect (n={len(groups[1])})"],
            )
            ax.legend(fontsize=6)
            unparsed = int((~ok).sum())
            ax.set_title(f"round {r} - {m}" + (f" ({unparsed} unparsed)" if unparsed else ""), fontsize=8)
            ax.set_xlim(0, 1)
            if i == len(rounds) - 1:
                ax.set_xlabel("verifier score")
            if j == 0:
                ax.set_ylabel("fraction of class")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------- study figures


def scaling_figure(rows: Sequence[Row], filter_kind: str, title: str) -> bytes:
    """Relative gap (95% CI) against log10 pre-training FLOPs, one colour per verifier, with its linear fit."""
    rows = [r for r in rows if r["filter"] == filter_kind]
    fig = _figure((6.5, 4))
    ax = fig.subplots()
    for i, v in enumerate(dict.fromkeys(r["verifier"] for r in rows)):
        pts = sorted((r for r in rows if r["verifier"] == v), key=lambda r: _num(r["log10_flops"]))
        x = np.array([_num(r["log10_flops"]) for r in pts])
        y, err = _err(pts, "relative_gap")
        color = _COLORS[i % len(_COLORS)]
        fit = pts[0]
        label = v
        if not math.isnan(_num(fit.get("slope"))):
            label += f": slope {fit['slope']:.3f}, R² {_num(fit['r2']):.2f}, ρ {_num(fit['spearman']):.2f}"
            xs = np.array([np.nanmin(x), np.nanmax(x)])
            ax.plot(xs, fit["slope"] * xs + fit["intercept"], "--", color=color, lw=1)
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, color=color, label=label)
        if i == 0:
            for xi, yi, r in zip(x, y, pts, strict=True):
                ax.annotate(str(r["size"]), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="log10 pre-training FLOPs", ylabel="relative gap", title=title)
    ax.legend(fontsize=7)
    return _png(fig)


def cross_heatmap_figure(
    matrices: Mapping[str, tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]], title: str
) -> bytes:
    """One heatmap per method: generator (rows) x verifier model (columns), colour = gap, text = gap and CI.

    `matrices[method] = (generators, verifiers, gap, lo, hi)` with (G, V) arrays, NaN for missing cells.
    """
    methods = list(matrices)
    ncols = max(1, len(methods))
    fig = _figure((4.2 * ncols + 0.6, 3.8))
    axes = np.atleast_1d(fig.subplots(1, ncols, squeeze=False)[0])
    for ax, m in zip(axes, methods, strict=False):
        gens, vers, gap, lo, hi = matrices[m]
        bound = float(np.nanmax(np.abs(gap))) if np.isfinite(gap).any() else 1.0
        bound = bound or 1.0
        im = ax.imshow(gap, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        ax.set_xticks(range(len(vers)), vers, rotation=30, fontsize=7)
        ax.set_yticks(range(len(gens)), gens, fontsize=7)
        ax.set(xlabel="verifier model", ylabel="generator model", title=m)
        for i in range(len(gens)):
            for j in range(len(vers)):
                if not math.isnan(gap[i, j]):
                    text = f"{gap[i, j]:.3f}\n[{lo[i, j]:.3f}, {hi[i, j]:.3f}]"
                    color = "white" if abs(gap[i, j]) > 0.6 * bound else "black"
                    ax.text(j, i, text, ha="center", va="center", fontsize=6, color=color)
        fig.colorbar(im, ax=ax, shrink=0.8, label="gap")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------- threshold sweeps, overlap, calibration


def sweep_figure(rows: Sequence[Row], title: str, line_key: str = "axis") -> bytes:
    """Gap (95% CI band) against the filter's strictness, one panel per verifier, one line per value of
    `line_key`: the axis (global tau; per-prompt quantile, strictness 1 - alpha) or, in a study, the member;
    the best setting of each curve circled."""
    verifiers = list(dict.fromkeys(r["verifier"] for r in rows))
    ncols = min(3, max(1, len(verifiers)))
    nrows = math.ceil(len(verifiers) / ncols)
    fig = _figure((3.6 * ncols + 0.4, 2.7 * nrows + 0.5))
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, v in zip(axes, verifiers, strict=False):
        names = {"tau": "global tau", "alpha": "per-prompt quantile (1 - alpha)"}
        for i, line in enumerate(dict.fromkeys(r[line_key] for r in rows)):
            label = names.get(line, line) if line_key == "axis" else str(line)
            pts = sorted((r for r in rows if r["verifier"] == v and r[line_key] == line), key=lambda r: r["strictness"])
            if not pts:
                continue
            x = np.array([r["strictness"] for r in pts])
            y = np.array([_num(r["gap"]) for r in pts])
            lo = np.array([_num(r["gap_lo"]) for r in pts])
            hi = np.array([_num(r["gap_hi"]) for r in pts])
            color = _COLORS[i % len(_COLORS)]
            ax.plot(x, y, "o-", ms=3, color=color, label=label)
            ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
            for r in pts:
                if r.get("best"):
                    ax.plot([r["strictness"]], [r["gap"]], "o", ms=9, mfc="none", mec=color)
        ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_title(v, fontsize=8)
        ax.set_xlabel("strictness (tau, or 1 - alpha)", fontsize=7)
        ax.set_ylabel("gap", fontsize=7)
        ax.legend(fontsize=6)
    for ax in axes[len(verifiers) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def overlap_figure(names: Sequence[str], matrices: Mapping[str, np.ndarray], title: str) -> bytes:
    """One heatmap per statistic (e.g. Pearson, Cohen's kappa of kept sets) over verifier pairs, values written in."""
    fig = _figure((3.4 * len(matrices) + 0.6, 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(matrices), squeeze=False)[0])
    for ax, (stat, m) in zip(axes, matrices.items(), strict=True):
        im = ax.imshow(m, cmap="RdBu", vmin=-1, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i in range(len(names)):
            for j in range(len(names)):
                if not math.isnan(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(stat, fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def reliability_figure(tables: Mapping[str, Sequence[Row]], ece: Mapping[str, float], title: str) -> bytes:
    """Reliability diagram: accuracy against mean score per bin (marker size ~ samples), one line per verifier."""
    fig = _figure((4.6, 3.6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="perfect calibration")
    for i, (v, bins) in enumerate(tables.items()):
        pts = [b for b in bins if b["n"] > 0]
        total = max(1, sum(b["n"] for b in pts))
        x = [b["mean_score"] for b in pts]
        y = [b["accuracy"] for b in pts]
        sizes = [10 + 200 * b["n"] / total for b in pts]
        color = _COLORS[i % len(_COLORS)]
        ax.plot(x, y, "-", color=color, lw=1, label=f"{v} (ECE {ece[v]:.3f})")
        ax.scatter(x, y, s=sizes, color=color, alpha=0.6)
    ax.set(xlabel="mean score in bin", ylabel="accuracy in bin", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(fontsize=6)
    return _png(fig)

"""The line a benchmark's table starts with: when, on what machine, under which load."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime


def describe(load_before: float) -> str:
    """'<date> UTC; <arch> (<cpu model>) with <n> cores[, torch <version>, <t> torch thread(s)]; load average <a>
    before, <b> after', with torch's part when the benchmark has imported torch; `load_before` is
    `os.getloadavg()[0]` taken when the benchmark started."""
    machine = f"{platform.machine()}{cpu_model()} with {os.cpu_count()} cores"
    torch = sys.modules.get("torch")
    if torch is not None:
        machine += f", torch {torch.__version__}, {torch.get_num_threads()} torch thread(s)"
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {machine}; {load}"


def cpu_model() -> str:
    """' (<model name>)' from /proc/cpuinfo, '' where there is none: sessions' machines differ (one fresh demo
    round took 18 s on one 2-core machine and 9 s on another)."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        return ""
    return f" ({names[0]})" if names else ""

"""Fault injection for the reliability suite (tests/faults, docs/reliability.md).

`SELFIMPROVE_KILL_AT=<point>[@<n>]` makes the process kill itself with SIGKILL (a real `kill -9`: no
cleanup, no atexit, no finally) the n-th time (default: the first) it reaches `<point>`. Unset, a point
costs one environment lookup. The points:

- `shard:<stage>` after a shard of generations, verifications or eval is written;
- `lora:step` after the first optimizer step, `lora:saved` after the adapter is saved to its temp
  folder and before it is renamed into place;
- `write:<stage>` before an asset's table is handed to the warehouse;
- `warehouse:tmp` after a table's temp file is written and before it is moved into place.
"""

from __future__ import annotations

import os
import signal

ENV = "SELFIMPROVE_KILL_AT"
_reached: dict[str, int] = {}


def point(name: str) -> None:
    """Kill this process here if `SELFIMPROVE_KILL_AT` names this point (and its count is reached)."""
    target = os.environ.get(ENV)
    if not target:
        return
    wanted, _, nth = target.partition("@")
    if wanted != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

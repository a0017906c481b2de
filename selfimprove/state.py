"""Where local state lives: the one rule for the state folder, used by runs, `selfimprove sql` and plots.

`$SELFIMPROVE_HOME` (default `./.selfimprove`) holds `models/` and `warehouse/`; `$SELFIMPROVE_WAREHOUSE`
may point the warehouse elsewhere (a folder or an fsspec URL). Paths recorded in manifests and tables
are relative to the state folder when they lie inside it, so a moved or copied home keeps working and
uses its own model folders.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """$SELFIMPROVE_HOME, else ./.selfimprove (absolute)."""
    return Path(os.environ.get("SELFIMPROVE_HOME") or Path.cwd() / ".selfimprove").expanduser().resolve()


MODEL_MANIFEST = "selfimprove_model.json"  # a model folder's provenance (embedded and pretrained models alike)


def pretrained_root() -> Path:
    """Where `model.pretrained` folders are built (resources/pretrained.py): <state folder>/models/pretrained."""
    return state_dir() / "models" / "pretrained"


def warehouse_root() -> str:
    """$SELFIMPROVE_WAREHOUSE, else <state folder>/warehouse."""
    return os.environ.get("SELFIMPROVE_WAREHOUSE") or str(state_dir() / "warehouse")


def to_state(path: str | Path) -> str:
    """`path` relative to the state folder when it lies inside it (as posix text), else absolute."""
    p = Path(path).expanduser().resolve()
    try:
        return p.relative_to(state_dir()).as_posix()
    except ValueError:
        return str(p)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (temp names carry their writer's pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def from_state(path: str | Path) -> Path:
    """The absolute folder of a recorded path: a relative one lies in the current state folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else state_dir() / p

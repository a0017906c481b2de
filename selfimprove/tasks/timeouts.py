"""A small process pool with a hard per-item time limit.

math-verify's own timeout uses SIGALRM, which only works in the main thread; Dagster may run steps in
threads. Here each item runs in a worker process; a worker that passes the deadline is killed and
replaced, and its item is reported as timed out. Safe to call from any thread (calls are serialised).
"""

from __future__ import annotations

import atexit
import importlib
import json
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What one item gave: its value, or a timeout, or an error message."""

    value: Any = None
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.error is None


def _resolve(ref: str) -> Callable[..., Any]:
    module, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def _ref(func: Callable[..., Any]) -> str:
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise ValueError(f"{func!r} must be a top-level function of an importable module")
    return f"{module}:{qualname}"


def _child_main(fd: int, func_ref: str, init_ref: str) -> None:
    """Worker process body: run `init`, say ready, then answer (index, item) messages until None."""
    conn = Connection(fd)
    func = _resolve(func_ref)
    if init_ref:
        _resolve(init_ref)()
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if msg is None:
            return
        idx, item = msg
        try:
            conn.send((idx, True, func(item)))
        except Exception:
            conn.send((idx, False, traceback.format_exc(limit=3)))


_BOOT = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from selfimprove.tasks.timeouts import _child_main; "
    "_child_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])"
)


class _Worker:
    """One worker process, started with subprocess (fork+exec): safe from threads, needs no __main__ guard."""

    def __init__(self, func_ref: str, init_ref: str) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            fd = theirs.fileno()
            args = [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(fd), func_ref, init_ref]
            self.proc = subprocess.Popen(args, pass_fds=(fd,), stdin=subprocess.DEVNULL)
        self.conn = Connection(ours.detach())
        self.ready = False
        self.started = time.monotonic()
        self.job: tuple[int, float] | None = None  # (item index, deadline)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
            self.proc.wait(timeout=2)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()


_POOLS: weakref.WeakSet[TimeoutPool] = weakref.WeakSet()


class TimeoutPool:
    """Run a picklable top-level `func` over items in `workers` processes, each item within `timeout_s`.

    Workers start on first use (`init` runs in each, e.g. to import heavy modules, before the clock
    starts) and stay up until `close()` or interpreter exit. `timeouts` counts items that timed out.
    """

    def __init__(
        self,
        func: Callable[[Any], Any],
        *,
        workers: int = 2,
        timeout_s: float = 5.0,
        init: Callable[[], None] | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.func_ref, self.init_ref = _ref(func), _ref(init) if init is not None else ""
        self.n_workers, self.timeout_s, self.startup_timeout_s = workers, timeout_s, startup_timeout_s
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.timeouts = 0
        self.restarts = 0
        _POOLS.add(self)

    def _spawn(self) -> _Worker:
        return _Worker(self.func_ref, self.init_ref)

    def map(self, items: Sequence[Any]) -> list[Outcome]:
        """Outcomes aligned with `items`."""
        if not items:
            return []
        with self._lock:
            while len(self._workers) < min(self.n_workers, len(items)):
                self._workers.append(self._spawn())
            return self._run(items)

    def _receive(self, w: _Worker, out: list[Outcome | None]) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            if not w.ready:
                w.kill()
                raise RuntimeError("a grading worker died while starting (see its stderr)") from None
            if w.job is not None:
                out[w.job[0]] = Outcome(error="grading worker died")
            self._replace(w)
            return
        if not w.ready:
            if msg != ("ready",):
                raise RuntimeError(f"unexpected message from a starting grading worker: {msg!r}")
            w.ready = True
            return
        assert w.job is not None
        idx, ok, payload = msg
        out[idx] = Outcome(value=payload) if ok else Outcome(error=str(payload))
        w.job = None

    def _run(self, items: Sequence[Any]) -> list[Outcome]:
        out: list[Outcome | None] = [None] * len(items)
        todo = deque(range(len(items)))
        while todo or any(w.job for w in self._workers):
            for w in self._workers:
                if w.ready and w.job is None and todo:
                    idx = todo.popleft()
                    w.conn.send((idx, items[idx]))
                    w.job = (idx, time.monotonic() + self.timeout_s)
            waiting = [w for w in self._workers if w.job or not w.ready]
            deadlines = [w.job[1] if w.job else w.started + self.startup_timeout_s for w in waiting]
            wait([w.conn for w in waiting], timeout=max(0.0, min(deadlines) - time.monotonic()))
            now = time.monotonic()
            for w in list(waiting):
                if w.conn.poll():
                    self._receive(w, out)
                elif w.job is not None and now >= w.job[1]:
                    out[w.job[0]] = Outcome(timed_out=True)
                    self.timeouts += 1
                    self._replace(w)
                elif not w.ready and now >= w.started + self.startup_timeout_s:
                    raise RuntimeError(f"grading worker did not start within {self.startup_timeout_s:.0f}s")
        return [o if o is not None else Outcome(error="lost") for o in out]

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers[self._workers.index(w)] = self._spawn()
        self.restarts += 1

    def close(self) -> None:
        """Stop the workers; the pool restarts them if used again."""
        with self._lock:
            for w in self._workers:
                w.stop()
            self._workers = []

    def __enter__(self) -> TimeoutPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()

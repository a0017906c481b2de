"""A real multi-node Ray cluster on this machine, over loopback: one `ray start` process per node.

Used by the Ray test group and the scale-out benchmark, and a template for a laptop cluster. Each
cluster has its own ports and its own `--temp-dir`, so it never touches another Ray on the machine;
`stop()` ends exactly the processes whose command line names that temp dir (never `ray stop`, which
stops every Ray process of the machine).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_range(size: int) -> int:
    """The first port of `size` consecutive free ports (above the ephemeral range Linux hands out first)."""
    for _ in range(200):
        start = 20000 + (free_port() % 20000)
        ports = range(start, start + size)
        try:
            socks = []
            for p in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {size} consecutive free ports found")


class LocalRayCluster:
    """`len(node_cpus)` Ray nodes on 127.0.0.1: a head and workers joined with `ray start --address`.

    `node_resources[i]` adds custom resources to node i (e.g. {"trainer": 1}); `env` is added to the
    nodes' environment, which their worker processes inherit.
    """

    def __init__(
        self,
        node_cpus: Sequence[int] = (1, 1),
        node_resources: Sequence[Mapping[str, float]] | None = None,
        env: Mapping[str, str] | None = None,
        ray_bin: str | None = None,
    ) -> None:
        self.node_cpus = list(node_cpus)
        self.node_resources = list(node_resources or [{} for _ in self.node_cpus])
        self.env = {**os.environ, **(env or {})}
        self.env.pop("RAY_ADDRESS", None)
        self.ray_bin = ray_bin or str(Path(sys.executable).with_name("ray"))
        self.temp_dir = ""
        self.address = ""
        self.groups: list[int] = []  # process group of each node's `ray start`

    def _ray_start(self, args: list[str], cpus: int, resources: Mapping[str, float]) -> None:
        ports = [a for flag in _PORT_FLAGS for a in (flag, str(free_port()))]
        first = _free_range(64)
        cmd = [
            self.ray_bin,
            "start",
            *args,
            f"--num-cpus={cpus}",
            "--disable-usage-stats",
            f"--min-worker-port={first}",
            f"--max-worker-port={first + 63}",
            *ports,
        ]
        if resources:
            cmd.append(f"--resources={json.dumps(dict(resources))}")
        # its own process group: the node's daemons stay in it (Ray renames some, e.g. ray::DashboardAgent)
        proc = subprocess.Popen(
            cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.groups.append(proc.pid)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")

    def start(self) -> str:
        """Start every node; returns the head's address (`127.0.0.1:PORT`) for `ray.init(address=...)`."""
        self.temp_dir = tempfile.mkdtemp(prefix="si-ray-", dir="/tmp")  # short: Ray puts sockets under it
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        t0 = time.perf_counter()
        try:
            head = [
                "--head",
                f"--port={port}",
                f"--ray-client-server-port={free_port()}",
                "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
                f"--temp-dir={self.temp_dir}",
            ]
            self._ray_start(head, self.node_cpus[0], self.node_resources[0])
            for cpus, resources in zip(self.node_cpus[1:], self.node_resources[1:], strict=True):
                self._ray_start([f"--address={self.address}"], cpus, resources)
        except BaseException:
            self.stop()
            raise
        log.info("Ray cluster of %d nodes at %s (%.1f s)", len(self.node_cpus), self.address, time.perf_counter() - t0)
        return self.address

    def pids(self) -> list[int]:
        """Processes of this cluster: those in the process group of a node's `ray start`, and any other whose
        command line names the cluster's temp dir."""
        mine = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            pid = int(entry.name)
            try:
                in_group = os.getpgid(pid) in self.groups
                named = bool(self.temp_dir) and self.temp_dir.encode() in (entry / "cmdline").read_bytes()
                zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
            except (OSError, IndexError):
                continue
            if (in_group or named) and not zombie:
                mine.append(pid)
        return mine

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM this cluster's processes, SIGKILL what is left after `timeout`, delete the temp dir."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir = ""
        self.groups = []

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_for_nodes(ray: Any, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The cluster's alive nodes once there are `count` of them (the driver must be connected)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [n for n in ray.nodes() if n["Alive"]]
        if len(alive) >= count:
            return alive
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(alive)} of {count} Ray nodes alive after {timeout:.0f} s")
        time.sleep(0.5)

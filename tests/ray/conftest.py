"""The Ray test group: runs in .venv-ray (`make test-ray`); skipped where ray is not installed.

One real two-node Ray cluster for the session: `ray start --head` and `ray start --address=...` as separate
processes on this machine, with their own ports and temp dir, stopped at the end (by process group and temp
dir, never `ray stop`). The nodes have 2 logical CPUs each, so three 1-CPU workers fit; only the second node
has the custom resource `trainer`, where the LoRA test asks its task to run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selfimprove.resources.engines import EngineResource
from selfimprove.resources.ray_cluster import LocalRayCluster, free_port, wait_for_nodes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """A connected two-node cluster; the driver is this pytest process."""
    import ray

    t0 = time.perf_counter()
    cluster = LocalRayCluster(node_cpus=(2, 2), node_resources=[{}, {"trainer": 1}], env={"PYTHONPATH": str(REPO)})
    cluster.start()
    try:
        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
        wait_for_nodes(ray, 2)
        print(f"\nRay cluster of 2 nodes up in {time.perf_counter() - t0:.1f} s at {cluster.address}")
        yield cluster
    finally:
        EngineResource().release()
        ray.shutdown()
        cluster.stop()
        assert not cluster.pids(), "processes of the test's Ray cluster outlived stop()"


@pytest.fixture(autouse=True)
def release_engines() -> Iterator[None]:
    EngineResource().release()
    yield
    EngineResource().release()


def ray_execution(cluster: LocalRayCluster, workers: int, **extra: Any) -> dict[str, Any]:
    return {"backend": "ray", "address": cluster.address, "workers": workers, **extra}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1 (a real HTTP server), with a bucket `warehouse`."""
    pytest.importorskip("s3fs")
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import s3fs

        deadline = time.monotonic() + 30
        while True:
            try:
                s3fs.S3FileSystem(skip_instance_cache=True).mkdir("warehouse")
                break
            except Exception:
                assert server.poll() is None, "moto_server exited"
                assert time.monotonic() < deadline, "moto_server did not answer within 30 s"
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

"""The Dagster instance the project runs in: DAGSTER_HOME, the `model` pool's limit, and dead runs.

Model-heavy assets share the `model` pool, one step at a time. A run killed with `kill -9` (or by the
OOM killer, or a host crash) never reports its end, so Dagster keeps its pool slot and every later
run waits forever. Each run therefore records its process (host, pid, start time) as run tags when its
engine resource starts; `reap_dead_runs` marks runs whose process is gone as failed and frees their
slots. It runs before every CLI run, every 30 s in `dagster dev` (a sensor), and while a step of a
live run waits for the pool, which also logs at INFO who holds the slot.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES

from selfimprove.state import pid_alive

log = logging.getLogger(__name__)

POOL = "model"
POOL_LIMIT = 1
HOST_TAG, PID_TAG, START_TAG = "selfimprove/host", "selfimprove/pid", "selfimprove/pid_start"
WATCH_SECONDS = 5.0

WRITTEN_BY = "# Written by selfimprove (selfimprove/instance.py)"


def dagster_yaml(home: Path) -> str:
    """The project's dagster.yaml for `home`: the `model` pool, run monitoring, and the event log storage
    without an fsync per event (selfimprove/event_log.py), in Dagster's layout under `home`."""
    return f"""\
{WRITTEN_BY}, rewritten by it while this line stays (delete
# the line to keep edits). Model-heavy assets share the "model" pool, one step at a time; slots of runs
# that ended are freed. Run events are stored in Dagster's layout ({home}/history/runs) without an
# fsync per event (docs/benchmarks.md, "Dagster overhead").
concurrency:
  pools:
    default_limit: 1
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 30
telemetry:
  enabled: false
event_log_storage:
  module: selfimprove.event_log
  class: EventLogStorage
  config:
    base_dir: {json.dumps(str(home / "history" / "runs"))}
"""


def ensure_dagster_home() -> Path:
    """An absolute DAGSTER_HOME (default ./.dagster_home) with the project's dagster.yaml, so run history
    persists and the `model` pool has its limit whichever command (demo, study, dev) runs first. A yaml
    this project wrote for another place (a moved home) or an older version is rewritten."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    path, text = home / "dagster.yaml", dagster_yaml(home)
    current = path.read_text() if path.exists() else None
    if current is None or (current.startswith(WRITTEN_BY) and current != text):
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def ensure_pool_limit(instance: dg.DagsterInstance) -> None:
    """Give the `model` pool its limit when the instance has none (a dagster.yaml without pool settings)."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits and storage.get_concurrency_info(POOL).limit is None:
        storage.set_concurrency_slots(POOL, POOL_LIMIT)
        log.info("pool %r had no limit in %s; set to %d", POOL, instance.root_directory, POOL_LIMIT)


def prepare_instance() -> Path:
    """DAGSTER_HOME with its dagster.yaml and the `model` pool's limit, dead runs' slots freed: what every
    command does before it runs anything in the instance."""
    home = ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        ensure_pool_limit(instance)
        for run_id in reap_dead_runs(instance):
            print(f"freed the pool slots of run {run_id}, whose process is gone", flush=True)
    return home


WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"  # the repo's code location
MODULE = "selfimprove.definitions"


LOCATION_FLAGS = ("-w", "--workspace", "-m", "--module-name", "-f", "--python-file", "--package-name")


def dev_args(argv: list[str]) -> list[str]:
    """The `dagster dev` command line: the repo's workspace.yaml by its absolute path (so it works from any
    directory) unless `argv` names a code location of its own."""
    own = any(a.split("=", 1)[0] in LOCATION_FLAGS for a in argv)
    return [str(Path(sys.executable).with_name("dagster")), "dev", *([] if own else ["-w", str(WORKSPACE)]), *argv]


def dev(argv: list[str]) -> int:
    """`selfimprove dev [dagster dev options]`: the UI, daemon and code server on the prepared instance."""
    prepare_instance()
    args = dev_args(argv)
    # `dagster dev` warns that `dg dev` (dagster-dg-cli, not installed here) supersedes it: known, not news
    quiet = "ignore:Function `dev_command` is superseded:FutureWarning"
    env = {**os.environ, "PYTHONWARNINGS": ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), quiet) if w)}
    # An ignored SIGINT or SIGTERM is inherited through exec by dagster dev and its children, which then
    # cannot be stopped (seen when started from a process that ignores them): start them with the defaults.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    os.execve(args[0], args, env)
    return 1  # not reached


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" where /proc is absent): tells a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_tags() -> dict[str, str]:
    """Run tags naming this process."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), START_TAG: _start_time(pid)}


def process_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process a run's tags name still runs; None when unknown (no tags, another host)."""
    if PID_TAG not in tags or tags.get(HOST_TAG) != socket.gethostname():
        return None
    pid = int(tags[PID_TAG])
    if not pid_alive(pid):
        return False
    started = tags.get(START_TAG, "")
    return not started or _start_time(pid) in ("", started)


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Free the pool slots of runs that ended or whose process died (marking those failed); their ids.
    Runs whose process died while holding no slot are marked failed as well."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    reaped = []
    unfinished = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=1000)
    holding = storage.get_concurrency_run_ids()
    for run in unfinished:  # dead runs that hold no slot are marked failed too, so the UI tells the truth
        if run.run_id not in holding and process_alive(run.tags) is False:
            instance.report_run_failed(run, _gone(run))
    for run_id in sorted(holding):
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status not in FINISHED_STATUSES:
            if process_alive(run.tags) is not False:
                continue
            message = _gone(run) + "; its pool slots freed"
            instance.report_run_failed(run, message)
            log.warning("run %s of %s: %s", run_id, run.job_name, message)
        storage.free_concurrency_slots_for_run(run_id)
        reaped.append(run_id)
    return reaped


def _gone(run: dg.DagsterRun) -> str:
    return f"process {run.tags[PID_TAG]} on {run.tags[HOST_TAG]} is gone (killed?): run marked failed"


def holders(instance: dg.DagsterInstance, pool: str = POOL) -> list[str]:
    """Who holds the pool's slots, in words: run id, job, process."""
    out = []
    for run_id in sorted(instance.event_log_storage.get_concurrency_info(pool).active_run_ids):
        run = instance.get_run_by_id(run_id)
        who = f"run {run_id[:8]}"
        if run is not None:
            who += f" of {run.job_name} ({run.status.value}, pid {run.tags.get(PID_TAG, '?')})"
        out.append(who)
    return out


class PoolWatch:
    """While this run has a step waiting for the `model` pool: free dead runs' slots and say who holds it."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, say: Callable[[str], None]) -> None:
        self.instance, self.run_id, self.say = instance, run_id, say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="selfimprove-pool-watch", daemon=True)
        self._last = ""

    def start(self) -> PoolWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> None:
        info = self.instance.event_log_storage.get_concurrency_info(POOL)
        if self.run_id not in info.pending_run_ids:
            self._last = ""
            return
        for run_id in reap_dead_runs(self.instance):
            self.say(f"freed the {POOL!r} pool slot of dead run {run_id}")
        held = ", ".join(holders(self.instance)) or "nobody (a slot is about to be assigned)"
        message = f"waiting for pool {POOL!r} (limit {info.limit}): held by {held}"
        if message != self._last:
            self.say(message)
            self._last = message

    def _loop(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            try:
                self.check()
            except Exception as e:  # a watcher must never take the run down
                log.warning("pool watch: %s", e)


def register_run(context: dg.InitResourceContext) -> PoolWatch | None:
    """Tag the run with this process and watch its pool waits; None outside a run with a real instance."""
    instance, run = context.instance, context.dagster_run
    if instance is None or run is None or not instance.event_log_storage.supports_global_concurrency_limits:
        return None
    instance.add_run_tags(run.run_id, process_tags())
    return PoolWatch(instance, run.run_id, context.log.info if context.log else log.info).start()


@dg.sensor(
    name="selfimprove_free_dead_runs",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Frees the pool slots of runs whose process died (kill -9, OOM), so later runs do not wait forever.",
)
def free_dead_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    reaped = reap_dead_runs(context.instance)
    return dg.SkipReason(f"freed the pool slots of {reaped}" if reaped else "no dead run holds a pool slot")

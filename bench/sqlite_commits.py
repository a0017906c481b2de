"""What one event costs Dagster's sqlite event log: a commit on a WAL database, per connection pattern.

    .venv/bin/python bench/sqlite_commits.py [--commits 200] [--dir .]

Dagster's sqlite storages open a connection, commit one event and close it. Closing the last
connection of a WAL database checkpoints it into the main file (an fsync), which is also what wakes
the webserver's watcher of a run's log. This script times one-row commits with a connection per
commit (Dagster's pattern) and with one connection kept open, at synchronous FULL (sqlite's default),
NORMAL and OFF, on the disk given by --dir.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time

from machine import describe


def per_commit_ms(path: str, sync: str, keep_open: bool, commits: int) -> float:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE events (body TEXT)")
    con.commit()
    con.close()
    kept = sqlite3.connect(path) if keep_open else None
    start = time.perf_counter()
    for _ in range(commits):
        con = kept or sqlite3.connect(path, timeout=15)
        con.execute(f"PRAGMA synchronous={sync}")
        con.execute("INSERT INTO events VALUES ('event')")
        con.commit()
        if kept is None:
            con.close()
    return (time.perf_counter() - start) / commits * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=200)
    ap.add_argument("--dir", default=".", help="a folder on the disk DAGSTER_HOME lives on")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    lines = ["| connection | synchronous | ms per commit |"]
    lines.append("|---|---|---:|")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for keep_open in (False, True):
            for sync in ("FULL", "NORMAL", "OFF"):
                path = os.path.join(tmp, f"{sync}{keep_open}.db")
                ms = per_commit_ms(path, sync, keep_open, args.commits)
                pattern = "kept open" if keep_open else "one per commit (Dagster's)"
                lines.append(f"| {pattern} | {sync} | {ms:.2f} |")
    print(describe(load), "", *lines, sep="\n")


if __name__ == "__main__":
    main()

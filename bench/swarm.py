"""Container backend vs Swarm backend on one node: a plan of N no-op tasks, run end to end.

    .venv/bin/python bench/swarm.py                 # 40 tasks, 3 rounds per backend
    .venv/bin/python bench/swarm.py --tasks 40 --rounds 5

Each round runs `runner run --backend docker` and `runner run --backend swarm` on a fresh copy of
the same repo and plan (alternating which goes first), and times the whole run (wall clock,
from the command's start to its exit, teardown included: it is part of a run). Prints the
medians side by side, the ratio swarm/docker, and the median of the tasks' own durations as the
run reports them.

Needs the images (`runner images build`). If this daemon is not in a swarm, the script makes it
a single-node swarm and leaves it at the end (as it found it); if it is, it is left as is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.test",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.test",
}


def make_repo(root: Path, tasks: int) -> tuple[Path, Path]:
    repo = root / "repo"
    repo.mkdir(parents=True)
    env = os.environ | GIT_ENV
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=env, check=True)
    base = ["git", "commit", "-q", "--allow-empty", "-m", "base"]
    subprocess.run(base, cwd=repo, env=env, check=True)
    lines = ["tasks:"]
    for i in range(tasks):
        lines += [f"  - id: t{i:02d}", f'    scope: ["t{i:02d}/**"]', '    run: "true"']
    plan = root / "plan.yaml"
    plan.write_text("\n".join(lines) + "\n")
    return repo, plan


def one_run(backend: str, tasks: int) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        repo, plan = make_repo(Path(tmp), tasks)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "runner", "run", str(plan), "--repo", str(repo), "--json",
             "--backend", backend],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"{backend} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(proc.stdout)
        durations = [t["duration_s"] for t in result["tasks"] if t.get("duration_s") is not None]
        statuses = {t["status"] for t in result["tasks"]}
        if statuses != {"no_changes"}:  # a no-op task changes nothing
            raise SystemExit(f"{backend}: unexpected statuses {statuses}")
        shutil.rmtree(tmp, ignore_errors=True)
        return wall, durations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    client = docker.from_env(timeout=120)
    state = client.info()["Swarm"]["LocalNodeState"]
    had_bridge = bool(client.networks.list(names=["docker_gwbridge"]))
    if state == "inactive":
        client.swarm.init(advertise_addr="127.0.0.1")
    try:
        walls: dict[str, list[float]] = {"docker": [], "swarm": []}
        per_task: dict[str, list[float]] = {"docker": [], "swarm": []}
        for r in range(args.rounds):
            order = ("docker", "swarm") if r % 2 == 0 else ("swarm", "docker")
            for backend in order:
                wall, durations = one_run(backend, args.tasks)
                walls[backend].append(wall)
                per_task[backend] += durations
                print(f"round {r + 1} {backend}: {wall:.1f} s", flush=True)
    finally:
        if state == "inactive":
            client.swarm.leave(force=True)
            # Swarm mode makes docker_gwbridge and leaving keeps it: removed if it was not here.
            for net in [] if had_bridge else client.networks.list(names=["docker_gwbridge"]):
                with contextlib.suppress(docker.errors.APIError):
                    net.remove()
    d, s = statistics.median(walls["docker"]), statistics.median(walls["swarm"])
    td, ts = statistics.median(per_task["docker"]), statistics.median(per_task["swarm"])
    print(f"\n{args.tasks} no-op tasks, {args.rounds} rounds, medians (seconds)")
    print(f"{'':24}{'docker':>10}{'swarm':>10}{'swarm/docker':>14}")
    print(f"{'whole run (wall)':24}{d:>10.1f}{s:>10.1f}{s / d:>14.2f}")
    print(f"{'one task (its duration)':24}{td:>10.2f}{ts:>10.2f}{ts / td:>14.2f}")
    info = client.info()
    print(f"\nDocker {info.get('ServerVersion')}, {info.get('NCPU')} CPUs, one node")


if __name__ == "__main__":
    main()

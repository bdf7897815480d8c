"""Labels stamped on everything the runner creates in Docker, so cleanup is by label."""

from __future__ import annotations

import os
import socket

PREFIX = "runner."
RUN = PREFIX + "run"
TASK = PREFIX + "task"
ROLE = PREFIX + "role"
PID = PREFIX + "pid"
HOST = PREFIX + "host"
CACHE = PREFIX + "cache"
"""On cache volumes: the repo key. They belong to repo and task, not to a run."""


def labels_for(run_id: str, task_id: str, role: str) -> dict[str, str]:
    """Labels of a run's container or network: who made it, so a dead run's objects are found."""
    return {
        RUN: run_id,
        TASK: task_id,
        ROLE: role,
        PID: str(os.getpid()),
        HOST: socket.gethostname(),
    }


def cache_labels(repo_key: str, role: str, task_id: str) -> dict[str, str]:
    return {CACHE: repo_key, ROLE: role, TASK: task_id if role == "task" else ""}


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the process that made an object still runs (unknowable for another host)."""
    if labels.get(HOST) != socket.gethostname():
        return True
    try:
        pid = int(labels.get(PID, "0"))
    except ValueError:
        return False
    if pid <= 0:  # kill(0) and kill(-1) would test process groups, not the owner
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True

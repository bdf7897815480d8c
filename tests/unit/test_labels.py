"""Labels on every Docker object, and whether the run that made one still lives."""

from __future__ import annotations

import os
import socket

import pytest

from runner.sandbox import labels


def test_labels_for_a_container() -> None:
    assert labels.labels_for("r1", "db", "verify") == {
        "runner.run": "r1",
        "runner.task": "db",
        "runner.role": "verify",
        "runner.pid": str(os.getpid()),
        "runner.host": socket.gethostname(),
    }


def test_cache_labels_carry_no_run() -> None:
    # Caches belong to repo and task: a run's cleanup (by runner.run) must not find them.
    got = labels.cache_labels("repokey", "task", "db")
    assert got == {"runner.cache": "repokey", "runner.role": "task", "runner.task": "db"}
    assert labels.RUN not in got


def test_this_process_is_alive() -> None:
    assert labels.owner_alive(labels.labels_for("r1", "db", "task")) is True


def test_another_hosts_owner_is_assumed_alive() -> None:
    assert labels.owner_alive({labels.HOST: "elsewhere.invalid", labels.PID: "1"}) is True


@pytest.mark.parametrize(
    "pid",
    [
        None,
        "",
        "abc",
        "0",  # kill(0) would test our own process group
        "-1",  # kill(-1) would test every process we may signal
        str(2**22 + 1),  # above Linux's largest pid_max: never a live process
        "99999999999999999999",  # does not fit a pid_t
    ],
)
def test_dead_or_impossible_owner(pid: str | None) -> None:
    found = {labels.HOST: socket.gethostname()}
    if pid is not None:
        found[labels.PID] = pid
    assert labels.owner_alive(found) is False

"""Soak: many short tasks in one run, in this process; nothing leaks and memory stays flat.

A 50-task run, then a 200-task run on fresh repos: every task merges, and afterwards nothing
of either run is left in Docker (containers, networks, volumes other than caches), in the temp
dir, or among this process's open file descriptors. The peak RSS of each run is measured on
its own (VmHWM reset through /proc/self/clear_refs) and the 200-task run may not need much more
than the 50-task one: what a run holds per task must be small and must be let go.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest

from runner.cli import execute
from runner.core.results import RunStatus, TaskStatus
from runner.sandbox import labels
from runner.settings import Settings
from tests.integration.conftest import git, make_repo, remove_caches

pytestmark = pytest.mark.soak

SMALL, LARGE = 50, 200
# Growth of peak RSS allowed from the small run to the large one (4x the tasks). Generous: it
# catches a per-task leak of ~250 KiB or more, not allocator noise.
MAX_GROWTH = 40 * 1024 * 1024


def _plan(n: int) -> str:
    tasks = "".join(
        f"  - {{id: t{i}, scope: ['f-{i}'], run: 'echo x > f-{i}'}}\n" for i in range(n)
    )
    return f"concurrency: 4\ntimeout: 300\ntasks:\n{tasks}"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _fds() -> set[str]:
    gc.collect()  # objects already unreachable may still hold a socket until collected
    return {f"{fd} -> {_target(fd)}" for fd in os.listdir("/proc/self/fd")}


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # the fd listdir itself used, closed by now
        return "?"


def _runner_objects(client: docker.DockerClient, run_id: str) -> list[str]:
    flt: dict[str, str | list[str] | bool] = {"label": f"{labels.RUN}={run_id}"}
    found = [f"container {c.name}" for c in client.containers.list(all=True, filters=flt)]
    found += [f"network {n.name}" for n in client.networks.list(filters=flt)]
    found += [f"volume {v.name}" for v in client.volumes.list(filters=flt)]
    return found


@contextmanager
def _client() -> Iterator[docker.DockerClient]:
    """A client of the test's own, closed after use: its pooled sockets are not the run's."""
    client = docker.from_env(timeout=120)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The run's temp dir, its own: other processes on the machine write to the shared one."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # for git and every subprocess
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp


def _soak(n: int, root: Path, report: list[str]) -> tuple[int, float]:
    """Run n tasks in one run; check all merged; return (peak RSS in KiB, seconds)."""
    root.mkdir()
    repo = make_repo(root, {"README.md": "soak\n"})
    plan = root / "plan.yaml"
    plan.write_text(_plan(n))
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: this run's peak alone
    try:
        result = execute(plan, repo, Settings())
    finally:
        with _client() as client:  # one cache per task by design (issue 9: a retention)
            remove_caches(client, repo)
    peak = _status_kib("VmHWM")
    assert result.status is RunStatus.SUCCESS, (result.status, result.error)
    not_merged = [(t.id, t.status, t.reason) for t in result.tasks if t.status != TaskStatus.MERGED]
    assert not_merged == []
    assert len(result.tasks) == n
    tree = git(repo, "ls-tree", "--name-only", result.integration_ref).splitlines()
    assert sorted(tree) == sorted(["README.md", *(f"f-{i}" for i in range(n))])
    with _client() as client:
        assert _runner_objects(client, result.run_id) == [], "the run left objects in Docker"
    seconds = result.duration_s or 0.0
    report.append(f"soak {n} tasks: {seconds:.1f} s, peak RSS {peak / 1024:.1f} MiB")
    return peak, seconds


def test_soak_many_short_tasks_leak_nothing_and_memory_stays_flat(
    tmp_path: Path,
    images: None,
    private_tmp: Path,
    record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fds_before = _fds()
    report: list[str] = []
    small_peak, _ = _soak(SMALL, tmp_path / "small", report)
    large_peak, _ = _soak(LARGE, tmp_path / "large", report)
    growth_kib = large_peak - small_peak
    report.append(f"peak RSS growth {SMALL} -> {LARGE} tasks: {growth_kib / 1024:+.1f} MiB")
    with capsys.disabled():
        print("\n" + "\n".join(report))
    record_property("soak", "; ".join(report))
    (tmp_path / "soak-report.txt").write_text("\n".join(report) + "\n")

    assert sorted(_fds() - fds_before) == [], "file descriptors left open"
    assert sorted(p.name for p in private_tmp.iterdir()) == [], "temp files left"
    assert growth_kib * 1024 < MAX_GROWTH, report

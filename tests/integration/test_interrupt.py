"""Ctrl-C and SIGTERM: sandboxes removed at once, the result written, exit 130 / 143."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from runner.sandbox import labels
from tests.integration.conftest import git, leftovers, make_repo, remove_caches

PLAN = """\
tasks:
  - id: sleeper
    scope: ["a/**"]
    run: mkdir a && echo begun > a/begun.txt && sleep 300
  - id: other
    scope: ["b/**"]
    run: sleep 300
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_removes_sandboxes_and_reports(
    sig: signal.Signals, code: int, tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    (tmp_path / "plan.yaml").write_text(PLAN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "plan.yaml", "--repo", str(repo), "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_id = _wait_for_sandboxes(docker_client, repo, count=2)
    begun = repo / ".git" / "runner" / "runs" / run_id / "tasks" / "sleeper" / "work" / "a"
    for _ in range(100):  # bounded: the task writes its partial work first, then sleeps
        if (begun / "begun.txt").exists():
            break
        time.sleep(0.1)
    proc.send_signal(sig)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert time.monotonic() - started < 30  # not the tasks' 300 s
    assert leftovers(docker_client, run_id) == []
    result = json.loads((repo / ".git" / "runner" / "runs" / run_id / "result.json").read_text())
    remove_caches(docker_client, repo)
    assert result["status"] == "interrupted"
    assert json.loads(out) == result  # --json still prints the document
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert f"interrupted by {name}" in result["error"]
    sleeper = next(t for t in result["tasks"] if t["id"] == "sleeper")
    assert sleeper["status"] == "failed" and f"interrupted ({name})" in sleeper["reason"]
    assert git(repo, "show", f"{sleeper['ref']}:a/begun.txt") == "begun"  # nothing lost


def _wait_for_sandboxes(client: docker.DockerClient, repo: Path, count: int) -> str:
    for _ in range(150):  # bounded: 30 s
        running = client.containers.list(filters={"label": f"{labels.ROLE}=task"})
        mine = [c for c in running if str(repo) in str(c.attrs["HostConfig"]["Binds"])]
        if len(mine) >= count:
            return str(mine[0].labels[labels.RUN])
        time.sleep(0.2)
    pytest.fail("the run's sandboxes did not start")


def test_a_sandbox_removed_from_outside_is_lost_and_the_run_goes_on(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    (tmp_path / "plan.yaml").write_text(
        "tasks:\n"
        "  - {id: gone, scope: ['a/**'], run: 'mkdir a && echo begun > a/begun.txt && sleep 300'}\n"
        "  - {id: fine, scope: ['b/**'], run: 'mkdir b && echo ok > b/ok.txt && sleep 2'}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "plan.yaml", "--repo", str(repo), "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_id = _wait_for_sandboxes(docker_client, repo, count=1)
    begun = repo / ".git" / "runner" / "runs" / run_id / "tasks" / "gone" / "work" / "a"
    for _ in range(150):  # bounded: the task writes its partial work first, then sleeps
        if (begun / "begun.txt").exists():
            break
        time.sleep(0.1)
    flt: dict[str, str | list[str] | bool] = {
        "label": [f"{labels.RUN}={run_id}", f"{labels.TASK}=gone", f"{labels.ROLE}=task"]
    }
    for container in docker_client.containers.list(filters=flt):
        container.remove(force=True)  # from outside, as an operator or another tool might
    out, err = proc.communicate(timeout=120)
    remove_caches(docker_client, repo)
    assert proc.returncode == 1, err
    result = json.loads(out)
    gone = next(t for t in result["tasks"] if t["id"] == "gone")
    assert gone["status"] == "sandbox_lost", gone
    assert "removed from outside" in gone["reason"]
    assert git(repo, "show", f"{gone['ref']}:a/begun.txt") == "begun"  # what it wrote is kept
    assert next(t for t in result["tasks"] if t["id"] == "fine")["status"] == "merged"
    assert leftovers(docker_client, run_id) == []

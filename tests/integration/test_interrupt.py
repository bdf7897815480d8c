"""Ctrl-C and SIGTERM: sandboxes removed at once, the result written, exit 130 / 143."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import docker
import pytest

from runner.sandbox import labels
from tests.integration.conftest import (
    git,
    leftovers,
    make_repo,
    remove_caches,
    start_run,
    wait_for_file,
)

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
    proc = start_run(tmp_path, repo, PLAN)
    run_id = _wait_for_sandboxes(docker_client, repo, count=2)
    wait_for_file(repo / ".git/runner/runs" / run_id / "tasks/sleeper/work/a/begun.txt")
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
        mine = [c for c in running if str(repo) in str(c.attrs["Mounts"])]
        if len(mine) >= count:
            return str(mine[0].labels[labels.RUN])
        time.sleep(0.2)
    pytest.fail("the run's sandboxes did not start")


LOSE = """\
tasks:
  - {id: gone, scope: ['a/**'], run: 'mkdir a && echo begun > a/begun.txt && sleep 300'}
  - {id: fine, scope: ['b/**'], run: 'mkdir b && echo ok > b/ok.txt && sleep 2'}
"""


def test_a_sandbox_removed_from_outside_is_lost_and_the_run_goes_on(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    proc = start_run(tmp_path, repo, LOSE)
    run_id = _wait_for_sandboxes(docker_client, repo, count=1)
    wait_for_file(repo / ".git/runner/runs" / run_id / "tasks/gone/work/a/begun.txt")
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


PAUSE = """\
timeout: 6
tasks:
  - {id: paused, scope: ['p/**'], run: 'mkdir p && echo begun > p/begun.txt && sleep 300'}
"""


def test_a_paused_sandbox_still_meets_its_timeout(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    proc = start_run(tmp_path, repo, PAUSE)
    run_id = _wait_for_sandboxes(docker_client, repo, count=1)
    wait_for_file(repo / ".git/runner/runs" / run_id / "tasks/paused/work/p/begun.txt")
    flt: dict[str, str | list[str] | bool] = {"label": [f"{labels.RUN}={run_id}"]}
    for container in docker_client.containers.list(filters=flt):
        container.pause()  # from outside: the task is frozen, its clock is not
    started = time.monotonic()
    out, err = proc.communicate(timeout=120)
    remove_caches(docker_client, repo)
    assert time.monotonic() - started < 60, "waited past the task's timeout"
    task = json.loads(out)["tasks"][0]
    assert task["status"] == "timeout", (task, err[-2000:])
    assert git(repo, "show", f"{task['ref']}:p/begun.txt") == "begun"
    assert leftovers(docker_client, run_id) == []

"""Faults of the Docker daemon and of sandboxes, as `runner run` meets them.

No daemon or a hung one: one clear line and exit 3, no traceback, no hang (the hung daemon is a
socket the test serves and never answers on). A sandbox killed, stopped or removed from
outside: that task ends `sandbox_lost` with its work kept, the rest of the run goes on, exit 1,
nothing of the run left in Docker.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from runner.sandbox import labels
from tests.fake_daemon import fake_daemon, handshake, hang
from tests.integration.conftest import (
    git,
    leftovers,
    make_repo,
    remove_caches,
    runner_cli,
    start_run,
    wait_for_file,
)

PLAN = """\
tasks:
  - {id: one, scope: ['a/**'], run: 'mkdir a && echo one > a/one.txt'}
"""


def _run_against(tmp_path: Path, host: str, timeout: str = "2") -> tuple[int, str, float]:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    (tmp_path / "plan.yaml").write_text(PLAN)
    env = {"DOCKER_HOST": host, "RUNNER_DOCKER_TIMEOUT": timeout}
    started = time.monotonic()
    proc = runner_cli("run", "plan.yaml", "--repo", str(repo), cwd=tmp_path, env=env, timeout=120)
    assert proc.stdout == ""
    return proc.returncode, proc.stderr, time.monotonic() - started


def test_no_daemon_is_one_line_and_exit_3(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/no-daemon.sock"
    code, err, _ = _run_against(tmp_path, host)
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"cannot reach the Docker daemon at DOCKER_HOST={host}" in err
    assert "sudo systemctl start docker" in err and "dockerd" in err
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize(
    ("route", "doing"), [(hang, "connecting"), (handshake, "looking up images")]
)
def test_a_hung_daemon_is_one_line_and_exit_3(tmp_path: Path, route: object, doing: str) -> None:
    # `hang`: nothing ever answers; `handshake`: it answers the connect, then nothing more.
    with fake_daemon(route) as daemon:  # type: ignore[arg-type]
        code, err, took = _run_against(tmp_path, daemon.host, timeout="2")
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"the Docker daemon did not answer within 2 s while {doing}" in err
    assert f"DOCKER_HOST={daemon.host}" in err
    assert "Traceback" not in err and "internal error" not in err
    assert took < 60  # a few timeouts of 2 s, not a hang


LOSE = """\
tasks:
  - {id: victim, scope: ['a/**'], run: 'mkdir a && echo begun > a/begun.txt && sleep 300'}
  - {id: fine, scope: ['b/**'], run: 'mkdir b && echo ok > b/ok.txt && sleep 3'}
"""


@pytest.mark.parametrize(
    ("act", "said"),
    [
        ("kill", "was killed from outside (signal 9)"),  # killed, left in place: `docker kill`
        ("stop", "was killed from outside (signal 15)"),  # `docker stop`: SIGTERM first
        ("remove", "was removed from outside"),  # `docker rm -f`
    ],
)
def test_a_sandbox_lost_to_the_outside_ends_sandbox_lost_and_the_run_goes_on(
    act: str, said: str, tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    proc = start_run(tmp_path, repo, LOSE)
    try:
        victim = _wait_for_task(docker_client, repo, "victim")
        run_id = str(victim.labels[labels.RUN])
        wait_for_file(repo / ".git/runner/runs" / run_id / "tasks/victim/work/a/begun.txt")
        if act == "kill":
            victim.kill()
        elif act == "stop":
            victim.stop(timeout=5)
        else:
            victim.remove(force=True)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        remove_caches(docker_client, repo)
    assert proc.returncode == 1, err[-2000:]
    result = json.loads(out)
    lost = next(t for t in result["tasks"] if t["id"] == "victim")
    assert lost["status"] == "sandbox_lost", lost
    assert said in lost["reason"]
    assert git(repo, "show", f"{lost['ref']}:a/begun.txt") == "begun"  # what it wrote is kept
    assert next(t for t in result["tasks"] if t["id"] == "fine")["status"] == "merged"
    assert leftovers(docker_client, run_id) == []


def test_a_task_that_kills_itself_is_failed_not_lost(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    """Exit 137 alone is not "lost": only a kill sent through the daemon by someone else is."""
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    plan = "tasks:\n  - {id: self, scope: ['a/**'], run: 'kill -9 $$'}\n"
    proc = start_run(tmp_path, repo, plan)
    out, err = proc.communicate(timeout=120)
    remove_caches(docker_client, repo)
    task = json.loads(out)["tasks"][0]
    assert (task["status"], task["exit_code"]) == ("failed", 137), (task, err[-2000:])


def _wait_for_task(client: docker.DockerClient, repo: Path, task: str) -> Container:
    flt: dict[str, str | list[str] | bool] = {
        "label": [f"{labels.ROLE}=task", f"{labels.TASK}={task}"]
    }
    for _ in range(150):  # bounded: 30 s
        for c in client.containers.list(filters=flt):
            if str(repo) in str(c.attrs["Mounts"]):
                return c
        time.sleep(0.2)
    pytest.fail(f"the sandbox of task {task} did not start")

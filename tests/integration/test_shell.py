"""`runner shell`: a command in a fresh sandbox made as a task's, removed after."""

from __future__ import annotations

from pathlib import Path

import docker

from tests.integration.conftest import RunPlan, leftovers, runner_cli

PLAN = """\
tasks:
  - id: writer
    scope: ["w/**"]
    run: mkdir w && echo "made by the task" > w/file.txt
"""


def test_shell_runs_a_command_in_the_tasks_sandbox_and_leaves_nothing(
    run_plan: RunPlan, docker_client: docker.DockerClient
) -> None:
    run = run_plan(PLAN, {"README.md": "x\n"})
    assert run.code == 0, run.stderr
    run_id, repo = run.result["run_id"], str(run.repo)
    log = Path(run.task("writer")["log_path"])
    before = log.read_bytes()

    at_result = runner_cli("shell", run_id, "writer", "--at", "result", "--repo", repo,
                           "--", "cat", "w/file.txt")  # fmt: skip
    assert at_result.returncode == 0, at_result.stderr
    assert at_result.stdout.strip() == "made by the task"

    # As the task ran: not root, no network but loopback.
    who = runner_cli("shell", run_id, "writer", "--repo", repo, "--",
                     "sh", "-c", "id -u; ls /sys/class/net")  # fmt: skip
    assert who.returncode == 0, who.stderr
    uid, *nets = who.stdout.split()
    assert uid != "0" and nets == ["lo"]

    at_start = runner_cli("shell", run_id, "writer", "--repo", repo, "--", "test", "-e", "w")
    assert at_start.returncode == 1  # the start commit has no w/

    assert log.read_bytes() == before  # the task's own log is never touched
    assert leftovers(docker_client, run_id) == []


def test_shell_refuses_unknown_tasks_and_a_missing_command(run_plan: RunPlan) -> None:
    run = run_plan(PLAN, {"README.md": "x\n"})
    run_id, repo = run.result["run_id"], str(run.repo)
    unknown = runner_cli("shell", run_id, "nope", "--repo", repo, "--", "true")
    assert unknown.returncode == 2 and "no task 'nope'" in unknown.stderr
    bare = runner_cli("shell", run_id, "writer", "--repo", repo)
    assert bare.returncode == 2 and "give the command" in bare.stderr
    assert "Traceback" not in unknown.stderr + bare.stderr

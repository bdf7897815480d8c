"""`runner shell`: a command in a fresh sandbox made as a task's, removed after."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
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


def test_shell_without_a_command_is_an_interactive_shell_on_a_terminal(
    run_plan: RunPlan, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    assert shutil.which("tmux"), "tmux is needed (.ci/setup installs it)"
    run = run_plan(PLAN, {"README.md": "x\n"})
    run_id, repo = run.result["run_id"], str(run.repo)
    sock, done = f"runner-shell-{os.getpid()}", tmp_path / "exit-code"
    command = (
        f"{sys.executable} -m runner shell {run_id} writer --at result --repo {repo}; "
        f"echo $? > {done}; sleep 60"
    )
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "30", command],
                   check=True, env=env)  # fmt: skip
    try:
        screen = ""
        for _ in range(600):  # bounded: 60 s for the prompt
            screen = _screen(tmux)
            if "$" in screen:
                break
            time.sleep(0.1)
        # Typed at the sandbox's shell: the task's file is there, the shell is not root.
        keys = 'echo "uid=$(id -u) $(cat w/file.txt)"; exit 7'
        subprocess.run([*tmux, "send-keys", keys, "Enter"], check=True)
        for _ in range(600):
            if done.exists():
                break
            time.sleep(0.1)
        screen = _screen(tmux)
        assert done.exists() and done.read_text().strip() == "7", screen
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)
    said = [line for line in screen.splitlines() if line.startswith("uid=")]
    assert said and said[-1].endswith(" made by the task") and not said[-1].startswith("uid=0 ")
    assert leftovers(docker_client, run_id) == []


def _screen(tmux: list[str]) -> str:
    proc = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True)
    return proc.stdout

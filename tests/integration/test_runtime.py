"""OCI runtimes: a policy's runtime is used for real, and one the daemon lacks starts nothing."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import RunPlan, make_repo, runner_cli

FILES = {"README.md": "hi\n"}
PLAN = """\
tasks:
  - {id: a, scope: [a], run: 'true'}
  - id: b
    policy: odd.yaml
    scope: [b]
    run: 'true'
"""
MISSING = "runner-test-no-such-runtime"


@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_policy_runtime_the_daemon_lacks_starts_nothing(
    command: str, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, FILES)
    (tmp_path / "plan.yaml").write_text(PLAN)
    (tmp_path / "odd.yaml").write_text(f"memory: 512m\nruntime: {MISSING}\n")
    proc = runner_cli(command, "plan.yaml", "--repo", str(repo), cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert (
        f"plan.yaml:4: tasks[1](b).policy: policy 'odd.yaml' ({tmp_path / 'odd.yaml'}) sets "
        f"runtime: {MISSING}, which this Docker daemon does not have (it has: "
    ) in proc.stderr
    assert "/etc/docker/daemon.json" in proc.stderr and "Traceback" not in proc.stderr
    assert not (repo / ".git" / "runner").exists()  # nothing started, no run state


def test_the_runtime_setting_is_checked_too(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, FILES)
    (tmp_path / "plan.yaml").write_text("tasks:\n  - id: a\n    run: 'true'\n")
    proc = runner_cli(
        "run", "plan.yaml", "--repo", str(repo), cwd=tmp_path, env={"RUNNER_RUNTIME": MISSING}
    )
    assert proc.returncode == 2, proc.stderr
    assert f"policy: RUNNER_RUNTIME sets runtime: {MISSING}, which" in proc.stderr
    assert not (repo / ".git" / "runner").exists()


def test_a_runsc_policy_runs_the_task_under_gvisor(
    run_plan: RunPlan, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "runsc" not in docker_client.info()["Runtimes"]:
        # CI registers it (.ci/gvisor); there a missing runsc is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail("runsc is not registered with the daemon: .ci/gvisor should have")
        pytest.skip("runsc is not registered with this daemon (`bash .ci/gvisor` does it)")
    monkeypatch.delenv("RUNNER_RUNTIME", raising=False)  # the policy alone chooses
    run = run_plan(
        """
        tasks:
          - id: boxed
            policy: gvisor.yaml
            scope: [boxed/**]
            run: mkdir boxed && { dmesg || echo no dmesg; } > boxed/kernel.txt 2>&1
          - id: plain
            scope: [plain/**]
            run: mkdir plain && { dmesg || echo no dmesg; } > plain/kernel.txt 2>&1
        """,
        FILES,
        extra={"gvisor.yaml": "runtime: runsc\n"},
    )
    assert run.code == 0, run.stderr
    head = run.result["integration_commit"]
    assert "Starting gVisor" in run.show(head, "boxed/kernel.txt")  # gVisor's own kernel log
    assert "Starting gVisor" not in run.show(head, "plain/kernel.txt")


def test_plan_without_a_daemon_says_the_runtime_was_not_checked(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, FILES)
    (tmp_path / "plan.yaml").write_text(PLAN)
    (tmp_path / "odd.yaml").write_text(f"runtime: {MISSING}\n")
    no_daemon = {"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    proc = runner_cli("plan", "plan.yaml", "--repo", str(repo), cwd=tmp_path, env=no_daemon)
    assert proc.returncode == 0, proc.stderr  # `plan` starts nothing and needs no daemon
    assert f"not checked: runtime {MISSING} (no Docker daemon)" in proc.stdout

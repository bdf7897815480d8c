"""The command line as a user meets it: help, plan, schema, gc of stale workspaces."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import docker
import docker.errors
import pytest

from runner import names
from runner.coordinator import repo_key
from runner.sandbox import labels
from tests.integration.conftest import git, make_repo, runner_cli


@pytest.mark.parametrize("command", [[], ["plan"], ["run"], ["schema"], ["images", "build"],
                                     ["demo"], ["gc"]])  # fmt: skip
def test_every_command_has_help(command: list[str]) -> None:
    proc = runner_cli(*command, "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr


def test_plan_prints_waves_scopes_and_serialized_order(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"src/a.txt": "a\n"})
    (tmp_path / "plan.yaml").write_text(
        "on_overlap: serialize\ntasks:\n"
        "  - {id: one, scope: ['src/**'], run: 'true'}\n"
        "  - {id: two, scope: ['src/a.txt'], run: 'true'}\n"
        "  - {id: three, scope: ['docs/**'], depends_on: [one], run: 'true'}\n"
    )
    proc = runner_cli("plan", "plan.yaml", "--repo", str(repo), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("plan plan.yaml: 3 tasks in 2 waves, base HEAD = ")
    assert lines[1:] == [
        "wave 1:",
        "  one: src/**",
        "wave 2:",
        "  two: src/a.txt",
        "  three: docs/**  after one",
        "serialized: two waits for one (overlapping scopes)",
    ]
    assert not (repo / ".git" / "runner").exists()  # planning starts nothing


def test_schema_documents_plan_and_result() -> None:
    plan = json.loads(runner_cli("schema").stdout)
    assert plan["properties"]["on_overlap"]["enum"] == ["refuse", "serialize", "allow"]
    assert "gitwildmatch" in plan["$defs"]["Task"]["properties"]["scope"]["description"]
    result = json.loads(runner_cli("schema", "--result").stdout)
    assert result["properties"]["schema_version"]["default"] == 1
    statuses = result["$defs"]["TaskStatus"]["enum"]
    assert {"merged", "oom", "scope_violation", "verify_failed"} <= set(statuses)


def test_gc_removes_workspaces_of_dead_runs_only_once_their_work_is_home(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path, {"a.txt": "a\n"})
    runs = repo / ".git" / "runner" / "runs"
    home, lost = runs / "dead-run" / "tasks" / "home", runs / "dead-run" / "tasks" / "lost"
    alive = runs / "live-run" / "tasks" / "t"
    for task_dir in (home, lost, alive):
        (task_dir / "work").mkdir(parents=True)
        (task_dir / "task.log").write_text("log\n")
        stores = task_dir.parent.parent / "objects"  # a run's `objects: reachable` stores
        (stores / ("a" * 40) / "pack").mkdir(parents=True, exist_ok=True)
    git(repo, "update-ref", "refs/runner/dead-run/task/home", "HEAD")  # fetched before the kill
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    (runs / "live-run" / "owner.json").write_text(json.dumps(owner))
    (runs / "dead-run" / "owner.json").write_text(json.dumps(owner | {"pid": 999999999}))
    proc = runner_cli("gc", "--repo", str(repo))
    assert proc.returncode == 0, proc.stderr
    assert "removed 2 stale workspace dir(s)" in proc.stdout  # home's work, the run's stores
    assert not (home / "work").exists() and (home / "task.log").exists()
    assert not (runs / "dead-run" / "objects").exists()
    assert (runs / "live-run" / "objects").exists()
    # The only copy of an uncollected task's work: never deleted, and said.
    assert (lost / "work").exists() and f"kept {lost / 'work'}" in proc.stdout
    assert (alive / "work").exists()


def test_gc_caches_needs_a_repo_or_all(tmp_path: Path) -> None:
    proc = runner_cli("gc", "--caches")
    assert proc.returncode == 2 and "--caches needs --repo DIR" in proc.stderr


def test_a_policy_that_weakens_the_sandbox_is_refused_or_said_loudly(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.txt": "a\n"})
    (tmp_path / "plan.yaml").write_text("policy: weak.yaml\ntasks:\n  - {id: t, run: 'true'}\n")
    (tmp_path / "weak.yaml").write_text("cpus: 1\ncap_drop: []\nread_only_root: false\n")
    proc = runner_cli("plan", "plan.yaml", "--repo", str(repo), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert "weakens the sandbox: cap_drop does not drop ALL" in proc.stderr
    assert "read_only_root is off" in proc.stderr and "unsafe: true" in proc.stderr
    (tmp_path / "weak.yaml").write_text("cap_drop: []\nunsafe: true\n")
    proc = runner_cli("plan", "plan.yaml", "--repo", str(repo), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning: unsafe policy: cap_drop does not drop ALL capabilities" in proc.stdout
    assert "(used by: verify, t)" in proc.stdout


def test_gc_caches_of_one_repo_keeps_another_repos(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    a, b = make_repo(tmp_path / "a", {"x": "x\n"}), make_repo(tmp_path / "b", {"x": "x\n"})
    made = [
        docker_client.volumes.create(
            names.cache_volume(repo_key(r), "task", "t"),
            labels=labels.cache_labels(repo_key(r), "task", "t"),
        )
        for r in (a, b)
    ]
    try:
        proc = runner_cli("gc", "--caches", "--repo", str(a))
        assert proc.returncode == 0, proc.stderr
        left = {v.name for v in docker_client.volumes.list(filters={"label": labels.CACHE})}
        assert made[0].name not in left and made[1].name in left
    finally:
        for v in made:
            with contextlib.suppress(docker.errors.NotFound):
                v.remove(force=True)

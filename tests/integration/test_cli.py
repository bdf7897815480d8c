"""The command line as a user meets it: help, plan, schema, gc of stale workspaces."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tests.integration.conftest import make_repo, runner_cli


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


def test_gc_removes_workspaces_of_dead_runs_and_keeps_their_logs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.txt": "a\n"})
    runs = repo / ".git" / "runner" / "runs"
    dead, alive = runs / "dead-run" / "tasks" / "t", runs / "live-run" / "tasks" / "t"
    for task_dir in (dead, alive):
        (task_dir / "work").mkdir(parents=True)
        (task_dir / "task.log").write_text("log\n")
        (task_dir.parent.parent / "objects" / ("a" * 40) / "pack").mkdir(parents=True)
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    (runs / "live-run" / "owner.json").write_text(json.dumps(owner))
    (runs / "dead-run" / "owner.json").write_text(json.dumps(owner | {"pid": 999999999}))
    proc = runner_cli("gc", "--repo", str(repo))
    assert proc.returncode == 0, proc.stderr
    assert "removed 2 stale workspace dir(s)" in proc.stdout
    assert not (dead / "work").exists() and (dead / "task.log").exists()
    assert not (runs / "dead-run" / "objects").exists()
    assert (alive / "work").exists() and (runs / "live-run" / "objects").exists()

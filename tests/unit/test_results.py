"""The result document (schema_version 1) and the exit code it maps to."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from runner.core.results import (
    SCHEMA_VERSION,
    Conflict,
    IsolationCheck,
    RunResult,
    RunStatus,
    TaskResult,
    TaskStatus,
    WaveResult,
)


def result(**fields: Any) -> RunResult:
    base: dict[str, Any] = {
        "run_id": "r1",
        "repo": "/repo",
        "plan": "/repo/plan.yaml",
        "base": "HEAD",
        "base_commit": "a" * 40,
        "integration_ref": "refs/heads/runner/r1/integration",
        "started_at": "2024-01-01T00:00:00Z",
        "state_dir": "/repo/.git/runner/r1",
    }
    return RunResult.model_validate(base | fields)


def isolation(unchanged: bool) -> IsolationCheck:
    return IsolationCheck(
        unchanged=unchanged,
        before={"head": "a"},
        after={"head": "a" if unchanged else "b"},
        changed=[] if unchanged else ["head"],
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (RunStatus.SUCCESS, 0),
        (RunStatus.PARTIAL, 1),
        (RunStatus.ERROR, 3),
        (RunStatus.INTERRUPTED, 130),
    ],
)
def test_exit_code_by_status(status: RunStatus, code: int) -> None:
    assert result(status=status).exit_code == code
    assert result(status=status, isolation=isolation(True)).exit_code == code


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (RunStatus.SUCCESS, 1),  # all merged, but the host checkout moved: not a success
        (RunStatus.PARTIAL, 1),
        (RunStatus.ERROR, 3),
        (RunStatus.INTERRUPTED, 130),
    ],
)
def test_exit_code_when_the_checkout_changed(status: RunStatus, code: int) -> None:
    assert result(status=status, isolation=isolation(False)).exit_code == code


def test_defaults() -> None:
    r = result()
    assert r.schema_version == SCHEMA_VERSION == 1
    assert r.status is RunStatus.RUNNING  # until the run says how it ended
    assert r.exit_code == 3
    assert (r.waves, r.tasks, r.isolation, r.error) == ([], [], None, None)
    t = TaskResult(id="a", wave=1)
    assert t.status is TaskStatus.SKIPPED
    assert (t.files_changed, t.violations, t.conflicts) == ([], [], [])


@pytest.mark.parametrize("status", list(TaskStatus))
def test_task_status_ok(status: TaskStatus) -> None:
    assert status.ok is (status in (TaskStatus.MERGED, TaskStatus.NO_CHANGES))


def full_result() -> RunResult:
    return result(
        status=RunStatus.PARTIAL,
        integration_commit="b" * 40,
        finished_at="2024-01-01T00:01:00Z",
        duration_s=60.5,
        waves=[
            WaveResult(index=1, tasks=["db", "api"], start_commit="a" * 40, verify="green"),
        ],
        tasks=[
            TaskResult(
                id="db",
                wave=1,
                status=TaskStatus.MERGED,
                exit_code=0,
                duration_s=1.5,
                files_changed=["src/db/a.py"],
                cpu_s=0.25,
                peak_memory_bytes=1 << 20,
                metrics_source="cgroup",
            ),
            TaskResult(
                id="api",
                wave=1,
                status=TaskStatus.CONFLICT,
                reason="conflicts with db",
                conflicts=[Conflict(with_task="db", files=["src/db/a.py"])],
                violations=["README.md"],
            ),
        ],
        isolation=isolation(True),
    )


def test_json_round_trip() -> None:
    r = full_result()
    text = r.model_dump_json()
    assert RunResult.model_validate_json(text) == r
    doc = json.loads(text)
    assert doc["schema_version"] == 1
    assert doc["status"] == "partial"
    assert [t["status"] for t in doc["tasks"]] == ["merged", "conflict"]
    assert doc["tasks"][1]["conflicts"] == [{"with_task": "db", "files": ["src/db/a.py"]}]


def test_status_values_are_stable_strings() -> None:
    # Consumers of the JSON match on these; renaming one is a schema change.
    assert [s.value for s in TaskStatus] == [
        "merged", "failed", "timeout", "oom", "scope_violation", "conflict", "verify_failed",
        "sandbox_lost", "disk_limit", "rejected", "no_changes", "skipped",
    ]  # fmt: skip
    assert [s.value for s in RunStatus] == ["running", "success", "partial", "error", "interrupted"]


def test_unknown_fields_are_refused() -> None:
    doc = json.loads(full_result().model_dump_json())
    doc["tasks"][0]["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        RunResult.model_validate(doc)


def test_task_lookup() -> None:
    r = full_result()
    assert r.task("api").status is TaskStatus.CONFLICT
    with pytest.raises(StopIteration):
        r.task("nope")


def test_results_are_mutable_while_a_run_fills_them_in() -> None:
    r = result()
    r.tasks.append(TaskResult(id="a", wave=1))
    r.task("a").status = TaskStatus.FAILED
    assert r.tasks[0].status is TaskStatus.FAILED

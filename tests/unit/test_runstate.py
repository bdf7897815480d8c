"""A run's state projected from journal events: tables of events in, state out (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from runner.core.results import RunStatus, TaskStatus
from runner.core.runstate import EVENTS, BadEvent, Phase, RunState, project

BASE, HEAD1, HEAD2 = "b" * 40, "1" * 40, "2" * 40
REF_A = "refs/runner/r1/task/a"


def events(*specs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Numbered events, after a `planned` of tasks a, b (wave 1) and c (wave 2, after a)."""
    planned = {
        "run_id": "r1",
        "repo": "/repo",
        "plan": "/plan.yaml",
        "base": "main",
        "base_commit": BASE,
        "integration_ref": "refs/heads/runner/r1/integration",
        "state_dir": "/repo/.git/runner/runs/r1",
        "warnings": [],
        "waves": [["a", "b"], ["c"]],
        "tasks": [
            {"id": "a", "wave": 1, "depends_on": [], "env": ["KEY"]},
            {"id": "b", "wave": 1, "depends_on": [], "env": []},
            {"id": "c", "wave": 2, "depends_on": ["a"], "env": []},
        ],
    }
    out = [{"seq": 1, "time": "t1", "event": "planned", **planned}]
    for n, (name, fields) in enumerate(specs, start=2):
        out.append({"seq": n, "time": f"t{n}", "event": name, **fields})
    return out


A_RUNS: list[tuple[str, dict[str, Any]]] = [
    ("wave_started", {"wave": 1, "tasks": ["a", "b"], "start": BASE}),
    ("task_queued", {"task": "a", "wave": 1, "start": BASE}),
    ("task_started", {"task": "a", "start": BASE, "workspace": "/ws/a", "container": "x"}),
    (
        "task_ended",
        {
            "task": "a",
            "exit_code": 0,
            "timed_out": False,
            "oom_killed": False,
            "disk_exceeded": False,
            "duration_s": 1.5,
            "log": "/logs/a",
        },
    ),
    ("collected", {"task": "a", "head": HEAD1, "problem": None, "out": None, "notes": []}),
    (
        "fetched",
        {
            "task": "a",
            "ref": REF_A,
            "commit": HEAD1,
            "files_changed": 2,
            "problem": None,
            "kept": REF_A,
        },
    ),
    ("judged", {"task": "a", "status": "ready", "reason": None, "commit": HEAD1}),
    ("verify_started", {"wave": 1, "task": None, "commit": HEAD2}),
    ("verify_ended", {"wave": 1, "task": None, "result": "green", "log": "/v.log"}),
    ("merged", {"wave": 1, "tasks": ["a"], "head": HEAD2, "previous": BASE}),
    ("judged", {"task": "a", "status": "merged", "reason": None}),
    ("wave_ended", {"wave": 1, "merged_commit": HEAD2, "verify": "green", "isolated": []}),
]


@pytest.mark.parametrize(
    ("upto", "state", "kept", "integration"),
    [
        (0, "pending", None, BASE),
        (2, "queued", None, BASE),
        (3, "running", "/ws/a", BASE),
        (4, "collecting", "/ws/a", BASE),
        (6, "collecting", REF_A, BASE),
        (7, "ready", REF_A, BASE),
        (10, "ready", REF_A, HEAD2),  # the ref moves before the task is said merged
        (11, "merged", REF_A, HEAD2),
    ],
)
def test_a_task_goes_from_pending_to_merged(
    upto: int, state: str, kept: str | None, integration: str
) -> None:
    s = project(events(*A_RUNS[:upto]))
    a = s.task("a")
    assert (a.state, a.kept, s.integration_commit) == (state, kept, integration)
    assert s.status is RunStatus.RUNNING
    assert s.events == upto + 1


def test_what_a_task_did_is_kept_from_its_events() -> None:
    a = project(events(*A_RUNS)).task("a")
    assert (a.start_commit, a.exit_code, a.duration_s, a.log_path) == (BASE, 0, 1.5, "/logs/a")
    assert (a.ref, a.commit, a.files_changed, a.started_at) == (REF_A, HEAD1, 2, "t4")


@pytest.mark.parametrize(
    ("judged", "status", "phase", "reason"),
    [
        (
            {"status": "failed", "reason": "exit code 3"},
            TaskStatus.FAILED,
            Phase.DONE,
            "exit code 3",
        ),
        ({"status": "skipped", "reason": "dep"}, TaskStatus.SKIPPED, Phase.DONE, "dep"),
        ({"status": "no_changes", "reason": None}, TaskStatus.NO_CHANGES, Phase.DONE, None),
        ({"status": "ready", "reason": None, "commit": HEAD1}, None, Phase.READY, None),
    ],
)
def test_judged_sets_the_final_status_or_ready(
    judged: dict[str, Any], status: TaskStatus | None, phase: Phase, reason: str | None
) -> None:
    b = project(events(("judged", {"task": "b", **judged}))).task("b")
    assert (b.status, b.phase, b.reason) == (status, phase, reason)


def test_the_last_judgement_wins() -> None:
    s = project(
        events(
            ("judged", {"task": "a", "status": "ready", "reason": None, "commit": HEAD1}),
            ("judged", {"task": "a", "status": "conflict", "reason": "merge conflict in x"}),
        )
    )
    assert s.task("a").state == "conflict" and s.task("a").reason == "merge conflict in x"


def _ended(status: str, **more: Any) -> tuple[str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "status": status,
        "error": None,
        "integration_commit": HEAD2,
        "unchanged": True,
        "changed": [],
        "duration_s": 3.0,
    }
    return ("run_ended", fields | more)


@pytest.mark.parametrize(
    ("tail", "status", "unjudged", "interrupted"),
    [
        ([_ended("success")], RunStatus.SUCCESS, "skipped", None),
        ([_ended("partial")], RunStatus.PARTIAL, "skipped", None),
        (
            [("interrupted", {"signal": "SIGTERM"}), _ended("interrupted")],
            RunStatus.INTERRUPTED,
            "skipped",
            "SIGTERM",
        ),
        ([("interrupted", {"signal": "SIGINT"})], RunStatus.RUNNING, "pending", "SIGINT"),
        ([], RunStatus.RUNNING, "pending", None),
    ],
)
def test_the_run_ends_with_the_status_of_run_ended(
    tail: list[tuple[str, dict[str, Any]]],
    status: RunStatus,
    unjudged: str,
    interrupted: str | None,
) -> None:
    s = project(events(*A_RUNS, *tail))
    assert (s.status, s.interrupted) == (status, interrupted)
    # A task never judged is skipped once the run has ended, as in the result document.
    assert s.task("c").state == unjudged
    assert s.task("a").state == "merged"
    assert (s.finished_at is not None) == (status is not RunStatus.RUNNING)


def test_an_error_and_a_moved_checkout_are_kept() -> None:
    s = project(events(_ended("error", error="git failed", unchanged=False, changed=["head"])))
    assert (s.status, s.error, s.checkout_unchanged) == (RunStatus.ERROR, "git failed", False)
    assert s.integration_commit == HEAD2


def test_waves_record_start_verify_and_merge() -> None:
    s = project(events(*A_RUNS[:8]))
    assert s.wave(1).start_commit == BASE and s.wave(1).verify == "running"
    s = project(events(*A_RUNS))
    w = s.wave(1)
    assert (w.verify, w.verify_log, w.merged_commit) == ("green", "/v.log", HEAD2)
    assert s.wave(2).verify is None and s.wave(2).start_commit is None


def test_events_this_runner_does_not_know_are_passed_over() -> None:
    s = project(events(("attempt_started", {"task": "a", "attempt": 2}), *A_RUNS[:2]))
    assert s.task("a").state == "queued"


def test_every_event_the_projection_applies_is_listed() -> None:
    applied = {name for name, _ in A_RUNS} | {"planned", "run_ended", "interrupted"}
    assert applied <= set(EVENTS)


@pytest.mark.parametrize(
    ("evs", "message"),
    [
        ([], "no `planned` event"),
        ([{"seq": 1, "time": "t", "event": "judged", "task": "a"}], "event 1: `judged` before"),
        (events(("judged", {"task": "zz", "status": "failed", "reason": None})), "a task or wave"),
        (events(("judged", {"task": "a", "status": "great", "reason": None})), "great"),
        (events(("judged", {"task": "a", "reason": None})), "field 'status' missing"),
        (
            events(("task_ended", {"task": "a", "exit_code": "x", "duration_s": 1})),
            "exit_code: Input should be a valid integer",
        ),
        (events(("wave_started", {"wave": 7, "tasks": [], "start": BASE})), "a task or wave"),
        ([{"seq": 1, "time": "t", "event": "planned"}], "event 1: `planned`: field '.*' missing"),
    ],
    ids=[
        "empty",
        "before-planned",
        "unknown-task",
        "bad-status",
        "missing",
        "mistyped",
        "unknown-wave",
        "bare-planned",
    ],
)
def test_bad_events_are_errors_naming_the_event(evs: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(BadEvent, match=message):
        project(evs)


def test_the_state_is_a_json_document_with_one_word_per_task() -> None:
    doc = project(events(*A_RUNS[:3])).model_dump(mode="json")
    assert [t["state"] for t in doc["tasks"]] == ["running", "pending", "pending"]
    assert RunState.model_validate({k: v for k, v in doc.items()} | {"tasks": []}).run_id == "r1"

"""The result as a projection of journal events, and the decisions resume and retries take."""

from __future__ import annotations

from typing import Any

import pytest

from runner.core.judge import retry_due
from runner.core.projection import replay
from runner.core.results import RunStatus, TaskStatus
from runner.core.runstate import BadEvent, Phase

START = "a" * 40
WORK = "b" * 40
MERGE = "c" * 40


def planned(**extra: Any) -> dict[str, Any]:
    return {
        "event": "planned",
        "time": "2026-11-25T00:00:00+00:00",
        "run_id": "r1",
        "repo": "/repo",
        "plan": "/plan.yaml",
        "plan_hash": "sha256:x",
        "plan_copy": "/state/plan.yaml",
        "base": "HEAD",
        "base_commit": START,
        "integration_ref": "refs/heads/runner/r1/integration",
        "state_dir": "/state",
        "waves": [["a", "b"]],
        "tasks": [{"id": "a", "wave": 1}, {"id": "b", "wave": 1}],
        **extra,
    }


def ev(event: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, "time": "2026-11-25T00:00:01+00:00", **fields}


def ended(task: str, code: int = 0, attempt: int = 1) -> dict[str, Any]:
    return ev(
        "task_ended",
        task=task,
        attempt=attempt,
        exit_code=code,
        timed_out=False,
        oom_killed=False,
        disk_exceeded=False,
        lost=None,
        duration_s=1.5,
        log="/state/a.log",
        cpu_s=0.2,
    )


def fetched(task: str) -> dict[str, Any]:
    return ev(
        "fetched",
        task=task,
        ref=f"refs/runner/r1/task/{task}",
        commit=WORK,
        files_changed=["x.txt"],
        problem=None,
        kept=f"refs/runner/r1/task/{task}",
    )


def started(task: str, attempt: int = 1) -> dict[str, Any]:
    return ev("task_started", task=task, start=START, attempt=attempt, workspace="/w")


WAVE = ev("wave_started", wave=1, tasks=["a", "b"], start=START)


def test_a_finished_run_projects_to_its_result() -> None:
    r = replay(
        [
            planned(),
            WAVE,
            started("a"),
            ended("a"),
            fetched("a"),
            ev("judged", task="a", status="ready", reason=None, commit=WORK),
            started("b"),
            ended("b", code=3),
            ev("judged", task="b", status="failed", reason="exit code 3", violations=[]),
            ev("merged", wave=1, tasks=["a"], head=MERGE, previous=START),
            ev("judged", task="a", status="merged", reason=None),
            ev("wave_ended", wave=1, merged_commit=MERGE, verify="skipped", isolated=[]),
            ev(
                "run_ended",
                status="partial",
                error=None,
                integration_commit=MERGE,
                unchanged=True,
                changed=[],
                before={"head": START},
                after={"head": START},
                duration_s=9.0,
            ),
        ]
    )
    res = r.result
    a, b = res.task("a"), res.task("b")
    assert res.status is RunStatus.PARTIAL and res.integration_commit == MERGE
    assert a.status is TaskStatus.MERGED and a.files_changed == ["x.txt"] and a.attempts == 1
    assert a.cpu_s == 0.2 and a.ref == "refs/runner/r1/task/a"
    assert b.status is TaskStatus.FAILED and b.exit_code == 3
    assert res.waves[0].verify == "skipped" and res.isolation is not None
    assert r.ended_waves == {1: None} and r.ready == {}


# What a killed run left, and what resume does with each task: a decision table.
@pytest.mark.parametrize(
    ("events", "phase", "ready"),
    [
        ([], Phase.PENDING, False),  # never started: run it
        ([started("a")], Phase.RUNNING, False),  # cut short: run again
        ([started("a"), ended("a")], Phase.COLLECTING, False),  # ended: collect it
        ([started("a"), ended("a"), fetched("a")], Phase.COLLECTING, False),  # home: judge
        (
            [
                started("a"),
                ended("a"),
                fetched("a"),
                ev("judged", task="a", status="ready", reason=None, commit=WORK),
            ],
            Phase.READY,
            True,
        ),  # judged ready: merge it, do not run it
        (
            [
                started("a"),
                ended("a", code=1),
                ev("judged", task="a", status="failed", reason="interrupted", cut=True),
            ],
            Phase.RUNNING,
            False,
        ),  # cut short by Ctrl-C: run again
        (
            [started("a"), ended("a", code=1), ev("judged", task="a", status="failed", reason="x")],
            Phase.DONE,
            False,
        ),  # failed by itself: stays failed
    ],
)
def test_what_a_dead_run_left_decides_what_resume_does(
    events: list[dict[str, Any]], phase: Phase, ready: bool
) -> None:
    r = replay([planned(), WAVE, *events])
    assert r.phase["a"] is phase
    assert ("a" in r.ready) is ready


def test_resumed_undoes_what_the_runs_end_said_and_keeps_what_tasks_did() -> None:
    r = replay(
        [
            planned(),
            WAVE,
            started("a"),
            ended("a"),
            fetched("a"),
            ev("judged", task="a", status="ready", reason=None, commit=WORK),
            ev("judged", task="a", status="skipped", reason="ready, not merged", run_ended=True),
            ev("judged", task="b", status="skipped", reason="not reached", run_ended=True),
            ev("run_ended", status="interrupted", error="interrupted", integration_commit=None),
            ev("resumed", pid=1),
        ]
    )
    assert r.result.status is RunStatus.RUNNING and r.result.error is None
    assert r.result.task("a").reason is None and r.ready == {"a": WORK}
    assert r.phase["b"] is Phase.PENDING and r.resumes == 1


def test_retrying_forgets_the_last_attempts_work_and_says_where_it_is() -> None:
    r = replay(
        [
            planned(),
            WAVE,
            started("a"),
            ended("a", code=1),
            fetched("a"),
            ev("judged", task="a", status="failed", reason="exit code 1"),
            ev("retrying", task="a", attempt=2, note="attempt 1 ended failed; kept at X"),
            started("a", attempt=2),
        ]
    )
    a = r.result.task("a")
    assert a.attempts == 2 and a.ref is None and a.files_changed == []
    assert a.notes == ["attempt 1 ended failed; kept at X"] and r.phase["a"] is Phase.RUNNING


def test_an_event_before_planned_is_refused() -> None:
    with pytest.raises(BadEvent):
        replay([WAVE])


@pytest.mark.parametrize(
    ("status", "attempt", "retries", "due"),
    [
        (TaskStatus.FAILED, 1, 2, True),
        (TaskStatus.FAILED, 2, 2, True),
        (TaskStatus.FAILED, 3, 2, False),  # retries used up
        (TaskStatus.FAILED, 1, 0, False),  # none asked for
        (TaskStatus.TIMEOUT, 1, 1, True),
        (TaskStatus.SANDBOX_LOST, 1, 1, True),
        (TaskStatus.SCOPE_VIOLATION, 1, 3, False),  # not in retry_on: a person decides
        (TaskStatus.OOM, 1, 3, False),
        (None, 1, 3, False),  # ready: nothing to retry
    ],
)
def test_retry_due(status: TaskStatus | None, attempt: int, retries: int, due: bool) -> None:
    assert retry_due(status, attempt, retries, ["failed", "timeout", "sandbox_lost"]) is due


def _span(start: str, took: float) -> dict[str, Any]:
    return {"start": f"2026-11-25T00:00:{start}+00:00", "duration_s": took}


def test_phases_gather_per_attempt_and_a_retry_starts_them_afresh() -> None:
    started = ev("task_started", task="a", start=START, attempt=1)
    events = [
        planned(),
        started,
        {**ended("a", code=1), "phases": {"clone": _span("01", 0.1), "task": _span("02", 1.5)}},
        ev("retrying", task="a", attempt=2, note="attempt 1 ended failed"),
        {**started, "attempt": 2},
        {**ended("a", attempt=2), "phases": {"clone": _span("05", 0.2), "task": _span("06", 1)}},
        {**fetched("a"), "phases": {"fetch": _span("08", 0.3)}},
        ev(
            "judged",
            task="a",
            status="ready",
            reason=None,
            commit=WORK,
            phases={"scope": _span("09", 0.0)},
        ),
        ev(
            "merged",
            wave=1,
            tasks=["a"],
            head=MERGE,
            previous=START,
            phases={"a": {"merge": _span("10", 0.01)}},
        ),
    ]
    a = replay(events).result.task("a")
    assert list(a.phases) == ["clone", "task", "fetch", "scope", "merge"]
    assert a.phases["clone"].duration_s == 0.2  # the second attempt's, not the first's
    assert a.phases["merge"].start == "2026-11-25T00:00:10+00:00"
    assert replay(events).result.task("b").phases == {}

"""A task's attempts: run it, judge it, run it again while its `retries` last; on a resume,
judge or collect what a dead process left of it; on `runner retry`, open it again.

Every earlier attempt's work is kept (its attempt ref, or its workspace set aside) before the
next one starts, and the journal says where. The status itself is `core.judge`'s decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runner import events, names
from runner.core.judge import Ending, Limits, judge, printable, retry_due
from runner.core.projection import Replay
from runner.core.results import TaskStatus
from runner.core.runstate import READY, Phase
from runner.core.scope import check_changes
from runner.pipeline import Attempt, Pipeline, keep_attempt_ref, set_aside
from runner.preflight import Prepared
from runner.sandbox.base import SandboxSpec
from runner.sandboxes import Sandboxes

log = structlog.get_logger()

_RUN_AGAIN = object()
"""`run`'s marker: run (another) attempt."""


@dataclass
class Attempts:
    prepared: Prepared
    run_id: str
    run_dir: Path
    replay: Replay
    pipeline: Pipeline
    sandboxes: Sandboxes
    emit: Callable[..., None]
    """emit(event, **fields): journal an event and apply it (the coordinator's)."""
    interrupted: Callable[[], str | None]
    """The signal that stopped the run, if one did: no retry then, and a judged task is cut."""
    closing: Callable[[], bool]
    """True once a second Ctrl-C abandons work in flight: nothing more is judged."""
    leftover: dict[str, Phase] = field(default_factory=dict)
    """Tasks a dead process left started but not judged (resume): their phase then."""

    def __post_init__(self) -> None:
        self.repo = self.prepared.repo
        self.plan = self.prepared.doc.plan

    def run(self, task_id: str, start: str) -> None:
        """Attempts of one task from `start` until one is judged for good."""
        task = self.plan.task(task_id)
        timeout = task.timeout or self.plan.timeout
        spec = self.sandboxes.spec(task_id, "task", start, task.run, timeout)
        attempt = self.replay.attempt.get(task_id, 0)
        status = self._leftover(task_id, spec, attempt)
        while True:
            if status is not _RUN_AGAIN:
                due = retry_due(status, attempt, task.retries, task.retry_on)
                if self.interrupted() or not due:
                    return
                note = f"attempt {attempt} ended {status.value}"
                previous = self.replay.result.task(task_id).reason
                log.info("task retried", task=task_id, attempt=attempt + 1, previous=status.value)
                self._next(task_id, attempt, note, previous=previous)
            attempt += 1
            status = self.judge(task_id, self.pipeline.run(spec, attempt), spec)

    def reopen(self, task_id: str) -> None:
        """`runner retry`: run a task again as its next attempt, its last one's work kept."""
        attempt = self.replay.attempt.get(task_id, 0)
        note = "retried with `runner retry`"
        if attempt:
            note += f"; attempt {attempt} ended {self.replay.result.task(task_id).status.value}"
        self._next(task_id, attempt, note)

    def _leftover(self, task_id: str, spec: SandboxSpec, attempt: int) -> Any:
        """A task a dead process left started: judge its work when its script had ended and
        its workspace still holds the work; else run it again (its workspace kept aside)."""
        phase = self.leftover.pop(task_id, None)
        if phase is None:
            return _RUN_AGAIN
        ended = self.replay.ended.get(task_id)
        if ended is not None:
            fetched = self.replay.fetched.get(task_id)
            if fetched is not None:  # home already: judge what was fetched
                got = Attempt(
                    ending=events.execution(ended),
                    problem=fetched.get("problem"),
                    commit=fetched.get("commit"),
                    files=tuple(fetched["files_changed"]),
                    kept=fetched.get("kept"),
                )
                return self.judge(task_id, got, spec)
            if (spec.workspace / ".git").exists():
                log.info("collecting a task the dead run left", task=task_id)
                collected = self.pipeline.collect_only(spec, events.execution(ended))
                return self.judge(task_id, collected, spec)
        note = f"attempt {attempt} was cut short when the runner stopped; it runs again"
        self._next(task_id, attempt, note)
        return _RUN_AGAIN

    def _next(self, task_id: str, attempt: int, note: str, **extra: Any) -> None:
        """Keep `attempt`'s work out of the next one's way, and journal where it is."""
        where = None
        if attempt:
            state = names.sandbox_dir(self.run_dir, "task", task_id)
            ref = keep_attempt_ref(self.repo, self.run_id, task_id, attempt)
            kept = set_aside(state, attempt)
            where = ref or (str(kept) if kept else None)
        note += f"; its work is kept at {where}" if where else ""
        self.emit("retrying", task=task_id, attempt=attempt + 1, note=note, **extra)

    def judge(self, task_id: str, got: Attempt, spec: SandboxSpec) -> TaskStatus | None:
        """Judge an attempt; None: its work is ready to merge."""
        limits = Limits(spec.timeout, spec.policy.memory, spec.policy.disk)
        return self.judge_with(task_id, got, limits)

    def judge_with(self, task_id: str, got: Attempt, limits: Limits) -> TaskStatus | None:
        if self.closing():
            return TaskStatus.FAILED  # abandoned: the run's end says so, with its workspace
        if got.failure is not None or got.ending is None:
            self.set_status(task_id, TaskStatus.FAILED, got.failure or "the runner lost this task")
            return TaskStatus.FAILED
        ex = got.ending
        scope = self.prepared.scopes[task_id]
        checking = time.time()
        violations = check_changes(scope, list(got.files), self.plan.shared)
        found = violations.paths() if violations else []
        phases = {"scope": events.span(checking, time.time())}
        ending = Ending(
            exit_code=ex.exit_code,
            timed_out=ex.timed_out,
            oom_killed=ex.oom_killed,
            disk_exceeded=ex.disk_exceeded,
            lost=ex.lost,
            interrupted=self.interrupted(),
            problem=got.problem,
            files_changed=len(got.files),
            violations=tuple(found),
            kept=got.kept,
        )
        status, reason = judge(ending, limits)
        if status is not None:
            # Cut short by the signal, not ended by itself: a resume runs it again.
            cut = {"cut": True} if ending.interrupted and not got.problem else {}
            self.set_status(task_id, status, reason, violations=found, phases=phases, **cut)
            return status
        self.emit(
            "judged", task=task_id, status=READY, reason=None, commit=got.commit, phases=phases
        )
        log.info("task ready", task=task_id, files=len(got.files))
        return None

    def set_status(
        self, task_id: str, status: TaskStatus, reason: str | None, **extra: Any
    ) -> None:
        """Journal a task's final status (its reason made printable: a task names paths)."""
        shown = printable(reason) if reason else None
        self.emit("judged", task=task_id, status=status, reason=shown, **extra)
        log.info("task", task=task_id, status=status.value, reason=reason)

"""Runs of a repo as the user looks at them (`runner ps/logs/diff/show`), live or finished.

A finished run is read from its `result.json`; a live one (or one that died before writing it)
from its journal, through the same projection `runner status` uses. Either way the commands
see one `RunView`. The next commands to type after a run are here too (`next_steps`).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner import names
from runner.core.judge import printable
from runner.core.results import RunResult, RunStatus, TaskStatus
from runner.core.runstate import BadEvent, RunState, project
from runner.errors import InputError
from runner.gc import run_alive
from runner.journal import JournalError, read_journal
from runner.sandbox.logpump import METRICS_MARK
from runner.status import LATEST, find_run

__all__ = ["LATEST", "find_run"]

DIED = "died"
"""Shown for a run whose journal has no end and whose process is gone."""


@dataclass(frozen=True)
class TaskView:
    id: str
    wave: int
    status: str
    """Its final status, else where it is (pending, queued, running, collecting, ready)."""
    reason: str | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    start_commit: str | None = None
    ref: str | None = None
    commit: str | None = None
    kept: str | None = None
    """Where its work is: its ref, or its workspace when the work did not come home."""
    log_path: str | None = None
    violations: list[str] = field(default_factory=list)
    accepted: bool = False
    attempts: int = 0
    tokens: int | None = None
    """What its agent used, all attempts (None: it said nothing, or the run goes on)."""
    cost_usd: float | None = None
    cost_source: str | None = None
    """reported, estimated or unknown (runner.core.usage); None: no usage said."""

    @property
    def ended(self) -> bool:
        return self.status not in ("pending", "queued", "running")

    def document(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class VerifyLog:
    wave: int
    task: str | None
    """The task verified alone (after a red wave), or None for the wave's own verify."""
    result: str
    log: str


@dataclass(frozen=True)
class RunView:
    run_id: str
    run_dir: Path
    status: str
    """A RunStatus value, or `died`."""
    live: bool
    """Its process still runs it."""
    repo: str
    base_commit: str
    integration_ref: str
    integration_commit: str | None
    started_at: str
    finished_at: str | None
    duration_s: float | None
    tasks: list[TaskView]
    verify_logs: list[VerifyLog]
    result: RunResult | None
    """Its result document (None while it runs, or if it died before writing one)."""
    state: RunState | None
    """Its journal's projection (None for a run an older runner made)."""

    def task(self, task_id: str) -> TaskView:
        for t in self.tasks:
            if t.id == task_id:
                return t
        known = ", ".join(t.id for t in self.tasks)
        raise InputError(
            f"run {self.run_id} has no task {printable(task_id)!r}", hint=f"its tasks: {known}"
        )

    @property
    def merged(self) -> int:
        return sum(t.status == TaskStatus.MERGED for t in self.tasks)

    def document(self) -> dict[str, Any]:
        keys = ("run_id", "status", "live", "started_at", "finished_at", "duration_s")
        doc: dict[str, Any] = {k: getattr(self, k) for k in keys}
        if self.live and self.duration_s is None:
            doc["duration_s"] = _elapsed(self.started_at)
        return doc | {
            "tasks_merged": self.merged,
            "tasks_total": len(self.tasks),
            "integration_ref": self.integration_ref,
            "integration_commit": self.integration_commit,
        }


def list_runs(root: Path) -> list[Path]:
    """Run dirs, oldest first (run ids begin with their start time)."""
    runs_dir = names.runs_dir(root)
    if not runs_dir.is_dir():
        return []
    return sorted((p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.name)


def load_run(run_dir: Path) -> RunView:
    """A run as it stands. Raises InputError (nothing to read), JournalError (damaged)."""
    result = _read_result(run_dir)
    state = _read_state(run_dir)
    accepted = set(read_accepted(run_dir))
    alive = run_alive(run_dir)
    if result is not None and (result.status is not RunStatus.RUNNING or state is None):
        return _from_result(run_dir, result, state, alive, accepted)
    if state is None:
        raise InputError(
            f"run {run_dir.name} has neither a result nor a journal: it stopped before it began",
            hint=f"look in {run_dir}",
        )
    return _from_state(run_dir, state, result, alive, accepted)


def _read_result(run_dir: Path) -> RunResult | None:
    path = names.result_path(run_dir)
    try:
        return RunResult.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else exc
        raise InputError(f"{path}: not a result document: {why}") from None


def _read_state(run_dir: Path) -> RunState | None:
    path = names.journal_path(run_dir)
    if not path.exists():
        return None
    try:
        return project(read_journal(path).events)
    except BadEvent as exc:
        raise JournalError(f"{path}: {exc}") from None


def _status(status: RunStatus, alive: bool) -> str:
    return DIED if status is RunStatus.RUNNING and not alive else status.value


def _from_result(
    run_dir: Path, r: RunResult, state: RunState | None, alive: bool, accepted: set[str]
) -> RunView:
    tasks = [
        TaskView(
            id=t.id,
            wave=t.wave,
            status=t.status.value,
            reason=t.reason,
            exit_code=t.exit_code,
            duration_s=t.duration_s,
            start_commit=t.start_commit,
            ref=t.ref,
            commit=t.commit,
            kept=t.ref or _kept(state, t.id),
            log_path=t.log_path,
            violations=list(t.violations),
            accepted=t.id in accepted,
            attempts=t.attempts,
            tokens=t.usage.tokens if t.usage else None,
            cost_usd=t.usage.cost_usd if t.usage else None,
            cost_source=t.usage.cost_source if t.usage else None,
        )
        for t in r.tasks
    ]
    return RunView(
        run_id=r.run_id,
        run_dir=run_dir,
        status=_status(r.status, alive),
        live=alive and r.status is RunStatus.RUNNING,
        repo=r.repo,
        base_commit=r.base_commit,
        integration_ref=r.integration_ref,
        integration_commit=r.integration_commit,
        started_at=r.started_at,
        finished_at=r.finished_at,
        duration_s=r.duration_s,
        tasks=tasks,
        verify_logs=_verify_logs(run_dir, r),
        result=r,
        state=state,
    )


def _kept(state: RunState | None, task_id: str) -> str | None:
    if state is None:
        return None
    try:
        return state.task(task_id).kept
    except StopIteration:
        return None


def _from_state(
    run_dir: Path, s: RunState, r: RunResult | None, alive: bool, accepted: set[str]
) -> RunView:
    tasks = [
        TaskView(
            id=t.id,
            wave=t.wave,
            status=t.state,
            reason=t.reason,
            exit_code=t.exit_code,
            duration_s=t.duration_s,
            start_commit=t.start_commit,
            ref=t.ref,
            commit=t.commit,
            kept=t.kept,
            # A running task's log is not journaled until it ends: it is at its known place.
            log_path=t.log_path or _log_while_running(run_dir, t.id, t.started_at),
            accepted=t.id in accepted,
            attempts=t.attempts,
        )
        for t in s.tasks
    ]
    return RunView(
        run_id=s.run_id,
        run_dir=run_dir,
        status=_status(s.status, alive),
        live=alive and s.status is RunStatus.RUNNING,
        repo=s.repo,
        base_commit=s.base_commit,
        integration_ref=s.integration_ref,
        integration_commit=s.integration_commit,
        started_at=s.started_at,
        finished_at=s.finished_at,
        duration_s=s.duration_s,
        tasks=tasks,
        verify_logs=_verify_logs(run_dir, r),
        result=r,
        state=s,
    )


def _log_while_running(run_dir: Path, task_id: str, started: str | None) -> str | None:
    return str(task_log_path(run_dir, task_id)) if started else None


def task_log_path(run_dir: Path, task_id: str) -> Path:
    return names.sandbox_log(names.sandbox_dir(run_dir, "task", task_id), "task")


def _verify_logs(run_dir: Path, r: RunResult | None) -> list[VerifyLog]:
    """Every verify of the run, from its journal (a wave verified task by task has several);
    from the result's waves for a run without a journal."""
    path = names.journal_path(run_dir)
    if path.exists():
        return [
            VerifyLog(ev["wave"], ev.get("task"), ev["result"], ev["log"])
            for ev in read_journal(path).events
            if ev.get("event") == "verify_ended" and ev.get("log")
        ]
    waves = r.waves if r is not None else []
    return [VerifyLog(w.index, None, w.verify or "-", w.verify_log) for w in waves if w.verify_log]


def read_accepted(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Tasks accepted after review, by id (see runner.apply.accept)."""
    path = names.accepted_path(run_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not an accepted-tasks record: {exc}") from None
    items = data.get("accepted", []) if isinstance(data, dict) else []
    return {a["task"]: a for a in items if isinstance(a, dict) and isinstance(a.get("task"), str)}


def _elapsed(started_at: str) -> float | None:
    try:
        began = datetime.fromisoformat(started_at)
    except ValueError:
        return None
    return round((datetime.now(UTC) - began).total_seconds(), 1)


# -- logs ----------------------------------------------------------------------------------


def without_metrics(data: bytes) -> bytes:
    """A log without the runner's internal metrics lines (older runs kept them in the log)."""
    if METRICS_MARK not in data:
        return data
    lines = data.splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(METRICS_MARK))


def tail(data: bytes, n: int) -> bytes:
    """The last n lines (a final line without a newline counts as one)."""
    if n <= 0:
        return b""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:])


def for_terminal(data: bytes) -> bytes:
    """A task's output made safe for a terminal: control characters other than newline and
    tab are shown escaped, so a task cannot move the cursor or retitle the window."""
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    return "".join(
        ch if ch in "\n\t" or ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text
    ).encode()


def follow(
    path: Path, ended: Callable[[], bool], *, start: int = 0, poll: float = 0.2
) -> Iterator[bytes]:
    """Whole lines appended to path from byte `start`, until ended() and all is read.

    The file may not exist yet (the task is queued); the last line is given once the task
    ended even without a newline.
    """
    offset, partial = start, b""
    while True:
        done = ended()  # asked before reading: what was written before it ended is read
        chunk = b""
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offset += len(chunk)
        *lines, partial = (partial + chunk).split(b"\n")
        if lines:
            yield without_metrics(b"\n".join(lines) + b"\n")
        if done:
            if partial and not partial.startswith(METRICS_MARK):
                yield partial
            return
        if not chunk:
            time.sleep(poll)


# -- the next commands ---------------------------------------------------------------------

_SHOWN = 8
_KEPT = {
    TaskStatus.FAILED,
    TaskStatus.TIMEOUT,
    TaskStatus.OOM,
    TaskStatus.DISK_LIMIT,
    TaskStatus.SANDBOX_LOST,
    TaskStatus.REJECTED,
}


def next_steps(result: RunResult, cwd: Path | None = None) -> list[str]:
    """The commands to type after a run, most useful first (at most 8 and a pointer to ps).

    cwd: where the user types them (default: the current directory); elsewhere than the run's
    repo, each command names it with --repo.
    """
    here = (cwd or Path.cwd()).resolve()
    repo = "" if Path(result.repo).resolve() == here else f" --repo {shlex.quote(result.repo)}"
    run = result.run_id
    steps: list[str] = []
    merged = [t for t in result.tasks if t.status is TaskStatus.MERGED]
    if merged and result.integration_commit and result.integration_commit != result.base_commit:
        steps.append(f"runner apply {run}{repo}   # take the merged work into your branch")
    if result.status in (RunStatus.INTERRUPTED, RunStatus.ERROR, RunStatus.RUNNING):
        steps.append(f"runner resume {run}{repo}   # go on: judged tasks are not run again")
    again = [shlex.quote(t.id) for t in result.tasks if t.status in _KEPT]
    if again and result.status is RunStatus.PARTIAL:
        steps.append(f"runner retry {run} {' '.join(again)}{repo}   # run them again here")
    for t in sorted(result.tasks, key=lambda t: t.wave):
        task = f"{run} {shlex.quote(t.id)}{repo}"
        if t.status is TaskStatus.SCOPE_VIOLATION:
            steps.append(f"runner diff {task}   # review {t.id}'s work outside its scope")
            steps.append(f"runner accept {task}   # then, if you want it after all")
        elif t.status is TaskStatus.CONFLICT:
            steps.append(f"runner diff {task}   # {t.id} conflicts: its work is kept")
        elif t.status is TaskStatus.VERIFY_FAILED:
            steps.append(f"runner logs {task} --verify   # why verify went red")
        elif t.status in _KEPT:
            steps.append(f"runner logs {task}   # {t.id} ended {t.status.value}")
            if t.ref:
                steps.append(f"runner diff {task}   # its partial work")
    if len(steps) > _SHOWN:
        more = len(steps) - _SHOWN + 1
        steps = [*steps[: _SHOWN - 1], f"runner ps {run}{repo}   # and {more} more: every task"]
    return steps

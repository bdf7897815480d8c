"""What a report needs that the journal knows: when each task began, every verify and its log.

The coordinator fills `TaskResult.started_at` and `WaveResult.verify_runs` when it can; for a
result without them (an older runner's, or one the coordinator has not filled yet) they are
taken from the run's journal, the record of every state change. Nothing is overwritten.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any

from runner import names
from runner.core.results import RunResult, TaskStatus, VerifyRun, WaveResult
from runner.journal import JournalError, read_journal

TAIL_BYTES = 16 * 1024


def complete(result: RunResult) -> RunResult:
    """Fill missing start times and verify runs from the journal, in place; returns result."""
    try:
        events = read_journal(names.journal_path(Path(result.state_dir))).events
    except JournalError:
        return result  # no journal (or a damaged one): the result stays as it is
    started = {e["task"]: e["time"] for e in events if e.get("event") == "task_started"}
    for t in result.tasks:
        if t.started_at is None and isinstance(started.get(t.id), str):
            t.started_at = started[t.id]
    runs = _verify_runs(events)
    for w in result.waves:
        if not w.verify_runs:
            w.verify_runs = runs.get(w.index, [])
    return result


def _verify_runs(events: list[dict[str, Any]]) -> dict[int, list[VerifyRun]]:
    runs: dict[int, list[VerifyRun]] = {}
    began: dict[tuple[int, str | None], str] = {}
    for e in events:
        wave, task = e.get("wave"), e.get("task")
        if not isinstance(wave, int):
            continue
        if e.get("event") == "verify_started":
            began[(wave, task)] = e["time"]
        elif e.get("event") == "verify_ended" and e.get("result") in ("green", "red"):
            start = began.pop((wave, task), None)
            runs.setdefault(wave, []).append(
                VerifyRun(
                    task=task,
                    result=e["result"],
                    log=e.get("log"),
                    started_at=start,
                    duration_s=seconds_between(start, e.get("time")),
                )
            )
    return runs


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def seconds_between(start: str | None, end: object) -> float | None:
    a, b = parse_time(start), parse_time(end if isinstance(end, str) else None)
    if a is None or b is None or a.tzinfo is None or b.tzinfo is None:
        return None
    return round((b - a).total_seconds(), 3)


def log_tail(path: str | None, limit: int = TAIL_BYTES) -> str | None:
    """The end of a log file as text (None: no log, or it cannot be read)."""
    if not path:
        return None
    with contextlib.suppress(OSError):
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
        text = data.decode("utf-8", "replace")
        if size > limit:  # cut at a line start: no half line at the top
            text = "…\n" + text.split("\n", 1)[-1]
        return text
    return None


_ALONE = {
    TaskStatus.MERGED: "green",
    TaskStatus.VERIFY_FAILED: "red",
    TaskStatus.CONFLICT: "conflict",
}


def verify_said(w: WaveResult, result: RunResult) -> str:
    """How a wave's verify went, in one line, naming red logs: a wave whose merge went red and
    whose tasks were then verified alone reads red first, then what each task gave alone."""
    if w.verify is None:
        return "verify not reached"
    if w.verify == "skipped":
        return "no verify command"
    runs = w.verify_runs
    if not w.isolated:
        log = f" (log: {w.verify_log})" if w.verify == "red" and w.verify_log else ""
        return f"verify {w.verify}{log}"
    whole = next((v for v in runs if v.task is None), None)
    said = "verify red on the wave's merge"
    if whole is not None and whole.log:
        said += f" (log: {whole.log})"
    alone = []
    for task_id in w.isolated:
        run = next((v for v in runs if v.task == task_id), None)
        if run is not None:
            log = f" (log: {run.log})" if run.result == "red" and run.log else ""
            alone.append(f"{task_id} {run.result}{log}")
        else:
            status = next((t.status for t in result.tasks if t.id == task_id), None)
            alone.append(f"{task_id} {_ALONE.get(status, 'not verified') if status else '?'}")
    merged = [
        t
        for t in w.isolated
        if any(x.id == t and x.status is TaskStatus.MERGED for x in result.tasks)
    ]
    said += "; then each task alone: " + ", ".join(alone)
    return said + (f"; merged: {', '.join(merged)}" if merged else "; none merged")

"""Progress of a run while it goes, read from its journal: a live table on a terminal, one
plain line per state change anywhere else (a pipe, a CI log, stderr next to `--json`).

The journal is the record of every state change (queued, started, ended, collected, judged,
verify started and ended, merged), written before the runner acts on it; following it shows
states the coordinator's observer calls do not (collecting, verifying). The observer calls
only wake the follower early. Progress never stops a run: a journal it cannot read shows
nothing more.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from runner.core.results import RunResult, TaskStatus
from runner.core.runstate import BadEvent, Phase, Projector, RunState, TaskState
from runner.report import unwrapped

INTERVAL = 0.2  # seconds between reads of the journal
_STEP_EVENTS = 16  # batches up to this many events are shown event by event (no state skipped)


def interactive(console: Console) -> bool:
    """A live table needs a real terminal (FORCE_COLOR makes a pipe `is_terminal` too)."""
    return console.is_terminal and console.file.isatty() and not console.is_dumb_terminal


def shown_state(task: TaskState, run: RunState) -> str:
    """One word for a task's state as a person follows it."""
    if task.status is not None:
        return task.status.value
    if task.phase in (Phase.PENDING, Phase.QUEUED):
        return "queued"  # waiting for its wave or for a free sandbox: both are a queue
    if task.phase is Phase.READY:
        wave = next((w for w in run.waves if w.index == task.wave), None)
        # From the wave's first verify until it is judged (isolation verifies again).
        return "verifying" if wave is not None and wave.verify is not None else "ready"
    return task.phase.value  # running, collecting


def _style(state: str) -> str:
    if state in (TaskStatus.MERGED, TaskStatus.NO_CHANGES):
        return "green"
    if state in ("queued", "ready"):
        return "dim"
    if state in ("running", "collecting", "verifying"):
        return "cyan"
    return "yellow" if state == TaskStatus.SKIPPED else "red"


def _seconds_since(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        return (now - datetime.fromisoformat(stamp)).total_seconds()
    except (ValueError, TypeError):
        return None


def frame(run: RunState, now: datetime) -> Table:
    """The live table for a run's state."""
    table = Table(title=f"run {run.run_id}", title_justify="left")
    for col in ("wave", "task", "state", "time", "reason"):
        table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=80)
    for t in sorted(run.tasks, key=lambda t: t.wave):
        state = shown_state(t, run)
        if t.duration_s is not None:
            spent = f"{t.duration_s:.1f}s"
        elif state == "running" and (gone := _seconds_since(t.started_at, now)) is not None:
            spent = f"{max(gone, 0):.0f}s"
        else:
            spent = ""
        table.add_row(
            str(t.wave), t.id, Text(state, style=_style(state)), spent, Text(t.reason or "")
        )
    return table


@dataclass
class _Seen:
    tasks: dict[str, str]
    verify: dict[int, str | None]


def changes(
    before: _Seen | None, run: RunState, last: Mapping[str, Any] | None = None
) -> tuple[_Seen, list[Text]]:
    """Plain lines for what changed since `before` (None: the first look names every task);
    `last`, the event `run` was projected up to, names a task verified alone."""
    touched = _touched(run, last) if before is not None else None
    if touched is None:  # the first look, or an event that may change any task
        seen = _Seen({t.id: shown_state(t, run) for t in run.tasks}, {})
    else:  # one event changes a few tasks: the rest are as seen (a run of 1,000 tasks)
        seen = _Seen(dict(before.tasks) if before else {}, {})
        seen.tasks.update((t.id, shown_state(t, run)) for t in touched)
    seen.verify = {w.index: w.verify for w in run.waves}
    lines: list[Text] = []
    if before is None:
        lines.append(Text(f"run {run.run_id}: {len(run.tasks)} tasks in {len(run.waves)} waves"))
    for w in run.waves:
        verify = seen.verify[w.index]
        if verify is not None and (before is None or before.verify.get(w.index) != verify):
            said = {"skipped": "no verify command"}.get(verify, f"verify {verify}")
            log = f" (log: {w.verify_log})" if verify == "red" and w.verify_log else ""
            if alone := _verified_alone(last, w.index):
                said = said.replace("verify", f"verify of {alone} alone", 1)
            lines.append(Text(f"wave {w.index}: {said}{log}"))
    for t in sorted(run.tasks if touched is None else touched, key=lambda t: t.wave):
        state = seen.tasks[t.id]
        if before is not None and before.tasks.get(t.id) == state:
            continue
        line = Text(f"wave {t.wave} task {t.id}: ")
        line.append(state, style=_style(state))
        if t.status is not None and t.duration_s is not None:
            line.append(f" ({t.duration_s:.1f}s)")
        if t.status is not None and t.reason:
            line.append(f": {t.reason}")
        lines.append(line)
    return seen, lines


_WAVE_EVENTS = ("wave_started", "merged", "verify_started", "verify_ended", "wave_ended")


def _touched(run: RunState, last: Mapping[str, Any] | None) -> list[TaskState] | None:
    """The tasks whose shown state `last` can change; None: any task's."""
    if last is None:
        return None
    if last.get("event") in _WAVE_EVENTS and isinstance(last.get("wave"), int):
        return [t for t in run.tasks if t.wave == last["wave"]]  # a wave's verify: its tasks
    task = last.get("task")
    if not isinstance(task, str):
        return None  # the run's start, end, a resume: any task
    try:
        return [run.task(task)]
    except StopIteration:
        return None


def _verified_alone(last: Mapping[str, Any] | None, wave: int) -> str | None:
    """The task the last event verified alone in this wave, if it is such a verify."""
    if last is None or last.get("wave") != wave or not isinstance(last.get("task"), str):
        return None
    return str(last["task"]) if last.get("event") in ("verify_started", "verify_ended") else None


class _Tail:
    """The events a journal gets from another thread, read incrementally (only the new)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict[str, Any]]:
        """The events appended since the last read."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []  # not there yet
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # a line being written: completed by a later read
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events


class Progress:
    """Follows a run's journal in a thread and shows it on `console` (stderr)."""

    def __init__(self, console: Console, journal: Path, *, live: bool | None = None) -> None:
        self.console = console
        self.live = interactive(console) if live is None else live
        self._tail = _Tail(journal)
        self._projector = Projector()
        self._seen: _Seen | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._live: Live | None = None
        self.state: RunState | None = None
        if not self.live:
            unwrapped(console)

    def __enter__(self) -> Progress:
        if self.live:
            self._live = Live(console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.poll()  # the last events (the run's end) are shown before the summary
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)

    def __call__(self, result: RunResult, running: set[str]) -> None:
        """The coordinator's observer: something changed, look now."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(INTERVAL)
            self._wake.clear()
            self.poll()

    def poll(self) -> None:
        """Read the journal and show what changed. Never raises."""
        with self._lock:
            try:
                new = self._tail.read()
                if not new:
                    if self._live is not None and self.state is not None:
                        self._live.update(frame(self.state, _now()))  # the running clocks
                    return
                for state, last in self._states(new):
                    self._show(state, last)
            except Exception:  # progress must never break a run
                return

    def _states(self, new: list[dict[str, Any]]) -> Iterator[tuple[RunState, dict[str, Any]]]:
        # Event by event, so a state that lasted less than one read is still shown; the state
        # is the projector's own, changed by the next event: each is shown before that.
        step = len(new) <= _STEP_EVENTS and not self.live
        for n, event in enumerate(new, start=1):
            try:
                state = self._projector.feed(event)
            except BadEvent:
                continue  # an event this runner cannot read
            if state is not None and (step or n == len(new)):
                yield state, event

    def _show(self, state: RunState, last: dict[str, Any]) -> None:
        self.state = state
        if self._live is not None:
            self._live.update(frame(state, _now()))
            return
        self._seen, lines = changes(self._seen, state, last)
        for line in lines:
            self.console.print(line, soft_wrap=True, highlight=False)


def _now() -> datetime:
    return datetime.now(UTC)

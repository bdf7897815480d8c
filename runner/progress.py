"""Live progress on a terminal: one row per task, redrawn as tasks start and finish."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from runner.core.results import RunResult, TaskStatus


class LiveProgress:
    """A rich Live table fed by the coordinator's observer calls (from worker threads)."""

    def __init__(self, console: Console) -> None:
        self._live = Live(console=console, refresh_per_second=4, transient=True)
        self._started: dict[str, float] = {}
        self.table = Table()

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.__exit__(kind, exc, tb)

    def __call__(self, result: RunResult, running: set[str]) -> None:
        table = Table(title=f"run {result.run_id}", title_justify="left")
        for col in ("wave", "task", "state", "time"):
            table.add_column(col)
        now = time.monotonic()
        for t in sorted(result.tasks, key=lambda t: t.wave):
            if t.id in running:
                began = self._started.setdefault(t.id, now)
                state, spent = "[cyan]running[/]", f"{now - began:.0f}s"
            elif t.reason is None and t.status is TaskStatus.SKIPPED:
                state, spent = "[dim]waiting[/]", ""
            else:
                state = f"[{'green' if t.status.ok else 'red'}]{t.status.value}[/]"
                spent = f"{t.duration_s:.1f}s" if t.duration_s is not None else ""
            table.add_row(str(t.wave), t.id, state, spent)
        self.table = table
        self._live.update(table)

"""`runner status`: a run's state from its journal, also while another process runs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runner import names
from runner.core.judge import printable
from runner.core.results import RunStatus
from runner.core.runstate import BadEvent, RunState, project
from runner.errors import InputError
from runner.gc import run_alive
from runner.journal import JournalError, read_journal

LATEST = "latest"


@dataclass(frozen=True)
class Status:
    """A run's projected state and what the host adds to it."""

    state: RunState
    journal: Path
    torn: str | None
    """Where reading stopped before a partial last line (the writer was mid-line or died)."""
    owner_alive: bool

    @property
    def died(self) -> bool:
        """The journal has no end and the process that wrote it is gone."""
        return self.state.status is RunStatus.RUNNING and not self.owner_alive

    def document(self) -> dict[str, Any]:
        doc = self.state.model_dump(mode="json")
        extra = {"journal": str(self.journal), "torn": self.torn, "owner_alive": self.owner_alive}
        return doc | extra | {"died": self.died}


def find_run(root: Path, which: str) -> Path:
    """The run dir for a run id, a unique prefix of one, or `latest`. Raises InputError."""
    runs_dir = names.runs_dir(root)
    runs = sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    if not runs:
        raise InputError(f"no runs in {runs_dir}", hint="start one: runner run PLAN --repo DIR")
    if which == LATEST:
        return runs_dir / runs[-1]  # run ids begin with their start time: sorted is in order
    if which in runs:
        return runs_dir / which
    found = [r for r in runs if r.startswith(which)]
    if len(found) == 1:
        return runs_dir / found[0]
    shown = printable(which)
    if found:
        raise InputError(
            f"run {shown!r} is ambiguous: it begins {len(found)} runs ({', '.join(found[:5])})",
            hint="give more of the run id",
        )
    raise InputError(
        f"no run {shown!r} in {runs_dir}", hint=f"the latest runs: {', '.join(runs[-5:])}"
    )


def load_status(root: Path, which: str) -> Status:
    """Read and project a run's journal. Raises InputError, JournalError."""
    run_dir = find_run(root, which)
    path = names.journal_path(run_dir)
    if not path.exists():
        raise InputError(
            f"run {run_dir.name} has no journal ({path}): an older runner made it, or it "
            "stopped before it began",
            hint=f"its result document, if any: {run_dir / 'result.json'}",
        )
    read = read_journal(path)
    try:
        state = project(read.events)
    except BadEvent as exc:
        raise JournalError(f"{path}: {exc}") from None
    return Status(state, path, read.torn, run_alive(run_dir))


def print_status(status: Status, console: Console) -> None:
    s = status.state
    title = f"run {s.run_id}: {s.status.value}"
    if s.interrupted:
        title += f" (interrupted by {s.interrupted})"
    table = Table(title=title, title_justify="left")
    for col in ("wave", "task", "state", "exit", "time", "work", "reason"):
        table.add_column(col, overflow="fold")
    for t in sorted(s.tasks, key=lambda t: t.wave):
        table.add_row(
            str(t.wave),
            t.id,
            escape(t.state),
            "-" if t.exit_code is None else str(t.exit_code),
            "-" if t.duration_s is None else f"{t.duration_s:.1f}s",
            escape(t.kept or "-"),
            escape(t.reason or ""),
        )
    console.print(table)
    for w in s.waves:
        merged = f", merged at {w.merged_commit[:12]}" if w.merged_commit else ""
        console.print(f"wave {w.index}: verify {w.verify or 'not reached'}{merged}")
    if status.died:
        console.print(
            "[bold red]the run's process is gone[/] and its journal has no end: it died. "
            f"Finished work is under {names.run_refs(s.run_id)}; a task's workspace keeps "
            "work that is not (see `work`).",
            soft_wrap=True,
        )
    if s.error:
        console.print(f"[red]error:[/] {escape(s.error)}", soft_wrap=True)
    branch = s.integration_ref.removeprefix("refs/heads/")
    console.print(f"integration branch: {branch} at {s.integration_commit[:12]}", soft_wrap=True)
    torn = f" (stopped at {status.torn})" if status.torn else ""
    console.print(f"journal: {status.journal}, {s.events} events{torn}", soft_wrap=True)

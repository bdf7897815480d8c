"""One attempt of one task: clone -> sandbox -> collect -> fetch. Returns what came of it.

Every step is journaled (through `emit`) before the next one acts on it. The pipeline decides
nothing about the task's status: the coordinator judges the `Attempt` it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runner import events, git, names, stamps, workspace
from runner.errors import RunnerError
from runner.intake import Intake, bring_home
from runner.sandbox.base import Collected, Execution, SandboxBackend, SandboxSpec
from runner.stamps import Walk

log = structlog.get_logger()

Emit = Callable[..., None]
"""emit(event, **fields): journal the event and apply it to the run's result."""


@dataclass(frozen=True)
class Attempt:
    """What one attempt of a task came to, as the coordinator judges it."""

    ending: Execution | None
    """How its script ended; None when the runner could not run or collect it."""
    problem: str | None = None
    """Why its work was refused (intake), if it was."""
    failure: str | None = None
    """Why the runner could not finish it (not the task's doing), if it could not."""
    commit: str | None = None
    """Its work, home under its ref (None: nothing came home)."""
    files: tuple[str, ...] = ()
    kept: str | None = None
    """Where its work is now: its ref, or its workspace when the work did not come home."""


@dataclass
class Pipeline:
    repo: Path
    run_id: str
    backend: SandboxBackend
    emit: Emit
    keep_workspaces: bool = False
    denials: Callable[[SandboxSpec, Execution, float, float], dict[str, Any]] | None = None
    """Egress denials and notes of an allowlist sandbox (fields of `task_ended`)."""
    usage: Callable[[SandboxSpec, Path | None], dict[str, Any] | None] = lambda s, o: None
    """What the attempt used (tokens, cost) from its copied-out RUNNER_OUT, as event fields."""
    closing: Callable[[], bool] = lambda: False
    """True once the run abandons work in flight (a second Ctrl-C): start no new sandbox."""
    reaper: workspace.Reaper = field(default_factory=workspace.Reaper)
    """Removes workspaces whose work is home; the run's end drains it."""

    def _check(self) -> None:
        if self.closing():
            raise RunnerError("abandoned: the run is ending")

    def run(self, spec: SandboxSpec, attempt: int) -> Attempt:
        """Run the task's script in a fresh clone and bring its work home."""
        task_id = spec.task_id
        name = names.container_name(self.run_id, "task", task_id)
        where = {"workspace": str(spec.workspace), "container": name}
        self.emit("task_started", task=task_id, start=spec.start_commit, attempt=attempt, **where)
        log.info("task started", task=task_id, attempt=attempt, start=spec.start_commit[:12])
        try:
            cloning = time.time()
            workspace.make_clone(
                self.repo, spec.start_commit, spec.workspace, f"task/{task_id}", spec.policy.user
            )
            # Taken before the sandbox exists: whatever the task then does moves a stamp.
            before = stamps.walk(spec.workspace) if self.backend.workspaces_on_host else None
            try:
                self._check()
                since = time.time()
                ex = self.backend.execute(spec)
                ended = time.time()
                extra = self.denials(spec, ex, since, ended) if self.denials else {}
                began = ex.started_at or since
                phases = {
                    "clone": events.span(cloning, since),
                    "sandbox_start": events.span(since, began),
                    "task": events.span(began, ended),
                }
                self.emit(
                    "task_ended", **events.task_ended(task_id, ex, attempt), **extra, phases=phases
                )
                return self._collect(spec, ex, before)
            finally:
                self.backend.destroy(spec)
        except (RunnerError, OSError) as exc:
            return _failed(spec, exc)

    def collect_only(self, spec: SandboxSpec, ex: Execution) -> Attempt:
        """Collect a task whose script ended (journaled) but whose work was not fetched."""
        try:
            try:
                return self._collect(spec, ex)
            finally:
                self.backend.destroy(spec)
        except (RunnerError, OSError) as exc:
            return _failed(spec, exc)

    def _collect(self, spec: SandboxSpec, ex: Execution, before: Walk | None = None) -> Attempt:
        task_id = spec.task_id
        self._check()
        collecting = time.time()
        after = stamps.walk(spec.workspace) if before is not None else None
        if after is not None and after == before and stamps.is_empty(spec.state / "out"):
            # Not a name, inode or stamp moved and RUNNER_OUT is empty: nothing to collect.
            log.info("workspace unchanged: nothing to collect", task=task_id)
            collected = Collected(spec.start_commit, None, None)
        else:
            moved = stamps.moved(before, after) if before and after else None
            collected = self.backend.collect(spec, moved)
        collected_at = time.time()
        copy = collected.transfer or (collected_at, collected_at)
        phases = {
            "collect": events.span(collecting, collected_at - (copy[1] - copy[0])),
            "transfer": events.span(copy[0], copy[1]),
        }
        used = self.usage(spec, collected.out_dir)
        self.emit("collected", **events.collected(task_id, collected), usage=used, phases=phases)
        intake = Intake(None, problem=collected.problem)
        ref = names.task_ref(self.run_id, task_id)
        fetching = time.time()
        if collected.head is not None and collected.problem is None:
            intake = bring_home(
                self.repo,
                spec.start_commit,
                collected.head,
                collected.bundle,
                ref,
                spec.state,
                spec.policy.max_objects,
            )
        home = intake.commit is not None
        changed = home and intake.commit != spec.start_commit
        files = sorted({c.path for c in intake.changes})
        kept = ref if changed else (None if home else str(spec.workspace))
        self.emit(
            "fetched",
            task=task_id,
            ref=ref if changed else None,
            commit=intake.commit if changed else None,
            files_changed=files,
            problem=intake.problem,
            kept=kept,
            phases={"fetch": events.span(fetching, time.time())},
        )
        # Work that is home (under its ref) needs no clone any more; work that is not keeps
        # its workspace, named in the reason. Logs and the copied-out RUNNER_OUT stay.
        if home:
            for scratch in ("control", "out", "bundle", "collected"):
                workspace.remove(spec.state / scratch)
            if not self.keep_workspaces:
                self.reaper.remove(spec.workspace)
        return Attempt(
            ending=ex,
            problem=intake.problem,
            commit=intake.commit if changed else None,
            files=tuple(files),
            kept=kept,
        )


def _failed(spec: SandboxSpec, exc: Exception) -> Attempt:
    # The workspace stays for inspection: nothing of the task's is thrown away.
    why = f"runner could not finish this task: {exc}; workspace kept at {spec.workspace}"
    return Attempt(ending=None, failure=why, kept=str(spec.workspace))


def set_aside(state: Path, attempt: int) -> Path | None:
    """Keep an earlier attempt's workspace (its work did not come home) out of the next's way."""
    work = state / "work"
    if not work.exists():
        return None
    kept = state / f"work.attempt-{attempt}"
    work.rename(kept)
    return kept


def keep_attempt_ref(repo: Path, run_id: str, task_id: str, attempt: int) -> str | None:
    """Move an earlier attempt's work from the task's ref to the attempt's own ref."""
    ref = names.task_ref(run_id, task_id)
    commit = git.resolve(repo, ref)
    if commit is None:
        return None
    kept = names.attempt_ref(run_id, task_id, attempt)
    git.update_ref(repo, kept, commit)
    git.delete_ref(repo, ref, commit)
    return kept

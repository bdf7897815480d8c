"""One run: waves -> sandboxes -> bundles -> integration -> verify -> result.

The coordinator orders the work; `pipeline` runs a task's attempt, `wave` integrates a wave,
`core.judge` decides a task's status. It changes the run's result only through `_emit`: each
event is journaled (fsync'd) and then applied by `core.projection`, so result.json is the
journal's projection and `resume` continues a run from the journal a dead process left.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from runner import events, git, names, reapply, reuse, workspace
from runner.attempts import Attempts
from runner.core.inputs import (
    Candidate,
)
from runner.core.judge import Limits
from runner.core.projection import Replay
from runner.core.results import RunResult, RunStatus, TaskStatus
from runner.core.runstate import Phase
from runner.core.usage import Prices
from runner.errors import RunnerError, Terminated
from runner.gc import write_owner
from runner.inputs import pin_inputs, plan_hash
from runner.journal import Journal, JournalError
from runner.pipeline import Pipeline
from runner.preflight import Prepared
from runner.sandbox.base import SandboxBackend
from runner.sandboxes import Sandboxes
from runner.wave import integrate_wave

log = structlog.get_logger()


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def state_root(repo: Path, override: Path | None) -> Path:
    """Run state lives in the repo's git dir: never in the user's working tree."""
    return override if override else git.common_dir(repo) / "runner"


def repo_key(repo: Path) -> str:
    return hashlib.sha256(str(git.common_dir(repo)).encode()).hexdigest()[:12]


@dataclass
class Coordinator:
    prepared: Prepared
    backend: SandboxBackend
    state_dir: Path
    run_id: str = field(default_factory=new_run_id)
    keep_workspaces: bool = False
    observer: Callable[[RunResult, set[str]], None] | None = None
    """Called (from worker threads too) whenever a task starts or changes status."""
    resume: Replay | None = None
    """The journal of the run to continue (`runner resume`); None: a new run."""
    prices: Prices = field(default_factory=Prices)
    """Prices per model (the user's prices file) to estimate what an agent did not report."""
    retry: list[str] = field(default_factory=list)
    """Tasks to run again in the resumed run (`runner retry`), with what depends on them."""
    backend_name: str = "docker"
    """The backend's name (Settings.backend), pinned in the result's inputs."""
    replays: str | None = None
    """The run this one replays (`runner rerun`)."""
    reuse: bool | None = None
    """Reuse earlier runs' merged work by input key (`--reuse`); None: the plan's `reuse`."""

    def __post_init__(self) -> None:
        p = self.prepared
        self.repo = p.repo
        self.repo_key = repo_key(self.repo)
        self.plan = p.doc.plan
        if self.resume is not None:
            self.run_id = self.resume.result.run_id
        self.run_dir = names.run_dir(self.state_dir, self.run_id)
        self.integration_ref = names.integration_ref(self.run_id)
        self.sandboxes = Sandboxes(
            p, self.backend, self.run_id, self.run_dir, self.repo_key, self._emit, self.prices
        )
        self.running: set[str] = set()
        self.interrupted: str | None = None
        """The signal that interrupted the run (SIGINT, SIGTERM)."""
        self.journal: Journal | None = None
        self._lock = threading.RLock()
        self._planned_event: dict[str, Any] | None = None
        if self.resume is None:
            self._planned_event = self._planned()  # once: it pins the images' ids
            self.replay = Replay.start(self._planned_event)
        else:
            self.replay = self.resume
        self.reusing = self.replay.reuse
        self._candidates: list[Candidate] | None = None
        self.closing = False
        """Set by a second Ctrl-C: no new sandbox is started, work in flight is abandoned."""
        self._pool: ThreadPoolExecutor | None = None
        self.pipeline = Pipeline(
            self.repo,
            self.run_id,
            self.backend,
            self._emit,
            self.keep_workspaces,
            self.sandboxes.denials,
            usage=self.sandboxes.usage,
            closing=lambda: self.closing,
        )
        self.attempts = Attempts(
            p,
            self.run_id,
            self.run_dir,
            self.replay,
            self.pipeline,
            self.sandboxes,
            self._emit,
            interrupted=lambda: self.interrupted,
            closing=lambda: self.closing,
        )

    @property
    def result(self) -> RunResult:
        return self.replay.result

    def _planned(self) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        pins = pin_inputs(self.prepared, self.backend, self.backend_name)
        return {
            **events.planned(self.prepared, self.run_id, str(self.run_dir), self.integration_ref),
            "plan_hash": plan_hash(self.prepared.doc.text),
            "plan_copy": str(names.plan_copy(self.run_dir)),
            "inputs": pins.model_dump(mode="json"),
            "replays": self.replays,
            "reuse": self.plan.reuse if self.reuse is None else self.reuse,
            "started_at": now,
            "time": now,
        }

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.monotonic()
        before = git.snapshot(self.repo)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_owner(self.run_dir)
        self.journal = Journal.open(names.journal_path(self.run_dir))
        status, error = RunStatus.ERROR, None
        if self.resume is None:
            names.plan_copy(self.run_dir).write_text(self.prepared.doc.text)
            assert self._planned_event is not None
            self._emit("planned", **self._planned_event)
            git.update_ref(self.repo, self.integration_ref, self.prepared.base_commit)
        else:
            self._emit("resumed", pid=os.getpid(), retry=self.retry)
            for task_id in self.retry:
                self.attempts.reopen(task_id)
            # Continue from the last journaled merge, wherever the ref was left.
            assert self.result.integration_commit is not None
            git.update_ref(self.repo, self.integration_ref, self.result.integration_commit)
        log.info("run started", run=self.run_id, waves=self.prepared.dispatch.waves)
        for said in self.result.warnings:
            log.warning(said)
        if git.is_dirty(self.repo):
            log.warning(
                "your checkout has uncommitted changes: tasks start from the plan's base "
                "commit and do not see them (they stay untouched)",
                base=self.prepared.base_commit[:12],
            )
        try:
            self._prepare()
            head, stopped = self.prepared.base_commit, None
            for index, wave in enumerate(self.prepared.dispatch.waves, start=1):
                head, stopped = self._wave(index, wave, head, stopped)
            ok = all(t.status.ok for t in self.result.tasks)
            status = RunStatus.SUCCESS if ok else RunStatus.PARTIAL
        except KeyboardInterrupt as exc:
            if self.interrupted is None:
                self.interrupted = _signal_name(exc)
                self._note("interrupted", signal=self.interrupted)
            status = RunStatus.INTERRUPTED
            error = f"interrupted by {self.interrupted}; finished work is kept "
            error += f"under {names.run_refs(self.run_id)}"
            raise
        except RunnerError as exc:
            error = str(exc)
        except Exception as exc:
            # Never leave a result that claims more than happened.
            error = f"internal error: {exc!r}"
            raise
        finally:
            try:
                self._finish(before, started, status, error)
            finally:
                if self.journal is not None:
                    self.journal.close()
        return self.result

    def _prepare(self) -> None:
        p = self.prepared
        if self.plan.shared:
            self.sandboxes.shared = workspace.export_shared(
                self.repo, p.base_commit, self.plan.shared, self.run_dir / "shared"
            )
        if any(pol.network == "open" for pol in p.policies.values()):
            self.sandboxes.network = self.backend.create_network(self.run_id)
        # Start every allowlist's proxy before any task: a proxy that cannot start fails the
        # run here, not task by task.
        for pol in p.policies.values():
            if pol.network == "allowlist":
                self.backend.gateway(self.run_id, pol.allow)

    def _finish(
        self, before: dict[str, str], started: float, status: RunStatus, error: str | None
    ) -> None:
        removed = self.backend.cleanup(self.run_id)
        if self._pool is not None:
            # Abandoned workers end fast (their containers are gone; they start none): wait,
            # then remove what one made in between.
            with contextlib.suppress(KeyboardInterrupt):
                self._pool.shutdown(wait=True, cancel_futures=True)
                removed += self.backend.cleanup(self.run_id)
        log.debug("cleanup", run=self.run_id, removed=removed)
        self.pipeline.reaper.drain()
        workspace.remove(
            self.sandboxes.stores
        )  # no sandbox mounts them any more: a copy of history each
        if status is not RunStatus.SUCCESS:
            for tres in self.result.tasks:
                if tres.status is TaskStatus.SKIPPED and tres.reason is None:
                    reason = self._left_how(tres.id, status)
                    fields = {"status": TaskStatus.SKIPPED, "reason": reason, "run_ended": True}
                    self._note("judged", task=tres.id, **fields)
        after = git.snapshot(self.repo)
        changed = [k for k in before if before[k] != after.get(k)]
        if changed:
            log.error("the user's checkout changed during the run", changed=changed)
        self._note(
            "run_ended",
            status=status,
            error=error,
            integration_commit=git.resolve(self.repo, self.integration_ref),
            unchanged=not changed,
            changed=changed,
            before=before,
            after=after,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            duration_s=round(time.monotonic() - started, 3),
        )

    def _left_how(self, task_id: str, status: RunStatus) -> str:
        """What the run's end left of a task it did not judge, and where its work is."""
        ended, phase = status.value, self.replay.phase.get(task_id)
        if task_id in self.replay.ready:
            ref = self.result.task(task_id).ref
            return f"ready, not merged: the run ended {ended}; its work is kept at {ref}"
        if phase in (Phase.RUNNING, Phase.COLLECTING):
            # A second Ctrl-C (or an error) stopped it before its work came home.
            work = names.sandbox_dir(self.run_dir, "task", task_id) / "work"
            return (
                f"abandoned while {phase.value}: the run ended {ended}; its work stays in its "
                f"workspace {work} (`runner resume` collects it)"
            )
        return f"not reached: the run ended {ended}"

    # -- one wave ------------------------------------------------------------------------------
    def _wave(
        self, index: int, wave: list[str], head: str, stopped: str | None
    ) -> tuple[str, str | None]:
        r = self.replay
        # A wave starts from the integration head: on a retry, waves after it merged already.
        head = self.result.integration_commit or head
        reopened = any(r.phase[t] is not Phase.DONE for t in wave)
        if index in r.ended_waves and not reopened:  # resumed: this wave is done
            return head, stopped if self.retry else (r.ended_waves[index] or stopped)
        if index in r.merged_waves and index not in r.ended_waves:  # merged, not yet ended
            return self._merged(
                index, wave, head, r.merged_waves[index][0], r.merged_waves[index][1]
            )
        self._emit("wave_started", wave=index, tasks=wave, start=head)
        runnable = []
        for task_id in wave:
            phase = r.phase[task_id]
            if phase in (Phase.DONE, Phase.READY):
                continue  # resumed: judged already; its work is not run again
            reason = f"run stopped: {stopped}" if stopped else self._blocked(task_id)
            if reason:
                self.attempts.set_status(task_id, TaskStatus.SKIPPED, reason)
                continue
            if phase in (Phase.RUNNING, Phase.COLLECTING):
                self.attempts.leftover[task_id] = phase
            self._emit(
                "task_queued", task=task_id, wave=index, start=head, **self._key(task_id, head)
            )
            fresh = phase in (Phase.PENDING, Phase.QUEUED) and not r.attempt.get(task_id)
            if not (self.reusing and fresh and self._reused(task_id, head)):
                runnable.append(task_id)
        self._run_tasks(runnable, head)

        ready = [(t, r.ready[t]) for t in wave if t in r.ready]
        verify = (
            (lambda c, alone: self.sandboxes.verify(index, c, alone)) if self.plan.verify else None
        )
        out = integrate_wave(
            self.repo, self.run_id, index, head, ready, self.plan.on_conflict, verify
        )
        merge_phase = {t: {"merge": events.span(*when)} for t, when in out.timings.items()}
        for task_id, (status, reason) in out.judged.items():
            conflicts = [c.model_dump() for c in out.conflicts.get(task_id, [])]
            timed = {"phases": merge_phase[task_id]} if task_id in merge_phase else {}
            self.attempts.set_status(task_id, status, reason, conflicts=conflicts, **timed)
        stopped = stopped or out.stopped
        if out.merged:
            phases = {t: merge_phase[t] for t in out.merged if t in merge_phase}
            self._emit(
                "merged", wave=index, tasks=out.merged, head=out.head, previous=head, phases=phases
            )
            return self._merged(index, wave, head, out.head, out.merged, out, stopped)
        self._emit("wave_ended", **_wave_end(index, head, out.verify, out.isolated, stopped))
        return head, stopped

    def _merged(
        self,
        index: int,
        wave: list[str],
        head: str,
        new_head: str,
        merged: list[str],
        out: Any = None,
        stopped: str | None = None,
    ) -> tuple[str, str | None]:
        """Move the integration ref to a journaled merge and end the wave."""
        git.update_ref(self.repo, self.integration_ref, new_head)
        for task_id in merged:
            self.attempts.set_status(task_id, TaskStatus.MERGED, None)
        if out is None:  # resumed after the merge was journaled: the wave's verify was green
            wres = next(w for w in self.result.waves if w.index == index)
            verify, isolated = wres.verify, wres.isolated
            red = any(self.result.task(t).status is TaskStatus.VERIFY_FAILED for t in wave)
            if red and self.plan.on_conflict == "stop":
                stopped = stopped or f"verify red after wave {index}"
        else:
            verify, isolated = out.verify, out.isolated
        self._emit("wave_ended", **_wave_end(index, new_head, verify, isolated, stopped))
        return new_head, stopped

    def _run_tasks(self, task_ids: list[str], start: str) -> None:
        pool = ThreadPoolExecutor(max_workers=self.plan.concurrency)
        try:
            list(pool.map(lambda t: self._task(t, start), task_ids))
        except KeyboardInterrupt as exc:
            # Kill the sandboxes (keeping them) so the workers' waits return now, not at their
            # timeout, and each worker still collects its task's partial work.
            self.interrupted = _signal_name(exc)
            self._note("interrupted", signal=self.interrupted)
            self.backend.kill(self.run_id)
            try:
                pool.shutdown(wait=True, cancel_futures=True)
            except KeyboardInterrupt:
                # A second Ctrl-C: abandon collection. Workers start no new sandbox from now
                # on; _finish removes the run's containers, waits for the workers, and says
                # where each abandoned task's work is.
                self.closing, self._pool = True, pool
                raise
            raise
        pool.shutdown()

    # -- incremental runs ----------------------------------------------------------------------
    def _key(self, task_id: str, start: str) -> dict[str, Any]:
        """`task_queued` fields: the task's input key and its parts (none without pins)."""
        return reuse.key_fields(self.repo, self.result.inputs, task_id, start)

    def _reused(self, task_id: str, start: str) -> bool:
        """Re-apply an earlier run's merged work of the same key instead of running the task;
        False (run it) when there is none or it does not apply cleanly on `start`."""
        key = self.result.task(task_id).key
        if key is None:
            return False
        if self._candidates is None:
            runs = names.runs_dir(self.state_dir)
            self._candidates = reapply.candidates(runs, self.run_id)
        got = reuse.reapply_earlier(
            self.repo, self.run_id, task_id, key, start, self._candidates, self._emit
        )
        if got is None:
            return False
        # Judged as a task that exited 0 with these changes: the scope check still applies.
        policy = self.prepared.policies[task_id]
        timeout = self.plan.task(task_id).timeout or self.plan.timeout
        self.attempts.judge_with(task_id, got, Limits(timeout, policy.memory, policy.disk))
        return True

    def _blocked(self, task_id: str) -> str | None:
        # Declared dependencies only: an order added by `serialize` is not a dependency.
        for dep in self.plan.task(task_id).depends_on:
            status = self.result.task(dep).status
            if status is not TaskStatus.MERGED and status is not TaskStatus.NO_CHANGES:
                return f"dependency {dep} is {status.value}"
        return None

    def _emit(self, event: str, **fields: Any) -> None:
        with self._lock:
            if self.journal is not None:
                record = self.journal.append(event, **fields)
            else:
                record = {"event": event, "time": _now(), **fields}
            if event != "planned":
                self.replay.apply(_plain(record))
        self._notify()

    def _note(self, event: str, **fields: Any) -> None:
        """Emit, but never let a broken journal stop cleanup (a kill, the run's end): the
        result still says it, and the journal's failure is the run's error."""
        try:
            self._emit(event, **fields)
        except JournalError:
            with self._lock:
                self.replay.apply(_plain({"event": event, "time": _now(), **fields}))

    def _notify(self) -> None:
        if self.observer is not None:
            self.observer(self.result, set(self.running))

    # -- one task ------------------------------------------------------------------------------
    def _task(self, task_id: str, start: str) -> None:
        self.running.add(task_id)
        self._notify()
        try:
            self.attempts.run(task_id, start)
        finally:
            self.running.discard(task_id)
            self._notify()


def _wave_end(
    index: int, head: str, verify: str | None, isolated: list[str], stopped: str | None
) -> dict[str, Any]:
    return {
        "wave": index,
        "merged_commit": head,
        "verify": verify,
        "isolated": isolated,
        "stopped": stopped,
    }


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """An event as the journal's reader sees it (enums as their values)."""
    return {k: (v.value if isinstance(v, RunStatus | TaskStatus) else v) for k, v in record.items()}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _signal_name(exc: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"

"""One run: waves -> sandboxes -> bundles -> integration -> verify -> result."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from runner import events, git, names, workspace
from runner.core.judge import Ending, Limits, judge, printable
from runner.core.results import (
    IsolationCheck,
    RunResult,
    RunStatus,
    TaskResult,
    TaskStatus,
    WaveResult,
)
from runner.core.runstate import READY
from runner.core.scope import check_changes
from runner.errors import GitError, RunnerError, Terminated
from runner.gc import write_owner
from runner.intake import Intake, bring_home
from runner.integrate import merge_wave
from runner.journal import Journal, JournalError
from runner.preflight import Prepared
from runner.sandbox import labels
from runner.sandbox.base import Execution, Role, SandboxBackend, SandboxSpec

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

    def __post_init__(self) -> None:
        p = self.prepared
        self.repo = p.repo
        self.objects = git.common_dir(self.repo) / "objects"
        self.repo_key = repo_key(self.repo)
        self.plan = p.doc.plan
        self.run_dir = names.run_dir(self.state_dir, self.run_id)
        self.stores = self.run_dir / "objects"  # `objects: reachable` stores, per commit
        self.integration_ref = names.integration_ref(self.run_id)
        self.shared: Path | None = None
        self.network: str | None = None
        self.commits: dict[str, str] = {}  # task -> commit ready to merge
        self.running: set[str] = set()
        self.interrupted: str | None = None
        """The signal that interrupted the run (SIGINT, SIGTERM)."""
        self.journal: Journal | None = None
        wave_of = {t: i for i, w in enumerate(p.dispatch.waves, start=1) for t in w}
        self.result = RunResult(
            run_id=self.run_id,
            repo=str(self.repo),
            plan=p.doc.source,
            base=self.plan.base,
            base_commit=p.base_commit,
            integration_ref=self.integration_ref,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            state_dir=str(self.run_dir),
            tasks=[TaskResult(id=t.id, wave=wave_of[t.id]) for t in self.plan.tasks],
        )

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.monotonic()
        before = git.snapshot(self.repo)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_owner(self.run_dir)
        self.journal = Journal.open(names.journal_path(self.run_dir))
        self._emit("planned", **events.planned(self.prepared, self.result))
        git.update_ref(self.repo, self.integration_ref, self.prepared.base_commit)
        log.info("run started", run=self.run_id, waves=self.prepared.dispatch.waves)
        self.result.warnings = self.prepared.warnings()
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
            self.result.status = (
                RunStatus.SUCCESS
                if all(t.status.ok for t in self.result.tasks)
                else RunStatus.PARTIAL
            )
        except KeyboardInterrupt as exc:
            if self.interrupted is None:
                self.interrupted = _signal_name(exc)
                self._note("interrupted", signal=self.interrupted)
            self.result.status = RunStatus.INTERRUPTED
            self.result.error = f"interrupted by {self.interrupted}; finished work is kept "
            self.result.error += f"under {names.run_refs(self.run_id)}"
            raise
        except RunnerError as exc:
            self.result.status, self.result.error = RunStatus.ERROR, str(exc)
        except Exception as exc:
            # Never leave a result that claims more than happened.
            self.result.status, self.result.error = RunStatus.ERROR, f"internal error: {exc!r}"
            raise
        finally:
            try:
                self._finish(before, started)
            finally:
                if self.journal is not None:
                    self.journal.close()
        return self.result

    def _prepare(self) -> None:
        p = self.prepared
        if self.plan.shared:
            self.shared = workspace.export_shared(
                self.repo, p.base_commit, self.plan.shared, self.run_dir / "shared"
            )
        if any(pol.network == "open" for pol in p.policies.values()):
            self.network = self.backend.create_network(self.run_id)
        # Start every allowlist's proxy before any task: a proxy that cannot start fails the
        # run here, not task by task.
        for pol in p.policies.values():
            if pol.network == "allowlist":
                self.backend.gateway(self.run_id, pol.allow)

    def _finish(self, before: dict[str, str], started: float) -> None:
        removed = self.backend.cleanup(self.run_id)
        log.debug("cleanup", run=self.run_id, removed=removed)
        workspace.remove(self.stores)  # no sandbox mounts them any more: a copy of history each
        self.result.integration_commit = git.resolve(self.repo, self.integration_ref)
        if self.result.status is not RunStatus.SUCCESS:
            ended = self.result.status.value
            for tres in self.result.tasks:
                if tres.status is TaskStatus.SKIPPED and tres.reason is None:
                    tres.reason = (
                        f"ready, not merged: the run ended {ended}; its work is kept at {tres.ref}"
                        if tres.id in self.commits
                        else f"not reached: the run ended {ended}"
                    )
                    self._note("judged", task=tres.id, status=tres.status, reason=tres.reason)
        after = git.snapshot(self.repo)
        changed = [k for k in before if before[k] != after.get(k)]
        self.result.isolation = IsolationCheck(
            unchanged=not changed, before=before, after=after, changed=changed
        )
        if changed:
            log.error("the user's checkout changed during the run", changed=changed)
        self.result.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.result.duration_s = round(time.monotonic() - started, 3)
        self._note("run_ended", **events.run_ended(self.result, changed))

    # -- one wave ------------------------------------------------------------------------------
    def _wave(
        self, index: int, wave: list[str], head: str, stopped: str | None
    ) -> tuple[str, str | None]:
        wres = WaveResult(index=index, tasks=wave, start_commit=head)
        self.result.waves.append(wres)
        self._emit("wave_started", wave=index, tasks=wave, start=head)
        runnable = []
        for task_id in wave:
            reason = f"run stopped: {stopped}" if stopped else self._blocked(task_id)
            if reason:
                self._set(task_id, TaskStatus.SKIPPED, reason)
            else:
                self._emit("task_queued", task=task_id, wave=index, start=head)
                runnable.append(task_id)
        self._run_tasks(runnable, head)

        ready = [(t, self.commits[t]) for t in wave if t in self.commits]
        stop = self.plan.on_conflict == "stop"
        merge = merge_wave(self.repo, head, ready, self.run_id, stop, start=head)
        for task_id, conflicts in merge.conflicts.items():
            files = sorted({f for c in conflicts for f in c.files})
            self.result.task(task_id).conflicts = conflicts
            self._set(task_id, TaskStatus.CONFLICT, "merge conflict in " + ", ".join(files))
        if merge.stopped_at:
            stopped = f"conflict in task {merge.stopped_at}"
            for task_id, _ in ready[
                ready.index((merge.stopped_at, self.commits[merge.stopped_at])) + 1 :
            ]:
                self._set(task_id, TaskStatus.SKIPPED, f"not merged: {stopped} (work kept)")
        if not merge.merged:
            wres.merged_commit = head
            self._emit("wave_ended", **events.wave_ended(wres))
            return head, stopped

        new_head, merged = merge.head, merge.merged
        red: dict[str, str] = {}  # task -> ref keeping the red merge
        if not self._verify(index, new_head, wres):
            kept = names.verify_failed_ref(self.run_id, wave=index)
            git.update_ref(self.repo, kept, new_head)
            red = dict.fromkeys(merged, kept)
            new_head, merged = head, []
            if self.plan.on_conflict == "skip" and len(red) > 1:
                # Skip only the tasks that turn verify red, not their whole wave.
                new_head, merged, red = self._isolate(index, head, list(red), wres)
        for task_id, kept in red.items():
            reason = f"verify red with its work merged (wave {index}); the merge is kept at {kept}"
            self._set(task_id, TaskStatus.VERIFY_FAILED, reason)
        if merged:
            self._emit("merged", wave=index, tasks=merged, head=new_head, previous=head)
            git.update_ref(self.repo, self.integration_ref, new_head, head)
            for task_id in merged:
                self._set(task_id, TaskStatus.MERGED, None)
        wres.merged_commit = new_head
        self._emit("wave_ended", **events.wave_ended(wres))
        if red and self.plan.on_conflict == "stop":
            stopped = f"verify red after wave {index}"
        return new_head, stopped

    def _isolate(
        self, index: int, head: str, task_ids: list[str], wres: WaveResult
    ) -> tuple[str, list[str], dict[str, str]]:
        """After a red verify: merge and verify the tasks one at a time, keeping the green ones."""
        log.info("verify red: checking the wave's tasks one by one", wave=index, tasks=task_ids)
        merged: list[str] = []
        red: dict[str, str] = {}
        start = head  # every task of the wave started here
        for task_id in task_ids:
            ready = [(task_id, self.commits[task_id])]
            one = merge_wave(self.repo, head, ready, self.run_id, True, start=start)
            if not one.merged:  # conflicts once a red task before it is left out
                self.result.task(task_id).conflicts = one.conflicts[task_id]
                self._set(task_id, TaskStatus.CONFLICT, "merge conflict after isolating verify")
            elif self._verify(index, one.head, wres, alone=task_id):
                head = one.head
                merged.append(task_id)
            else:
                red[task_id] = names.verify_failed_ref(self.run_id, task=task_id)
                git.update_ref(self.repo, red[task_id], one.head)
        wres.isolated = task_ids
        wres.verify = "green" if merged else "red"
        return head, merged, red

    def _run_tasks(self, task_ids: list[str], start: str) -> None:
        pool = ThreadPoolExecutor(max_workers=self.plan.concurrency)
        try:
            list(pool.map(lambda t: self._task(t, start), task_ids))
        except KeyboardInterrupt as exc:
            # Kill the sandboxes (keeping them) so the workers' waits return now, not at their
            # timeout, and each worker still collects its task's partial work. A second Ctrl-C
            # lands here in shutdown and abandons that; run() then removes everything.
            self.interrupted = _signal_name(exc)
            self._note("interrupted", signal=self.interrupted)
            self.backend.kill(self.run_id)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()

    def _blocked(self, task_id: str) -> str | None:
        # Declared dependencies only: an order added by `serialize` is not a dependency.
        for dep in self.plan.task(task_id).depends_on:
            status = self.result.task(dep).status
            if status is not TaskStatus.MERGED and status is not TaskStatus.NO_CHANGES:
                return f"dependency {dep} is {status.value}"
        return None

    def _set(self, task_id: str, status: TaskStatus, reason: str | None) -> None:
        tres = self.result.task(task_id)
        shown = printable(reason) if reason else None
        self._emit("judged", task=task_id, status=status, reason=shown)
        tres.status, tres.reason = status, shown
        log.info("task", task=task_id, status=status.value, reason=reason)
        self._notify()

    # -- the journal: every state change is written (fsync'd) before the runner acts on it ------
    def _emit(self, event: str, **fields: Any) -> None:
        if self.journal is not None:
            self.journal.append(event, **fields)

    def _note(self, event: str, **fields: Any) -> None:
        """Emit, but never let a broken journal stop cleanup (a kill, the run's end)."""
        with contextlib.suppress(JournalError):
            self._emit(event, **fields)

    def _notify(self) -> None:
        if self.observer is not None:
            self.observer(self.result, set(self.running))

    # -- one task ------------------------------------------------------------------------------
    def _spec(
        self, task_id: str, role: Role, start: str, script: str, timeout: float
    ) -> SandboxSpec:
        policy = self.prepared.policies[task_id if role == "task" else ""]
        image = (self.plan.task(task_id).image if role == "task" else None) or self.plan.image
        state = names.sandbox_dir(self.run_dir, role, task_id)
        network, proxy = self.network, None
        if policy.network == "allowlist":
            gateway = self.backend.gateway(self.run_id, policy.allow)
            network, proxy = gateway.network, gateway.proxy
        return SandboxSpec(
            run_id=self.run_id,
            task_id=task_id,
            role=role,
            image=image,
            policy=policy,
            script=script,
            timeout=timeout,
            workspace=state / "work",
            # The task, its collector and verify see `all` objects or only `start`'s history.
            objects=workspace.objects_for(self.repo, start, policy.objects, self.stores),
            state=state,
            start_commit=start,
            shared=self.shared,
            # Verify of every wave shares one cache: a rerun of any wave is warm.
            cache_volume=names.cache_volume(self.repo_key, role, task_id),
            cache_labels=labels.cache_labels(self.repo_key, role, task_id),
            env=self.prepared.env.get(task_id, {}) if role == "task" else {},
            network=network,
            proxy=proxy,
        )

    def _task(self, task_id: str, start: str) -> None:
        task = self.plan.task(task_id)
        tres = self.result.task(task_id)
        tres.start_commit = start
        spec = self._spec(task_id, "task", start, task.run, task.timeout or self.plan.timeout)
        log.info("task started", task=task_id, start=start[:12])
        name = names.container_name(self.run_id, "task", task_id)
        where = {"workspace": str(spec.workspace), "container": name}
        self._emit("task_started", task=task_id, start=start, **where)
        self.running.add(task_id)
        self._notify()
        try:
            self._run_one(task_id, start, spec)
        finally:
            self.running.discard(task_id)
            self._notify()

    def _run_one(self, task_id: str, start: str, spec: SandboxSpec) -> None:
        tres = self.result.task(task_id)
        try:
            workspace.make_clone(
                self.repo, start, spec.workspace, f"task/{task_id}", spec.policy.user
            )
            try:
                since = time.time()
                ex = self.backend.execute(spec)
                self._denials(task_id, spec, ex, since, time.time())
                tres.exit_code, tres.duration_s = ex.exit_code, ex.duration_s
                tres.log_path = str(ex.log_path)
                tres.cpu_s, tres.peak_memory_bytes = ex.cpu_s, ex.peak_memory_bytes
                tres.metrics_source = ex.metrics_source
                self._emit("task_ended", **events.task_ended(task_id, ex))
                collected = self.backend.collect(spec)
                self._emit("collected", **events.collected(task_id, collected))
            finally:
                self.backend.destroy(spec)
            tres.out_path = str(collected.out_dir) if collected.out_dir else None
            tres.notes = [*tres.notes, *collected.notes]  # egress notes come first
            intake = Intake(None, problem=collected.problem)
            if collected.head is not None and collected.problem is None:
                intake = bring_home(
                    self.repo,
                    start,
                    collected.head,
                    collected.bundle,
                    names.task_ref(self.run_id, task_id),
                    spec.state,
                    spec.policy.max_objects,
                )
        except (RunnerError, OSError) as exc:
            # The workspace stays for inspection: nothing of the task's is thrown away.
            reason = f"runner could not finish this task: {exc}; workspace kept at {spec.workspace}"
            self._set(task_id, TaskStatus.FAILED, reason)
            return
        home = intake.commit is not None
        if home and intake.commit != start:
            tres.ref, tres.commit = names.task_ref(self.run_id, task_id), intake.commit
        tres.files_changed = sorted({c.path for c in intake.changes})
        kept = tres.ref or (None if home else str(spec.workspace))
        self._emit("fetched", **events.fetched(self.result, task_id, intake.problem, kept))
        # Work that is home (under its ref) needs no clone any more; work that is not keeps
        # its workspace, named in the reason. Logs and the copied-out RUNNER_OUT stay.
        for scratch in ("control", "out", "bundle", "collected"):
            if home:
                workspace.remove(spec.state / scratch)
        if home and not self.keep_workspaces:
            workspace.remove(spec.workspace)
        self._judge(
            task_id,
            ex,
            spec,
            intake.problem,
            kept=kept,
        )

    def _denials(
        self, task_id: str, spec: SandboxSpec, ex: Execution, since: float, until: float
    ) -> None:
        """What the task's egress proxy refused it (allowlist sandboxes)."""
        if spec.proxy is None:
            return
        tres = self.result.task(task_id)
        if ex.address is None:  # it ended before its address could be read (milliseconds)
            tres.notes.append("egress denials unknown: it ended before its address was read")
            return
        try:
            gateway = self.backend.gateway(self.run_id, spec.policy.allow)
            tres.denials = self.backend.denials(gateway, ex.address, since, until)
        except RunnerError as exc:  # the work still comes home; the gap is said
            tres.notes.append(f"egress denials unknown: {exc}")
        if tres.denials:
            log.warning("egress denied", task=task_id, count=len(tres.denials))

    def _judge(
        self, task_id: str, ex: Execution, spec: SandboxSpec, problem: str | None, kept: str | None
    ) -> None:
        tres = self.result.task(task_id)
        violations = check_changes(
            self.prepared.scopes[task_id], tres.files_changed, self.plan.shared
        )
        tres.violations = violations.paths() if violations else []
        ending = Ending(
            exit_code=ex.exit_code,
            timed_out=ex.timed_out,
            oom_killed=ex.oom_killed,
            disk_exceeded=ex.disk_exceeded,
            lost=ex.lost,
            interrupted=self.interrupted,
            problem=problem,
            files_changed=len(tres.files_changed),
            violations=tuple(tres.violations),
            kept=kept,
        )
        limits = Limits(spec.timeout, spec.policy.memory, spec.policy.disk)
        status, reason = judge(ending, limits)
        if status is not None:
            self._set(task_id, status, reason)
        else:
            assert tres.commit is not None
            self._emit("judged", task=task_id, status=READY, reason=None, commit=tres.commit)
            self.commits[task_id] = tres.commit
            log.info("task ready", task=task_id, files=len(tres.files_changed))

    # -- verify --------------------------------------------------------------------------------
    def _verify(self, index: int, commit: str, wres: WaveResult, alone: str = "") -> bool:
        if self.plan.verify is None:
            wres.verify = "skipped"
            return True
        name = f"wave-{index}" + (f"-{alone}" if alone else "")
        spec = self._spec(name, "verify", commit, self.plan.verify.run, self.plan.verify.timeout)
        policy = self.prepared.policies[""]
        self._emit("verify_started", wave=index, task=alone or None, commit=commit)
        try:
            workspace.make_clone(self.repo, commit, spec.workspace, "verify", policy.user)
        except (GitError, OSError) as exc:
            # The merged tree cannot even be checked out here (a task's paths): red, not a crash.
            why = f"runner: cannot check out the merged tree for verify: {exc}\n"
            spec.state.mkdir(parents=True, exist_ok=True)
            (spec.state / "verify.log").write_text(why)
            workspace.remove(spec.workspace)
            red = {"result": "red", "log": str(spec.state / "verify.log")}
            self._emit("verify_ended", wave=index, task=alone or None, **red)
            wres.verify, wres.verify_log = "red", str(spec.state / "verify.log")
            log.warning("verify", wave=index, task=alone or None, result="red", why=why.strip())
            return False
        try:
            ex = self.backend.execute(spec)
        finally:
            self.backend.destroy(spec)
            for scratch in ("work", "control", "out", "bundle"):
                workspace.remove(spec.state / scratch)
        green = ex.exit_code == 0 and not ex.timed_out and not ex.oom_killed
        ended = {"result": "green" if green else "red", "log": str(ex.log_path)}
        self._emit("verify_ended", wave=index, task=alone or None, **ended)
        wres.verify, wres.verify_log = ("green" if green else "red"), str(ex.log_path)
        log.info("verify", wave=index, task=alone or None, result=wres.verify)
        return green


def _signal_name(exc: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"

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

from runner import events, git, names, reapply, workspace
from runner.core.inputs import (
    Candidate,
    KeyParts,
    RunInputs,
    TaskInputs,
    definition_hash,
    find_reusable,
    input_key,
    policy_hash,
)
from runner.core.judge import Ending, Limits, judge, printable, retry_due
from runner.core.projection import Replay
from runner.core.results import RunResult, RunStatus, TaskStatus
from runner.core.runstate import READY, Phase
from runner.core.scope import check_changes
from runner.core.usage import Prices, usage_for
from runner.errors import GitError, RunnerError, Terminated
from runner.gc import write_owner
from runner.journal import Journal, JournalError
from runner.pipeline import Attempt, Pipeline, keep_attempt_ref, set_aside
from runner.preflight import Prepared
from runner.sandbox import labels
from runner.sandbox.base import Execution, Role, SandboxBackend, SandboxSpec
from runner.wave import integrate_wave

log = structlog.get_logger()


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def state_root(repo: Path, override: Path | None) -> Path:
    """Run state lives in the repo's git dir: never in the user's working tree."""
    return override if override else git.common_dir(repo) / "runner"


def repo_key(repo: Path) -> str:
    return hashlib.sha256(str(git.common_dir(repo)).encode()).hexdigest()[:12]


def plan_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def runner_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("runner")
    except PackageNotFoundError:  # run from a checkout that was never installed
        from runner import __version__

        return __version__


def pin_inputs(prepared: Prepared, backend: SandboxBackend, backend_name: str) -> RunInputs:
    """What a run of `prepared` depends on besides the repo's history, as it is now."""
    plan = prepared.doc.plan
    egress = any(pol.network == "allowlist" for pol in prepared.policies.values())
    used = prepared.images | backend.required_images(egress=egress)
    found = backend.image_ids(used)
    names_of = {"": plan.policy} | {t.id: t.policy or plan.policy for t in plan.tasks}
    shared_tree = None
    if plan.shared:
        shared_tree = reapply.tree_of(prepared.repo, prepared.base_commit, plan.shared)
    collector = getattr(backend, "collector_image", None)
    return RunInputs(
        plan=prepared.doc.source,
        plan_hash=plan_hash(prepared.doc.text),
        base_commit=prepared.base_commit,
        shared=plan.shared,
        shared_tree=shared_tree,
        tasks={
            t.id: TaskInputs(
                definition=definition_hash(t, plan),
                image=t.image or plan.image,
                policy=names_of[t.id],
            )
            for t in plan.tasks
        },
        images={name: found.get(name) for name in sorted(used)},
        image_digests=backend.image_digests(used),
        verify_image=plan.image if plan.verify else None,
        collector_image=collector if isinstance(collector, str) else None,
        policies={names_of[k]: policy_hash(pol) for k, pol in prepared.policies.items()},
        runner_version=runner_version(),
        backend=backend_name,
        daemon_version=backend.engine_version(),
    )


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
        self.stores = self.run_dir / "objects"  # `objects: reachable` stores, per commit
        self.integration_ref = names.integration_ref(self.run_id)
        self.shared: Path | None = None
        self.network: str | None = None
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
        self.leftover: dict[str, Phase] = {}
        """Tasks a dead process left started but not judged (resume): their phase then."""
        self.pipeline = Pipeline(
            self.repo,
            self.run_id,
            self.backend,
            self._emit,
            self.keep_workspaces,
            self._denials,
            usage=self._usage,
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
                self._reopen(task_id)
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
        workspace.remove(self.stores)  # no sandbox mounts them any more: a copy of history each
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

    def _reopen(self, task_id: str) -> None:
        """`runner retry`: run a task again as its next attempt, its last one's work kept."""
        attempt = self.replay.attempt.get(task_id, 0)
        state = names.sandbox_dir(self.run_dir, "task", task_id)
        ref = keep_attempt_ref(self.repo, self.run_id, task_id, attempt) if attempt else None
        kept = set_aside(state, attempt) if attempt else None
        where = ref or (str(kept) if kept else None)
        note = "retried with `runner retry`"
        if attempt:
            tres = self.result.task(task_id)
            note += f"; attempt {attempt} ended {tres.status.value}"
            note += f"; its work is kept at {where}" if where else ""
        self._emit("retrying", task=task_id, attempt=attempt + 1, note=note)

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
                self._set(task_id, TaskStatus.SKIPPED, reason)
                continue
            if phase in (Phase.RUNNING, Phase.COLLECTING):
                self.leftover[task_id] = phase
            self._emit(
                "task_queued", task=task_id, wave=index, start=head, **self._key(task_id, head)
            )
            fresh = phase in (Phase.PENDING, Phase.QUEUED) and not r.attempt.get(task_id)
            if not (self.reusing and fresh and self._reused(task_id, head)):
                runnable.append(task_id)
        self._run_tasks(runnable, head)

        ready = [(t, r.ready[t]) for t in wave if t in r.ready]
        verify = (lambda c, alone: self._verify(index, c, alone)) if self.plan.verify else None
        out = integrate_wave(
            self.repo, self.run_id, index, head, ready, self.plan.on_conflict, verify
        )
        for task_id, (status, reason) in out.judged.items():
            conflicts = [c.model_dump() for c in out.conflicts.get(task_id, [])]
            self._set(task_id, status, reason, conflicts=conflicts)
        stopped = stopped or out.stopped
        if out.merged:
            self._emit("merged", wave=index, tasks=out.merged, head=out.head, previous=head)
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
            self._set(task_id, TaskStatus.MERGED, None)
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
        pins = self.result.inputs
        if pins is None or task_id not in pins.tasks:
            return {}
        t = pins.tasks[task_id]
        parts = KeyParts(
            definition=t.definition,
            start_tree=reapply.tree_of(self.repo, start) or "",
            shared_tree=pins.shared_tree,
            image_id=pins.images.get(t.image),
            policy=pins.policies.get(t.policy, ""),
        )
        return {"key": input_key(parts), "key_parts": parts.model_dump(mode="json")}

    def _reused(self, task_id: str, start: str) -> bool:
        """Re-apply an earlier run's merged work of the same key instead of running the task;
        False (run it) when there is none or it does not apply cleanly on `start`."""
        key = self.result.task(task_id).key
        if key is None:
            return False
        if self._candidates is None:
            runs = names.runs_dir(self.state_dir)
            self._candidates = reapply.candidates(runs, self.run_id)
        source = find_reusable(key, self._candidates, lambda c: git.has_object(self.repo, c))
        if source is None:
            return False
        message = (
            f"runner {self.run_id}: task {task_id}, reused\n\n"
            f"Reused from: run {source.run} task {source.task} commit {source.commit}\n"
        )
        commit = reapply.reapply(self.repo, source.start_commit, source.commit, start, message)
        if commit is None:
            log.info("reuse conflicts: the task runs", task=task_id, source=source.run)
            return False
        files = git.changed_paths(self.repo, start, commit)
        ref = names.task_ref(self.run_id, task_id)
        self._emit(
            "reused",
            task=task_id,
            source=source.model_dump(mode="json"),
            ref=ref,
            commit=commit,
            files_changed=files,
        )
        git.update_ref(self.repo, ref, commit)
        log.info("task reused", task=task_id, run=source.run, commit=commit[:12])
        # Judged as a task that exited 0 with these changes: the scope check still applies.
        ending = Execution(
            exit_code=0,
            timed_out=False,
            oom_killed=False,
            duration_s=0.0,
            log_path=Path(os.devnull),
        )
        got = Attempt(ending=ending, commit=commit, files=tuple(files), kept=ref)
        policy = self.prepared.policies[task_id]
        timeout = self.plan.task(task_id).timeout or self.plan.timeout
        self._judge_with(task_id, got, Limits(timeout, policy.memory, policy.disk))
        return True

    def _blocked(self, task_id: str) -> str | None:
        # Declared dependencies only: an order added by `serialize` is not a dependency.
        for dep in self.plan.task(task_id).depends_on:
            status = self.result.task(dep).status
            if status is not TaskStatus.MERGED and status is not TaskStatus.NO_CHANGES:
                return f"dependency {dep} is {status.value}"
        return None

    def _set(self, task_id: str, status: TaskStatus, reason: str | None, **extra: Any) -> None:
        shown = printable(reason) if reason else None
        self._emit("judged", task=task_id, status=status, reason=shown, **extra)
        log.info("task", task=task_id, status=status.value, reason=reason)

    # -- the journal: every state change is written (fsync'd) before the runner acts on it ------
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
    def sandbox_spec(
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
        spec = self.sandbox_spec(
            task_id, "task", start, task.run, task.timeout or self.plan.timeout
        )
        self.running.add(task_id)
        self._notify()
        try:
            attempt = self.replay.attempt.get(task_id, 0)
            status = self._leftover(task_id, spec, attempt)
            while True:
                if status is not _RUN_AGAIN:
                    due = retry_due(status, attempt, task.retries, task.retry_on)
                    if self.interrupted or not due:
                        break
                    self._retrying(task_id, spec, attempt, status)
                attempt += 1
                status = self._judge(task_id, self.pipeline.run(spec, attempt), spec)
        finally:
            self.running.discard(task_id)
            self._notify()

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
                return self._judge(task_id, got, spec)
            if (spec.workspace / ".git").exists():
                log.info("collecting a task the dead run left", task=task_id)
                return self._judge(
                    task_id, self.pipeline.collect_only(spec, events.execution(ended)), spec
                )
        ref = keep_attempt_ref(self.repo, self.run_id, task_id, attempt)
        kept = set_aside(spec.state, attempt)
        note = f"attempt {attempt} was cut short when the runner stopped; it runs again"
        where = ref or (str(kept) if kept else None)
        note += f"; that attempt's work is kept at {where}" if where else ""
        self._emit("retrying", task=task_id, attempt=attempt + 1, note=note)
        return _RUN_AGAIN

    def _retrying(self, task_id: str, spec: SandboxSpec, attempt: int, status: Any) -> None:
        reason = self.result.task(task_id).reason
        ref = keep_attempt_ref(self.repo, self.run_id, task_id, attempt)
        kept = set_aside(spec.state, attempt)
        note = f"attempt {attempt} ended {status.value}"
        where = ref or (str(kept) if kept else None)
        note += f"; its work is kept at {where}" if where else ""
        log.info("task retried", task=task_id, attempt=attempt + 1, previous=status.value)
        self._emit("retrying", task=task_id, attempt=attempt + 1, note=note, previous=reason)

    def _usage(self, spec: SandboxSpec, out_dir: Path | None) -> dict[str, Any] | None:
        agent = self.plan.task(spec.task_id).agent
        used = usage_for(out_dir, agent, self.prices)
        return used.model_dump(mode="json") if used is not None else None

    def _denials(
        self, spec: SandboxSpec, ex: Execution, since: float, until: float
    ) -> dict[str, Any]:
        """What the task's egress proxy refused it (allowlist sandboxes): task_ended fields."""
        if spec.proxy is None:
            return {}
        if ex.address is None:  # it ended before its address could be read (milliseconds)
            return {"notes": ["egress denials unknown: it ended before its address was read"]}
        try:
            gateway = self.backend.gateway(self.run_id, spec.policy.allow)
            found = self.backend.denials(gateway, ex.address, since, until)
        except RunnerError as exc:  # the work still comes home; the gap is said
            return {"notes": [f"egress denials unknown: {exc}"]}
        if found:
            log.warning("egress denied", task=spec.task_id, count=len(found))
        return {"denials": [d.model_dump() for d in found]}

    def _judge(self, task_id: str, got: Attempt, spec: SandboxSpec) -> TaskStatus | None:
        """Judge an attempt; None: its work is ready to merge."""
        limits = Limits(spec.timeout, spec.policy.memory, spec.policy.disk)
        return self._judge_with(task_id, got, limits)

    def _judge_with(self, task_id: str, got: Attempt, limits: Limits) -> TaskStatus | None:
        if self.closing:
            return TaskStatus.FAILED  # abandoned: the run's end says so, with its workspace
        if got.failure is not None or got.ending is None:
            self._set(task_id, TaskStatus.FAILED, got.failure or "the runner lost this task")
            return TaskStatus.FAILED
        ex = got.ending
        violations = check_changes(self.prepared.scopes[task_id], list(got.files), self.plan.shared)
        found = violations.paths() if violations else []
        ending = Ending(
            exit_code=ex.exit_code,
            timed_out=ex.timed_out,
            oom_killed=ex.oom_killed,
            disk_exceeded=ex.disk_exceeded,
            lost=ex.lost,
            interrupted=self.interrupted,
            problem=got.problem,
            files_changed=len(got.files),
            violations=tuple(found),
            kept=got.kept,
        )
        status, reason = judge(ending, limits)
        if status is not None:
            # Cut short by the signal, not ended by itself: a resume runs it again.
            cut = {"cut": True} if ending.interrupted and not got.problem else {}
            self._set(task_id, status, reason, violations=found, **cut)
            return status
        self._emit("judged", task=task_id, status=READY, reason=None, commit=got.commit)
        log.info("task ready", task=task_id, files=len(got.files))
        return None

    # -- verify --------------------------------------------------------------------------------
    def _verify(self, index: int, commit: str, alone: str | None) -> bool:
        assert self.plan.verify is not None
        name = f"wave-{index}" + (f"-{alone}" if alone else "")
        spec = self.sandbox_spec(
            name, "verify", commit, self.plan.verify.run, self.plan.verify.timeout
        )
        policy = self.prepared.policies[""]
        self._emit("verify_started", wave=index, task=alone, commit=commit)
        try:
            workspace.make_clone(self.repo, commit, spec.workspace, "verify", policy.user)
        except (GitError, OSError) as exc:
            # The merged tree cannot even be checked out here (a task's paths): red, not a crash.
            why = f"runner: cannot check out the merged tree for verify: {exc}\n"
            spec.state.mkdir(parents=True, exist_ok=True)
            (spec.state / "verify.log").write_text(why)
            workspace.remove(spec.workspace)
            red = {"result": "red", "log": str(spec.state / "verify.log")}
            self._emit("verify_ended", wave=index, task=alone, **red)
            log.warning("verify", wave=index, task=alone, result="red", why=why.strip())
            return False
        try:
            ex = self.backend.execute(spec)
        finally:
            self.backend.destroy(spec)
            for scratch in ("work", "control", "out", "bundle"):
                workspace.remove(spec.state / scratch)
        green = ex.exit_code == 0 and not ex.timed_out and not ex.oom_killed
        ended = {"result": "green" if green else "red", "log": str(ex.log_path)}
        self._emit("verify_ended", wave=index, task=alone, **ended)
        log.info("verify", wave=index, task=alone, result=ended["result"])
        return green


_RUN_AGAIN = object()
"""`_task`'s marker: run (another) attempt."""


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

"""The result document of a run (schema_version 1): what happened to every task, and why."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from runner.core.inputs import KeyParts, ReusedFrom, RunInputs
from runner.core.usage import Usage

SCHEMA_VERSION = 1


class TaskStatus(StrEnum):
    MERGED = "merged"
    """Its work is on the integration branch (and verify was green)."""
    FAILED = "failed"
    """The task exited non-zero; its partial work is kept under its ref."""
    TIMEOUT = "timeout"
    """Killed at its hard timeout; partial work kept."""
    OOM = "oom"
    """Killed by the memory limit; partial work kept."""
    SCOPE_VIOLATION = "scope_violation"
    """Changed paths outside its scope, inside deny or in the shared dir; kept, not merged."""
    CONFLICT = "conflict"
    """Its work conflicts with work merged before it; kept, not merged."""
    VERIFY_FAILED = "verify_failed"
    """Merged, but verify went red on its wave; the integration branch stays at the last green."""
    SANDBOX_LOST = "sandbox_lost"
    """Its sandbox went away while it ran (removed from outside); what it wrote is kept."""
    DISK_LIMIT = "disk_limit"
    """Stopped for writing more than the policy's `disk`; partial work kept."""
    REJECTED = "rejected"
    """What it handed back was refused (bundle, history, paths, nested repo): see reason;
    whatever could be kept is under its ref or in its kept workspace."""
    NO_CHANGES = "no_changes"
    """Succeeded without changing anything."""
    SKIPPED = "skipped"
    """Not run or not merged because of something else (see reason)."""

    @property
    def ok(self) -> bool:
        return self in (TaskStatus.MERGED, TaskStatus.NO_CHANGES)


class RunStatus(StrEnum):
    RUNNING = "running"
    """Not finished (a result read while the run goes on, or of a run that died)."""
    SUCCESS = "success"
    """Every task merged (or had no changes), verify green."""
    PARTIAL = "partial"
    """The run finished; some work is not merged (see tasks)."""
    ERROR = "error"
    """The run broke (sandbox or git failure); see error."""
    INTERRUPTED = "interrupted"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Conflict(_Doc):
    with_task: str | None
    """The task already merged that this one conflicts with (None: the integration head)."""
    files: list[str]


class Denial(_Doc):
    """A connection the egress proxy refused to a task."""

    time: str
    """ISO 8601, UTC."""
    host: str
    port: int | None = None


PHASES = ("clone", "sandbox_start", "task", "collect", "transfer", "fetch", "scope", "merge")
"""A task's phases, in order (`TaskResult.phases`):

clone: its workspace made from its start commit; sandbox_start: state dir, cache, container
create and attach, up to the container's start; task: the script ran (start to exit, with
the log drained); collect: its work committed and bundled by the collector (or found
unchanged without one); transfer: the bundle and RUNNER_OUT copied out; fetch: the bundle
checked and fetched (quarantine, then the repo); scope: its changed paths checked; merge: its
merge onto the integration head."""


class PhaseTime(_Doc):
    start: str
    """ISO 8601, UTC, milliseconds."""
    duration_s: float = Field(ge=0)


class TaskResult(_Doc):
    id: str
    wave: int = Field(ge=1)
    """Wave number, from 1 (as `runner plan` and the summary show it)."""
    status: TaskStatus = TaskStatus.SKIPPED
    reason: str | None = None
    """Why it is not merged, in one line."""
    attempts: int = 0
    """How many times it was started (retries, resume); 0: never."""
    exit_code: int | None = None
    duration_s: float | None = None
    started_at: str | None = None
    """When its sandbox was asked for (ISO 8601, UTC; None: it never started)."""
    start_commit: str | None = None
    """The commit its clone started from (base, or the integration head of its wave)."""
    ref: str | None = None
    """refs/runner/<run>/task/<task>, where its work is kept (merged or not)."""
    commit: str | None = None
    files_changed: list[str] = []
    violations: list[str] = []
    conflicts: list[Conflict] = []
    log_path: str | None = None
    out_path: str | None = None
    """Where its RUNNER_OUT directory was copied (reports, usage), never merged."""
    cpu_s: float | None = None
    peak_memory_bytes: int | None = None
    metrics_source: str | None = None
    """cgroup (read inside before exit), docker_stats (sampled before a kill) or None."""
    denials: list[Denial] = []
    """Connections its egress proxy refused (network: allowlist)."""
    notes: list[str] = []
    """What the runner left out of its work and why (e.g. a refused RUNNER_OUT)."""
    usage: Usage | None = None
    """Tokens and cost its agent reported (runner.core.usage.usage_for); None: it said nothing."""
    key: str | None = None
    """Its input key (runner.core.inputs.input_key), from `key_parts`: an earlier merged task
    with the same key can be reused (`runner run --reuse`)."""
    key_parts: KeyParts | None = None
    reused_from: ReusedFrom | None = None
    """Set when its work was not run but re-applied from an earlier run's merged task."""
    phases: dict[str, PhaseTime] = {}
    """Where its last attempt's time went, by phase (`PHASES`, in that order); a phase it
    did not reach is absent."""


class VerifyRun(_Doc):
    """One run of the verify command: on the wave's merge, or on one task's alone."""

    task: str | None = None
    """The task verified alone (after the wave's verify went red), None for the whole wave."""
    result: str
    """green or red."""
    log: str | None = None
    started_at: str | None = None
    """ISO 8601, UTC."""
    duration_s: float | None = None


class WaveResult(_Doc):
    index: int = Field(ge=1)
    """Wave number, from 1."""
    tasks: list[str]
    start_commit: str
    """Integration head the wave's tasks started from."""
    merged_commit: str | None = None
    verify: str | None = None
    """green, red, skipped (no verify command) or None (not reached)."""
    verify_log: str | None = None
    isolated: list[str] = []
    """Tasks verified one at a time after the wave's verify went red (on_conflict: skip)."""
    verify_runs: list[VerifyRun] = []
    """Every verify of the wave in order, each with its log: the wave's merge first, then (after
    a red one) each task alone. `verify` and `verify_log` say only the last."""


class IsolationCheck(_Doc):
    unchanged: bool
    before: dict[str, str]
    after: dict[str, str]
    changed: list[str] = []
    """Which of head, branch, index, worktree moved."""


class RunResult(_Doc):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    repo: str
    plan: str
    base: str
    base_commit: str
    status: RunStatus = RunStatus.RUNNING
    error: str | None = None
    warnings: list[str] = []
    """Loud notes on the run: policies that weaken the sandbox or open the network."""
    integration_ref: str
    integration_commit: str | None = None
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    waves: list[WaveResult] = []
    tasks: list[TaskResult] = []
    isolation: IsolationCheck | None = None
    usage: Usage | None = None
    """The tasks' usage summed (runner.core.usage.total); cost unknown if any task's is."""
    saved: Usage | None = None
    """What the reused tasks' original attempts used: not spent again in this run."""
    inputs: RunInputs | None = None
    """What the run pinned when planned (plan, images, policies, versions; `show --inputs`)."""
    replays: str | None = None
    """The run this one replays (`runner rerun`)."""
    state_dir: str = Field(description="Where logs, outputs and this document are kept")

    _index: dict[str, int] = PrivateAttr(default_factory=dict)

    def task(self, task_id: str) -> TaskResult:
        """The task by id (StopIteration: the run has none): by an index, a lookup per event."""
        self._index = found_or_reindexed(self._index, self.tasks, task_id)
        return self.tasks[self._index[task_id]]

    @property
    def exit_code(self) -> int:
        """0 all merged and checkout unchanged; 1 work not merged; 3 internal error; 130."""
        if self.status is RunStatus.INTERRUPTED:
            return 130
        if self.status in (RunStatus.ERROR, RunStatus.RUNNING):
            return 3
        if self.isolation is not None and not self.isolation.unchanged:
            return 1
        return 0 if self.status is RunStatus.SUCCESS else 1


def found_or_reindexed(index: dict[str, int], items: list[Any], key: str) -> dict[str, int]:
    """`index` (id -> position in items) if it finds `key` where it says, else rebuilt;
    StopIteration when items have no such id."""
    at = index.get(key)
    if at is None or at >= len(items) or items[at].id != key:
        index = {item.id: n for n, item in enumerate(items)}
        if key not in index:
            raise StopIteration(key)
    return index

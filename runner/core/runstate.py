"""A run's state as a projection of its journal's events: pure, no I/O (issue 9).

`status` reads a run through `project` (also while another process runs it), and `resume`,
`retry` and the report are to read the same events. The journal is the truth; this module is
the one place that says what its events mean.

Events are plain dicts `{"seq", "time", "event", ...fields}`; their names and fields are
listed in `EVENTS`. An event this code does not know (a newer runner's) is passed over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, computed_field

from runner.core.results import RunStatus, TaskStatus, found_or_reindexed

EVENTS: dict[str, str] = {
    "planned": "the run is about to start: run_id, repo, plan, plan_hash, plan_copy (the "
    "plan as read, which resume runs), base, base_commit, integration_ref, state_dir, "
    "started_at, warnings, waves, tasks [{id, wave, depends_on, env (names)}], on_conflict, "
    "verify, inputs (what the run pins: runner.core.inputs.RunInputs), replays (the run a "
    "`runner rerun` replays), reuse (earlier merged work is reused by input key)",
    "resumed": "a later process continues the run (runner resume, runner retry): pid, retry "
    "(the tasks run again, with their dependents)",
    "wave_started": "wave, tasks, start (the commit its tasks start from)",
    "task_queued": "task, wave, start, key, key_parts (its input key: runner.core.inputs)",
    "reused": "task, source (run, task, commit, start_commit, usage of the earlier merged task "
    "whose work is re-applied instead of running it), ref, commit (the fresh commit on start), "
    "files_changed",
    "task_started": "task, start, attempt (from 1), workspace, container",
    "task_ended": "task, attempt, exit_code, timed_out, oom_killed, disk_exceeded, lost, "
    "duration_s, log, cpu_s, peak_memory_bytes, metrics_source, denials, notes, phases "
    "(clone, sandbox_start, task: each {start, duration_s}, as in the result)",
    "collected": "task, head (None: see problem), problem, out, notes, usage (tokens, cost), "
    "phases (collect, transfer)",
    "fetched": "task, ref, commit, files_changed (paths), problem, kept (where its work is "
    "now), phases (fetch)",
    "judged": "task, status (a TaskStatus, or `ready`: to be merged), reason, commit, "
    "violations, conflicts, run_ended (said because the run ended: resume goes on from it), "
    "cut (cut short by a signal: resume runs it again), phases (scope; merge of a conflict)",
    "retrying": "task, attempt (the next), note (where the last attempt's work is kept), "
    "previous (its reason)",
    "merged": "wave, tasks, head (the integration ref is set to it next), previous, phases "
    "(task -> {merge})",
    "verify_started": "wave, task (when verified alone), commit",
    "verify_ended": "wave, task, result (green | red), log",
    "wave_ended": "wave, merged_commit, verify, isolated, stopped (why later waves do not run)",
    "interrupted": "signal (SIGINT, SIGTERM)",
    "run_ended": "status, error, integration_commit, unchanged, changed, before, after, "
    "finished_at, duration_s",
}
"""Every event the runner writes, with its fields."""

READY = "ready"
"""`judged` status of a task whose work waits to be merged (not a final status)."""


class Phase(StrEnum):
    """Where a task is in its run, before (and once) it has a final status."""

    PENDING = "pending"
    """Its wave has not started."""
    QUEUED = "queued"
    """Waiting for a free sandbox slot."""
    RUNNING = "running"
    """Its sandbox runs (or is being made)."""
    COLLECTING = "collecting"
    """Its script ended; its work is being collected, fetched and judged."""
    READY = "ready"
    """Judged: its work waits for its wave's merge and verify."""
    DONE = "done"
    """It has its final status."""


class _State(BaseModel):
    # Assignments are validated: a mistyped field in an event is a BadEvent, not a bad state.
    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, validate_assignment=True
    )


class TaskState(_State):
    id: str
    wave: int
    phase: Phase = Phase.PENDING
    status: TaskStatus | None = None
    """Its final status once phase is done."""
    reason: str | None = None
    start_commit: str | None = None
    kept: str | None = None
    """Where its work is now: its workspace while it runs, then its ref, or its workspace when
    the work did not come home."""
    ref: str | None = None
    commit: str | None = None
    files_changed: int | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    log_path: str | None = None
    started_at: str | None = None
    attempts: int = 0
    reused_from: str | None = None
    """The run whose merged work it reused instead of running (`runner run --reuse`)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> str:
        """One word: its final status, else its phase."""
        return self.status.value if self.status is not None else self.phase.value


class WaveState(_State):
    index: int
    tasks: list[str]
    start_commit: str | None = None
    merged_commit: str | None = None
    verify: str | None = None
    """running, green, red, skipped, or None (not reached)."""
    verify_log: str | None = None
    isolated: list[str] = []


class RunState(_State):
    run_id: str
    repo: str
    plan: str
    base: str
    base_commit: str
    integration_ref: str
    integration_commit: str
    """Where the integration branch is (the last journaled merge)."""
    state_dir: str
    status: RunStatus = RunStatus.RUNNING
    error: str | None = None
    warnings: list[str] = []
    interrupted: str | None = None
    """The signal that interrupted the run, if one did."""
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    checkout_unchanged: bool | None = None
    waves: list[WaveState] = []
    tasks: list[TaskState] = []
    events: int = 0
    """How many journal events this state was projected from."""

    _index: dict[str, int] = PrivateAttr(default_factory=dict)

    def task(self, task_id: str) -> TaskState:
        """The task by id (StopIteration: the run has none): by an index, a lookup per event."""
        self._index = found_or_reindexed(self._index, self.tasks, task_id)
        return self.tasks[self._index[task_id]]

    def wave(self, index: int) -> WaveState:
        return next(w for w in self.waves if w.index == index)


class BadEvent(ValueError):
    """An event the projection cannot apply: missing or mistyped fields, an unknown task."""

    def __init__(self, seq: object, message: str) -> None:
        super().__init__(f"event {seq}: {message}")
        self.seq = seq


def project(events: Iterable[Mapping[str, Any]]) -> RunState:
    """The run's state after events (in journal order). Raises BadEvent."""
    projector = Projector()
    for ev in events:
        projector.feed(ev)
    if projector.state is None:
        raise BadEvent(None, "no `planned` event: the run stopped before it was planned")
    return projector.state


class Projector:
    """The projection one event at a time, for a reader that follows a live journal: each
    event costs the same however long the run, where projecting from the start each time
    cost the whole journal per event (quadratic in the tasks)."""

    def __init__(self) -> None:
        self.state: RunState | None = None

    def feed(self, ev: Mapping[str, Any]) -> RunState | None:
        """Apply one event; the state after it (None: not planned yet). Raises BadEvent."""
        name = ev.get("event")
        try:
            if name == "planned":
                self.state = _planned(ev)
            elif self.state is None:
                raise BadEvent(ev.get("seq"), f"`{name}` before `planned`")
            elif name in _APPLY:
                _APPLY[name](self.state, ev)
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            if isinstance(exc, BadEvent):
                raise
            raise BadEvent(ev.get("seq"), f"`{name}`: {_why(exc)}") from None
        if self.state is not None:
            self.state.events += 1
        return self.state


def _why(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"field {exc.args[0]!r} missing"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    if isinstance(exc, StopIteration):
        return "names a task or wave the run does not have"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _planned(ev: Mapping[str, Any]) -> RunState:
    waves = [WaveState(index=i, tasks=list(w)) for i, w in enumerate(ev["waves"], start=1)]
    return RunState(
        run_id=ev["run_id"],
        repo=ev["repo"],
        plan=ev["plan"],
        base=ev["base"],
        base_commit=ev["base_commit"],
        integration_ref=ev["integration_ref"],
        integration_commit=ev["base_commit"],
        state_dir=ev["state_dir"],
        warnings=ev.get("warnings", []),
        started_at=ev["time"],
        waves=waves,
        tasks=[TaskState(id=t["id"], wave=t["wave"]) for t in ev["tasks"]],
    )


def _wave_started(s: RunState, ev: Mapping[str, Any]) -> None:
    s.wave(ev["wave"]).start_commit = ev["start"]


def _task_queued(s: RunState, ev: Mapping[str, Any]) -> None:
    t = s.task(ev["task"])
    t.phase, t.start_commit = Phase.QUEUED, ev["start"]


def _reused(s: RunState, ev: Mapping[str, Any]) -> None:
    t = s.task(ev["task"])
    t.ref, t.commit, t.kept = ev["ref"], ev["commit"], ev["ref"]
    t.files_changed, t.reused_from = len(ev["files_changed"]), ev["source"]["run"]


def _task_started(s: RunState, ev: Mapping[str, Any]) -> None:
    t = s.task(ev["task"])
    t.phase, t.start_commit, t.started_at = Phase.RUNNING, ev["start"], ev["time"]
    t.attempts = int(ev.get("attempt", 1))
    t.kept = ev.get("workspace")


def _task_ended(s: RunState, ev: Mapping[str, Any]) -> None:
    t = s.task(ev["task"])
    t.phase, t.exit_code, t.duration_s = Phase.COLLECTING, ev["exit_code"], ev["duration_s"]
    t.log_path = ev.get("log")


def _fetched(s: RunState, ev: Mapping[str, Any]) -> None:
    t = s.task(ev["task"])
    t.ref, t.commit, t.kept = ev["ref"], ev["commit"], ev["kept"]
    files = ev["files_changed"]
    t.files_changed = len(files) if isinstance(files, list) else files


def _judged(s: RunState, ev: Mapping[str, Any]) -> None:
    t = s.task(ev["task"])
    if ev["status"] == READY:
        t.phase, t.status, t.reason = Phase.READY, None, None
    elif ev.get("run_ended"):  # not the task's own outcome: a resume goes on from its phase
        t.status, t.reason = TaskStatus(ev["status"]), ev["reason"]
    elif ev.get("cut"):  # cut short by a signal: a resume runs it again
        t.phase, t.status, t.reason = Phase.RUNNING, TaskStatus(ev["status"]), ev["reason"]
    else:
        t.phase, t.status, t.reason = Phase.DONE, TaskStatus(ev["status"]), ev["reason"]


def _merged(s: RunState, ev: Mapping[str, Any]) -> None:
    s.integration_commit = ev["head"]


def _verify_started(s: RunState, ev: Mapping[str, Any]) -> None:
    s.wave(ev["wave"]).verify = "running"


def _verify_ended(s: RunState, ev: Mapping[str, Any]) -> None:
    w = s.wave(ev["wave"])
    w.verify, w.verify_log = ev["result"], ev.get("log")


def _wave_ended(s: RunState, ev: Mapping[str, Any]) -> None:
    w = s.wave(ev["wave"])
    w.merged_commit, w.verify, w.isolated = ev["merged_commit"], ev["verify"], ev["isolated"]


def _retrying(s: RunState, ev: Mapping[str, Any]) -> None:
    t = s.task(ev["task"])
    t.phase, t.status, t.reason, t.ref, t.commit = Phase.QUEUED, None, None, None, None


def _resumed(s: RunState, ev: Mapping[str, Any]) -> None:
    s.status, s.error, s.finished_at, s.duration_s = RunStatus.RUNNING, None, None, None
    for t in s.tasks:
        if t.phase is not Phase.DONE:
            t.status, t.reason = None, None


def _interrupted(s: RunState, ev: Mapping[str, Any]) -> None:
    s.interrupted = ev["signal"]


def _run_ended(s: RunState, ev: Mapping[str, Any]) -> None:
    s.status, s.error = RunStatus(ev["status"]), ev["error"]
    s.integration_commit = ev["integration_commit"] or s.integration_commit
    s.finished_at, s.duration_s = ev["time"], ev.get("duration_s")
    s.checkout_unchanged = ev.get("unchanged")
    for t in s.tasks:
        # A task the run never judged is skipped, as in the result document (its phase
        # stays: a resume goes on from it).
        if t.status is None:
            t.status = TaskStatus.SKIPPED


_APPLY = {
    "wave_started": _wave_started,
    "task_queued": _task_queued,
    "reused": _reused,
    "task_started": _task_started,
    "task_ended": _task_ended,
    "fetched": _fetched,
    "judged": _judged,
    "merged": _merged,
    "verify_started": _verify_started,
    "verify_ended": _verify_ended,
    "wave_ended": _wave_ended,
    "retrying": _retrying,
    "resumed": _resumed,
    "interrupted": _interrupted,
    "run_ended": _run_ended,
}

"""The result document as a projection of the run journal: pure, no I/O (issue 9).

The coordinator changes a run's result only by appending an event to the journal and applying
it here, so `result.json` says exactly what the journal says, and `resume` rebuilds the same
result from the journal a killed process left. `Replay` also keeps what resuming needs and the
result document does not show: which tasks wait to be merged, and which attempt each is on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.core.inputs import KeyParts, ReusedFrom, RunInputs
from runner.core.results import (
    Conflict,
    Denial,
    IsolationCheck,
    PhaseTime,
    RunResult,
    RunStatus,
    TaskResult,
    TaskStatus,
    VerifyRun,
    WaveResult,
)
from runner.core.runstate import READY, BadEvent, Phase
from runner.core.usage import Usage, run_total, total

Event = Mapping[str, Any]


@dataclass
class Replay:
    """A run's result and its progress, as far as the events applied so far say."""

    result: RunResult
    phase: dict[str, Phase] = field(default_factory=dict)
    ready: dict[str, str] = field(default_factory=dict)
    """task -> commit: judged ready, waiting for its wave's merge."""
    attempt: dict[str, int] = field(default_factory=dict)
    """task -> the attempt started last (1 for the first)."""
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)
    """task -> its last `task_ended` event (how the script ended), until it is judged."""
    fetched: dict[str, dict[str, Any]] = field(default_factory=dict)
    """task -> its last `fetched` event (what came home), until it is judged."""
    merged_waves: dict[int, tuple[str, list[str]]] = field(default_factory=dict)
    """wave -> (head, tasks) of its journaled merge."""
    ended_waves: dict[int, str | None] = field(default_factory=dict)
    """wave -> why the run stopped after it (on_conflict: stop), if it did."""
    verifying: dict[tuple[int, str | None], str] = field(default_factory=dict)
    """(wave, task alone) -> when its verify started."""
    plan_copy: str | None = None
    plan_hash: str | None = None
    resumes: int = 0
    reuse: bool = False
    """Reuse earlier runs' merged work by input key (`runner run --reuse`)."""

    @classmethod
    def start(cls, planned: Event) -> Replay:
        """A run's replay from its `planned` event (fields as journaled)."""
        out = cls(result=planned_result(planned))
        out.plan_copy, out.plan_hash = planned.get("plan_copy"), planned.get("plan_hash")
        out.reuse = bool(planned.get("reuse", False))
        out.phase = {t.id: Phase.PENDING for t in out.result.tasks}
        return out

    def apply(self, ev: Event) -> None:
        """Apply one event. Raises BadEvent for one that does not fit the run."""
        name = ev.get("event")
        try:
            handler = _APPLY.get(str(name))
            if handler is not None:
                handler(self, ev)
                _phases(self, ev)
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            if isinstance(exc, BadEvent):
                raise
            raise BadEvent(ev.get("seq"), f"`{name}`: {exc!r}") from None


def replay(events: Iterable[Event]) -> Replay:
    """The run's result and progress after its events (in journal order). Raises BadEvent."""
    out: Replay | None = None
    for ev in events:
        if ev.get("event") == "planned":
            out = Replay.start(ev)
        elif out is None:
            raise BadEvent(ev.get("seq"), f"`{ev.get('event')}` before `planned`")
        else:
            out.apply(ev)
    if out is None:
        raise BadEvent(None, "no `planned` event: the run stopped before it was planned")
    return out


def planned_result(ev: Event) -> RunResult:
    waves = {t["id"]: t["wave"] for t in ev["tasks"]}
    return RunResult(
        run_id=ev["run_id"],
        repo=ev["repo"],
        plan=ev["plan"],
        base=ev["base"],
        base_commit=ev["base_commit"],
        integration_ref=ev["integration_ref"],
        integration_commit=ev["base_commit"],
        started_at=ev["started_at"] if "started_at" in ev else ev["time"],
        state_dir=ev["state_dir"],
        warnings=list(ev.get("warnings", [])),
        tasks=[TaskResult(id=t, wave=w) for t, w in waves.items()],
        inputs=RunInputs.model_validate(ev["inputs"]) if ev.get("inputs") else None,
        replays=ev.get("replays"),
    )


def _task(r: Replay, ev: Event) -> TaskResult:
    return r.result.task(ev["task"])


def _wave(r: Replay, index: int) -> WaveResult:
    return next(w for w in r.result.waves if w.index == index)


def _wave_started(r: Replay, ev: Event) -> None:
    index = ev["wave"]
    r.result.waves = [w for w in r.result.waves if w.index != index]  # resumed: started again
    r.result.waves.append(
        WaveResult(index=index, tasks=list(ev["tasks"]), start_commit=ev["start"])
    )


def _task_queued(r: Replay, ev: Event) -> None:
    t = _task(r, ev)
    t.start_commit = ev["start"]
    if ev.get("key"):
        t.key, t.key_parts = ev["key"], KeyParts.model_validate(ev["key_parts"])
    r.phase[t.id] = Phase.QUEUED


def _reused(r: Replay, ev: Event) -> None:
    t = _task(r, ev)
    t.reused_from = ReusedFrom.model_validate(ev["source"])
    t.ref, t.commit, t.files_changed = ev["ref"], ev["commit"], list(ev["files_changed"])
    t.notes = [*t.notes, f"reused from run {t.reused_from.run} task {t.reused_from.task}"]
    r.result.saved = run_total(x.reused_from.usage for x in r.result.tasks if x.reused_from)


def _task_started(r: Replay, ev: Event) -> None:
    t = _task(r, ev)
    t.start_commit, t.started_at = ev["start"], ev["time"]
    t.attempts = r.attempt[t.id] = int(ev.get("attempt", 1))
    t.phases = {}  # the phases of its last attempt
    r.phase[t.id] = Phase.RUNNING
    r.ended.pop(t.id, None)
    r.fetched.pop(t.id, None)


def _task_ended(r: Replay, ev: Event) -> None:
    t = _task(r, ev)
    t.exit_code, t.duration_s, t.log_path = ev["exit_code"], ev["duration_s"], ev.get("log")
    t.cpu_s, t.peak_memory_bytes = ev.get("cpu_s"), ev.get("peak_memory_bytes")
    t.metrics_source = ev.get("metrics_source")
    t.denials = [Denial.model_validate(d) for d in ev.get("denials", [])]
    t.notes = [*t.notes, *ev.get("notes", [])]
    r.phase[t.id] = Phase.COLLECTING
    r.ended[t.id] = dict(ev)


def _collected(r: Replay, ev: Event) -> None:
    t = _task(r, ev)
    t.out_path = ev.get("out")
    t.notes = [*t.notes, *ev.get("notes", [])]
    if ev.get("usage") is not None:
        used = Usage.model_validate(ev["usage"])
        # Every attempt costs: a retried task's usage is the sum of its attempts'.
        t.usage = used if t.usage is None else total([t.usage, used], model=used.model)
        r.result.usage = run_total(x.usage for x in r.result.tasks)


def _fetched(r: Replay, ev: Event) -> None:
    t = _task(r, ev)
    t.ref, t.commit = ev["ref"], ev["commit"]
    files = ev["files_changed"]
    t.files_changed = list(files) if isinstance(files, list) else t.files_changed
    r.fetched[t.id] = dict(ev)


def _judged(r: Replay, ev: Event) -> None:
    t = _task(r, ev)
    t.violations = list(ev.get("violations", t.violations))
    if "conflicts" in ev:
        t.conflicts = [Conflict.model_validate(c) for c in ev["conflicts"]]
    if ev["status"] == READY:
        r.ready[t.id] = ev["commit"]
        r.phase[t.id] = Phase.READY
        t.status, t.reason = TaskStatus.SKIPPED, None
        return
    t.status, t.reason = TaskStatus(ev["status"]), ev["reason"]
    if ev.get("cut"):  # cut short by a signal: a resume runs it again
        r.ready.pop(t.id, None)
        r.ended.pop(t.id, None)
        r.fetched.pop(t.id, None)
        r.phase[t.id] = Phase.RUNNING
        return
    if ev.get("run_ended"):
        return  # said when the run ended: not the task's own outcome (resume goes on from it)
    r.ready.pop(t.id, None)
    r.ended.pop(t.id, None)
    r.fetched.pop(t.id, None)
    r.phase[t.id] = Phase.DONE


def _retrying(r: Replay, ev: Event) -> None:
    t = _task(r, ev)
    t.notes = [*t.notes, ev["note"]]
    t.ref = t.commit = None
    t.files_changed, t.violations = [], []
    r.ended.pop(t.id, None)
    r.fetched.pop(t.id, None)
    r.ready.pop(t.id, None)
    r.phase[t.id] = Phase.QUEUED


def _merged(r: Replay, ev: Event) -> None:
    r.result.integration_commit = ev["head"]
    r.merged_waves[ev["wave"]] = (ev["head"], list(ev["tasks"]))


def _verify_started(r: Replay, ev: Event) -> None:
    r.verifying[(ev["wave"], ev.get("task"))] = ev["time"]


def _verify_ended(r: Replay, ev: Event) -> None:
    w = _wave(r, ev["wave"])
    w.verify, w.verify_log = ev["result"], ev.get("log")
    began = r.verifying.pop((w.index, ev.get("task")), None)
    took = _seconds(began, ev["time"])
    run = VerifyRun(task=ev.get("task"), result=ev["result"], log=ev.get("log"), started_at=began)
    w.verify_runs.append(run.model_copy(update={"duration_s": took}))


def _phases(r: Replay, ev: Event) -> None:
    """A task's phase times, from the events that carry them (`merged`: one set per task)."""
    timed = ev.get("phases")
    if not timed:
        return
    by_task = timed if ev.get("event") == "merged" else {ev["task"]: timed}
    for task_id, phases in by_task.items():
        t = r.result.task(task_id)
        t.phases = {**t.phases, **{k: PhaseTime.model_validate(v) for k, v in phases.items()}}


def _seconds(start: str | None, end: str) -> float | None:
    if start is None:
        return None
    try:
        delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    except ValueError:
        return None
    return round(delta.total_seconds(), 3)


def _wave_ended(r: Replay, ev: Event) -> None:
    w = _wave(r, ev["wave"])
    w.merged_commit, w.verify, w.isolated = ev["merged_commit"], ev["verify"], ev["isolated"]
    r.ended_waves[w.index] = ev.get("stopped")
    for task_id in w.tasks:
        r.ready.pop(task_id, None)


def _resumed(r: Replay, ev: Event) -> None:
    res = r.result
    res.status, res.error, res.finished_at, res.duration_s = RunStatus.RUNNING, None, None, None
    r.resumes += 1
    for t in res.tasks:
        if r.phase.get(t.id) is not Phase.DONE:  # undo what the run's end said of it
            t.status, t.reason = TaskStatus.SKIPPED, None


def _run_ended(r: Replay, ev: Event) -> None:
    res = r.result
    res.status, res.error = RunStatus(ev["status"]), ev["error"]
    res.integration_commit = ev["integration_commit"] or res.integration_commit
    res.finished_at = ev.get("finished_at") or ev["time"]
    res.duration_s = ev.get("duration_s")
    if "before" in ev:
        res.isolation = IsolationCheck(
            unchanged=ev["unchanged"],
            before=ev["before"],
            after=ev["after"],
            changed=ev.get("changed", []),
        )


_APPLY = {
    "wave_started": _wave_started,
    "task_queued": _task_queued,
    "reused": _reused,
    "task_started": _task_started,
    "task_ended": _task_ended,
    "collected": _collected,
    "fetched": _fetched,
    "judged": _judged,
    "retrying": _retrying,
    "merged": _merged,
    "verify_started": _verify_started,
    "verify_ended": _verify_ended,
    "wave_ended": _wave_ended,
    "resumed": _resumed,
    "run_ended": _run_ended,
}

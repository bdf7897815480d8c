"""One wave's integration: merge its ready tasks, verify, and isolate the tasks that turn it red.

Git only: `verify` is a function (the coordinator passes one that runs a verify sandbox), so
this is tested on real git in a temp dir without Docker. It moves no ref but the refs that keep
a red merge; the coordinator journals the outcome and then moves the integration ref.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner import git, names
from runner.core.results import Conflict, TaskStatus
from runner.integrate import merge_wave

Verify = Callable[[str, str | None], bool]
"""verify(commit, alone) -> green. `alone`: the task verified by itself, else None."""


@dataclass
class WaveOutcome:
    head: str
    """The wave's integration head: the last green merge (the start when nothing merged)."""
    merged: list[str] = field(default_factory=list)
    judged: dict[str, tuple[TaskStatus, str]] = field(default_factory=dict)
    """Tasks not merged: (status, reason)."""
    conflicts: dict[str, list[Conflict]] = field(default_factory=dict)
    verify: str | None = None
    """green, red or skipped; None when nothing was merged to verify."""
    isolated: list[str] = field(default_factory=list)
    stopped: str | None = None
    """Why later waves do not run (on_conflict: stop), if they do not."""
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)
    """task -> when its merge began and ended (the last one, after isolating a red verify)."""


def integrate_wave(
    repo: Path,
    run_id: str,
    index: int,
    start: str,
    ready: Sequence[tuple[str, str]],
    on_conflict: str,
    verify: Verify | None,
) -> WaveOutcome:
    """Merge `ready` (task, commit) in order onto `start`, then verify (None: no verify)."""
    stop = on_conflict == "stop"
    merge = merge_wave(repo, start, ready, run_id, stop, start=start)
    out = WaveOutcome(head=start, conflicts=dict(merge.conflicts), timings=dict(merge.timings))
    for task_id, conflicts in merge.conflicts.items():
        files = sorted({f for c in conflicts for f in c.files})
        out.judged[task_id] = (TaskStatus.CONFLICT, "merge conflict in " + ", ".join(files))
    if merge.stopped_at:
        out.stopped = f"conflict in task {merge.stopped_at}"
        after = [t for t, _ in ready][[t for t, _ in ready].index(merge.stopped_at) + 1 :]
        for task_id in after:
            out.judged[task_id] = (TaskStatus.SKIPPED, f"not merged: {out.stopped} (work kept)")
    if not merge.merged:
        return out
    if verify is None:
        out.head, out.merged, out.verify = merge.head, merge.merged, "skipped"
        return out
    if verify(merge.head, None):
        out.head, out.merged, out.verify = merge.head, merge.merged, "green"
        return out
    out.verify = "red"
    kept = names.verify_failed_ref(run_id, wave=index)
    git.update_ref(repo, kept, merge.head)
    red = dict.fromkeys(merge.merged, kept)
    if on_conflict == "skip" and len(red) > 1:
        # Skip only the tasks that turn verify red, not their whole wave.
        commits = dict(ready)
        red = _isolate(repo, run_id, start, [(t, commits[t]) for t in merge.merged], verify, out)
    for task_id, ref in red.items():
        reason = f"verify red with its work merged (wave {index}); the merge is kept at {ref}"
        out.judged[task_id] = (TaskStatus.VERIFY_FAILED, reason)
    if red and on_conflict == "stop":
        out.stopped = f"verify red after wave {index}"
    return out


def _isolate(
    repo: Path,
    run_id: str,
    start: str,
    ready: list[tuple[str, str]],
    verify: Verify,
    out: WaveOutcome,
) -> dict[str, str]:
    """After a red verify: merge and verify the tasks one at a time, keeping the green ones."""
    red: dict[str, str] = {}
    head = start  # every task of the wave started here
    for task_id, commit in ready:
        one = merge_wave(repo, head, [(task_id, commit)], run_id, True, start=start)
        out.timings.update(one.timings)
        if not one.merged:  # conflicts once a red task before it is left out
            out.conflicts[task_id] = one.conflicts[task_id]
            out.judged[task_id] = (TaskStatus.CONFLICT, "merge conflict after isolating verify")
        elif verify(one.head, task_id):
            head = one.head
            out.merged.append(task_id)
        else:
            red[task_id] = names.verify_failed_ref(run_id, task=task_id)
            git.update_ref(repo, red[task_id], one.head)
    out.head = head
    out.isolated = [t for t, _ in ready]
    out.verify = "green" if out.merged else "red"
    return red

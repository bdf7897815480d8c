"""Integration on the host, without a working tree: pre-check, ordered merges, the ref."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner import git
from runner.core.overlap import meeting_pairs, paths_from_raw
from runner.core.results import Conflict


@dataclass
class WaveMerge:
    """What merging one wave's ready tasks onto the integration head produced."""

    head: str
    merged: list[str] = field(default_factory=list)
    conflicts: dict[str, list[Conflict]] = field(default_factory=dict)
    stopped_at: str | None = None
    """The task whose conflict stopped the wave (on_conflict: stop)."""
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)
    """task -> when its merge (or the attempt that conflicted) began and ended."""


def pairwise(repo: Path, commits: dict[str, str], base: str) -> dict[tuple[str, str], list[str]]:
    """Conflicting files for every pair of a wave's task commits (merge-tree, no work tree).

    Only pairs whose changed paths meet are merged (runner.core.overlap): the others cannot
    conflict, and one merge-tree per pair made this quadratic in git processes (issue 8).
    """
    ids = list(commits)
    if len(ids) < 2:
        return {}
    changed = _changed_paths(repo, commits, base)
    pairs = (
        meeting_pairs(changed)
        if changed is not None
        else {(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]}
    )
    pos = {task: i for i, task in enumerate(ids)}
    found = {}
    for a, b in sorted(pairs, key=lambda p: (pos[p[0]], pos[p[1]])):
        outcome = git.merge_tree(repo, commits[a], commits[b], base)
        if not outcome.clean:
            found[(a, b)] = outcome.conflicts
    return found


def _changed_paths(repo: Path, commits: dict[str, str], base: str) -> dict[str, set[str]] | None:
    """Each task's changed paths against base: one git process for the whole wave.

    None when git's answer misses a commit: then every pair is checked, never fewer."""
    lines = "".join(f"{c} {base}\n" for c in dict.fromkeys(commits.values()))
    raw = git.git(
        repo,
        "diff-tree",
        "--stdin",
        "--always",
        "-r",
        "-t",
        "--no-renames",
        "-z",
        input=lines.encode(),
    ).stdout
    by_commit = paths_from_raw(raw.decode("utf-8", "replace"))
    if not set(commits.values()) <= by_commit.keys():
        return None
    return {task: by_commit[commit] for task, commit in commits.items()}


def merge_wave(
    repo: Path,
    head: str,
    ready: Sequence[tuple[str, str]],
    run_id: str,
    stop_on_conflict: bool,
    start: str,
) -> WaveMerge:
    """Merge (task, commit) pairs in order onto head; a conflicting task is left out.

    Each merge is a real two-parent commit, so history shows which task brought what. The
    merge base is the tasks' start commit, never one git finds in a task's history: what is
    applied is exactly start..commit, the change the scope check judged (issue 11).
    """
    pairs = pairwise(repo, dict(ready), start)
    result = WaveMerge(head)
    for task_id, commit in ready:
        merging = time.time()
        outcome = git.merge_tree(repo, result.head, commit, start)
        if outcome.tree is None:
            result.timings[task_id] = (merging, time.time())
            result.conflicts[task_id] = _explain(task_id, outcome.conflicts, result.merged, pairs)
            if stop_on_conflict:
                result.stopped_at = task_id
                break
            continue
        message = f"runner {run_id}: merge task {task_id}\n\nTask commit: {commit}\n"
        result.head = git.commit_tree(repo, outcome.tree, [result.head, commit], message)
        result.merged.append(task_id)
        result.timings[task_id] = (merging, time.time())
    return result


def _explain(
    task_id: str, files: list[str], merged: list[str], pairs: dict[tuple[str, str], list[str]]
) -> list[Conflict]:
    """Name the merged tasks this one collides with; else the integration head itself."""
    out = []
    for other in merged:
        both = pairs.get((other, task_id)) or pairs.get((task_id, other))
        if both:
            out.append(Conflict(with_task=other, files=sorted(set(both) & set(files)) or both))
    return out or [Conflict(with_task=None, files=files)]

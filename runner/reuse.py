"""Incremental runs (issue 13): a task whose input key matches work an earlier run merged is
not run again; that work is re-applied on the task's new start as a fresh commit, then judged
and merged like any other task's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from runner import git, names, reapply
from runner.core.inputs import Candidate, KeyParts, RunInputs, find_reusable, input_key
from runner.pipeline import Attempt
from runner.sandbox.base import Execution

log = structlog.get_logger()


def key_fields(repo: Path, pins: RunInputs | None, task_id: str, start: str) -> dict[str, Any]:
    """A task's input key and its parts, as `task_queued` fields (none without pins)."""
    if pins is None or task_id not in pins.tasks:
        return {}
    t = pins.tasks[task_id]
    parts = KeyParts(
        definition=t.definition,
        start_tree=reapply.tree_of(repo, start) or "",
        shared_tree=pins.shared_tree,
        image_id=pins.images.get(t.image),
        policy=pins.policies.get(t.policy, ""),
    )
    return {"key": input_key(parts), "key_parts": parts.model_dump(mode="json")}


def reapply_earlier(
    repo: Path,
    run_id: str,
    task_id: str,
    key: str,
    start: str,
    candidates: list[Candidate],
    emit: Callable[..., None],
) -> Attempt | None:
    """The earlier work of `key` re-applied on `start` under the task's ref, journaled as
    `reused`; None when there is none or it does not apply cleanly (the task then runs)."""
    source = find_reusable(key, candidates, lambda c: git.has_object(repo, c))
    if source is None:
        return None
    message = (
        f"runner {run_id}: task {task_id}, reused\n\n"
        f"Reused from: run {source.run} task {source.task} commit {source.commit}\n"
    )
    commit = reapply.reapply(repo, source.start_commit, source.commit, start, message)
    if commit is None:
        log.info("reuse conflicts: the task runs", task=task_id, source=source.run)
        return None
    files = git.changed_paths(repo, start, commit)
    ref = names.task_ref(run_id, task_id)
    emit(
        "reused",
        task=task_id,
        source=source.model_dump(mode="json"),
        ref=ref,
        commit=commit,
        files_changed=files,
    )
    git.update_ref(repo, ref, commit)
    log.info("task reused", task=task_id, run=source.run, commit=commit[:12])
    ending = Execution(
        exit_code=0, timed_out=False, oom_killed=False, duration_s=0.0, log_path=Path(os.devnull)
    )
    return Attempt(ending=ending, commit=commit, files=tuple(files), kept=ref)

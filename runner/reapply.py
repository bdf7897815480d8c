"""Incremental runs on the host: trees for input keys, earlier merged tasks, re-applied work.

A reused task's change (`old start..old commit`) is re-applied on the new start in memory
(`git merge-tree` with the old start as merge base) and committed as a fresh commit whose one
parent is the new start: it then goes through the scope check, the wave's merge and verify
like a task that ran.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from runner import git, names
from runner.core.bundle import is_object_id
from runner.core.inputs import Candidate
from runner.core.results import RunResult, TaskStatus


def tree_of(repo: Path, commit: str, path: str | None = None) -> str | None:
    """The tree id of a commit, or of a directory in it; None when there is none."""
    found = _trees.get((repo, commit, path))
    if found is not None:
        return found  # a commit's trees never change: every task of a wave asks for one
    # `C:PATH^{tree}` would read `PATH^{tree}` as the path: a directory is checked by type.
    if path is not None and not git.is_dir_at(repo, commit, path):
        return None
    rev = f"{commit}:{path}" if path is not None else f"{commit}^{{tree}}"
    proc = git.git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", rev, check=False)
    tree = proc.stdout.decode().strip() or None if proc.returncode == 0 else None
    if tree is not None and is_object_id(commit):  # a name (HEAD, a branch) can move
        _trees[(repo, commit, path)] = tree
    return tree


_trees: dict[tuple[Path, str, str | None], str] = {}


def candidates(runs_dir: Path, exclude: str) -> list[Candidate]:
    """Every merged task with a key in the finished runs under runs_dir, oldest run first.

    A run without a readable result.json (running, died, an older runner's) has none."""
    found: list[Candidate] = []
    if not runs_dir.is_dir():
        return found
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        if run_dir.name == exclude:
            continue
        try:
            result = RunResult.model_validate_json(names.result_path(run_dir).read_bytes())
        except (OSError, ValidationError):
            continue
        for t in result.tasks:
            if t.status is not TaskStatus.MERGED or not (t.key and t.commit and t.start_commit):
                continue
            found.append(
                Candidate(
                    run=result.run_id,
                    task=t.id,
                    key=t.key,
                    commit=t.commit,
                    start_commit=t.start_commit,
                    usage=t.usage,
                    reused_from=t.reused_from,
                )
            )
    return found


def reapply(
    repo: Path, old_start: str, old_commit: str, new_start: str, message: str
) -> str | None:
    """A fresh commit on new_start holding old_start..old_commit; None when it conflicts."""
    outcome = git.merge_tree(repo, new_start, old_commit, old_start)
    if outcome.tree is None:
        return None
    return git.commit_tree(repo, outcome.tree, [new_start], message)

"""Taking a run's work home: `runner apply` (into the user's branch) and `runner accept`
(a reviewed scope violation onto the run's integration branch).

Every merge is computed in memory first (`git merge-tree`, no work tree); only a clean result
moves anything, and a checked-out branch moves by `git merge --ff-only` to that result, which
refuses rather than overwrite a file. So a conflict, a dirty checkout or a file in the way
leaves the user's checkout and branches as they were.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from runner import git, names
from runner.core.judge import printable
from runner.core.results import TaskStatus
from runner.errors import GitError, InputError, RunnerError
from runner.runs import RunView, TaskView, read_accepted


class ApplyError(RunnerError):
    """The work cannot be taken home as asked; nothing was changed."""


@dataclass(frozen=True)
class Applied:
    branch: str
    old: str | None
    """Where the branch was (None: it was created)."""
    new: str
    how: str
    """fast-forward, merge, squash, or up to date."""
    checked_out: bool
    """The branch is the checkout's own: its files moved with it."""


def apply(
    repo: Path,
    run: RunView,
    task_ids: list[str],
    *,
    onto: str | None = None,
    squash: bool = False,
) -> Applied:
    """Bring the run's integration branch (or the chosen tasks' work, in wave order) into
    `onto` (default: the checkout's branch). Raises InputError, ApplyError; changes nothing
    then."""
    top = git.toplevel(repo)
    branch, checked_out = _target(top, onto)
    ref = f"refs/heads/{branch}"
    old = git.resolve(top, ref)
    head = old or run.base_commit  # a new branch starts at the run's base
    if checked_out:
        _refuse_dirty(top, branch)
    if task_ids:
        tasks = _chosen(run, task_ids)
        new, how = _merge_tasks(top, run, head, tasks, squash)
    else:
        new, how = _merge_run(top, run, head, squash)
    if new == old:
        return Applied(branch, old, new, "up to date", checked_out)
    if checked_out:
        _fast_forward(top, new)
    else:
        expected = old or ""  # "": the branch must not exist yet
        git.git(top, "update-ref", "-m", f"runner apply {run.run_id}", ref, new, expected)
    return Applied(branch, old, new, how if old else f"new branch ({how})", checked_out)


def _target(top: Path, onto: str | None) -> tuple[str, bool]:
    current = git.git(top, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    here = current.stdout.decode().strip() if current.returncode == 0 else None
    if onto is None:
        if here is None:
            raise InputError(
                f"{top}: HEAD is detached: no branch to apply to",
                hint="name one with --onto BRANCH (a new name creates it at the run's base)",
            )
        return here, True
    check = git.git(top, "check-ref-format", "--branch", onto, check=False)
    if check.returncode != 0 or onto.startswith("-"):
        raise InputError(f"--onto {printable(onto)!r}: not a valid branch name")
    if onto != here:
        for path, name in _worktree_branches(top):
            if name == onto:
                raise InputError(
                    f"branch {onto} is checked out at {path}",
                    hint="run `runner apply` there (its files move with the branch), "
                    "or choose another --onto",
                )
    return onto, onto == here


def _worktree_branches(top: Path) -> list[tuple[str, str]]:
    listing = git.out(top, "worktree", "list", "--porcelain", "-z")
    found, path = [], ""
    for item in listing.split("\0"):
        if item.startswith("worktree "):
            path = item.removeprefix("worktree ")
        elif item.startswith("branch refs/heads/"):
            found.append((path, item.removeprefix("branch refs/heads/")))
    return found


def _refuse_dirty(top: Path, branch: str) -> None:
    # Untracked files are no risk: the fast-forward refuses to overwrite one (said below).
    argv = ("status", "--porcelain=v1", "-z", "--untracked-files=no", "--no-renames")
    raw = git.git(top, *argv).stdout.decode("utf-8", "replace")
    files = [entry[3:] for entry in raw.split("\0") if entry]
    if files:
        shown = ", ".join(printable(f) for f in files[:10])
        more = f" and {len(files) - 10} more" if len(files) > 10 else ""
        raise InputError(
            f"your checkout has uncommitted changes on {branch}: {shown}{more}",
            hint="commit or stash them first (`git stash`), then apply again",
        )


def _chosen(run: RunView, task_ids: list[str]) -> list[TaskView]:
    tasks = [run.task(t) for t in dict.fromkeys(task_ids)]
    for t in tasks:
        if t.commit is None or t.start_commit is None:
            where = f"; what it left is at {t.kept}" if t.kept else ""
            raise InputError(
                f"task {t.id} ({t.status}) has no work under a ref to apply{where}",
                hint=f"see `runner ps {run.run_id}`",
            )
    order = {t.id: i for i, t in enumerate(run.tasks)}
    return sorted(tasks, key=lambda t: (t.wave, order[t.id]))


def _merge_run(top: Path, run: RunView, head: str, squash: bool) -> tuple[str, str]:
    source = git.resolve(top, run.integration_ref) or run.integration_commit
    if source is None or source == run.base_commit:
        raise ApplyError(
            f"run {run.run_id} merged nothing: its integration branch is at its base",
            hint=f"see what each task left: `runner ps {run.run_id}`",
        )
    if git.is_ancestor(top, source, head):
        return head, "up to date"
    if git.is_ancestor(top, head, source) and not squash:
        return source, "fast-forward"
    outcome = git.merge_tree(top, head, source)
    if outcome.tree is None:
        _conflict(f"the run's integration branch {run.integration_ref}", outcome.conflicts)
    branch = run.integration_ref.removeprefix("refs/heads/")
    if squash:
        return _commit(top, outcome.tree, [head], f"runner run {run.run_id} (squashed)"), "squash"
    return _commit(top, outcome.tree, [head, source], f"Merge branch '{branch}'"), "merge"


def _merge_tasks(
    top: Path, run: RunView, head: str, tasks: list[TaskView], squash: bool
) -> tuple[str, str]:
    current, how = head, "up to date"
    for t in tasks:
        assert t.commit is not None and t.start_commit is not None
        if git.is_ancestor(top, t.commit, current):
            continue
        if current == t.start_commit and not squash:
            current, how = t.commit, "fast-forward" if how == "up to date" else how
            continue
        # As the run's own integration: the task's start is the merge base, so exactly the
        # start..commit change is applied (not its dependencies' work, if not chosen).
        outcome = git.merge_tree(top, current, t.commit, t.start_commit)
        if outcome.tree is None:
            _conflict(f"task {t.id}", outcome.conflicts)
        if outcome.tree == git.out(top, "rev-parse", f"{current}^{{tree}}"):
            continue  # its change is there already (applied before)
        # The task's commit is a parent only if the branch already holds its start: else its
        # history (a dependency's work it started from) would pass for merged, and a later
        # merge of that work would take it as already there and drop it.
        truthful = git.is_ancestor(top, t.start_commit, current)
        parents = [current, t.commit] if truthful else [current]
        what = "merge task" if truthful else "apply the change of task"
        message = f"runner {run.run_id}: {what} {t.id}\n\nTask commit: {t.commit}\n"
        current, how = (
            _commit(top, outcome.tree, parents, message),
            "merge" if truthful else "commit",
        )
    if squash and current != head:
        tree = git.out(top, "rev-parse", f"{current}^{{tree}}")
        ids = ", ".join(t.id for t in tasks)
        message = f"runner {run.run_id}: {ids} (squashed)"
        current, how = _commit(top, tree, [head], message), "squash"
    return current, how


def _conflict(what: str, files: list[str]) -> None:
    shown = ", ".join(printable(f) for f in files[:10]) or "(no file named)"
    raise ApplyError(
        f"{what} conflicts with your branch in: {shown}; nothing was changed",
        hint="apply fewer tasks, or merge by hand: git merge <its ref>",
    )


def _commit(top: Path, tree: str | None, parents: list[str], message: str) -> str:
    """A commit in the user's name when git knows it (it is their branch), else the runner's."""
    assert tree is not None
    known = git.git(top, "var", "GIT_COMMITTER_IDENT", check=False).returncode == 0
    args = [a for p in parents for a in ("-p", p)]
    env = None if known else git.RUNNER_IDENTITY
    return git.out(top, "commit-tree", tree, *args, "-m", message, env=env)


def _fast_forward(top: Path, new: str) -> None:
    proc = git.git(top, "merge", "--ff-only", "--quiet", "--no-stat", new, check=False)
    if proc.returncode == 0:
        return
    said = proc.stderr.decode("utf-8", "replace")
    in_way = [line.strip() for line in said.splitlines() if line.startswith("\t")]
    if in_way:
        raise ApplyError(
            "untracked files in your checkout would be overwritten: "
            + ", ".join(printable(f) for f in in_way[:10])
            + "; nothing was changed",
            hint="move them away (or commit them), then apply again",
        )
    raise GitError(("git", "merge", "--ff-only", new), proc.returncode, "", said)


# -- accept --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    task: str
    previous: str
    head: str
    record: Path


def accept(repo: Path, run: RunView, task_id: str) -> Accepted:
    """Merge a reviewed scope violation onto the run's integration branch and record it in
    accepted.json beside result.json. Raises InputError, ApplyError; changes nothing then."""
    top = git.toplevel(repo)
    t = run.task(task_id)
    if run.live:
        raise InputError(
            f"run {run.run_id} is still running", hint="accept its tasks once it has ended"
        )
    if t.status != TaskStatus.SCOPE_VIOLATION:
        raise InputError(
            f"task {t.id} ended {t.status}, not scope_violation: there is nothing to accept",
            hint=f"to take its work anyway: runner apply {run.run_id} {t.id}",
        )
    if t.accepted or t.id in read_accepted(run.run_dir):
        raise InputError(f"task {t.id} is already accepted onto {run.integration_ref}")
    if t.commit is None or t.start_commit is None or git.resolve(top, t.commit) is None:
        raise ApplyError(f"task {t.id}'s work is not in this repo any more (was its ref removed?)")
    head = git.resolve(top, run.integration_ref)
    if head is None:
        raise ApplyError(f"the run's integration branch {run.integration_ref} is gone")
    outcome = git.merge_tree(top, head, t.commit, t.start_commit)
    if outcome.tree is None:
        _conflict(f"task {t.id}", outcome.conflicts)
    message = (
        f"runner {run.run_id}: accept task {t.id} (scope violation, reviewed)\n\n"
        f"Task commit: {t.commit}\nOutside its scope: {', '.join(t.violations) or '-'}\n"
    )
    parents = [head, t.commit] if git.is_ancestor(top, t.start_commit, head) else [head]
    new = _commit(top, outcome.tree, parents, message)
    git.update_ref(top, run.integration_ref, new, head)
    record = _record(run, t, head, new)
    return Accepted(t.id, head, new, record)


def _record(run: RunView, t: TaskView, previous: str, head: str) -> Path:
    path = names.accepted_path(run.run_dir)
    items = list(read_accepted(run.run_dir).values())
    items.append(
        {
            "task": t.id,
            "commit": t.commit,
            "violations": t.violations,
            "previous": previous,
            "head": head,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_id": run.run_id, "accepted": items}, indent=2) + "\n")
    os.replace(tmp, path)  # a reader never sees half a record
    return path

"""A task's work into the user's repo: through a quarantine, checked, or refused with a reason.

What a task hands back is data, and its problems are its own (issue 11): every check here
ends that task `rejected`, never the run. The bundle is fetched first into a quarantine
repo of the runner's (it borrows the user's objects, so only the task's new objects land
there); only once its one ref passes every check is it fetched on into the user's repo,
which then receives just the objects that ref reaches: nothing else a bundle's pack may
carry reaches the user's object store.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from runner import git, names
from runner.core.bundle import (
    MAX_HEADER,
    BadBundle,
    Change,
    header_problem,
    parse_header,
    path_problem,
)
from runner.errors import GitError


@dataclass(frozen=True)
class Intake:
    """The task's commit under its ref, what it changed, or why it was refused."""

    commit: str | None
    """Under the task's ref in the user's repo (None: refused before it got there)."""
    changes: list[Change] = field(default_factory=list)
    problem: str | None = None


def bring_home(
    repo: Path,
    start: str,
    head: str,
    bundle: Path | None,
    ref: str,
    scratch: Path,
    max_objects: int,
) -> Intake:
    """Check the collected `start..head` and fetch it under `ref`; refuse with a reason."""
    if bundle is None:
        if head == start:
            return Intake(start)
        return Intake(None, problem=f"moved its branch off its start {start[:12]} to {head[:12]}")
    try:
        with bundle.open("rb") as fh:
            header = parse_header(fh.read(MAX_HEADER))
    except BadBundle as exc:
        return Intake(None, problem=f"its bundle is refused: {exc}")
    if problem := header_problem(header, start, names.RESULT_REF):
        return Intake(None, problem=problem)
    quarantine = scratch / "quarantine.git"
    shutil.rmtree(quarantine, ignore_errors=True)
    git.init_quarantine(quarantine, repo)
    try:
        return _checked(repo, quarantine, start, bundle, ref, max_objects)
    finally:
        shutil.rmtree(quarantine, ignore_errors=True)


def _checked(
    repo: Path, quarantine: Path, start: str, bundle: Path, ref: str, max_objects: int
) -> Intake:
    try:
        git.fetch_checked(quarantine, bundle, names.RESULT_REF, "refs/result")
    except GitError as exc:
        return Intake(None, problem=f"its bundle failed git's checks: {_tail(exc)}")
    found = git.ref_object(quarantine, "refs/result")
    if found is None or found[1] != "commit":
        return Intake(None, problem=f"its result is a {found[1] if found else None}, not a commit")
    commit = found[0]
    if (count := git.object_count(quarantine)) > max_objects:
        return Intake(
            None, problem=f"its bundle has {count} objects (policy max_objects: {max_objects})"
        )
    new = git.descent(quarantine, start, commit)
    if new is None:
        return Intake(None, problem=f"its commit does not descend from its start {start[:12]}")
    # Every commit of start..commit must be the task's own: a commit the user's repo already
    # has is another task's result or another branch, taken as if it were this task's work.
    if known := git.present(repo, new):
        where = ", ".join(git.refs_containing(repo, known[0])) or "your repo"
        return Intake(
            None,
            problem=f"its history holds commits it did not make ({known[0][:12]}, on {where})",
        )
    try:
        # Only what refs/result reaches travels; the ref then holds exactly commit.
        git.fetch_checked(repo, quarantine, "refs/result", ref)
    except GitError as exc:
        return Intake(None, problem=f"its work failed git's checks: {_tail(exc)}")
    changes = [Change(p, old, new) for p, old, new in git.changes(repo, start, commit)]
    return Intake(commit, changes, path_problem(changes))


def _tail(exc: GitError) -> str:
    lines = (exc.stderr or exc.stdout).strip().splitlines()
    return lines[-1][:300] if lines else f"exit {exc.code}"

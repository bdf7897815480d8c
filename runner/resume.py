"""`runner resume RUN`: continue an interrupted or killed run from its journal.

The run's own copy of its plan is checked again (policies, scopes, the host) and run from the
journal's base commit: a branch that moved since, or a plan file edited since, changes nothing.
Tasks judged before stay judged; the coordinator decides what to do with the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner import git, names
from runner.core.inputs import DRIFT_KINDS, RunInputs, drift, notes
from runner.core.plan import parse_plan
from runner.core.projection import Replay, replay
from runner.core.results import RunResult, RunStatus
from runner.core.runstate import BadEvent
from runner.errors import InputError
from runner.journal import read_journal
from runner.preflight import Prepared, preflight
from runner.settings import Settings


def prepare_resume(
    repo: Path,
    which: str,
    settings: Settings,
    environ: Mapping[str, str],
    retry: Sequence[str] = (),
) -> tuple[Prepared, Replay, list[str]]:
    """The run to continue, checked, and the tasks to run again (`retry`: the named ones and
    what depends on them). Raises InputError (nothing is changed)."""
    from runner.gc import run_alive

    run_dir, prepared, done = load_run_plan(repo, which, settings, environ)
    result = done.result
    if result.status in (RunStatus.SUCCESS, RunStatus.PARTIAL) and not retry:
        raise InputError(
            f"run {result.run_id} finished ({result.status.value}): there is nothing to resume",
            hint="run a task again with `runner retry`, or the plan with `runner run`",
        )
    if result.status is RunStatus.RUNNING and run_alive(run_dir):
        raise InputError(
            f"run {result.run_id} is still running (its process is alive)",
            hint=f"watch it with `runner status {result.run_id}`",
        )
    again = _retried(prepared, done, retry) if retry else []
    return prepared, done, again


def resume_backend(result: RunResult, asked: str | None) -> str | None:
    """The backend a resumed (or retried) run goes on with: the one it was pinned with;
    `asked` (--backend, RUNNER_BACKEND) must be that one, since its work may live in that
    backend's objects (a Swarm run's volumes). None: the run pinned none (an older runner).
    Raises InputError."""
    pinned = result.inputs.backend if result.inputs is not None else None
    if asked and pinned and asked != pinned:
        raise InputError(  # one line
            f"run {result.run_id} was pinned to backend {pinned}, not {asked} (its work is in "
            f"{pinned}'s sandboxes): say --backend {pinned}, or neither --backend nor "
            "RUNNER_BACKEND"
        )
    return pinned or asked


def prepare_rerun(
    repo: Path, which: str, settings: Settings, environ: Mapping[str, str]
) -> tuple[Prepared, str, RunInputs]:
    """`runner rerun`: the run's own plan copy, checked again, on its pinned base commit, and
    the inputs it pinned (the caller checks the images and policies against them).
    Raises InputError (nothing is changed)."""
    _, prepared, done = load_run_plan(repo, which, settings, environ)
    result = done.result
    if result.status is RunStatus.RUNNING:
        raise InputError(
            f"run {result.run_id} has not finished: there is no result to replay yet",
            hint=f"see `runner status {result.run_id}`; `runner resume` continues it",
        )
    if result.inputs is None:
        raise InputError(
            f"run {result.run_id} pinned no inputs (an older runner made it): it cannot be "
            "replayed exactly",
            hint="run its plan again with `runner run`",
        )
    if not git.has_object(prepared.repo, result.base_commit):
        raise InputError(
            f"run {result.run_id}: its base commit {result.base_commit} is gone from the repo",
            hint="fetch it again, or run the plan with `runner run`",
        )
    return prepared, result.run_id, result.inputs


def check_drift(run_id: str, pinned: RunInputs, now: RunInputs, allow: Sequence[str]) -> list[str]:
    """Refuse a rerun whose pinned images or policies are gone or changed, unless `allow`
    names their kind. Returns what differs but is allowed, and version notes.
    Raises InputError."""
    for kind in allow:
        if kind not in DRIFT_KINDS:
            raise InputError(
                f"--allow-drift {kind}: not an input that may drift",
                hint=f"say one or more of: {', '.join(DRIFT_KINDS)}",
            )
    found = drift(pinned, now)
    refused = [what for kind, what in found if kind not in allow]
    if refused:
        kinds = sorted({kind for kind, what in found if kind not in allow})
        raise InputError(
            f"run {run_id} cannot be replayed: " + "; ".join(refused),
            hint=f"restore it, or let it differ: --allow-drift {','.join(kinds)}",
        )
    return [what for _, what in found] + notes(pinned, now)


def load_run_plan(
    repo: Path, which: str, settings: Settings, environ: Mapping[str, str]
) -> tuple[Path, Prepared, Replay]:
    """A run's dir, its own plan copy checked again (as at its start, from its base commit),
    and its journal replayed. Raises InputError."""
    from runner.coordinator import state_root
    from runner.inputs import plan_hash
    from runner.status import find_run

    top = git.toplevel(repo)
    run_dir = find_run(state_root(top, settings.state_dir), which)
    read = read_journal(names.journal_path(run_dir))
    try:
        done = replay(read.events)
    except BadEvent as exc:
        raise InputError(f"{run_dir}/journal.jsonl: cannot read the run: {exc}") from None
    result = done.result
    copy = Path(done.plan_copy) if done.plan_copy else None
    if copy is None or not copy.is_file():
        raise InputError(
            f"run {result.run_id} has no copy of its plan ({copy})",
            hint="run the plan again with `runner run` (finished work is under refs/runner/)",
        )
    text = copy.read_text(encoding="utf-8")
    if done.plan_hash and plan_hash(text) != done.plan_hash:
        raise InputError(f"{copy}: the run's copy of its plan was changed")
    # Checked as at the start (its policy files are found next to the original plan).
    prepared = preflight(parse_plan(text, result.plan), top, settings, environ)
    if prepared.dispatch.waves != _waves(read.events):
        raise InputError(f"run {result.run_id}: its plan now makes other waves")
    return run_dir, dataclasses.replace(prepared, base_commit=result.base_commit), done


def run_record(run_dir: Path) -> RunResult:
    """A run's result as its journal says (also while it runs). Raises InputError."""
    read = read_journal(names.journal_path(run_dir))
    try:
        return replay(read.events).result
    except BadEvent as exc:
        raise InputError(f"{names.journal_path(run_dir)}: cannot read the run: {exc}") from None


def _retried(prepared: Prepared, done: Replay, named: Sequence[str]) -> list[str]:
    """The named tasks and, after them, every task that depends on one and was not merged."""
    plan, result = prepared.doc.plan, done.result
    known = {t.id for t in plan.tasks}
    for task_id in named:
        if task_id not in known:
            raise InputError(
                f"run {result.run_id} has no task {task_id!r}",
                hint="its tasks: " + ", ".join(sorted(known)),
            )
        if result.task(task_id).status.ok:
            status = result.task(task_id).status.value
            raise InputError(f"task {task_id} is {status}: there is nothing to retry")
    again = list(dict.fromkeys(named))
    grew = True
    while grew:  # dependents of dependents too
        grew = False
        for t in plan.tasks:
            blocked = set(t.depends_on) & set(again) and not result.task(t.id).status.ok
            if t.id not in again and blocked:
                again.append(t.id)
                grew = True
    return again


def _waves(events: list[dict[str, object]]) -> list[list[str]]:
    planned = next(e for e in events if e.get("event") == "planned")
    waves = planned["waves"]
    assert isinstance(waves, list)
    return [list(w) for w in waves]

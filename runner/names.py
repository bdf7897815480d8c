"""Names of everything a run makes, in git, on disk and in Docker: one spelling each.

Each kind of thing lives in its own namespace (`task/`, `verify-failed/wave-N`, a role in
container names, a kind in cache volume names), so no task id can collide with a name the
runner uses for itself: a task called `verify` or `wave-1` is just a task.
"""

from __future__ import annotations

from pathlib import Path

RESULT_REF = "refs/runner-result"
"""The one ref a collector writes into a task's bundle."""


def integration_ref(run_id: str) -> str:
    return f"refs/heads/runner/{run_id}/integration"


def run_refs(run_id: str) -> str:
    """Prefix of every ref of a run except its integration branch."""
    return f"refs/runner/{run_id}/"


def task_ref(run_id: str, task_id: str) -> str:
    """Where a task's work is kept, merged or not."""
    return f"refs/runner/{run_id}/task/{task_id}"


def attempt_ref(run_id: str, task_id: str, attempt: int) -> str:
    """Where an earlier attempt's work is kept once the task is retried."""
    return f"refs/runner/{run_id}/attempt/{task_id}/{attempt}"


def plan_copy(run_dir: Path) -> Path:
    """The plan as the run read it: `resume` runs this, not a file edited since."""
    return run_dir / "plan.yaml"


def verify_failed_ref(run_id: str, *, wave: int | None = None, task: str | None = None) -> str:
    """Where a red merge is kept: of a whole wave, or of one task verified alone."""
    what = f"wave-{wave}" if task is None else f"task/{task}"
    return f"refs/runner/{run_id}/verify-failed/{what}"


def runs_dir(state_root: Path) -> Path:
    """Where every run of a repo keeps its state (one dir per run id)."""
    return state_root / "runs"


def run_dir(state_root: Path, run_id: str) -> Path:
    return runs_dir(state_root) / run_id


def result_path(run_dir: Path) -> Path:
    """The run's result document (the journal's projection, written when the run ends)."""
    return run_dir / "result.json"


def owner_path(run_dir: Path) -> Path:
    """Which process runs it (pid, host): how gc and resume tell a live run from a dead one."""
    return run_dir / "owner.json"


def accepted_path(run_dir: Path) -> Path:
    """Scope violations a person accepted after the run (`runner accept`)."""
    return run_dir / "accepted.json"


def usage_log(state_root: Path) -> Path:
    """One line per task of every run of the repo (time, status, usage)."""
    return state_root / "usage.jsonl"


def sandbox_log(state: Path, role: str) -> Path:
    """A sandbox's log in its state dir (`task.log`, `verify.log`)."""
    return state / f"{role}.log"


def journal_path(run_dir: Path) -> Path:
    """The run's append-only event journal (runner/journal.py)."""
    return run_dir / "journal.jsonl"


def sandbox_dir(run_dir: Path, role: str, name: str) -> Path:
    """A sandbox's host state (scripts, log, copied-out files): tasks/<id>, verify/<name>, or
    shell/<id> (`runner shell`: never a task's own dir, which may hold its kept work)."""
    kind = {"task": "tasks", "collect": "tasks", "shell": "shell"}.get(role, "verify")
    return run_dir / kind / name


def container_name(run_id: str, role: str, name: str) -> str:
    return f"runner-{run_id}-{role}-{name}"


def cache_volume(repo_key: str, role: str, task_id: str = "") -> str:
    """A task's cache (per repo and task) or verify's (one per repo); never the same name."""
    kind = f"task-{task_id}" if role == "task" else "verify"
    return f"runner-cache-{repo_key}-{kind}"


RUN_REF_ROOTS = ("refs/runner/", "refs/heads/runner/")
"""Where every run's refs live (for listing them all: `runner prune`, `runner rm`)."""


def run_of_ref(ref: str) -> str | None:
    """The run a ref belongs to (one of its run refs or its integration branch), or None."""
    if ref.startswith("refs/runner/"):
        run_id = ref.removeprefix("refs/runner/").split("/", 1)[0]
        return run_id if ref.startswith(run_refs(run_id)) and run_id else None
    parts = ref.removeprefix("refs/heads/runner/").split("/")
    if ref.startswith("refs/heads/runner/") and len(parts) == 2 and parts[0]:
        return parts[0] if ref == integration_ref(parts[0]) else None
    return None


def cache_record(state_root: Path) -> Path:
    """When each of the repo's cache volumes was last used (retention: `runner gc --caches`)."""
    return state_root / "caches.json"

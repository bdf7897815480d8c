"""`runner gc`: remove what runs left behind, in Docker (by label) and on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from runner import git, names
from runner.errors import InputError
from runner.sandbox import labels as L
from runner.settings import Settings


def write_owner(run_dir: Path) -> None:
    """Mark a run directory with its owner process, so gc can tell a live run from a dead one."""
    owner = L.labels_for("-", "-", "owner")
    (run_dir / "owner.json").write_text(json.dumps({"pid": owner[L.PID], "host": owner[L.HOST]}))


def run_alive(run_dir: Path) -> bool:
    """Whether the process that owns a run (its owner.json) still runs."""
    try:
        data = json.loads((run_dir / "owner.json").read_text())
    except (OSError, ValueError):
        return False
    return L.owner_alive({L.PID: str(data.get("pid", 0)), L.HOST: str(data.get("host", ""))})


def stale_state(repo: Path, root: Path) -> tuple[list[Path], list[Path]]:
    """Of runs whose owner is gone: (dirs to remove, workspaces kept because their work is
    not home). Logs and results are always kept.

    A task's workspace (and its collected bundle) goes only once its work is under its ref:
    a run killed mid-task leaves the only copy of that work there (issue 9).
    """
    remove: list[Path] = []
    kept: list[Path] = []
    for run_dir in sorted((root / "runs").glob("*")):
        if run_alive(run_dir):
            continue
        if (run_dir / "objects").exists():  # `objects: reachable` stores: a copy of history
            remove.append(run_dir / "objects")
        for task_dir in (run_dir / "verify").glob("*"):
            remove += [task_dir / d for d in _DIRS if (task_dir / d).exists()]
        for task_dir in (run_dir / "tasks").glob("*"):
            home = git.resolve(repo, names.task_ref(run_dir.name, task_dir.name)) is not None
            for d in _DIRS:
                path = task_dir / d
                if path.exists():
                    (remove if home or d == "control" else kept).append(path)
    return remove, [p for p in kept if p.name == "work"]


_DIRS = ("control", "out", "bundle", "collected", "work")


def collect_garbage(
    settings: Settings, repo: Path | None, *, all_runs: bool, caches: bool
) -> list[str]:
    from runner.coordinator import repo_key, state_root
    from runner.sandbox.docker import DockerBackend, connect

    client = connect(settings.docker_timeout)
    backend = DockerBackend(client, settings.collector_image)
    if caches and repo is None and not all_runs:
        raise InputError(
            "--caches needs --repo DIR (that repo's caches) or --all (every repo's)",
            hint="runner gc --caches --repo .",
        )
    if all_runs:
        removed = sum(backend.cleanup(r) for r in sorted(backend.runs()))
    else:
        removed = backend.cleanup(None)
    lines = [f"removed {removed} container(s) and network(s) left by runs"]
    if caches:
        key = repo_key(git.toplevel(repo)) if repo is not None and not all_runs else None
        lines.append(f"removed {backend.remove_caches(key)} cache volume(s)")
    if repo is not None:
        top = git.toplevel(repo)
        stale, kept = stale_state(top, state_root(top, settings.state_dir))
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        lines.append(f"removed {len(stale)} stale workspace dir(s) under {repo}")
        for path in kept:
            lines.append(f"kept {path}: its task's work is not under its ref (look, then rm -r)")
    return lines

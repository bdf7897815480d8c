"""`runner gc`: remove what runs left behind, in Docker (by label) and on disk."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from runner import git, names
from runner.errors import InputError
from runner.sandbox import labels as L
from runner.sandbox.caches import CacheVolume, last_use, unused_since
from runner.settings import Settings

if TYPE_CHECKING:
    from runner.sandbox.docker import DockerBackend


def write_owner(run_dir: Path) -> None:
    """Mark a run directory with its owner process, so gc can tell a live run from a dead one."""
    owner = L.labels_for("-", "-", "owner")
    names.owner_path(run_dir).write_text(json.dumps({"pid": owner[L.PID], "host": owner[L.HOST]}))


def run_alive(run_dir: Path) -> bool:
    """Whether the process that owns a run (its owner.json) still runs."""
    try:
        data = json.loads(names.owner_path(run_dir).read_text())
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
    for run_dir in sorted(names.runs_dir(root).glob("*")):
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
    settings: Settings,
    repo: Path | None,
    *,
    all_runs: bool,
    caches: bool,
    older_than: timedelta | None = None,
    dry_run: bool = False,
    only_caches: bool = False,
) -> list[str]:
    from runner.coordinator import state_root
    from runner.sandbox.docker import DockerBackend, connect

    if caches and repo is None and not all_runs:
        raise InputError(
            "--caches needs --repo DIR (that repo's caches) or --all (every repo's)",
            hint="runner gc --caches --repo .",
        )
    if older_than is not None and not caches:
        raise InputError("--older-than is for --caches", hint="runner gc --caches --older-than 14d")
    if older_than is not None and (repo is None or all_runs):
        raise InputError(
            "--older-than needs --repo DIR (and not --all): caches' last use is recorded per repo",
            hint="runner gc --caches --older-than 14d --repo .",
        )
    client = connect(settings.docker_timeout)
    backend = DockerBackend(client, settings.collector_image)
    lines = []
    if only_caches:
        pass
    elif dry_run:
        lines.append("containers and networks of dead runs: not looked at (--dry-run)")
    else:
        if all_runs:
            removed = sum(backend.cleanup(r) for r in sorted(backend.runs()))
        else:
            removed = backend.cleanup(None)
        lines.append(f"removed {removed} container(s) and network(s) left by runs")
    if caches:
        top = git.toplevel(repo) if repo is not None and not all_runs else None
        lines += _caches(backend, settings, top, older_than, dry_run)
    if repo is not None and not only_caches:
        top = git.toplevel(repo)
        stale, kept = stale_state(top, state_root(top, settings.state_dir))
        if dry_run:
            lines += [f"would remove {path}" for path in stale]
        else:
            for path in stale:
                shutil.rmtree(path, ignore_errors=True)
            lines.append(f"removed {len(stale)} stale workspace dir(s) under {repo}")
        for path in kept:
            lines.append(f"kept {path}: its task's work is not under its ref (look, then rm -r)")
    return lines


def _caches(
    backend: DockerBackend,
    settings: Settings,
    repo: Path | None,
    older_than: timedelta | None,
    dry_run: bool,
) -> list[str]:
    """Cache volumes of one repo (None: of every repo): all of them, or those unused for
    older_than. Never a volume without the runner's label, never another repo's."""
    from runner.coordinator import repo_key, state_root
    from runner.lock import repo_lock
    from runner.retention import all_run_dirs, now, record_cache_use

    key = repo_key(repo) if repo is not None else None
    if older_than is None and not dry_run:
        return [f"removed {backend.remove_caches(key)} cache volume(s)"]
    volumes = backend.cache_volumes(key, sizes=dry_run)
    record: dict[str, datetime] = {}
    root = state_root(repo, settings.state_dir) if repo is not None else None
    if repo is not None and root is not None:
        # Runs still on disk say when they used which cache; the record keeps it after them.
        record = record_cache_use(repo, root, all_run_dirs(root, repo))
    if older_than is not None:
        going = unused_since(volumes, record, now() - older_than)
    else:
        going = [v for v in volumes if not v.in_use]
    if dry_run:
        return _cache_report(volumes, record, {v.name for v in going})
    if root is None:  # --all: every repo's caches (refused with --older-than above)
        return [f"removed {backend.remove_caches(None)} cache volume(s)"]
    # A run of this repo mounts its caches as it goes: none is removed while one runs.
    with repo_lock(root, "gc"):
        removed = sum(backend.remove_cache(v.name, v.repo_key) for v in going)
    age = f" not used for {_age(older_than)}" if older_than is not None else ""
    return [f"removed {removed} cache volume(s){age}; kept {len(volumes) - removed}"]


def _cache_report(
    volumes: list[CacheVolume], record: dict[str, datetime], going: set[str]
) -> list[str]:
    lines = []
    for v in sorted(volumes, key=lambda v: (v.repo_key, v.name)):
        when = last_use(v, record)
        used = when.astimezone(UTC).isoformat(timespec="seconds") if when else "unknown"
        mark = "would remove" if v.name in going else "in use" if v.in_use else "kept"
        lines.append(f"{v.name}  {_mib(v.size)}  last used {used}  {mark}")
    total = sum(v.size or 0 for v in volumes)
    freed = sum(v.size or 0 for v in volumes if v.name in going)
    lines.append(
        f"{len(volumes)} cache volume(s), {total / 2**20:.1f} MiB; "
        f"{len(going)} would be removed ({freed / 2**20:.1f} MiB)"
    )
    return lines


def _mib(size: int | None) -> str:
    return f"{size / 2**20:8.1f} MiB" if size is not None else "       ? MiB"


def _age(delta: timedelta) -> str:
    return f"{delta.days}d" if delta.seconds == 0 else str(delta)

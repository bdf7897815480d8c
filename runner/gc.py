"""`runner gc`: remove what runs left behind, in Docker (by label) and on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from runner import git
from runner.sandbox import labels as L
from runner.settings import Settings


def write_owner(run_dir: Path) -> None:
    """Mark a run directory with its owner process, so gc can tell a live run from a dead one."""
    owner = L.labels_for("-", "-", "owner")
    (run_dir / "owner.json").write_text(json.dumps({"pid": owner[L.PID], "host": owner[L.HOST]}))


def _run_alive(run_dir: Path) -> bool:
    try:
        data = json.loads((run_dir / "owner.json").read_text())
    except (OSError, ValueError):
        return False
    return L.owner_alive({L.PID: str(data.get("pid", 0)), L.HOST: str(data.get("host", ""))})


def stale_state(root: Path) -> list[Path]:
    """Workspaces, scratch dirs and object stores of runs whose owner is gone (logs and results
    are kept)."""
    found = []
    for run_dir in sorted((root / "runs").glob("*")):
        if _run_alive(run_dir):
            continue
        if (run_dir / "objects").exists():  # `objects: reachable` stores (a copy of history)
            found.append(run_dir / "objects")
        for sub in ("tasks", "verify"):
            for task_dir in (run_dir / sub).glob("*"):
                found += [
                    task_dir / d
                    for d in ("work", "control", "bundle", "collected")
                    if (task_dir / d).exists()
                ]
    return found


def collect_garbage(
    settings: Settings, repo: Path | None, *, all_runs: bool, caches: bool
) -> list[str]:
    from runner.coordinator import state_root
    from runner.sandbox.docker import DockerBackend, connect

    client = connect(settings.docker_timeout)
    backend = DockerBackend(client, settings.collector_image)
    if all_runs:
        runs = {c.labels[L.RUN] for c in client.containers.list(all=True, filters={"label": L.RUN})}
        runs |= {n.attrs["Labels"][L.RUN] for n in client.networks.list(filters={"label": L.RUN})}
        removed = sum(backend.cleanup(r) for r in sorted(runs))
    else:
        removed = backend.cleanup(None)
    lines = [f"removed {removed} container(s) and network(s) left by runs"]
    if caches:
        lines.append(f"removed {backend.remove_caches()} cache volume(s)")
    if repo is not None:
        stale = stale_state(state_root(git.toplevel(repo), settings.state_dir))
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        lines.append(f"removed {len(stale)} stale workspace dir(s) under {repo}")
    return lines

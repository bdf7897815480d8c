"""One run per repo at a time: an advisory lock in the repo's runner state dir.

Runs of one repo share its task cache volumes (by task id); two at once would let one run's
task see the other's half-written cache. The kernel drops the lock with its process, so a
killed coordinator's lock is free again at once: there is no stale lock to take over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from runner.errors import InputError


@contextlib.contextmanager
def repo_lock(root: Path, run_id: str) -> Iterator[None]:
    """Hold the repo's run lock for the block. Raises InputError naming the holder."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "lock"
    with path.open("a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except ValueError:
                holder = {}
            raise InputError(
                f"another run is in progress on this repo (run {holder.get('run', '?')}, "
                f"pid {holder.get('pid', '?')})",
                hint="wait for it to end (`runner` holds .git/runner/lock while it runs)",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"run": run_id, "pid": os.getpid()}))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

"""Disk limit of a running task: a watchdog on what it adds to its host paths.

The root file system has no project quotas and fuse-overlayfs cannot cap a container, so the
runner watches the host side of /work, /out and /cache and kills the task once together they
hold more than the policy's `disk` above what they held when it started. bench/disk.py compares
this with a size-capped tmpfs and a loop-mounted file system per task: the watchdog is the one
that covers the persistent cache volume and needs neither root nor a free loop device, and its
overshoot is what a writer adds in about one look plus one kill (measured there).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType

import structlog

from runner.sandbox.scripts import disk_guard

log = structlog.get_logger()

BLOCK = disk_guard.BLOCK
"""Least charge per file or directory: an inode costs the host something even when empty, and
free empty files would let a task fill the inode table without ever touching the limit."""


def usage(paths: Iterable[Path]) -> int:
    """Bytes the host spends on everything under paths, like `du`: allocated blocks, not
    apparent sizes (a sparse file costs what it holds), each inode once (hard links), symlinks
    never followed. Files vanishing during the walk are skipped; a path that is missing is 0.
    An unreadable directory's contents are not seen (as root, which CI is, all are readable).
    The one walk of both backends: the Swarm guard runs the same script on the task's node."""
    return disk_guard.usage([str(p) for p in paths])


def fs_used(paths: Iterable[Path]) -> int:
    """Bytes in use on the file systems holding paths (statvfs, each file system once): O(1),
    but counts every writer on them, not only the task."""
    return disk_guard.fs_used([str(p) for p in paths])


class DiskGuard:
    """Watches `paths` against `limit` bytes added since it started; calls `kill` once over.

    Use around a running task::

        guard = DiskGuard([work, out, cache], policy.disk, container.kill)
        guard.start()          # the base: what is there already does not count
        container.wait()
        guard.stop()
        guard.exceeded         # it wrote more than the limit (also when it ended between looks)

    (or `with DiskGuard(...) as guard:`). What counts is `measure` (a walk of the trees, exact
    but O(files)). A walk runs every `interval` seconds or less often, so that walks take no
    more than `cpu_share` of a core; in between, `probe` (statvfs of the file systems, O(1))
    runs every `interval` and starts a walk at once when the file systems grew by more than
    the task's headroom since the last walk. A fast writer is thus seen within about one
    interval plus one walk, whatever the period of the walks (bench/disk.py). `probe=None`
    walks on the period only. `kill` runs on the guard's thread; its errors are logged.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        limit: int,
        kill: Callable[[], object],
        *,
        interval: float = 0.05,
        cpu_share: float = 0.1,
        measure: Callable[[Sequence[Path]], int] = usage,
        probe: Callable[[Sequence[Path]], int] | None = fs_used,
    ) -> None:
        self.paths, self.limit, self.kill = list(paths), limit, kill
        self.interval, self.cpu_share = interval, cpu_share
        self.measure, self.probe = measure, probe
        self.exceeded = False
        self.base = 0
        self.added = 0
        """Bytes added at the last look (negative when the task freed more than it wrote)."""
        self.peak = 0
        """Most bytes added seen at any look."""
        self.looks = 0
        """Walks done (the base and the last look included)."""
        self._started = False
        self._grown_from, self._walk_s = 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="disk-guard", daemon=True)

    def start(self) -> None:
        """Take the base (what is there already does not count) and start watching."""
        self._grown_from = self.probe(self.paths) if self.probe else 0
        started = time.monotonic()
        self.base = self.measure(self.paths)
        self._walk_s = time.monotonic() - started
        self._started = True
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; idempotent. Then `exceeded`, `added` and `peak` are final."""
        if self._stop.is_set() or not self._started:
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        # A last look once the task has ended: a task that wrote past the limit and exited
        # between two looks is caught all the same (nothing left to kill).
        self._look()

    def __enter__(self) -> DiskGuard:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _watch(self) -> None:
        walk_s, grown_from = self._walk_s, self._grown_from
        period = max(self.interval, walk_s / self.cpu_share)  # between walks
        last_walk = time.monotonic()
        while not self._stop.wait(self.interval):
            since = time.monotonic() - last_walk
            if since < period:
                if self.probe is None or since < 2 * walk_s:  # triggered walks: <= half a core
                    continue
                if self.probe(self.paths) - grown_from <= self.limit - self.added:
                    continue
            if self.probe:
                grown_from = self.probe(self.paths)
            last_walk = time.monotonic()
            if self._look() and not self._stop.is_set():
                log.warning("disk limit exceeded", added=self.added, limit=self.limit)
                try:
                    self.kill()
                except Exception as exc:  # a thread boundary: report, never lose the guard
                    log.error("disk guard could not stop the task", error=repr(exc))
                return
            walk_s = time.monotonic() - last_walk
            period = max(self.interval, walk_s / self.cpu_share)

    def _look(self) -> bool:
        """One measurement; True the first time the limit is passed."""
        self.looks += 1
        self.added = self.measure(self.paths) - self.base
        self.peak = max(self.peak, self.added)
        if self.added > self.limit and not self.exceeded:
            self.exceeded = True
            return True
        return False

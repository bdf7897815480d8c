"""What a task changed in its workspace, seen from the host by `lstat` alone (issue 8).

Two uses: a task whose workspace and RUNNER_OUT are as they were needs no collector at all,
and the collector is told which paths moved, because git's own stat cache cannot be trusted
with them: git (as Debian builds it) compares times to the second, so a same-size edit made
in the second its index entry was written, with the mtime set back, looks clean to it.

ctime is the stamp a task cannot set back (that takes CAP_SYS_TIME): any write, rename,
link, chmod or xattr change of a file moves it; a new, removed or replaced entry changes the
names or inodes. Nothing is opened and no link is followed: the tree is the task's.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

LIMIT = 200_000
"""Entries past which a workspace is not walked (it is then collected the slow, sure way)."""
GIT_DIR = b".git"


@dataclass(frozen=True)
class Walk:
    stamps: dict[bytes, int]
    """Relative path -> hash of its stamp (the root is b"")."""
    dirs: frozenset[bytes]


def walk(root: Path, limit: int = LIMIT) -> Walk | None:
    """Every name under root with its stamp; None when it cannot say for sure: past `limit`
    entries, an unreadable directory, or a file system without sub-second times (an edit
    within the second of the first look could hide there)."""
    prefix = len(os.fsencode(root)) + 1
    stamps: dict[bytes, int] = {}
    dirs: set[bytes] = set()
    subsecond = False
    stack = [os.fsencode(root)]
    try:
        stamps[b""] = hash(_stamp(os.lstat(root)))
        while stack:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    st = entry.stat(follow_symlinks=False)
                    rel = entry.path[prefix:]
                    stamps[rel] = hash(_stamp(st))
                    subsecond = subsecond or bool(st.st_ctime_ns % 1_000_000_000)
                    if len(stamps) > limit:
                        return None
                    if stat.S_ISDIR(st.st_mode):
                        dirs.add(rel)
                        stack.append(entry.path)
    except OSError:
        return None
    if len(stamps) > 1 and not subsecond:
        return None
    return Walk(stamps, frozenset(dirs))


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    if stat.S_ISDIR(st.st_mode):
        # A directory's times move when an entry is made, renamed or removed; its entries'
        # names and stamps say that already, except for a file made and removed again (git's
        # index.lock of a `git status`), which left nothing to collect.
        return (st.st_mode, st.st_ino, st.st_nlink)
    return (st.st_mode, st.st_ino, st.st_size, st.st_nlink, st.st_mtime_ns, st.st_ctime_ns)


def moved(before: Walk, after: Walk) -> list[bytes]:
    """Work-tree paths (not directories, nothing under .git) that are new, gone or changed."""
    out = []
    for rel in before.stamps.keys() | after.stamps.keys():
        dir_before = rel in before.dirs or rel not in before.stamps
        if dir_before and (rel in after.dirs or rel not in after.stamps):
            continue  # a directory (made or gone): git sees the files in it
        if rel == GIT_DIR or rel.startswith(GIT_DIR + b"/") or rel == b"":
            continue
        if before.stamps.get(rel) != after.stamps.get(rel):
            out.append(rel)
    return sorted(out)


def is_empty(path: Path) -> bool:
    """True when path is a directory with nothing in it, or is not there."""
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except FileNotFoundError:
        return True
    except OSError:
        return False

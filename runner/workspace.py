"""Host-side preparation of sandboxes: clones at a start commit, the object store they borrow,
the exported shared dir."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import secrets
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from runner import git
from runner.core.bundle import is_object_id


def make_clone(repo: Path, commit: str, dest: Path, branch: str, owner: str) -> None:
    """Clone at commit that borrows the host objects (read-only at /objects in the sandbox).

    Files are given to the sandbox uid so the non-root task can write its workspace, and the
    index is refreshed after that, so that its stat cache matches the files the sandbox sees.
    Without it, every file's new ctime (from the chown) or a checkout in the index's own
    second ("racily clean" entries) made the first `git status` or `git add` in the sandbox
    (the task's, the collector's) hash the whole tree again, under the sandbox's CPU limit.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Whole seconds before the index is rewritten: git compares mtimes by the second, and an
    # entry not older than its index is "racy" (hashed again at every look).
    before = (time.time_ns() // 10**9 - 2) * 10**9
    git.clone_for_sandbox(repo, commit, dest, branch, "/objects")
    meta = dest / ".git"
    _hand_over(dest, owner, before, keep={dest, meta})
    # Host git in the clone it has just made, before any sandbox ran: the config, hooks and
    # attributes are still the runner's own (runner/git.py). dest and its .git are still
    # root's here, so git's check of the repo's owner (safe.directory) holds as it is.
    git.refresh_index(dest, git.common_dir(repo) / "objects")
    if os.geteuid() == 0:
        uid, gid = (int(x) for x in owner.split(":"))
        for path in (dest, meta, meta / "index"):
            os.lchown(path, uid, gid)


def _hand_over(root: Path, owner: str, mtime_ns: int, keep: set[Path]) -> None:
    """chown_tree, but not of the paths in keep, and with mtime_ns as the mtime of every file
    and link of the work tree (not .git's)."""
    chown = os.geteuid() == 0
    uid, gid = (int(x) for x in owner.split(":"))
    skip = {str(p) for p in keep}
    meta = str(root / ".git")
    for dirpath, dirnames, filenames in os.walk(root):
        tree = dirpath != meta and not dirpath.startswith(meta + os.sep)
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if chown and path not in skip:
                os.lchown(path, uid, gid)
            # Files and links (a link to a directory is listed among the directories).
            if tree and path != meta and (name in filenames or os.path.islink(path)):
                os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def objects_for(
    repo: Path, commit: str, mode: Literal["all", "reachable"], cache_dir: Path
) -> Path:
    """The host directory to mount read-only at /objects for a sandbox that starts at commit.

    `all`: the repo's own object store (every object of every branch; costs nothing).
    `reachable`: an object store of exactly `git rev-list --objects <commit>`, built under
    cache_dir once per commit and shared by every sandbox (task, collector, verify) that starts
    there. Safe to call from many threads or processes at once: one builds, the others wait.
    Builds on a store already made for an ancestor of commit (its packs hard-linked, plus a pack
    of what commit adds), so later waves of a run pay only for their new objects.

    Raises:
        ValueError: commit is not a full object id (it names a directory).
        GitError: packing failed (the half-made store is removed).
    """
    if mode == "all":
        return git.common_dir(repo) / "objects"
    if not is_object_id(commit):
        raise ValueError(f"not a full commit id: {commit!r}")
    cache_dir = cache_dir.absolute()  # git runs in the repo: a relative path would move
    cache_dir.mkdir(parents=True, exist_ok=True)
    store = cache_dir / commit
    with _locked(cache_dir / f"{commit}.lock"):
        if not store.is_dir():
            _build_store(repo, commit, cache_dir, store)
    return store


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # flock is per open file description: it also serializes threads of this process.
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_store(repo: Path, commit: str, cache_dir: Path, store: Path) -> None:
    # Built aside, then renamed into place: a store under its final name is always complete.
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
    try:
        pack = tmp / "pack"
        pack.mkdir()
        revs = [commit]
        base = _built_ancestor(repo, commit, cache_dir)
        if base is not None:
            # Objects reachable from an ancestor are reachable from commit: reuse its packs.
            for src in (base / "pack").iterdir():
                _link_or_copy(src, pack / src.name)
            revs.append(f"^{base.name}")
        # Exactly `rev-list --objects` of revs; pack-objects ignores replace refs by itself.
        git.git(
            repo,
            "pack-objects",
            "--quiet",
            "--revs",
            "--delta-base-offset",
            str(pack / "pack"),
            input="".join(f"{r}\n" for r in revs).encode(),
        )
        _commit_graph(repo, commit, tmp, base)
        # Readable by the sandbox's uid through the read-only bind mount.
        for sub in (pack, tmp / "info"):
            sub.chmod(0o755)
            for path in sub.iterdir():
                path.chmod(0o444)
        tmp.chmod(0o755)
        tmp.rename(store)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit_graph(repo: Path, commit: str, store: Path, base: Path | None) -> None:
    """A commit-graph of commit's history in the store, as the repo's own store has one.

    Without it a walk of the whole history in the sandbox (`git log`, `rev-list --count`)
    was about 10x slower (0.35 s against 0.03 s of CPU on 50,000 commits). Best effort:
    git writes none for a shallow repo, and a store works without it. A later wave links
    its ancestor's graph: commits missing from a graph are read from the packs.
    """
    info = store / "info"
    info.mkdir()
    if base is not None:
        if (base / "info" / "commit-graph").exists():
            _link_or_copy(base / "info" / "commit-graph", info / "commit-graph")
        return
    git.git(
        repo,
        "commit-graph",
        "write",
        "--no-progress",
        "--object-dir",
        str(store),
        "--stdin-commits",
        input=f"{commit}\n".encode(),
        # The store must be one of the repo's object dirs to be written to; replace refs
        # would make git write no graph at all.
        env={"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(store), "GIT_NO_REPLACE_OBJECTS": "1"},
        check=False,
    )


def _built_ancestor(repo: Path, commit: str, cache_dir: Path) -> Path | None:
    """The most recently built store of an ancestor of commit, if any."""
    built = [p for p in cache_dir.iterdir() if is_object_id(p.name) and p.is_dir()]
    for cand in sorted(built, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        proc = git.git(repo, "merge-base", "--is-ancestor", cand.name, commit, check=False)
        if proc.returncode == 0:
            return cand
    return None


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:  # another file system, or links refused: a copy is the same bytes
        shutil.copyfile(src, dest)


def chown_tree(root: Path, owner: str) -> None:
    if os.geteuid() != 0:
        return  # an unprivileged host: the sandbox must then run as this uid (see README)
    uid, gid = (int(x) for x in owner.split(":"))
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def export_shared(repo: Path, commit: str, path: str, dest: Path) -> Path:
    """The shared dir as committed at commit: the same contract for every task, read-only."""
    dest.mkdir(parents=True, exist_ok=True)
    data = git.archive_dir(repo, commit, path)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Reaper:
    """Removes finished workspaces off the tasks' critical path: each is renamed aside at
    once (nothing later finds it where it was), then deleted by one background thread.
    Thousands of files take a while to delete, and the task's judgement need not wait.
    `drain` waits for every removal (the run's end: nothing is left behind)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reaper")

    def remove(self, path: Path) -> None:
        aside = path.with_name(f".{path.name}.removing-{secrets.token_hex(4)}")
        try:
            path.rename(aside)
        except FileNotFoundError:
            return
        except OSError:
            remove(path)  # cannot rename (another file system?): remove it here and now
            return
        try:
            self._pool.submit(remove, aside)
        except RuntimeError:  # drained already
            remove(aside)

    def drain(self) -> None:
        self._pool.shutdown(wait=True)

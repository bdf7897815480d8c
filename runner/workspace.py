"""Host-side preparation of sandboxes: clones at a start commit, the exported shared dir."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

from runner import git


def make_clone(repo: Path, commit: str, dest: Path, branch: str, owner: str) -> None:
    """Clone at commit that borrows the host objects (read-only at /objects in the sandbox).

    Files are given to the sandbox uid so the non-root task can write its workspace.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    git.clone_for_sandbox(repo, commit, dest, branch, "/objects")
    chown_tree(dest, owner)


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

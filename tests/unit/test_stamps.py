"""What the host sees a task change by `lstat` alone (runner.stamps): no daemon needed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.stamps import is_empty, moved, walk


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "work"
    (root / "src" / "deep").mkdir(parents=True)
    (root / ".git" / "refs").mkdir(parents=True)
    (root / "a.txt").write_text("hello\n")
    (root / "src" / "deep" / "b.txt").write_text("b\n")
    os.symlink("a.txt", root / "link")
    return root


def _same_size_edit(r: Path) -> None:
    was = (r / "a.txt").stat()
    (r / "a.txt").write_text("hellO\n")
    os.utime(r / "a.txt", ns=(was.st_atime_ns, was.st_mtime_ns))  # mtime set back; ctime moves


def _renamed_back(r: Path) -> None:
    (r / "a.txt").rename(r / "a.tmp")
    (r / "a.tmp").rename(r / "a.txt")


def _replaced(r: Path) -> None:
    (r / "c").write_text("hello\n")
    (r / "c").replace(r / "a.txt")


def _retargeted(r: Path) -> None:
    (r / "link").unlink()
    os.symlink("src", r / "link")


CHANGES: dict[str, tuple[Callable[[Path], object], list[bytes]]] = {
    "same-size edit, mtime set back": (_same_size_edit, [b"a.txt"]),
    "chmod": (lambda r: (r / "a.txt").chmod(0o755), [b"a.txt"]),
    "new empty file deep down": (lambda r: (r / "src/deep/new").touch(), [b"src/deep/new"]),
    "file removed": (lambda r: (r / "src/deep/b.txt").unlink(), [b"src/deep/b.txt"]),
    "renamed away and back": (_renamed_back, [b"a.txt"]),
    "replaced by a copy": (_replaced, [b"a.txt"]),
    "symlink retargeted": (_retargeted, [b"link"]),
    "hard link made": (lambda r: os.link(r / "a.txt", r / "src/hard"), [b"a.txt", b"src/hard"]),
    "empty dir made": (lambda r: (r / "src/empty").mkdir(), []),
    "a ref written (.git is not the work tree)": (lambda r: (r / ".git/refs/x").touch(), []),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_change_is_seen_and_named(tree: Path, change: str) -> None:
    before = walk(tree)
    assert before is not None
    act, paths = CHANGES[change]
    act(tree)
    after = walk(tree)
    assert after is not None and after != before
    assert moved(before, after) == paths


def test_reading_and_a_file_made_and_removed_again_change_nothing(tree: Path) -> None:
    before = walk(tree)
    (tree / "a.txt").read_text()
    os.listdir(tree / "src")
    (tree / ".git" / "index.lock").write_text("x")  # what a `git status` does
    (tree / ".git" / "index.lock").unlink()
    assert walk(tree) == before


def test_it_gives_up_rather_than_guess(tree: Path) -> None:
    assert walk(tree, limit=2) is None  # too many entries to walk
    assert walk(tree / "missing") is None


def test_is_empty(tmp_path: Path) -> None:
    assert is_empty(tmp_path / "missing")
    assert is_empty(tmp_path)
    (tmp_path / "x").touch()
    assert not is_empty(tmp_path)

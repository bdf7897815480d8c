"""The host-side git adapter on real repos: the isolation snapshot and clones for sandboxes."""

from __future__ import annotations

import os
from pathlib import Path

from runner import git as rgit
from runner.workspace import make_clone
from tests.integration.conftest import git, make_repo


def test_snapshot_notices_every_kind_of_change(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.txt": "a\n"})
    base = rgit.snapshot(repo)
    assert rgit.snapshot(repo) == base  # reading changes nothing
    (repo / "a.txt").write_text("changed\n")
    assert rgit.snapshot(repo)["worktree"] != base["worktree"]
    git(repo, "add", "a.txt")
    staged = rgit.snapshot(repo)
    assert staged["index"] != base["index"]
    git(repo, "commit", "-qm", "c")
    assert rgit.snapshot(repo)["head"] != base["head"]
    git(repo, "checkout", "-qb", "other")
    assert rgit.snapshot(repo)["branch"] == "refs/heads/other"
    (repo / "untracked.txt").write_text("u\n")
    before = rgit.snapshot(repo)
    (repo / "untracked.txt").write_text("v\n")
    assert rgit.snapshot(repo)["worktree"] != before["worktree"]
    # The same size, its mtime set back: the ctime still moved.
    before, was = rgit.snapshot(repo), (repo / "a.txt").stat()
    (repo / "a.txt").write_text("chaNged\n")
    os.utime(repo / "a.txt", ns=(was.st_atime_ns, was.st_mtime_ns))
    assert rgit.snapshot(repo)["worktree"] != before["worktree"]
    before = rgit.snapshot(repo)
    (repo / "a.txt").chmod(0o755)
    assert rgit.snapshot(repo)["worktree"] != before["worktree"]


def test_clone_for_sandbox_borrows_objects_and_copies_no_pack(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.txt": "a\n", "d/b.txt": "b\n"})
    head = git(repo, "rev-parse", "HEAD")
    dest = tmp_path / "clone"
    rgit.clone_for_sandbox(repo, head, dest, "task/x", "/objects")
    assert (dest / "d" / "b.txt").read_text() == "b\n"
    assert (dest / ".git" / "objects" / "info" / "alternates").read_text() == "/objects\n"
    assert not list((dest / ".git" / "objects").glob("pack/*.pack"))
    assert (dest / ".git" / "HEAD").read_text().strip() == "ref: refs/heads/task/x"


def _index_stat(clone: Path) -> dict[str, tuple[int, int]]:
    """path -> (ctime, mtime) in whole seconds, as the index records them."""
    raw = git(clone, "-c", "safe.directory=*", "ls-files", "--debug")
    found: dict[str, tuple[int, int]] = {}
    path = ""
    for line in raw.splitlines():
        if not line.startswith(" "):
            path = line
        elif line.strip().startswith(("ctime:", "mtime:")):
            key, value = line.split(":", 1)
            sec = int(value.split(":")[0])
            ctime, mtime = found.get(path, (0, 0))
            found[path] = (sec, mtime) if key.strip() == "ctime" else (ctime, sec)
    return found


def test_make_clone_leaves_an_index_git_need_not_rehash(tmp_path: Path) -> None:
    # The sandbox's first `git status` / the collector's `git add -A` hash a file again when
    # its ctime or mtime differs from the index, or when it is not older than the index.
    repo = make_repo(tmp_path, {"a.txt": "a\n", "d/b.txt": "b\n", "d/l": "x"})
    (repo / "link").symlink_to("d")
    git(repo, "add", "link")
    git(repo, "commit", "-qm", "link")
    dest = tmp_path / "clone"
    make_clone(repo, git(repo, "rev-parse", "HEAD"), dest, "task/x", "10001:10001")
    index_mtime = int((dest / ".git" / "index").stat().st_mtime)
    recorded = _index_stat(dest)
    assert sorted(recorded) == ["a.txt", "d/b.txt", "d/l", "link"]
    for path, (ctime, mtime) in recorded.items():
        st = os.lstat(dest / path)
        assert (ctime, mtime) == (int(st.st_ctime), int(st.st_mtime)), path
        assert mtime < index_mtime, f"{path} is racily clean"
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (10001, 10001)
    if os.geteuid() == 0:
        for made in (dest, dest / ".git", dest / ".git" / "index"):
            assert (made.stat().st_uid, made.stat().st_gid) == (10001, 10001)


def test_make_clone_index_still_sees_a_same_size_change_made_at_once(tmp_path: Path) -> None:
    # The files' mtimes are set back to keep them older than the index: a change in the same
    # second, of the same size, must still show (mtime and ctime move with it).
    repo = make_repo(tmp_path, {"a.txt": "a\n", "b.txt": "b\n"})
    dest = tmp_path / "clone"
    make_clone(repo, git(repo, "rev-parse", "HEAD"), dest, "task/x", "10001:10001")
    (dest / "a.txt").write_text("z\n")
    changed = git(dest, "-c", "safe.directory=*", "diff-files", "--name-only")
    assert changed.split() == ["a.txt"]


def test_tree_of_remembers_commits_but_not_names_that_move(tmp_path: Path) -> None:
    from runner.reapply import tree_of

    repo = make_repo(tmp_path, {"a.txt": "a\n"})
    first = git(repo, "rev-parse", "HEAD")
    tree = tree_of(repo, first)
    assert tree == git(repo, "rev-parse", "HEAD^{tree}")
    (repo / "a.txt").write_text("b\n")
    git(repo, "commit", "-qam", "b")
    assert tree_of(repo, first) == tree  # a commit's tree never changes
    assert tree_of(repo, "HEAD") == git(repo, "rev-parse", "HEAD^{tree}") != tree
    assert tree_of(repo, "0" * 40) is None

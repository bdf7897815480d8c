"""The host-side git adapter on real repos: the isolation snapshot and clones for sandboxes."""

from __future__ import annotations

from pathlib import Path

from runner import git as rgit
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


def test_clone_for_sandbox_borrows_objects_and_copies_no_pack(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.txt": "a\n", "d/b.txt": "b\n"})
    head = git(repo, "rev-parse", "HEAD")
    dest = tmp_path / "clone"
    rgit.clone_for_sandbox(repo, head, dest, "task/x", "/objects")
    assert (dest / "d" / "b.txt").read_text() == "b\n"
    assert (dest / ".git" / "objects" / "info" / "alternates").read_text() == "/objects\n"
    assert not list((dest / ".git" / "objects").glob("pack/*.pack"))
    assert (dest / ".git" / "HEAD").read_text().strip() == "ref: refs/heads/task/x"

"""`objects: reachable` on real git: a store of exactly one commit's history, built once per commit.

These need git but no daemon; the sandbox end of it is in test_objects_sandbox.py.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from runner import git as rgit
from runner import workspace
from runner.errors import GitError
from tests.integration.conftest import git, make_repo


def commit_file(repo: Path, rel: str, text: str) -> str:
    (repo / rel).parent.mkdir(parents=True, exist_ok=True)
    (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"write {rel}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main: 3 commits; `other` (forked at the first): a commit and a blob main never had."""
    repo = make_repo(tmp_path, {"a.txt": "a\n", "d/b.txt": "b\n"})
    git(repo, "checkout", "-qb", "other")
    commit_file(repo, "secret.txt", "only on other\n")
    git(repo, "checkout", "-q", "main")
    commit_file(repo, "a.txt", "a2\n")
    commit_file(repo, "d/c.txt", "c\n")
    return repo


def reachable(repo: Path, commit: str) -> set[str]:
    out = git(repo, "--no-replace-objects", "rev-list", "--objects", commit)
    return {line.split()[0] for line in out.splitlines()}


def stored(store: Path) -> set[str]:
    """Every object id in the store's packs (read from their indexes)."""
    ids: set[str] = set()
    for idx in (store / "pack").glob("*.idx"):
        with idx.open("rb") as fh:
            out = subprocess.run(["git", "show-index"], stdin=fh, capture_output=True, check=True)
        ids |= {line.split()[1] for line in out.stdout.decode().splitlines()}
    return ids


def graph_commits(store: Path) -> set[str]:
    """The commit ids a commit-graph file lists (its OID Lookup chunk; gitformat-commit-graph)."""
    data = (store / "info" / "commit-graph").read_bytes()
    assert data[:4] == b"CGPH"
    chunks = {
        data[at : at + 4]: int.from_bytes(data[at + 4 : at + 12], "big")
        for at in range(8, 8 + 12 * data[6], 12)
    }
    count = int.from_bytes(data[chunks[b"OIDF"] + 255 * 4 : chunks[b"OIDF"] + 256 * 4], "big")
    start = chunks[b"OIDL"]
    return {data[start + 20 * i : start + 20 * (i + 1)].hex() for i in range(count)}


def test_all_is_the_repos_own_object_store(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    got = workspace.objects_for(repo, head, "all", tmp_path / "stores")
    assert got == repo / ".git" / "objects"
    assert not (tmp_path / "stores").exists()


def test_reachable_store_holds_exactly_the_commits_history(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "main")
    store = workspace.objects_for(repo, head, "reachable", tmp_path / "stores")
    assert store == tmp_path / "stores" / head
    assert stored(store) == reachable(repo, head)
    other = git(repo, "rev-parse", "other")
    assert other not in stored(store)
    assert git(repo, "rev-parse", "other:secret.txt") not in stored(store)
    # Nothing else in it: no alternates back to the repo, no loose objects; and a commit-graph
    # of exactly its commits.
    assert sorted(p.name for p in store.iterdir()) == ["info", "pack"]
    assert [p.name for p in (store / "info").iterdir()] == ["commit-graph"]
    assert graph_commits(store) == set(git(repo, "rev-list", head).split())


def test_a_clone_borrowing_the_store_works_and_sees_no_other_branch(
    repo: Path, tmp_path: Path
) -> None:
    head = git(repo, "rev-parse", "main")
    store = workspace.objects_for(repo, head, "reachable", tmp_path / "stores")
    clone = tmp_path / "clone"
    rgit.clone_for_sandbox(repo, head, clone, "task/t", str(store))
    assert (clone / "d" / "c.txt").read_text() == "c\n"
    assert git(clone, "rev-list", "--count", "HEAD") == "3"
    git(clone, "fsck", "--connectivity-only", "--no-dangling")
    other = git(repo, "rev-parse", "other")
    seen = subprocess.run(["git", "-C", str(clone), "cat-file", "-e", other], check=False)
    assert seen.returncode != 0


def test_a_descendant_reuses_an_ancestors_store_and_stays_exact(repo: Path, tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    first = workspace.objects_for(repo, git(repo, "rev-parse", "main~1"), "reachable", stores)
    head = git(repo, "rev-parse", "main")
    second = workspace.objects_for(repo, head, "reachable", stores)
    assert stored(second) == reachable(repo, head)
    inodes = {p.stat().st_ino for p in (second / "pack").iterdir()}
    assert {p.stat().st_ino for p in (first / "pack").iterdir()} <= inodes  # linked, not redone
    assert graph_commits(second) == graph_commits(first)  # linked: the new commit is in a pack
    # A commit that does not descend from it gets none of its packs (and no extra objects).
    other = git(repo, "rev-parse", "other")
    third = workspace.objects_for(repo, other, "reachable", stores)
    assert stored(third) == reachable(repo, other)
    assert git(repo, "rev-parse", "main:d/c.txt") not in stored(third)


def test_replace_refs_do_not_change_what_is_stored(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "main")
    git(repo, "replace", git(repo, "rev-parse", "main~1"), git(repo, "rev-parse", "other"))
    store = workspace.objects_for(repo, head, "reachable", tmp_path / "stores")
    assert stored(store) == reachable(repo, head)
    assert git(repo, "rev-parse", "other") not in stored(store)
    assert graph_commits(store) == set(git(repo, "--no-replace-objects", "rev-list", head).split())


def test_workers_asking_for_one_commit_at_once_share_one_build(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "main")
    stores = tmp_path / "stores"
    got: list[Path] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            got.append(workspace.objects_for(repo, head, "reachable", stores))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert got == [stores / head] * 8
    assert len(list((stores / head / "pack").glob("*.pack"))) == 1
    assert not list(stores.glob(".build-*"))


def test_the_store_is_readable_by_another_uid(repo: Path, tmp_path: Path) -> None:
    store = workspace.objects_for(repo, git(repo, "rev-parse", "HEAD"), "reachable", tmp_path)
    dirs = (store, store / "pack", store / "info")
    assert {d.stat().st_mode & 0o777 for d in dirs} == {0o755}
    files = [*(store / "pack").iterdir(), *(store / "info").iterdir()]
    assert {p.stat().st_mode & 0o777 for p in files} == {0o444}


def test_a_failed_build_leaves_nothing_under_the_commits_name(repo: Path, tmp_path: Path) -> None:
    missing = "0" * 40
    with pytest.raises(GitError):
        workspace.objects_for(repo, missing, "reachable", tmp_path / "stores")
    assert not (tmp_path / "stores" / missing).exists()
    assert not list((tmp_path / "stores").glob(".build-*"))


def test_a_commit_that_is_not_an_object_id_is_refused(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a full commit id"):
        workspace.objects_for(repo, "../../etc", "reachable", tmp_path / "stores")

"""Bringing a task's work home, on real git (no daemon): hand-made bundles a hostile task
could hand back. Each refusal ends that task with a reason and leaves the user's repo as it
was: no ref, and no object of the bundle's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runner import names
from runner.intake import Intake, bring_home
from tests.integration.conftest import git, make_repo

REF = "refs/runner/r1/task/t"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "host", {"src/a.txt": "a\n", "docs/d.txt": "d\n"})
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "docs/d.txt").write_text("changed on another branch\n")
    git(repo, "commit", "-qam", "other work")
    git(repo, "checkout", "-q", "main")
    return repo


def task_clone(host: Path, tmp_path: Path) -> Path:
    clone = tmp_path / "task"
    git(tmp_path, "clone", "-q", "--no-local", str(host), str(clone))
    return clone


def commit(clone: Path, path: str, text: str) -> str:
    (clone / path).parent.mkdir(parents=True, exist_ok=True)
    (clone / path).write_text(text)
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", f"edit {path}")
    return git(clone, "rev-parse", "HEAD")


def bundle_of(clone: Path, tip: str, *exclude: str) -> Path:
    git(clone, "update-ref", names.RESULT_REF, tip)
    out = clone.parent / "task.bundle"
    git(clone, "bundle", "create", "-q", str(out), names.RESULT_REF, *[f"^{e}" for e in exclude])
    return out


def intake(host: Path, tmp_path: Path, head: str, bundle: Path | None, **kw: int) -> Intake:
    start = git(host, "rev-parse", "main")
    return bring_home(
        host, start, head, bundle, REF, tmp_path / "scratch", kw.get("max_objects", 1000)
    )


def assert_untouched(host: Path, *objects: str) -> None:
    assert git(host, "for-each-ref", REF) == ""
    for oid in objects:
        proc = subprocess.run(["git", "-C", str(host), "cat-file", "-e", oid], check=False)
        assert proc.returncode != 0, f"{oid} reached the user's object store"


def test_honest_work_comes_home_under_its_ref(host: Path, tmp_path: Path) -> None:
    clone = task_clone(host, tmp_path)
    start = git(host, "rev-parse", "main")
    tip = commit(clone, "src/a.txt", "better\n")
    got = intake(host, tmp_path, tip, bundle_of(clone, tip, start))
    assert got.problem is None and got.commit == tip
    assert git(host, "rev-parse", REF) == tip
    assert [c.path for c in got.changes] == ["src/a.txt"]


def test_no_changes_is_the_start(host: Path, tmp_path: Path) -> None:
    start = git(host, "rev-parse", "main")
    assert intake(host, tmp_path, start, None) == Intake(start)


def test_moving_the_branch_onto_known_history_is_refused(host: Path, tmp_path: Path) -> None:
    other = git(host, "rev-parse", "other")
    got = intake(host, tmp_path, other, None)
    assert got.commit is None and "moved its branch off its start" in (got.problem or "")
    assert_untouched(host)


def test_history_with_another_branchs_commits_is_refused(host: Path, tmp_path: Path) -> None:
    # The merge-base bypass: the task's commit has the other branch as a parent, so git's own
    # merge base would apply (or revert) work outside the task's scope.
    clone = task_clone(host, tmp_path)
    start = git(host, "rev-parse", "main")
    git(clone, "merge", "-q", "--no-edit", "origin/other")
    tip = commit(clone, "src/a.txt", "mine\n")
    got = intake(host, tmp_path, tip, bundle_of(clone, tip, start))
    assert "holds commits it did not make" in (got.problem or "")
    assert "refs/heads/other" in (got.problem or "")
    assert_untouched(host, tip)


def test_extra_ref_is_refused(host: Path, tmp_path: Path) -> None:
    clone = task_clone(host, tmp_path)
    start = git(host, "rev-parse", "main")
    tip = commit(clone, "src/a.txt", "x\n")
    git(clone, "update-ref", names.RESULT_REF, tip)
    git(clone, "update-ref", "refs/heads/main", tip)
    out = tmp_path / "two.bundle"
    git(clone, "bundle", "create", "-q", str(out), names.RESULT_REF, "refs/heads/main", f"^{start}")
    got = intake(host, tmp_path, tip, out)
    assert "exactly the ref" in (got.problem or "")
    assert_untouched(host, tip)


def test_bundle_on_another_prerequisite_is_refused(host: Path, tmp_path: Path) -> None:
    clone = task_clone(host, tmp_path)
    git(clone, "reset", "-q", "--hard", "origin/other")
    tip = commit(clone, "src/a.txt", "x\n")
    got = intake(host, tmp_path, tip, bundle_of(clone, tip, "origin/other"))
    assert "does not build on its start" in (got.problem or "")
    assert_untouched(host, tip)


def test_orphan_history_is_refused(host: Path, tmp_path: Path) -> None:
    clone = task_clone(host, tmp_path)
    start = git(host, "rev-parse", "main")
    git(clone, "checkout", "-q", "--orphan", "fresh")
    tip = commit(clone, "src/a.txt", "from nothing\n")
    got = intake(host, tmp_path, tip, bundle_of(clone, tip, start))
    assert "does not build on its start" in (got.problem or "")
    assert_untouched(host, tip)


def test_truncated_bundle_is_refused(host: Path, tmp_path: Path) -> None:
    clone = task_clone(host, tmp_path)
    start = git(host, "rev-parse", "main")
    tip = commit(clone, "big.bin", "y" * 100_000)
    bundle = bundle_of(clone, tip, start)
    bundle.write_bytes(bundle.read_bytes()[:-200])
    got = intake(host, tmp_path, tip, bundle)
    assert got.commit is None and "failed git's checks" in (got.problem or "")
    assert_untouched(host, tip)


def test_too_many_objects_are_refused(host: Path, tmp_path: Path) -> None:
    clone = task_clone(host, tmp_path)
    start = git(host, "rev-parse", "main")
    for i in range(3):
        commit(clone, f"src/n{i}.txt", f"{i}\n")
    tip = git(clone, "rev-parse", "HEAD")
    got = intake(host, tmp_path, tip, bundle_of(clone, tip, start), max_objects=5)
    assert "max_objects" in (got.problem or "")
    assert_untouched(host, tip)


def hand_made_bundle(clone: Path, start: str, tip: str, objects: list[str]) -> Path:
    """A bundle whose pack holds exactly `objects` (a collector never writes such a pack)."""
    pack = subprocess.run(
        ["git", "-C", str(clone), "pack-objects", "--stdout"],
        input="\n".join(objects).encode(), capture_output=True, check=True,
    ).stdout  # fmt: skip
    out = clone.parent / "hand.bundle"
    out.write_bytes(f"# v2 git bundle\n-{start}\n{tip} {names.RESULT_REF}\n\n".encode() + pack)
    return out


def test_objects_no_ref_reaches_never_land_in_the_users_repo(host: Path, tmp_path: Path) -> None:
    clone = task_clone(host, tmp_path)
    start = git(host, "rev-parse", "main")
    tip = commit(clone, "src/a.txt", "honest\n")
    stray = subprocess.run(
        ["git", "-C", str(clone), "hash-object", "-w", "--stdin"],
        input=b"planted, reachable from nothing\n", capture_output=True, check=True,
    ).stdout.decode().strip()  # fmt: skip
    needed = git(clone, "rev-list", "--objects", tip, f"^{start}").splitlines()
    objects = [line.split()[0] for line in needed] + [stray]
    got = intake(host, tmp_path, tip, hand_made_bundle(clone, start, tip, objects))
    assert got.problem is None and got.commit == tip
    proc = subprocess.run(["git", "-C", str(host), "cat-file", "-e", stray], check=False)
    assert proc.returncode != 0, "a stray object of the bundle reached the user's repo"


def test_ref_that_is_not_a_commit_is_refused(host: Path, tmp_path: Path) -> None:
    clone = task_clone(host, tmp_path)
    start = git(host, "rev-parse", "main")
    commit(clone, "src/a.txt", "x\n")
    tree = git(clone, "rev-parse", "HEAD^{tree}")
    objects = [line.split()[0] for line in git(clone, "rev-list", "--objects", "HEAD").splitlines()]
    got = intake(host, tmp_path, tree, hand_made_bundle(clone, start, tree, objects))
    assert got.commit is None and got.problem is not None
    assert_untouched(host)


def test_nested_repository_is_refused_but_kept(host: Path, tmp_path: Path) -> None:
    clone = task_clone(host, tmp_path)
    start = git(host, "rev-parse", "main")
    git(clone, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},src/vendored")
    git(clone, "commit", "-qm", "nested repo")
    tip = git(clone, "rev-parse", "HEAD")
    got = intake(host, tmp_path, tip, bundle_of(clone, tip, start))
    assert "nested git repository at src/vendored" in (got.problem or "")
    assert git(host, "rev-parse", REF) == tip  # refused, but its work is kept for a look

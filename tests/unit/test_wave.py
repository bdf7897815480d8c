"""Wave integration on real git in a temp dir, with verify as a plain function: no Docker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runner import git, names
from runner.core.results import TaskStatus
from runner.wave import integrate_wave

RUN = "20261125-000000-abcdef"


def sh(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "init", "-q", "-b", "main")
    sh(repo, "config", "user.email", "t@example.test")
    sh(repo, "config", "user.name", "t")
    (repo / "shared.txt").write_text("one\ntwo\n")
    sh(repo, "add", ".")
    sh(repo, "commit", "-qm", "base")
    return repo


def task(repo: Path, name: str, files: dict[str, str]) -> str:
    """A task's commit on top of main, made on a side branch (main does not move)."""
    base = sh(repo, "rev-parse", "main")
    sh(repo, "checkout", "-q", "-b", name, base)
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    sh(repo, "add", ".")
    sh(repo, "commit", "-qm", name)
    commit = sh(repo, "rev-parse", "HEAD")
    sh(repo, "checkout", "-q", "main")
    return commit


def tree(repo: Path, commit: str) -> set[str]:
    return set(sh(repo, "ls-tree", "-r", "--name-only", commit).splitlines())


def test_disjoint_tasks_merge_in_order_and_verify_sees_the_merge(repo: Path) -> None:
    start = sh(repo, "rev-parse", "main")
    ready = [("a", task(repo, "a", {"a.txt": "a"})), ("b", task(repo, "b", {"b.txt": "b"}))]
    seen: list[tuple[str, str | None]] = []

    def verify(commit: str, alone: str | None) -> bool:
        seen.append((commit, alone))
        return True

    out = integrate_wave(repo, RUN, 1, start, ready, "skip", verify)
    assert out.merged == ["a", "b"] and out.verify == "green" and not out.judged
    assert seen == [(out.head, None)]
    assert tree(repo, out.head) == {"shared.txt", "a.txt", "b.txt"}
    assert sh(repo, "rev-parse", "main") == start  # no ref of the user's moved


def test_a_conflict_is_judged_and_the_rest_merges(repo: Path) -> None:
    start = sh(repo, "rev-parse", "main")
    ready = [
        ("a", task(repo, "a", {"shared.txt": "A\ntwo\n"})),
        ("b", task(repo, "b", {"shared.txt": "B\ntwo\n"})),
        ("c", task(repo, "c", {"c.txt": "c"})),
    ]
    out = integrate_wave(repo, RUN, 1, start, ready, "skip", None)
    assert out.merged == ["a", "c"] and out.verify == "skipped"
    status, reason = out.judged["b"]
    assert status is TaskStatus.CONFLICT and "shared.txt" in reason
    assert out.conflicts["b"][0].with_task == "a"


def test_on_conflict_stop_skips_the_tasks_after_it(repo: Path) -> None:
    start = sh(repo, "rev-parse", "main")
    ready = [
        ("a", task(repo, "a", {"shared.txt": "A\ntwo\n"})),
        ("b", task(repo, "b", {"shared.txt": "B\ntwo\n"})),
        ("c", task(repo, "c", {"c.txt": "c"})),
    ]
    out = integrate_wave(repo, RUN, 1, start, ready, "stop", None)
    assert out.merged == ["a"] and out.stopped == "conflict in task b"
    assert out.judged["c"][0] is TaskStatus.SKIPPED


def test_a_red_verify_is_isolated_to_the_task_that_turns_it_red(repo: Path) -> None:
    start = sh(repo, "rev-parse", "main")
    ready = [
        ("good", task(repo, "good", {"g.txt": "g"})),
        ("bad", task(repo, "bad", {"red.txt": "r"})),
        ("fine", task(repo, "fine", {"f.txt": "f"})),
    ]
    calls: list[str | None] = []

    def verify(commit: str, alone: str | None) -> bool:
        calls.append(alone)
        return "red.txt" not in tree(repo, commit)

    out = integrate_wave(repo, RUN, 2, start, ready, "skip", verify)
    assert calls == [None, "good", "bad", "fine"]
    assert out.merged == ["good", "fine"] and out.isolated == ["good", "bad", "fine"]
    assert out.verify == "green" and out.stopped is None
    status, reason = out.judged["bad"]
    assert status is TaskStatus.VERIFY_FAILED
    kept = names.verify_failed_ref(RUN, task="bad")
    assert kept in reason and "red.txt" in tree(repo, sh(repo, "rev-parse", kept))
    assert git.resolve(repo, names.verify_failed_ref(RUN, wave=2)) is not None
    assert tree(repo, out.head) == {"shared.txt", "g.txt", "f.txt"}


def test_a_red_verify_with_stop_merges_nothing_and_stops(repo: Path) -> None:
    start = sh(repo, "rev-parse", "main")
    ready = [("a", task(repo, "a", {"a.txt": "a"})), ("b", task(repo, "b", {"b.txt": "b"}))]
    out = integrate_wave(repo, RUN, 1, start, ready, "stop", lambda c, alone: False)
    assert out.merged == [] and out.head == start and out.verify == "red"
    assert {s for s, _ in out.judged.values()} == {TaskStatus.VERIFY_FAILED}
    assert out.stopped == "verify red after wave 1"

"""The merge pre-check: which tasks' changes can meet, as data and against real git merges."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import git as rgit
from runner.core.overlap import meeting_pairs, paths_from_raw
from runner.integrate import pairwise


@pytest.mark.parametrize(
    ("a", "b", "meet"),
    [
        (["x"], ["x"], True),
        (["a"], ["a/b"], True),  # a file on one side, a directory on the other
        (["a/b/c/d"], ["a"], True),
        (["a/b"], ["a/c"], False),  # siblings in one directory
        (["a"], ["ab"], False),  # a prefix of the name is not a directory above it
        (["a/b"], ["a/bc"], False),
        (["src/x.py", "docs/x.md"], ["tests/x.py", "docs/y.md"], False),
        (["src/x.py", "docs/x.md"], ["tests/x.py", "docs/x.md"], True),
        ([], ["a"], False),
    ],
)
def test_when_paths_meet(a: list[str], b: list[str], meet: bool) -> None:
    assert meeting_pairs({"t1": a, "t2": b}) == ({("t1", "t2")} if meet else set())


def test_pairs_keep_the_mapping_order() -> None:
    found = meeting_pairs({"z": ["f"], "a": ["g"], "m": ["f/h"], "b": ["g"]})
    assert found == {("z", "m"), ("a", "b")}


def _brute(paths: dict[str, list[str]]) -> set[tuple[str, str]]:
    def meet(p: str, q: str) -> bool:
        return p == q or p.startswith(q + "/") or q.startswith(p + "/")

    return {
        (a, b)
        for a, b in itertools.combinations(paths, 2)
        if any(meet(p, q) for p in paths[a] for q in paths[b])
    }


_name = st.sampled_from(["a", "b", "ab", "a.b", "é", " "])
_path = st.lists(_name, min_size=1, max_size=4).map("/".join)


@given(st.dictionaries(st.text("tuvw", min_size=1, max_size=2), st.lists(_path, max_size=4)))
def test_meeting_pairs_is_the_pairwise_definition(paths: dict[str, list[str]]) -> None:
    assert meeting_pairs(paths) == _brute(paths)


Z = "0" * 40


def _rec(old: str, new: str, status: str, path: str) -> str:
    return f":{old} {new} {'1' * 40} {Z} {status}\0{path}\0"


def test_paths_from_raw_keeps_files_and_removed_directories() -> None:
    raw = (
        "c1\0"
        + _rec("040000", "040000", "M", "src")  # holds a changed file: not a change itself
        + _rec("100644", "100644", "M", "src/a.py")
        + _rec("040000", "000000", "D", "gone")  # removed: its files may be renamed away
        + _rec("100644", "000000", "D", "gone/x")
        + _rec("000000", "040000", "A", "new")
        + _rec("000000", "100644", "A", "new/y")
        + _rec("160000", "160000", "M", "sub")  # a gitlink is a path like a file
        + _rec("100644", "100644", "M", ":odd\nname")
        + "c2\0"  # no changes (--always)
        + "c3\0"
        + _rec("100644", "000000", "D", "t")  # a file that became a directory
        + _rec("000000", "040000", "A", "t")
        + _rec("000000", "100644", "A", "t/u")
    )
    assert paths_from_raw(raw) == {
        "c1": {"src/a.py", "gone", "gone/x", "new/y", "sub", ":odd\nname"},
        "c2": set(),
        "c3": {"t", "t/u"},
    }


def test_paths_from_raw_refuses_a_record_without_commit() -> None:
    with pytest.raises(ValueError, match="unexpected diff-tree output"):
        paths_from_raw(_rec("100644", "100644", "M", "a"))


# -- against real git: what the pre-check skips never conflicts --------------------------------

ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.test",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
}
BASE = {"a": "1\n", "b/c": "2\n", "b/d": "3\n", "e/f/g": "4\n", "e/f/h": "5\n", "k": "6\n"}
DIRS = ["b", "e", "e/f"]
# What a task may do: each is applied to a checkout of the base.
OPS = [
    *(("modify", p) for p in BASE),
    *(("delete", p) for p in BASE),
    *(("move", p) for p in BASE),  # a file renamed into another directory
    *(("add", p) for p in ["n", "b/n", "e/f/n", "e/n", "q/r"]),
    *(("rmdir", d) for d in DIRS),
    *(("movedir", d) for d in DIRS),  # all its files elsewhere: a directory rename
    ("file_to_dir", "a"),
    ("dir_to_file", "b"),
]


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=ENV, check=True
    )
    return proc.stdout.strip()


def _apply(work: Path, op: str, path: str, tag: str) -> None:
    target = work / path
    if op == "modify" and target.is_file():
        target.write_text(f"changed by {tag}\n")
    elif op == "delete" and target.is_file():
        target.unlink()
    elif op == "move" and target.is_file():
        dest = work / ("e/f" if path.startswith("b") else "b") / f"{target.name}-{tag}"
        if dest.parent.is_dir() and not dest.exists():
            target.rename(dest)
    elif op == "add":
        try:  # not where a file stands in the way (a task made `b` a file)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"added by {tag}\n")
        except (FileExistsError, NotADirectoryError):
            pass
    elif op == "rmdir" and target.is_dir():
        shutil.rmtree(target)
    elif op == "movedir" and target.is_dir():
        dest = work / f"moved-{tag}-{path.replace('/', '-')}"
        if not dest.exists():
            target.rename(dest)
    elif op == "file_to_dir" and target.is_file():
        target.unlink()
        target.mkdir()
        (target / "inner").write_text(f"{tag}\n")
    elif op == "dir_to_file" and target.is_dir():
        shutil.rmtree(target)
        target.write_text(f"{tag}\n")


@pytest.fixture(scope="module")
def base_repo() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        _git(repo, "init", "-q", "-b", "main")
        for rel, text in BASE.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "base")
        yield repo


def _task_commit(repo: Path, tag: str, ops: list[tuple[str, str]]) -> str:
    _git(repo, "checkout", "-q", "--detach", "main")
    _git(repo, "clean", "-qfdx")
    for op, path in ops:
        _apply(repo, op, path, tag)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", tag)
    return _git(repo, "rev-parse", "HEAD")


_tasks = st.lists(st.lists(st.sampled_from(OPS), min_size=1, max_size=3), min_size=2, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tasks)
def test_pairs_the_precheck_skips_merge_cleanly(
    base_repo: Path, tasks: list[list[tuple[str, str]]]
) -> None:
    base = _git(base_repo, "rev-parse", "main")
    commits = {f"t{i}": _task_commit(base_repo, f"t{i}", ops) for i, ops in enumerate(tasks)}
    every = {}
    for a, b in itertools.combinations(commits, 2):
        outcome = rgit.merge_tree(base_repo, commits[a], commits[b], base)
        if not outcome.clean:
            every[(a, b)] = outcome.conflicts
    # merge_wave explains conflicts from these pairs: the same pairs, the same explanations.
    assert pairwise(base_repo, commits, base) == every

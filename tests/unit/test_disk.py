"""The disk guard: du-like usage of real trees, and the guard's decisions on given numbers."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from runner.sandbox.disk import BLOCK, DiskGuard, fs_used, usage

MiB = 1024**2
WAIT = 60  # seconds: a bound on a wait for the guard's thread, never a measurement


def test_usage_counts_allocated_blocks_not_apparent_sizes(tmp_path: Path) -> None:
    (tmp_path / "sparse").write_bytes(b"")
    os.truncate(tmp_path / "sparse", 1024 * MiB)  # 1 GiB apparent, nothing allocated
    assert usage([tmp_path]) < 64 * 1024
    (tmp_path / "full").write_bytes(b"x" * MiB)
    assert MiB <= usage([tmp_path]) < MiB + 64 * 1024


def test_usage_counts_a_hard_link_once_and_never_follows_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"x" * MiB)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_bytes(b"y" * MiB)
    alone = usage([tree])
    os.link(tree / "a", tree / "b")
    (tree / "link").symlink_to(outside / "big")
    (tree / "dirlink").symlink_to(outside)
    assert usage([tree]) == alone + 2 * BLOCK  # the two symlinks, one block each


def test_usage_charges_empty_files_a_block_each(tmp_path: Path) -> None:
    before = usage([tmp_path])
    for i in range(100):
        (tmp_path / f"e{i}").touch()
    assert usage([tmp_path]) - before >= 100 * BLOCK


def test_usage_sums_paths_and_a_missing_path_is_zero(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_bytes(b"x" * MiB)
    (b / "f").write_bytes(b"x" * MiB)
    assert usage([a, b]) == usage([a]) + usage([b])
    assert usage([tmp_path / "missing"]) == 0


def test_fs_used_counts_one_file_system_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    one = fs_used([tmp_path])
    assert one > 0
    # Both on one file system: not twice (a margin for other writers on the host meanwhile).
    assert fs_used([tmp_path, tmp_path / "a"]) < 1.5 * one


class Usage:
    """A measure function returning the given numbers, then the last one for ever."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self, paths: Sequence[Path]) -> int:
        self.calls += 1
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def guard(
    measure: Callable[[Sequence[Path]], int], kill: Callable[[], object], **kw: object
) -> DiskGuard:
    return DiskGuard([Path("/nonexistent")], 100, kill, measure=measure, **kw)  # type: ignore[arg-type]


QUIET: dict[str, object] = {"interval": 3600, "probe": None}  # the thread never looks


@pytest.mark.parametrize(
    ("base", "end", "exceeded"),
    [(0, 100, False), (0, 101, True), (5000, 5100, False), (5000, 5101, True), (5000, 10, False)],
)
def test_only_what_is_added_counts(base: int, end: int, exceeded: bool) -> None:
    kills: list[int] = []
    g = guard(Usage(base, end), lambda: kills.append(1), **QUIET)
    with g:
        pass
    assert g.exceeded is exceeded
    assert g.added == end - base
    assert kills == []  # the last look is after the task ended: nothing to kill


def test_the_guard_kills_once_when_a_look_finds_the_limit_passed() -> None:
    killed = threading.Event()
    calls: list[int] = []

    def kill() -> None:
        calls.append(1)
        killed.set()

    g = guard(Usage(0, 50, 150, 500), kill, interval=0.001, probe=None)
    with g:
        assert killed.wait(WAIT)
    assert calls == [1]
    assert g.exceeded and g.peak == 500


def test_a_growing_file_system_starts_a_walk_before_its_period() -> None:
    # cpu_share so small that the period between walks is hours: only the probe can start one.
    killed = threading.Event()
    g = guard(
        Usage(0, 150),
        killed.set,
        interval=0.001,
        cpu_share=1e-12,
        probe=Usage(1000, 1000, 1000, 1101),
    )
    with g:
        assert killed.wait(WAIT)
    assert g.exceeded


def test_a_failing_kill_is_logged_not_raised() -> None:
    tried = threading.Event()

    def kill() -> None:
        tried.set()
        raise RuntimeError("container gone")

    with guard(Usage(0, 150), kill, interval=0.001, probe=None) as g:
        assert tried.wait(WAIT)
    assert g.exceeded


def test_stop_is_idempotent_and_a_guard_never_started_reports_nothing() -> None:
    measure = Usage(0)
    g = guard(measure, lambda: None, **QUIET)
    g.stop()
    assert measure.calls == 0 and not g.exceeded
    g.start()
    g.stop()
    g.stop()
    assert measure.calls == 2  # the base and the last look

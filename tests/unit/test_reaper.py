"""Workspaces removed off the critical path: gone from their place at once, deleted by the
run's end (no daemon needed)."""

from __future__ import annotations

from pathlib import Path

from runner.workspace import Reaper


def test_a_workspace_leaves_its_place_at_once_and_is_gone_after_drain(tmp_path: Path) -> None:
    work = tmp_path / "task" / "work"
    (work / "deep" / "er").mkdir(parents=True)
    for i in range(200):
        (work / "deep" / f"f{i}").write_text("x")
    reaper = Reaper()
    reaper.remove(work)
    assert not work.exists()
    reaper.remove(tmp_path / "task" / "missing")  # nothing there: nothing to do
    reaper.drain()
    assert list((tmp_path / "task").iterdir()) == []
    work.mkdir()
    reaper.remove(work)  # after the drain: removed at once
    assert list((tmp_path / "task").iterdir()) == []

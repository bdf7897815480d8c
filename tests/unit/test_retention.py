"""Retention decisions as data: ages, run refs, cache volumes' last use, which runs go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner import names
from runner.errors import InputError
from runner.retention import RunEntry, find, parse_age, prunable
from runner.sandbox import labels as L
from runner.sandbox.caches import CacheVolume, from_attrs, parse_time, unused_since

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * 86400), ("12h", 43200), ("2w", 14 * 86400), ("30m", 1800), (" 0s ", 0)],
)
def test_parse_age(text: str, seconds: int) -> None:
    assert parse_age(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d", "1.5d", "7 days", "9999999d"])
def test_parse_age_refuses(text: str) -> None:
    with pytest.raises(InputError, match="not an age"):
        parse_age(text)


@pytest.mark.parametrize(
    ("ref", "run"),
    [
        (names.task_ref("r1", "t"), "r1"),
        (names.verify_failed_ref("r1", wave=2), "r1"),
        (names.integration_ref("r1"), "r1"),
        ("refs/heads/runner/r1/other", None),  # a branch of the user's, not the runner's
        ("refs/heads/runner/r1", None),
        ("refs/runner/r1", None),
        ("refs/heads/main", None),
    ],
)
def test_run_of_ref(ref: str, run: str | None) -> None:
    assert names.run_of_ref(ref) == run


def test_cache_volume_from_docker_records() -> None:
    attrs = {
        "Name": "runner-cache-k-task-t1",
        "CreatedAt": "2026-11-25T21:36:10Z",
        "Labels": {L.CACHE: "k", L.ROLE: "task", L.TASK: "t1"},
        "UsageData": {"RefCount": 1, "Size": 4096},
    }
    v = from_attrs(attrs)
    assert v == CacheVolume(
        "runner-cache-k-task-t1", "k", "task", "t1",
        datetime(2026, 11, 25, 21, 36, 10, tzinfo=UTC), 4096, in_use=True,
    )  # fmt: skip
    assert from_attrs({"Name": "x", "Labels": {"other": "1"}}) is None  # not the runner's
    assert from_attrs({"Name": "x", "Labels": None}) is None
    assert parse_time("2026-11-25T21:36:10.123456789+01:00") == datetime(
        2026, 11, 25, 20, 36, 10, 123456, tzinfo=UTC
    )
    assert parse_time("yesterday") is None


def _vol(name: str, created: datetime | None, in_use: bool = False) -> CacheVolume:
    return CacheVolume(name, "k", "task", name, created, None, in_use)


def test_unused_since_takes_the_later_of_record_and_creation() -> None:
    cutoff = T0
    vols = [
        _vol("old", T0 - timedelta(days=30)),
        _vol("used-lately", T0 - timedelta(days=30)),
        _vol("new", T0 + timedelta(days=1)),
        _vol("mounted", T0 - timedelta(days=30), in_use=True),
        _vol("unknown", None),
    ]
    recorded = {"used-lately": T0 + timedelta(hours=1), "old": T0 - timedelta(days=20)}
    assert [v.name for v in unused_since(vols, recorded, cutoff)] == ["old"]


def _run(run_id: str, status: str, ended: datetime | None, *, alive: bool = False) -> RunEntry:
    return RunEntry(run_id, Path("/x") / run_id, (), alive, status, ended, None)


def test_prunable_only_ended_runs_before_the_cutoff() -> None:
    runs = [
        _run("a", "success", T0 - timedelta(days=9)),
        _run("b", "interrupted", T0 - timedelta(days=8)),
        _run("c", "success", T0 - timedelta(days=1)),
        _run("d", "running", None, alive=True),
        RunEntry("e", Path("/x/e"), (), False, "died", None, T0 - timedelta(days=30)),
        RunEntry("f", None, ("refs/runner/f/task/t",), False, "unknown", None, T0 - timedelta(9)),
        RunEntry("g", None, ("refs/runner/g/task/t",), False, "unknown", None, T0),
    ]
    remove, notes = prunable(runs, T0 - timedelta(days=7))
    assert [e.run_id for e in remove] == ["a", "b", "f"]
    assert len(notes) == 1 and "kept run e" in notes[0]


def test_find_by_prefix_and_latest() -> None:
    runs = [_run(r, "success", T0) for r in ("20261101-1", "20261102-1", "20261102-2")]
    assert find(runs, "latest").run_id == "20261102-2"
    assert find(runs, "20261101").run_id == "20261101-1"
    assert find(runs, "20261102-1").run_id == "20261102-1"
    with pytest.raises(InputError, match="ambiguous"):
        find(runs, "20261102")
    with pytest.raises(InputError, match="no run"):
        find(runs, "1999")
    with pytest.raises(InputError, match="no runs"):
        find([], "latest")


def test_prunable_keeps_a_run_whose_workspace_holds_the_only_copy_of_work() -> None:
    work = Path("/x/a/tasks/t/work")
    run = RunEntry("a", Path("/x/a"), (), False, "error", T0 - timedelta(days=9), None, (work,))
    remove, notes = prunable([run], T0)
    assert remove == [] and str(work) in notes[0]

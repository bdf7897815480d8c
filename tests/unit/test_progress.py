"""Progress while a run goes (frames and plain lines from journal events) and the summary."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runner.core import runstate
from runner.core.results import RunResult, TaskResult, TaskStatus, VerifyRun, WaveResult
from runner.core.runstate import project
from runner.progress import Progress, changes, frame, interactive, shown_state
from runner.report import print_summary

T = "2026-11-25T21:00:00.000+00:00"


def _events() -> list[dict[str, Any]]:
    """A journal: db and docs in wave 1 (verified, merged), api in wave 2 still queued."""
    evs: list[dict[str, Any]] = [
        {"event": "planned", "run_id": "r1", "repo": "/repo", "plan": "plan.yaml", "base": "HEAD",
         "base_commit": "a" * 40, "integration_ref": "refs/heads/runner/r1/integration",
         "state_dir": "/s", "waves": [["db", "docs"], ["api"]],
         "tasks": [{"id": "db", "wave": 1}, {"id": "docs", "wave": 1}, {"id": "api", "wave": 2}]},
        {"event": "wave_started", "wave": 1, "tasks": ["db", "docs"], "start": "a" * 40},
        {"event": "task_queued", "task": "db", "wave": 1, "start": "a" * 40},
        {"event": "task_queued", "task": "docs", "wave": 1, "start": "a" * 40},
        {"event": "task_started", "task": "db", "start": "a" * 40},
        {"event": "task_ended", "task": "db", "exit_code": 0, "duration_s": 1.5},
        {"event": "judged", "task": "db", "status": "ready", "reason": None},
        {"event": "task_started", "task": "docs", "start": "a" * 40},
        {"event": "task_ended", "task": "docs", "exit_code": 2, "duration_s": 0.5},
        {"event": "judged", "task": "docs", "status": "failed", "reason": "exited 2 " + "x" * 200},
        {"event": "verify_started", "wave": 1, "task": None, "commit": "b" * 40},
        {"event": "verify_ended", "wave": 1, "task": None, "result": "green", "log": "/v.log"},
        {"event": "merged", "wave": 1, "tasks": ["db"], "head": "b" * 40, "previous": "a" * 40},
        {"event": "judged", "task": "db", "status": "merged", "reason": None},
    ]  # fmt: skip
    return [{"seq": i, "time": T, **e} for i, e in enumerate(evs, start=1)]


def _text(lines: list[Any]) -> list[str]:
    return [str(line) for line in lines]


def test_states_a_person_sees_go_queued_running_collecting_verifying_merged() -> None:
    events = _events()
    seen = [
        {t.id: shown_state(t, state) for t in state.tasks}
        for state in (project(events[:n]) for n in range(1, len(events) + 1))
    ]
    db = [s["db"] for s in seen]
    assert list(dict.fromkeys(db)) == ["queued", "running", "collecting", "ready", "verifying",
                                       "merged"]  # fmt: skip
    assert "waiting" not in db  # a finished task never reads as waiting again
    assert seen[-1] == {"db": "merged", "docs": "failed", "api": "queued"}


def test_plain_lines_one_per_change_with_the_whole_reason() -> None:
    events = _events()
    before, out = None, []
    for n in range(1, len(events) + 1):
        before, lines = changes(before, project(events[:n]))
        out += _text(lines)
    assert out[0] == "run r1: 3 tasks in 2 waves"
    assert "wave 1 task db: running" in out and "wave 1 task db: verifying" in out
    assert f"wave 1 task docs: failed (0.5s): exited 2 {'x' * 200}" in out
    assert out.index("wave 1: verify running") < out.index("wave 1 task db: verifying")
    assert out[-1] == "wave 1 task db: merged (1.5s)"
    assert len(out) == len(set(out))  # a line only when something changed


def test_live_frame_shows_each_task_state() -> None:
    state = project(_events()[:6])
    console = Console(file=io.StringIO(), width=120, record=True, color_system=None)
    console.print(frame(state, datetime.now(UTC)))
    rows = {line.split("│")[2].strip(): line for line in console.export_text().splitlines()
            if line.count("│") >= 5}  # fmt: skip
    assert "collecting" in rows["db"] and "1.5s" in rows["db"]
    assert "queued" in rows["docs"] and "queued" in rows["api"]


def test_progress_follows_a_journal_as_it_is_written(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None)
    events = _events()
    with Progress(console, journal, live=False) as progress:
        text = "".join(json.dumps(ev) + "\n" for ev in events)
        cut = len("".join(json.dumps(ev) + "\n" for ev in events[:5])) + 10
        with journal.open("w") as fh:
            fh.write(text[:cut])  # five events and the start of a sixth, still being written
        deadline = time.monotonic() + 10
        while "db: running" not in buffer.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "wave 1 task db: running" in buffer.getvalue()  # before the run ends
        assert "collecting" not in buffer.getvalue()
        with journal.open("a") as fh:
            fh.write(text[cut:])
        progress(_result(), set())  # an observer call wakes it
    out = buffer.getvalue()
    assert out.rstrip().endswith("wave 1 task db: merged (1.5s)")
    assert f"wave 1 task docs: failed (0.5s): exited 2 {'x' * 200}" in out.splitlines()


def _result() -> RunResult:
    return RunResult(
        run_id="r1", repo="/repo", plan="plan.yaml", base="HEAD", base_commit="a" * 40,
        integration_ref="refs/heads/runner/r1/integration", started_at="now", state_dir="/s",
        tasks=[
            TaskResult(id="db", wave=1, status=TaskStatus.MERGED, duration_s=1.5),
            TaskResult(id="api", wave=2, status=TaskStatus.FAILED, reason="why " * 60),
            TaskResult(id="docs", wave=1, status=TaskStatus.VERIFY_FAILED),
        ],
    )  # fmt: skip


def test_summary_off_a_terminal_never_wraps_a_long_reason() -> None:
    buffer = io.StringIO()
    print_summary(_result(), Console(file=buffer, highlight=False))
    out = buffer.getvalue()
    assert "\x1b[" not in out
    assert any(("why " * 60).strip() in line for line in out.splitlines())


def test_summary_of_a_wave_isolated_after_a_red_verify_names_the_red_logs() -> None:
    result = _result()
    result.waves = [
        WaveResult(
            index=1, tasks=["db", "docs"], start_commit="a" * 40, verify="green",
            isolated=["db", "docs"],
            verify_runs=[VerifyRun(result="red", log="/v/w1.log"),
                         VerifyRun(task="db", result="green", log="/v/db.log"),
                         VerifyRun(task="docs", result="red", log="/v/docs.log")],
        )
    ]  # fmt: skip
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    print_summary(result, console)
    out = console.export_text()
    assert "verify green" not in out
    assert "wave 1: verify red on the wave's merge (log: /v/w1.log)" in out
    assert "docs red (log: /v/docs.log); merged: db" in out


def test_summary_names_the_branch_and_a_changed_checkout() -> None:
    from runner.core.results import IsolationCheck

    result = _result()
    result.isolation = IsolationCheck(
        unchanged=False, before={"head": "a"}, after={"head": "b"}, changed=["head"]
    )
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    print_summary(result, console)
    out = console.export_text()
    assert "your checkout CHANGED during the run: head" in out
    assert "integration branch: runner/r1/integration" in out


def test_summary_lists_a_tasks_egress_denials() -> None:
    from runner.core.results import Denial

    result = _result()
    result.tasks[1].denials = [
        Denial(time=f"2026-01-01T00:00:0{i}+00:00", host=f"h{i}.example.test", port=443)
        for i in range(7)
    ]
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    print_summary(result, console)
    out = console.export_text()
    assert "task api: egress denied 7x: h0.example.test:443, h1.example.test:443" in out
    assert "h4.example.test:443 and 2 more (see result.json)" in out
    assert "task db:" not in out  # no denials, no line


def _follow(tmp_path: Path) -> str:
    """What Progress prints on a console made from the environment, writing to a pipe."""
    journal = tmp_path / "journal.jsonl"
    journal.write_text("".join(json.dumps(ev) + "\n" for ev in _events()))
    buffer = io.StringIO()
    with Progress(Console(file=buffer), journal):
        pass
    return buffer.getvalue()


def test_force_color_colours_the_lines_of_a_pipe_but_draws_no_live_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    forced = Console(file=io.StringIO())
    assert forced.is_terminal and not interactive(forced)  # colours yes, cursor games no
    out = _follow(tmp_path)
    assert re.search(r"\x1b\[[0-9;]*3[0-9]m", out)  # a colour
    assert "\x1b[?25l" not in out and "\x1b[2K" not in out and "\x1b[1A" not in out
    assert "wave 1 task db: \x1b[32mmerged\x1b[0m (1.5s)" in out


def test_no_color_wins_over_force_color(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    out = _follow(tmp_path)
    assert not re.search(r"\x1b\[[0-9;]*3[0-9]m", out)
    assert "wave 1 task db: merged (1.5s)" in out


def test_a_plain_pipe_has_no_escape_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = _follow(tmp_path)
    assert "\x1b[" not in out and "wave 1 task db: merged (1.5s)" in out


def test_following_a_long_run_costs_the_same_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    # 600 tasks, each queued, started, ended, fetched and judged: following the journal must
    # not project it from the start for each event (it did: quadratic in the tasks).
    n = 600
    ids = [f"t{i}" for i in range(n)]
    evs: list[dict[str, Any]] = [{
        "event": "planned", "run_id": "r", "repo": "/r", "plan": "/p", "base": "HEAD",
        "base_commit": "a" * 40, "integration_ref": "refs/heads/i", "state_dir": "/s",
        "waves": [ids], "tasks": [{"id": t, "wave": 1} for t in ids],
    }]  # fmt: skip
    for t in ids:
        evs += [
            {"event": "task_queued", "task": t, "wave": 1, "start": "a" * 40},
            {"event": "task_started", "task": t, "start": "a" * 40, "attempt": 1},
            {"event": "task_ended", "task": t, "exit_code": 0, "duration_s": 0.1},
            {"event": "fetched", "task": t, "ref": None, "commit": None, "files_changed": [],
             "kept": None},
            {"event": "judged", "task": t, "status": "no_changes", "reason": None},
        ]  # fmt: skip
    applied: list[int] = []  # each event is applied once, not once per later event
    judged = runstate._APPLY["judged"]

    def counted(state: Any, ev: Any) -> None:
        applied.append(1)
        judged(state, ev)

    monkeypatch.setitem(runstate._APPLY, "judged", counted)
    console = Console(file=io.StringIO(), width=100, color_system=None)
    progress = Progress(console, Path("/nonexistent"), live=False)
    seen_lines = 0
    for ev in evs:  # as read one batch at a time
        for state, last in progress._states([{"seq": 1, "time": T, **ev}]):
            progress._show(state, last)
            seen_lines += 1
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert out.count("no_changes") == n and out.count(": running") == n
    assert seen_lines == len(evs)
    assert progress.state is not None and progress.state.events == len(evs)
    assert len(applied) == n

"""The live progress table: what a person sees on a terminal while a run goes."""

from __future__ import annotations

import io

from rich.console import Console

from runner.core.results import RunResult, TaskResult, TaskStatus
from runner.progress import LiveProgress
from runner.report import print_summary


def _result() -> RunResult:
    return RunResult(
        run_id="r1", repo="/repo", plan="plan.yaml", base="HEAD", base_commit="a" * 40,
        integration_ref="refs/heads/runner/r1/integration", started_at="now", state_dir="/s",
        tasks=[
            TaskResult(id="db", wave=1, status=TaskStatus.MERGED, duration_s=1.5),
            TaskResult(id="api", wave=2),
            TaskResult(id="docs", wave=1),
        ],
    )  # fmt: skip


def test_live_table_shows_running_waiting_and_done() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80, color_system=None)
    with LiveProgress(console) as progress:
        progress(_result(), {"docs"})
        rendered = progress.table
    text = Console(file=io.StringIO(), width=80, record=True, color_system=None)
    text.print(rendered)
    rows = {line.split("│")[2].strip(): line for line in text.export_text().splitlines()
            if line.count("│") >= 4}  # fmt: skip
    assert "merged" in rows["db"] and "1.5s" in rows["db"]
    assert "running" in rows["docs"]
    assert "waiting" in rows["api"]


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

"""A task's status from how it ended, as a table (no daemon)."""

from __future__ import annotations

import pytest

from runner.core.judge import Ending, Limits, judge, printable
from runner.core.results import TaskStatus

LIMITS = Limits(timeout=30, memory=512 * 1024**2, disk=64 * 1024**2)
REF = "refs/runner/r/task/t"


@pytest.mark.parametrize(
    ("ending", "status", "reason"),
    [
        (Ending(0, files_changed=2, kept=REF), None, None),
        (Ending(0), TaskStatus.NO_CHANGES, None),
        (Ending(3, kept=REF), TaskStatus.FAILED, f"exit code 3; its work is kept at {REF}"),
        (Ending(None, timed_out=True), TaskStatus.TIMEOUT, "killed after 30s"),
        (Ending(137, oom_killed=True), TaskStatus.OOM, "memory limit (512 MiB)"),
        (Ending(137, disk_exceeded=True), TaskStatus.DISK_LIMIT, "more than 64 MiB"),
        (Ending(0, interrupted="SIGTERM"), TaskStatus.FAILED, "interrupted (SIGTERM)"),
        (
            Ending(None, lost="its sandbox x was removed", kept=REF),
            TaskStatus.SANDBOX_LOST,
            f"its sandbox x was removed; its work is kept at {REF}",
        ),
        (
            Ending(0, files_changed=1, violations=("etc/x",), kept=REF),
            TaskStatus.SCOPE_VIOLATION,
            "changed paths it may not: etc/x",
        ),
        # What it handed back is refused first, whatever else happened.
        (
            Ending(None, timed_out=True, problem="its bundle is refused: x", kept="/ws"),
            TaskStatus.REJECTED,
            "its bundle is refused: x; its work is kept at /ws",
        ),
        (Ending(0, files_changed=1, problem="bad"), TaskStatus.REJECTED, "bad"),
        # Timeout beats the exit code the kill produced.
        (Ending(137, timed_out=True), TaskStatus.TIMEOUT, "killed after"),
    ],
)
def test_judge(ending: Ending, status: TaskStatus | None, reason: str | None) -> None:
    got_status, got_reason = judge(ending, LIMITS)
    assert got_status is status
    assert (got_reason is None) if reason is None else (reason in (got_reason or ""))


def test_reasons_carry_no_control_characters() -> None:
    assert printable("changed paths it may not: a\x1b]0;owned\x07b\n") == (
        "changed paths it may not: a\\x1b]0;owned\\x07b\\x0a"
    )
    assert printable("ünïcode stays") == "ünïcode stays"

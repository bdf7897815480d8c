"""A task's status from how its sandbox ended and what it handed back: a pure decision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.core.results import TaskStatus


@dataclass(frozen=True)
class Ending:
    """How a task ended and what came home, as plain values."""

    exit_code: int | None
    timed_out: bool = False
    oom_killed: bool = False
    disk_exceeded: bool = False
    lost: str | None = None
    """Why its sandbox went away while it ran, if it did."""
    interrupted: str | None = None
    """The signal that interrupted the run (SIGINT, SIGTERM), if one did."""
    problem: str | None = None
    """Why what it handed back was refused (intake), if it was."""
    files_changed: int = 0
    violations: tuple[str, ...] = ()
    kept: str | None = None
    """Where its work is kept (its ref, or its workspace)."""


@dataclass(frozen=True)
class Limits:
    timeout: float
    memory: int
    disk: int


def judge(e: Ending, limits: Limits) -> tuple[TaskStatus | None, str | None]:
    """(status, reason); status None: the task is ready to merge."""
    kept = f"; its work is kept at {e.kept}" if e.kept else ""
    if e.problem:
        return TaskStatus.REJECTED, f"{e.problem}{kept}"
    if e.interrupted:
        return TaskStatus.FAILED, f"interrupted ({e.interrupted}){kept}"
    if e.lost:
        return TaskStatus.SANDBOX_LOST, f"{e.lost}{kept}"
    if e.timed_out:
        return TaskStatus.TIMEOUT, f"killed after {limits.timeout:g}s{kept}"
    if e.oom_killed:
        return TaskStatus.OOM, f"killed by the memory limit ({_mib(limits.memory)}){kept}"
    if e.disk_exceeded:
        return TaskStatus.DISK_LIMIT, f"stopped for writing more than {_mib(limits.disk)}{kept}"
    if e.exit_code != 0:
        return TaskStatus.FAILED, f"exit code {e.exit_code}{kept}"
    if not e.files_changed:
        return TaskStatus.NO_CHANGES, None
    if e.violations:
        shown = ", ".join(e.violations[:10])
        return TaskStatus.SCOPE_VIOLATION, f"changed paths it may not: {shown}{kept}"
    return None, None


def printable(text: str) -> str:
    """A one-line reason safe for any terminal: a task names the paths it quotes, and a
    control character in one (an escape sequence) must not reach the user's screen."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _mib(size: int) -> str:
    return f"{size / 1024**2:g} MiB"


def retry_due(
    status: TaskStatus | None, attempt: int, retries: int, retry_on: Sequence[str]
) -> bool:
    """Whether a task that ended `status` on `attempt` (from 1) runs again."""
    return status is not None and status.value in retry_on and attempt <= retries

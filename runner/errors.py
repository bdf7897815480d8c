"""Errors the user can act on. cli.py turns each into one line and an exit code."""

from __future__ import annotations


class RunnerError(Exception):
    """Base of every error that is the user's to fix or the environment's; never a bug."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message


class InputError(RunnerError):
    """Bad input (plan, policy, repo, flags): nothing was started, nothing changed."""

    exit_code = 2


class PlanError(InputError):
    """One or more problems in a plan file, each located by file, line and field."""

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        super().__init__("\n".join(problems), hint=hint)
        self.problems = problems


class GitError(RunnerError):
    """A git command failed; carries the command and what it printed."""

    def __init__(self, argv: tuple[str, ...], code: int, stdout: str, stderr: str) -> None:
        shown = " ".join(argv)
        detail = (stderr or stdout).strip().splitlines()
        tail = detail[-1] if detail else "(no output)"
        super().__init__(f"git failed (exit {code}): {shown}: {tail}")
        self.argv, self.code, self.stdout, self.stderr = argv, code, stdout, stderr


class SandboxError(RunnerError):
    """The sandbox backend broke (daemon down, image missing, API fault): not a task result."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (cleanup runs) but exits 143."""

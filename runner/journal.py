"""The run journal: an append-only `journal.jsonl` in the run's state dir (issue 9).

Each event is one JSON line `{"seq", "time", "event", ...fields}`, written and fsync'd before
the runner acts on it, so after any crash the journal says at least what was about to happen.
One writer per run: appends are serialised by a lock, and `seq` is taken under it, so lines
are in `seq` order. Values of environment variables are never written (names only): callers
pass names, and nothing here reads the environment.

A crash mid-write leaves a torn last line; the reader stops before it and says where, and a
writer that reopens the journal cuts it off before it appends.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from runner.core.runstate import EVENTS
from runner.errors import RunnerError


class JournalError(RunnerError):
    """The journal cannot be written, or what is on disk is not a journal."""

    exit_code = 3


@dataclass(frozen=True)
class JournalRead:
    """What a reader found: the whole events, and where it stopped if the end was torn."""

    events: list[dict[str, Any]]
    size: int
    """Bytes of whole lines: where a writer appends next."""
    torn: str | None = None
    """Where reading stopped before a partial last line (a crash mid-write), if it did."""


def read_journal(path: Path) -> JournalRead:
    """Read every whole event. Raises JournalError for a journal damaged before its end."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read the run journal {path}: {exc.strerror or exc}") from None
    events: list[dict[str, Any]] = []
    size = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        last = number >= len(lines) - 1  # the final line, or the text after the last newline
        if number == len(lines) and not line:
            break  # the file ends with a newline: nothing after it
        event = _parse(line) if number < len(lines) else None
        if event is None:
            if not last:
                raise JournalError(f"{path}:{number}: not a journal event (damaged journal)")
            return JournalRead(events, size, f"line {number} (byte {size}): partial last line")
        if event["seq"] != len(events) + 1:
            raise JournalError(
                f"{path}:{number}: event seq {event['seq']}, expected {len(events) + 1}"
            )
        events.append(event)
        size += len(line) + 1
    return JournalRead(events, size)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(event, dict) and isinstance(event.get("event"), str)
    return event if ok and isinstance(event.get("seq"), int) else None


class Journal:
    """The append-only writer of one run's journal. Use `Journal.open(path)`."""

    def __init__(self, path: Path, fd: int, seq: int, size: int) -> None:
        self.path = path
        self._fd = fd
        self._seq = seq
        self._size = size
        self._lock = threading.Lock()
        self.failed: JournalError | None = None
        """The write that failed; every later append raises it again (no gaps in the journal)."""

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Open (or create) a journal to append to, cutting off a torn last line."""
        try:
            created = not path.exists()
            read = read_journal(path) if not created else JournalRead([], 0)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if read.torn:
                os.ftruncate(fd, read.size)
            os.fsync(fd)
            if created:
                _fsync_dir(path.parent)  # the new file's name must survive a crash too
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise JournalError(f"cannot write the run journal {path}: {why}") from None
        return cls(path, fd, len(read.events), read.size)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event and fsync it; returns it. Raises JournalError."""
        if event not in EVENTS:
            raise ValueError(f"unknown journal event {event!r}")  # a bug, not a user's error
        with self._lock:
            if self.failed is not None:
                raise self.failed
            record = {"seq": self._seq + 1, "time": _now(), "event": event, **fields}
            # ASCII only: a path with bytes that are not UTF-8 (a lone surrogate) still encodes.
            line = json.dumps(record, allow_nan=False, default=_plain)
            data = (line + "\n").encode()
            try:
                written = 0
                while written < len(data):
                    written += os.write(self._fd, data[written:])
                os.fsync(self._fd)
            except OSError as exc:
                self._cut()
                self.failed = JournalError(
                    f"cannot write the run journal {self.path}: {exc.strerror or exc}",
                    hint="free space or fix permissions of the run's state dir",
                )
                raise self.failed from None
            self._seq += 1
            self._size += len(data)
        return record

    def _cut(self) -> None:
        # Leave no torn line behind a failed write: the journal ends at its last whole event.
        with contextlib.suppress(OSError):  # the reader stops at a torn last line anyway
            os.ftruncate(self._fd, self._size)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _plain(value: object) -> str:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not a journal value: {type(value).__name__}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

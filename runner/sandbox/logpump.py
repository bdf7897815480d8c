"""A sandbox's output into its log file: capped, secrets masked, metrics line picked out.

Docker-free (it reads an iterable of byte chunks), so it is tested as data. The Docker
backend feeds it from an attach stream opened before the container starts: that stream
carries every byte live, where following the daemon's log file ends early once the file
rotates (measured here on Docker 20.10 with json-file max-size).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

METRICS_MARK = b"##runner-metrics "
TAIL = 4096


class Masker(Protocol):
    """Replaces secret values in a stream of chunks (runner.core.secrets)."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


@dataclass
class LogPump:
    """Writes up to `cap` bytes of output to `path`, then keeps only the last 4 KiB."""

    path: Path
    cap: int
    masker: Masker | None = None
    metrics: list[bytes] = field(default_factory=list)
    kept: int = 0
    dropped: int = 0
    _tail: bytes = b""
    _partial: bytes = b""

    def run(self, chunks: Iterable[bytes]) -> None:
        """Consume the stream until it ends; errors of the stream end it (the caller's)."""
        with self.path.open("wb") as fh:
            try:
                for chunk in chunks:
                    self._take(chunk, fh)
            finally:
                self._line(self._partial, fh, newline=b"")
                self._write(self.masker.flush() if self.masker else b"", fh)
                if self.dropped:
                    fh.write(f"\n[runner: {self.dropped} bytes over max_log dropped; ".encode())
                    fh.write(b"the last ones:]\n" + self._tail)

    def _take(self, data: bytes, fh: IO[bytes]) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._line(line, fh)
        if len(self._partial) > 64 * 1024:  # that long without a newline: not a metrics line
            self._emit(self._partial, fh)
            self._partial = b""

    def _line(self, line: bytes, fh: IO[bytes], newline: bytes = b"\n") -> None:
        # The metrics line is wrap.sh's own; it may fall anywhere (stdout and stderr are
        # copied separately) and is kept out of the task's log. It may also end a line the
        # task left open (`printf done`): what comes before the mark is the task's.
        at = line.find(METRICS_MARK)
        if at >= 0:
            self.metrics.append(line[at:])
            if at:
                self._emit(line[:at], fh)
        elif line or newline:
            self._emit(line + newline, fh)

    def _emit(self, data: bytes, fh: IO[bytes]) -> None:
        # Masked after the metrics line is taken out: a secret of digits must not eat it.
        self._write(self.masker.feed(data) if self.masker else data, fh)

    def _write(self, data: bytes, fh: IO[bytes]) -> None:
        room = max(0, self.cap - self.kept)
        head, rest = data[:room], data[room:]
        if head:
            fh.write(head)
            fh.flush()
            self.kept += len(head)
        if rest:
            self.dropped += len(rest)
            self._tail = (self._tail + rest)[-TAIL:]

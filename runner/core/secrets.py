"""Masking of the values of variables passed to a task (`env: [NAME]`) in what it prints.

Pure: bytes in, bytes out. The log pump feeds the task's output through `Masker.feed` chunk by
chunk as the daemon hands it over, and `Masker.flush` at the end; whole strings go through
`Masker.mask_text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MASK = b"***"
MIN_LENGTH = 4
"""Values (and lines of values) shorter than this many bytes are not masked.

A variable such as `DEBUG=1` or `REGION=eu` is configuration, not a secret: masking "1" or
"eu" everywhere would turn every log into asterisks, and a value that short can be guessed
anyway. Such values are left visible and their names are listed in `Masker.too_short`, so
the caller can warn that they may appear in the log.
"""


def _patterns(value: str, min_length: int) -> set[bytes]:
    # The value itself, and the forms a task prints it in most: without the trailing newline
    # of a file it was read from, and one line of a multi-line value (a key file) at a time.
    forms = {value, value.strip(), *(line.strip() for line in value.splitlines())}
    encoded = {f.encode("utf-8", "surrogateescape") for f in forms}
    return {p for p in encoded if len(p) >= min_length}


class Masker:
    """Replaces every occurrence of the given values with `***`, streaming.

    What is masked: the union of all occurrences of all values. Occurrences that overlap
    (`abcd` and `cdef` in `abcdef`) or contain one another become one `***`, so no part of
    either value shows; occurrences that only touch (`abcdabcd` for `abcd`) give one `***`
    each. The output does not depend on how the input is cut into chunks: the end of a chunk
    that may be the start of a value is held back until it is known whether the value
    completes (at most the length of the longest value, minus one byte); everything else is
    returned at once.

    A masker is one stream: feed its chunks in order, then flush once. Not thread-safe.
    """

    def __init__(self, values: Iterable[str], *, min_length: int = MIN_LENGTH) -> None:
        if min_length < 1:
            raise ValueError("min_length must be at least 1")
        found: set[bytes] = set()
        for value in values:
            found |= _patterns(value, min_length)
        self.patterns: tuple[bytes, ...] = tuple(sorted(found))
        self.too_short: tuple[str, ...] = ()
        """Names of variables whose values are not masked (see MIN_LENGTH); from from_env."""
        self._stream = _Stream(self.patterns)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, min_length: int = MIN_LENGTH) -> Masker:
        """A masker of the values of env (name -> value), noting names too short to mask."""
        masker = cls(env.values(), min_length=min_length)
        masker.too_short = tuple(
            sorted(name for name, value in env.items() if not _patterns(value, min_length))
        )
        return masker

    def feed(self, chunk: bytes) -> bytes:
        """The masked output that chunk makes final (possibly empty; the rest is held back)."""
        return self._stream.feed(chunk) if self.patterns else chunk

    def flush(self) -> bytes:
        """The end of the stream: everything still held back, masked. The masker is then fresh."""
        return self._stream.flush()

    def mask_text(self, text: str) -> str:
        """text with every value masked (a whole string; the stream's state is not touched)."""
        if not self.patterns:
            return text
        whole = _Stream(self.patterns)
        data = text.encode("utf-8", "surrogateescape")
        return (whole.feed(data) + whole.flush()).decode("utf-8", "surrogateescape")


class _Stream:
    def __init__(self, patterns: tuple[bytes, ...]) -> None:
        self.patterns = patterns
        self.longest = max((len(p) for p in patterns), default=0)
        self.held = b""  # input not yet final: it may still be part of an occurrence
        self.open: int | None = None  # end (in held) of a masked run already written as ***

    def feed(self, chunk: bytes) -> bytes:
        self.held += chunk
        return self._emit(self._final())

    def _final(self) -> int:
        """Bytes of held before this are final: no occurrence still to come covers them.

        Such an occurrence ends past what is held, so it starts in a suffix of held that is
        a proper prefix of a value: hold back the longest such suffix (shorter than longest).
        """
        size = len(self.held)
        for k in range(min(self.longest - 1, size), 0, -1):
            tail = self.held[size - k :]
            if any(len(p) > k and p.startswith(tail) for p in self.patterns):
                return size - k
        return size

    def flush(self) -> bytes:
        out = self._emit(len(self.held))
        self.held, self.open = b"", None
        return out

    def _runs(self) -> list[list[int]]:
        """Masked runs in held as [start, end, already written]; overlapping ones merged."""
        found = []
        for pattern in self.patterns:
            at = self.held.find(pattern)
            while at >= 0:
                found.append((at, at + len(pattern)))
                at = self.held.find(pattern, at + 1)
        runs = [[0, self.open, 1]] if self.open is not None else []
        for start, end in sorted(found):
            if runs and start < runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], end)
            else:
                runs.append([start, end, 0])
        return runs

    def _emit(self, final: int) -> bytes:
        if final <= 0:
            return b""
        out, cur, still_open = bytearray(), 0, None
        for start, end, written in self._runs():
            if start >= final:
                break
            out += self.held[cur:start]
            if not written:
                out += MASK
            if end > final:  # an occurrence yet to come may still overlap it and extend it
                still_open = end - final
                break
            cur = end
        if still_open is None:
            out += self.held[cur:final]
        self.held, self.open = self.held[final:], still_open
        return bytes(out)

"""Scopes: which paths a task may change, and whether two tasks may change the same ones.

Globs follow gitwildmatch (.gitignore) semantics, anchored at the repo root.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pathspec
import pathspec.util


def _style() -> str:
    # pathspec 1.x deprecates "gitwildmatch" (a warning, an error under `-W error`) for
    # "gitignore", the same semantics; 0.12 knows only "gitwildmatch".
    try:
        pathspec.util.lookup_pattern("gitignore")
    except KeyError:
        return "gitwildmatch"
    return "gitignore"


_STYLE = _style()


def _anchored(glob: str) -> str:
    # In .gitignore a pattern without a slash matches at any depth; a scope is meant from the
    # repo root ("README.md" is the top-level one), so anchor every pattern.
    negated = glob.startswith("!")
    body = glob[1:] if negated else glob
    body = body if body.startswith("/") else "/" + body
    return ("!" if negated else "") + body


def check_glob(glob: str) -> None:
    """Raise ValueError (saying why) if glob is not a pattern a scope can hold.

    pathspec refuses some patterns only when compiling them (a trailing backslash), and
    Python's regex warns on others (a '[' inside a bracket expression), which `-W error`
    turns into a crash mid-run: find both when the plan is loaded.
    """
    if "\0" in glob:
        raise ValueError(f"glob {glob!r} holds a NUL character (no path does)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pathspec.PathSpec.from_lines(_STYLE, [_anchored(glob)])
    except (ValueError, FutureWarning, re.error) as exc:
        raise ValueError(
            f"glob {glob!r} is not a valid pattern ({exc}); escape special characters with \\"
        ) from None


@dataclass(frozen=True)
class Scope:
    """The paths a task may change: inside `include` (None = everything), outside `deny`."""

    include: tuple[str, ...] | None
    deny: tuple[str, ...] = ()

    @classmethod
    def of(cls, include: Sequence[str] | None, deny: Sequence[str] = ()) -> Scope:
        return cls(tuple(include) if include is not None else None, tuple(deny))

    @cached_property
    def _include_spec(self) -> pathspec.PathSpec[Any] | None:
        if self.include is None:
            return None
        return pathspec.PathSpec.from_lines(_STYLE, map(_anchored, self.include))

    @cached_property
    def _deny_spec(self) -> pathspec.PathSpec[Any]:
        return pathspec.PathSpec.from_lines(_STYLE, map(_anchored, self.deny))

    def allows(self, path: str) -> bool:
        return self.covers(path) and not self.denies(path)

    def covers(self, path: str) -> bool:
        return self._include_spec is None or self._include_spec.match_file(path)

    def denies(self, path: str) -> bool:
        return bool(self.deny) and self._deny_spec.match_file(path)

    def describe(self) -> str:
        inc = "everything" if self.include is None else ", ".join(self.include)
        return inc + (f" (deny {', '.join(self.deny)})" if self.deny else "")


def under(path: str, directory: str) -> bool:
    """True when path is directory itself or inside it."""
    directory = directory.strip("/")
    return path == directory or path.startswith(directory + "/")


@dataclass(frozen=True)
class Violations:
    outside_scope: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.outside_scope or self.denied or self.shared)

    def paths(self) -> list[str]:
        return sorted({*self.outside_scope, *self.denied, *self.shared})


def check_changes(scope: Scope, changed: Iterable[str], shared_dir: str | None) -> Violations:
    """Classify changed paths a task may not have changed (the shared dir is never writable)."""
    outside, denied, shared = [], [], []
    for path in changed:
        if shared_dir and under(path, shared_dir):
            shared.append(path)
        elif not scope.covers(path):
            outside.append(path)
        elif scope.denies(path):
            denied.append(path)
    return Violations(tuple(sorted(outside)), tuple(sorted(denied)), tuple(sorted(shared)))


_WILD = re.compile(r"\*\*|\*|\?|\[[^\]]*\]")


def probe(glob: str, filler: str = "x") -> str | None:
    """A concrete path this glob matches (wildcards filled in), to test another scope against.

    It stands for the files a task may create that do not exist at base yet.
    """
    if glob.startswith("!"):
        return None

    def fill(m: re.Match[str]) -> str:
        token = m.group(0)
        if token.startswith("["):
            return token[1]
        return filler[0] if token == "?" else filler

    body = _WILD.sub(fill, glob).strip("/")
    # "src/db/" (a directory pattern) and "src/**" both cover files below.
    if glob.endswith("/") or glob.endswith("**"):
        body += "/x"
    return body.replace("//", "/") or None


def _fillers(glob: str) -> list[str]:
    """What to fill another pattern's wildcards with: this one's literal fragments.

    `src/*.py` against `src/a*` finds `src/a.py`, a file neither task has made yet.
    """
    parts = re.split(r"\*\*|\*|\?|\[[^\]]*\]|/", glob.lstrip("!"))
    return ["x", *dict.fromkeys(p for p in parts if p)]


def _witnesses(a: str, b: str) -> list[str]:
    """Paths that both patterns cover, found by filling each one's wildcards with the other's
    literals (a sample, not a proof: the exact test is regular-language intersection)."""
    sa, sb = Scope.of([a]), Scope.of([b])
    found = [p for f in _fillers(b) if (p := probe(a, f)) is not None and sb.covers(p)]
    found += [p for f in _fillers(a) if (p := probe(b, f)) is not None and sa.covers(p)]
    return found


@dataclass(frozen=True)
class Overlap:
    """Two tasks that may change the same paths."""

    first: str
    second: str
    patterns: tuple[tuple[str, str], ...]
    """Pairs (pattern of first, pattern of second) that cover a common path."""
    files: tuple[str, ...]
    """Files at base that both scopes cover (capped for readability)."""

    def describe(self) -> str:
        pats = "; ".join(f"{a!r} ~ {b!r}" for a, b in self.patterns) or "whole repo"
        files = ", ".join(self.files[:5]) + (" ..." if len(self.files) > 5 else "")
        return f"{self.first} and {self.second} overlap: {pats}" + (
            f"; both cover {files}" if files else ""
        )


def find_overlap(
    first: str, a: Scope, second: str, b: Scope, base_paths: Sequence[str]
) -> Overlap | None:
    """Whether tasks with scopes a and b may change a common path.

    They overlap when a file at base is allowed by both, or when a path one pattern would
    create is covered by the other (new files count too).
    """
    files = tuple(p for p in base_paths if a.allows(p) and b.allows(p))
    pats: list[tuple[str, str]] = []
    # One compiled spec per pattern: this runs over every file at base.
    one_a = {p: Scope.of([p]) for p in (a.include if a.include is not None else ("**",))}
    one_b = {p: Scope.of([p]) for p in (b.include if b.include is not None else ("**",))}
    for pa, sa in one_a.items():
        for pb, sb in one_b.items():
            # A common path that one side denies is not a real overlap.
            if any(a.allows(p) and b.allows(p) for p in _witnesses(pa, pb)) or any(
                sa.covers(f) and sb.covers(f) for f in files
            ):
                pats.append((pa, pb))
    if not files and not pats:
        return None
    return Overlap(first, second, tuple(pats), files[:50])

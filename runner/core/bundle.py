"""What a task hands back, judged as data: its bundle's header and the paths it changed.

A task controls everything in its sandbox, so the bundle its collector wrote is read as
untrusted bytes: the header is parsed here (no git involved) and must name exactly the one
ref the collector writes, built on exactly the task's start commit. Each check returns the
problem in one line, or None; the task is then `rejected`, never the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SIGNATURES = (b"# v2 git bundle\n", b"# v3 git bundle\n")
_OID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1 or SHA-256


def is_object_id(text: str) -> bool:
    """A full object name (SHA-1 or SHA-256, lowercase hex), not a ref or an abbreviation."""
    return _OID.fullmatch(text) is not None


MAX_HEADER = 64 * 1024
NAME_MAX = 255  # bytes in one path component on Linux file systems
PATH_MAX = 1024  # bytes in a repo path: leaves room for the workspace prefix under PATH_MAX
GITLINK = "160000"


class BadBundle(ValueError):
    """The bundle's header is not one the collector writes."""


@dataclass(frozen=True)
class BundleHeader:
    prerequisites: list[str] = field(default_factory=list)
    refs: list[tuple[str, str]] = field(default_factory=list)
    """(object id, ref name) pairs."""
    capabilities: list[str] = field(default_factory=list)


def parse_header(head: bytes) -> BundleHeader:
    """Parse a bundle's text header (the bytes before its pack). Raises BadBundle."""
    signature = next((s for s in _SIGNATURES if head.startswith(s)), None)
    if signature is None:
        raise BadBundle("not a git bundle (no v2/v3 signature)")
    end = head.find(b"\n\n")
    if end < 0:
        raise BadBundle("its header does not end (truncated, or over 64 KiB)")
    try:
        lines = head[len(signature) : end].decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise BadBundle("its header is not text") from None
    out = BundleHeader()
    for line in filter(None, lines):
        if line.startswith("@"):
            out.capabilities.append(line[1:])
        elif line.startswith("-"):
            oid = line[1:].split(" ", 1)[0]
            if not _OID.match(oid):
                raise BadBundle(f"a prerequisite is not an object id: {oid[:80]!r}")
            out.prerequisites.append(oid)
        else:
            oid, _, ref = line.partition(" ")
            if not _OID.match(oid) or not ref:
                raise BadBundle(f"a header line is not `<id> <ref>`: {line[:80]!r}")
            out.refs.append((oid, ref))
    return out


def header_problem(header: BundleHeader, start: str, ref: str) -> str | None:
    """Why this bundle is not the expected `start..<commit>` of one ref, or None."""
    if [name for _, name in header.refs] != [ref]:
        names = ", ".join(name for _, name in header.refs)[:200] or "none"
        return f"its bundle must carry exactly the ref {ref}, it carries: {names}"
    if header.prerequisites != [start]:
        got = ", ".join(p[:12] for p in header.prerequisites[:5]) or "none"
        return (
            f"its history does not build on its start commit {start[:12]} alone "
            f"(the bundle requires: {got}); it rewrote or left its start"
        )
    return None


@dataclass(frozen=True)
class Change:
    """One path changed between the task's start and its commit (git diff-tree -r)."""

    path: str
    old_mode: str
    new_mode: str


def path_problem(changes: list[Change]) -> str | None:
    """Paths the host cannot check out, or a nested repository that would lose its files."""
    for change in changes:
        raw = change.path.encode("utf-8", "surrogateescape")
        if len(raw) > PATH_MAX:
            return f"path longer than {PATH_MAX} bytes: {change.path[:80]}..."
        if any(len(part) > NAME_MAX for part in raw.split(b"/")):
            return f"a path component is longer than {NAME_MAX} bytes: {change.path[:80]}..."
        if change.new_mode == GITLINK and change.old_mode != GITLINK:
            return (
                f"it added a nested git repository at {change.path} (a gitlink to a commit "
                "that is not in your repo: its files would be lost)"
            )
    return None

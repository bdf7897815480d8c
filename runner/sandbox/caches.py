"""Cache volumes as data: what the daemon says about one, and which have gone unused (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runner.sandbox import labels as L


@dataclass(frozen=True)
class CacheVolume:
    """A volume the runner made for a task's (or verify's) cache; found by its labels."""

    name: str
    repo_key: str
    role: str
    task: str
    created: datetime | None
    size: int | None = None
    """Bytes on disk (from `docker system df -v`); None: not asked or not known."""
    in_use: bool = False
    """Mounted by a container now (a running sandbox): never removed."""


def from_attrs(attrs: Mapping[str, Any]) -> CacheVolume | None:
    """A volume's inspect (or `system df`) record as a CacheVolume; None without our label."""
    labels = attrs.get("Labels") or {}
    key = labels.get(L.CACHE)
    if not key:
        return None
    usage = attrs.get("UsageData") or {}
    size = usage.get("Size")
    return CacheVolume(
        name=str(attrs.get("Name", "")),
        repo_key=str(key),
        role=str(labels.get(L.ROLE, "")),
        task=str(labels.get(L.TASK, "")),
        created=parse_time(str(attrs.get("CreatedAt") or "")),
        size=size if isinstance(size, int) and size >= 0 else None,
        in_use=int(usage.get("RefCount") or 0) > 0,
    )


def parse_time(text: str) -> datetime | None:
    """RFC 3339 as Docker and the journal write it (`Z`, nanoseconds); None if not one."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def last_use(volume: CacheVolume, recorded: Mapping[str, datetime]) -> datetime | None:
    """When a cache was last used: the runs' record, else its creation (its first use)."""
    known = [t for t in (recorded.get(volume.name), volume.created) if t is not None]
    return max(known) if known else None


def unused_since(
    volumes: Iterable[CacheVolume], recorded: Mapping[str, datetime], cutoff: datetime
) -> list[CacheVolume]:
    """Caches not used since cutoff, and not mounted now. A cache with no known time stays."""
    found = []
    for v in volumes:
        when = last_use(v, recorded)
        if when is not None and when < cutoff and not v.in_use:
            found.append(v)
    return found

"""Dependency graph: cycles, waves (topological layers) and the independence test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runner.core.scope import Overlap, Scope, find_overlap


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as [a, b, ..., a], or None. deps maps task -> tasks it depends on.

    Iterative depth-first search: a long chain of tasks must not hit Python's recursion limit.
    """
    done: set[str] = set()
    for root in deps:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        stack = [iter(deps.get(root, ()))]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                stack.pop()
                done.add(node := path.pop())
                on_path.discard(node)
            elif dep in on_path:
                return [*path[path.index(dep) :], dep]
            elif dep not in done:
                path.append(dep)
                on_path.add(dep)
                stack.append(iter(deps.get(dep, ())))
    return None


def layers(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Topological layers: a task sits one wave after its latest dependency. Keeps plan order.

    Assumes no cycle (check find_cycle first).
    """
    level: dict[str, int] = {}
    for root in deps:
        stack = [root]
        while stack:
            node = stack[-1]
            pending = [d for d in deps.get(node, ()) if d not in level]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            level[node] = 1 + max((level[d] for d in deps.get(node, ())), default=-1)
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for node in deps:  # dict order = plan order
        out[level[node]].append(node)
    return out


@dataclass(frozen=True)
class Dispatch:
    """What will run when: the waves after the independence test, and what it found."""

    waves: list[list[str]]
    deps: dict[str, list[str]]
    """Dependencies including those added by `serialize`."""
    overlaps: list[Overlap] = field(default_factory=list)
    """Overlaps left within waves (on_overlap refuse: the reason to stop; allow: a warning)."""
    moved: list[tuple[str, str]] = field(default_factory=list)
    """(task, after) pairs that `serialize` ordered."""


def dispatch(
    deps: Mapping[str, Sequence[str]],
    scopes: Mapping[str, Scope],
    base_paths: Sequence[str],
    on_overlap: str,
) -> Dispatch:
    """Group tasks into waves and test each wave's independence.

    serialize: the later task (plan order) of an overlapping pair waits for the earlier one,
    and waves are recomputed until no wave holds an overlap.
    """
    current = {k: list(v) for k, v in deps.items()}
    moved: list[tuple[str, str]] = []
    while True:
        waves = layers(current)
        overlaps = [o for wave in waves for o in _wave_overlaps(wave, scopes, base_paths)]
        if not overlaps or on_overlap != "serialize":
            return Dispatch(waves, current, overlaps, moved)
        first = overlaps[0]
        current[first.second].append(first.first)
        moved.append((first.second, first.first))


def _wave_overlaps(
    wave: Sequence[str], scopes: Mapping[str, Scope], base_paths: Sequence[str]
) -> list[Overlap]:
    found = []
    for i, a in enumerate(wave):
        for b in wave[i + 1 :]:
            if (o := find_overlap(a, scopes[a], b, scopes[b], base_paths)) is not None:
                found.append(o)
    return found

"""Load YAML keeping the line of every value, so a validation error can say file:line.

PyYAML's composed node tree carries start marks; we build plain Python data from it
and a map from each value's path (("tasks", 2, "scope")) to its 1-based line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]


class YamlSyntaxError(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def load_with_lines(text: str) -> tuple[Any, dict[Loc, int]]:
    """Parse one YAML document; return (data, {path: line})."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlSyntaxError(line, f"{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, str(exc)) from None
    lines: dict[Loc, int] = {}
    if node is None:
        return None, lines
    constructor = yaml.SafeLoader("")
    return _build(constructor, node, (), lines), lines


def _build(c: yaml.SafeLoader, node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = c.construct_object(key_node)  # type: ignore[no-untyped-call]
            if key in out:
                raise YamlSyntaxError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            out[key] = _build(c, value_node, (*loc, str(key)), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(c, item, (*loc, i), lines) for i, item in enumerate(node.value)]
    return c.construct_object(node, deep=True)  # type: ignore[no-untyped-call]


def line_for(lines: dict[Loc, int], loc: Sequence[str | int]) -> int | None:
    """The line of the deepest known ancestor of loc (a missing field points at its parent)."""
    parts = tuple(loc)
    while True:
        if parts in lines:
            return lines[parts]
        if not parts:
            return None
        parts = parts[:-1]


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")

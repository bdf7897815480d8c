"""Load YAML keeping the line of every value, so a validation error can say file:line.

PyYAML's composed node tree carries start marks; we build plain Python data from it
and a map from each value's path (("tasks", 2, "scope")) to its 1-based line.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    except RecursionError:
        raise YamlSyntaxError(None, "nested too deeply") from None
    lines: dict[Loc, int] = {}
    if node is None:
        return None, lines
    builder = _Builder(yaml.SafeLoader(""), lines)
    try:
        return builder.build(node, ()), lines
    except RecursionError:
        raise YamlSyntaxError(None, "nested too deeply") from None


# Aliases are expanded (every path gets its own line), so a small file of nested aliases could
# expand without bound ("billion laughs"); no plan or policy comes near this many values.
MAX_VALUES = 200_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Builder:
    def __init__(self, constructor: yaml.SafeLoader, lines: dict[Loc, int]) -> None:
        self.c = constructor
        self.lines = lines
        self.count = 0
        self.active: set[int] = set()  # collection nodes on the current path (alias cycles)

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        line = node.start_mark.line + 1
        self.lines[loc] = line
        self.count += 1
        if self.count > MAX_VALUES:
            raise YamlSyntaxError(line, f"more than {MAX_VALUES} values (aliases expand)")
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in self.active:
                raise YamlSyntaxError(line, "an alias refers to a value that contains it")
            self.active.add(id(node))
            try:
                return (
                    self._mapping(node, loc)
                    if isinstance(node, yaml.MappingNode)
                    else [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
                )
            finally:
                self.active.discard(id(node))
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                raise YamlSyntaxError(key_line, "merge keys (<<) are not supported")
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError(key_line, "a key must be a plain value, not a list or map")
            key = self._scalar(key_node)
            if key in out:
                raise YamlSyntaxError(key_line, f"duplicate key {key!r}")
            out[key] = self.build(value_node, (*loc, str(key)))
        return out

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.c.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # a tag SafeLoader refuses (!foo, !!python/...)
            reason = getattr(exc, "problem", None) or str(exc)
        except (ValueError, TypeError, AttributeError, LookupError, OverflowError):  # !!int abc
            reason = f"not a valid {node.tag.removeprefix('tag:yaml.org,2002:')}"
        raise YamlSyntaxError(node.start_mark.line + 1, f"{node.value!r}: {reason}")


def line_for(lines: dict[Loc, int], loc: Sequence[str | int]) -> int | None:
    """The line of the deepest known ancestor of loc (a missing field points at its parent)."""
    parts = tuple(loc)
    while True:
        if parts in lines:
            return lines[parts]
        if not parts:
            return None
        parts = parts[:-1]

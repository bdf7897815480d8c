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


# Deeper nesting is refused while scanning. PyYAML's scanner is quadratic in flow depth (every
# token checks each level's possible key): 20,000 '[' took minutes; its composer recurses.
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _too_deep(self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        if len(self.indents) >= MAX_DEPTH:
            raise _too_deep(self.get_mark())
        return bool(super().add_indent(column))


def _too_deep(mark: yaml.Mark) -> yaml.MarkedYAMLError:
    return yaml.scanner.ScannerError(None, None, f"nested more than {MAX_DEPTH} deep", mark)


def load_with_lines(text: str) -> tuple[Any, dict[Loc, int]]:
    """Parse one YAML document; return (data, {path: line})."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlSyntaxError(line, f"{exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:
        # A character YAML refuses (a control character, a lone surrogate): no mark, a position.
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlSyntaxError(
            line, f"character U+{char:04X} is not allowed here (escape it in double quotes)"
        ) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, str(exc)) from None
    except RecursionError:
        raise YamlSyntaxError(_deepest_line(text), "nested too deeply") from None
    lines: dict[Loc, int] = {}
    if node is None:
        return None, lines
    builder = _Builder(yaml.SafeLoader(""), lines)
    try:
        return builder.build(node, ()), lines
    except RecursionError:
        raise YamlSyntaxError(_deepest_line(text), "nested too deeply") from None


def _deepest_line(text: str) -> int | None:
    """Where nesting is deepest: the parser's event stream is flat, so it has no recursion."""
    depth, deepest, line = 0, -1, None
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > deepest and event.start_mark:
                    deepest, line = depth, event.start_mark.line + 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass  # a later syntax error: the deepest point so far still says where to look
    return line


# Aliases are expanded (every path gets its own line), so a small file of nested aliases could
# expand without bound ("billion laughs"); no plan or policy comes near this many values.
MAX_VALUES = 200_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
# A collection is built as a plain dict or list whatever its tag says, so a tag asking for
# something else (!!python/object, !!set, !!omap, !custom) is refused rather than ignored.
_PLAIN = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}


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
            if node.tag != _PLAIN[type(node)]:
                tag = node.tag.replace("tag:yaml.org,2002:", "!!")
                raise YamlSyntaxError(line, f"tag {tag} is not supported (only plain maps, lists)")
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

"""Read a YAML file into plain values plus the position of every value.

This is the only module that touches YAML. It composes the node tree (so every key and
value keeps its line and column), rejects duplicate keys, and resolves plain scalars with
the YAML 1.2 core schema: ``18:00`` stays the string "18:00" (YAML 1.1 would read the
integer 1080) and ``no`` stays "no" (YAML 1.1 would read False).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_BOOL_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


@dataclass(frozen=True)
class YamlProblem:
    position: Position
    path: Path_
    message: str


class YamlError(Exception):
    """The file is not readable YAML of the expected shape; carries the problem."""

    def __init__(self, problem: YamlProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(frozen=True)
class Document:
    """Plain values (dict, list, str, int, float, bool, None) and where each one stands.

    ``values_at[path]`` is the position of the value at ``path``; ``keys_at[path]`` the
    position of the mapping key that introduced it (absent for list items and the root).
    """

    data: Any
    values_at: dict[Path_, Position]
    keys_at: dict[Path_, Position]

    def position(self, path: Path_, *, prefer_key: bool = False) -> Position:
        """The closest known position for ``path``, walking up to its parents."""
        probe = tuple(path)
        while True:
            if prefer_key and probe in self.keys_at:
                return self.keys_at[probe]
            if probe in self.values_at:
                return self.values_at[probe]
            if not probe:
                return Position(1, 1)
            probe = probe[:-1]


def _pos(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    text = node.value
    if node.style or node.tag == "tag:yaml.org,2002:str":
        return text  # quoted or explicitly tagged: always a string
    if _NULL.match(text):
        return None
    if _BOOL_TRUE.match(text):
        return True
    if _BOOL_FALSE.match(text):
        return False
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def _convert(node: yaml.Node, path: Path_, doc: Document, depth: int) -> Any:
    if depth > 64:
        raise YamlError(YamlProblem(_pos(node.start_mark), path, "nested too deeply"))
    doc.values_at[path] = _pos(node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc, depth + 1) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(
                    YamlProblem(_pos(key_node.start_mark), path, "keys must be plain names")
                )
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                first = doc.keys_at[child]
                raise YamlError(
                    YamlProblem(
                        _pos(key_node.start_mark),
                        child,
                        f"duplicate key '{key}' (first at line {first.line}); keep one",
                    )
                )
            doc.keys_at[child] = _pos(key_node.start_mark)
            result[key] = _convert(value_node, child, doc, depth + 1)
        return result
    raise YamlError(YamlProblem(_pos(node.start_mark), path, "unsupported YAML node"))


def load(path: Path) -> Document:
    """Read ``path``. Raises YamlError (syntax, duplicate keys) or OSError (unreadable)."""
    text = path.read_text(encoding="utf-8")
    return loads(text)


def loads(text: str) -> Document:
    """Parse YAML text; see :func:`load`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = _pos(mark) if mark is not None else Position(1, 1)
        reason = exc.problem or "not valid YAML"
        raise YamlError(YamlProblem(position, (), f"YAML syntax: {reason}")) from None
    except yaml.YAMLError as exc:
        raise YamlError(YamlProblem(Position(1, 1), (), f"YAML syntax: {exc}")) from None
    doc = Document(data=None, values_at={}, keys_at={})
    if node is None:
        return doc
    data = _convert(node, (), doc, 0)
    return Document(data=data, values_at=doc.values_at, keys_at=doc.keys_at)

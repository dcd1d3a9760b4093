"""Read a YAML file into plain values plus the position of every value.

This is the only module that touches YAML. It reads libyaml's events (so every key and
value keeps its line and column), rejects duplicate keys, bounds the size, the depth and
what aliases repeat (a "billion laughs" file is refused in a moment), refuses bytes that
are not UTF-8 with their position, and resolves plain scalars with
the YAML 1.2 core schema: ``18:00`` stays the string "18:00" (YAML 1.1 would read the
integer 1080) and ``no`` stays "no" (YAML 1.1 would read False).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

Path_ = tuple[str | int, ...]

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_BOOL_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")


class Position(NamedTuple):
    """A 1-based line and column in a file (a tuple: a big file has hundreds of
    thousands)."""

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


def _pos(mark: Any) -> Position:
    """A libyaml mark (0-based line and column) as a Position."""
    return Position(mark.line + 1, mark.column + 1)


def _scalar(node: yaml.ScalarEvent) -> Any:
    text = node.value
    if node.style or node.tag == "tag:yaml.org,2002:str":
        return text  # quoted or explicitly tagged: always a string
    if _NULL.match(text):
        return None
    if _BOOL_TRUE.match(text):
        return True
    if _BOOL_FALSE.match(text):
        return False
    if _INT.match(text) or _FLOAT.match(text):
        if sum(c.isdigit() for c in text) > MAX_DIGITS:
            raise ValueError(
                f"a number of {len(text):,} characters; write at most {MAX_DIGITS} digits"
            )
        return int(text) if _INT.match(text) else float(text)
    return text


MAX_BYTES = 16 * 1024 * 1024  # a config file: a city of 10,000 APs is under 3 MB
MAX_DEPTH = 64  # mappings and lists inside each other
MAX_VALUES = 500_000  # keys and values, every alias counted as what it repeats (a city of
# 10,000 APs has about 180,000)
POSITIONS_DEPTH = 8  # where values deeper than this stand is known by their parent's
MAX_DIGITS = 30  # a number written with more digits is a slip, not a number


@dataclass
class _Open:
    """A mapping or list being read: where it is, what it holds so far, and how many
    values it stands for (with what its aliases repeat)."""

    value: dict[str, Any] | list[Any]
    path: Path_
    anchor: str | None
    size: int = 1
    key: str | None = None


_ENDS = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
_FRAMING = (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)


def _position_at(text: str | bytes, offset: int) -> Position:
    """The line and column of ``offset`` in ``text`` (characters, or bytes for bytes)."""
    newline = "\n" if isinstance(text, str) else b"\n"
    line = text.count(newline, 0, offset) + 1  # type: ignore[arg-type]
    return Position(line, offset - (text.rfind(newline, 0, offset) + 1) + 1)  # type: ignore[arg-type]


def _fail(mark: Any, path: Path_, message: str) -> YamlError:
    return YamlError(YamlProblem(_pos(mark), path, message))


class NotAFile(ValueError):
    """A path that is not a file to be read whole: a device, a pipe, procfs; too large."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes. Raises OSError
    (unreadable) or NotAFile (a device, a pipe, a directory, a procfs file; too large),
    never blocking: a FIFO is opened without waiting for a writer, /dev/zero is refused."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAFile("is not a regular file")
        data = f.read(limit + 1)
    if info.st_size == 0 and data:  # /proc and /sys: files made up as they are read
        raise NotAFile("is not a regular file (it is generated by the kernel)")
    if len(data) > limit:
        raise NotAFile(f"is larger than {limit // 1024} KiB" if limit < 2**20 else
                         f"is larger than {limit // 2**20} MiB")  # fmt: skip
    return data


def decode(data: bytes) -> str:
    """UTF-8 text (a UTF-8 byte order mark is dropped); any other encoding is a YamlError
    at the first byte that is not UTF-8."""
    boms = ((b"\xff\xfe\0\0", "UTF-32"), (b"\0\0\xfe\xff", "UTF-32"),
            (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))  # fmt: skip
    for bom, name in boms:
        if data.startswith(bom):
            raise YamlError(
                YamlProblem(Position(1, 1), (), f"the file is {name}; save it as UTF-8")
            )
    try:
        return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        raise YamlError(YamlProblem(_position_at(data, exc.start), (), message)) from None


def load(path: Path) -> Document:
    """Read ``path``. Raises YamlError (not UTF-8, syntax, duplicate keys, too deep, too
    many values) or OSError/NotAFile (unreadable, not a file, too large)."""
    return loads(decode(read_bounded(path, MAX_BYTES)))


def loads(text: str) -> Document:
    """Parse YAML text; see :func:`load`. One pass over libyaml's events, without
    recursion: the depth, the number of values and what aliases repeat are bounded as
    they are read, so no document can make it hang or fill memory."""
    doc = Document(data=None, values_at={}, keys_at={})
    anchors: dict[str, tuple[Any, int]] = {}
    stack: list[_Open] = []
    values = 0
    root: list[Any] = []
    documents = 0

    def place(value: Any, size: int, anchor: str | None) -> None:
        if anchor is not None:
            anchors[anchor] = (value, size)
        if not stack:
            root.append(value)
            return
        top = stack[-1]
        top.size += size
        if isinstance(top.value, list):
            top.value.append(value)
        else:
            assert top.key is not None
            top.value[top.key] = value
            top.key = None

    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            kind = type(event)
            if kind in _ENDS:
                done = stack.pop()
                place(done.value, done.size, done.anchor)
                continue
            if kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _fail(
                        event.start_mark, (), "YAML syntax: one document only; remove the ---"
                    )
                continue
            if kind in _FRAMING:
                continue
            top = stack[-1] if stack else None
            if top is None:
                path: Path_ = ()
            elif isinstance(top.value, list):
                path = (*top.path, len(top.value))
            elif top.key is None:  # this node is a key
                if not isinstance(event, yaml.ScalarEvent):
                    raise _fail(event.start_mark, top.path, "keys must be plain names")
                key, child = str(event.value), (*top.path, str(event.value))
                if key in top.value:
                    first = doc.keys_at.get(child)
                    at = f" (first at line {first.line})" if first else ""
                    raise _fail(event.start_mark, child, f"duplicate key '{key}'{at}; keep one")
                values += 1
                if len(child) <= POSITIONS_DEPTH:
                    doc.keys_at[child] = _pos(event.start_mark)
                top.key = key
                continue
            else:
                path = (*top.path, top.key)
            if len(stack) > MAX_DEPTH:
                raise _fail(event.start_mark, path, f"nested more than {MAX_DEPTH} deep")
            if len(path) <= POSITIONS_DEPTH:
                doc.values_at[path] = _pos(event.start_mark)
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    raise _fail(event.start_mark, path, f"no anchor &{event.anchor} before this")
                value, size = anchors[event.anchor]
            else:
                value, size = None, 1
            values += size
            if values > MAX_VALUES:
                raise _fail(event.start_mark, path,
                            f"more than {MAX_VALUES:,} keys and values (with what its aliases "
                            "repeat); "
                            "write the values out or use fewer aliases")  # fmt: skip
            if isinstance(event, yaml.AliasEvent):
                place(value, size, None)
            elif isinstance(event, yaml.ScalarEvent):
                try:
                    scalar = _scalar(event)
                except ValueError as exc:
                    raise _fail(event.start_mark, path, str(exc)) from None
                place(scalar, 1, event.anchor)
            else:  # a mapping or a list: placed when it ends
                opened: dict[str, Any] | list[Any] = (
                    [] if isinstance(event, yaml.SequenceStartEvent) else {}
                )
                assert isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
                stack.append(_Open(opened, path, event.anchor))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = _pos(mark) if mark is not None else Position(1, 1)
        reason = exc.problem or "not valid YAML"
        raise YamlError(YamlProblem(position, (), f"YAML syntax: {reason}")) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        # libyaml counts bytes of UTF-8; the position is in characters
        offset = exc.position if isinstance(exc.position, int) else 0
        offset = len(text.encode("utf-8", "surrogatepass")[:offset].decode("utf-8", "ignore"))
        character = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "a character"
        message = f"{character} is a control character YAML does not allow; remove it"
        raise YamlError(YamlProblem(_position_at(text, offset), (), message)) from None
    except yaml.YAMLError as exc:
        said = str(exc).splitlines()[0] if str(exc) else "not valid YAML"
        raise YamlError(YamlProblem(Position(1, 1), (), f"YAML syntax: {said}")) from None
    if not root:
        return doc
    return Document(data=root[0], values_at=doc.values_at, keys_at=doc.keys_at)

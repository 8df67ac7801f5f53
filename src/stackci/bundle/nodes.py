"""YAML read into location-carrying nodes.

Every value of a bundle configuration is a :class:`Node`: the plain value plus
the file and line it came from, so any later error (a bad reference, a path
outside the bundle, a wrong type) can name ``file:line``. Scalars follow the
YAML 1.2 core schema that the Databricks CLI uses, not PyYAML's YAML 1.1
defaults: ``on``/``yes``/``NO`` stay strings, dates stay strings, ``0777`` is an
integer 777 only when written ``0o777``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..errors import ConfigError


@dataclass(frozen=True)
class Location:
    file: str            # absolute path of the YAML file
    line: int            # 1-based
    column: int = 1      # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Node:
    """A configuration value with where it was written.

    ``value`` is a ``dict[str, Node]``, a ``list[Node]`` or a plain scalar
    (``str``, ``int``, ``float``, ``bool``, ``None``). ``anchored``: the YAML gave the value
    an anchor (``&name``), or it is an alias of one; such values are often only reusable
    blocks, which the schema check treats as the Databricks CLI does.
    """

    __slots__ = ("value", "loc", "key_loc", "anchored")

    def __init__(self, value: Any, loc: Location | None, key_loc: Location | None = None,
                 anchored: bool = False) -> None:
        self.value = value
        self.loc = loc
        self.key_loc = key_loc
        self.anchored = anchored

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Node({self.value!r} @ {self.loc})"

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    def get(self, key: str) -> "Node | None":
        return self.value.get(key) if isinstance(self.value, dict) else None

    def plain(self) -> Any:
        """The value without locations (dicts, lists, scalars)."""
        return to_plain(self)

    def copy(self) -> "Node":
        """A deep copy (nodes are mutated by merges and presets)."""
        if isinstance(self.value, dict):
            return Node({k: v.copy() for k, v in self.value.items()}, self.loc, self.key_loc, self.anchored)
        if isinstance(self.value, list):
            return Node([v.copy() for v in self.value], self.loc, self.key_loc, self.anchored)
        return Node(self.value, self.loc, self.key_loc, self.anchored)


def to_plain(node: Node | None) -> Any:
    if node is None:
        return None
    if isinstance(node.value, dict):
        return {k: to_plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [to_plain(v) for v in node.value]
    return node.value


def from_plain(value: Any, loc: Location | None) -> Node:
    """Wrap a plain value (from JSON, the command line, the environment) into nodes at ``loc``."""
    if isinstance(value, Node):
        return value
    if isinstance(value, dict):
        return Node({str(k): from_plain(v, loc) for k, v in value.items()}, loc)
    if isinstance(value, (list, tuple)):
        return Node([from_plain(v, loc) for v in value], loc)
    return Node(value, loc)


def walk(node: Node, path: tuple = ()) -> Iterator[tuple[tuple, Node]]:
    """Every node with its path (keys and list indexes), parents before children."""
    yield path, node
    if isinstance(node.value, dict):
        for k, v in node.value.items():
            yield from walk(v, path + (k,))
    elif isinstance(node.value, list):
        for i, v in enumerate(node.value):
            yield from walk(v, path + (i,))


def path_text(path: tuple) -> str:
    """``('resources', 'jobs', 'x', 'tasks', 0)`` → ``resources.jobs.x.tasks[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# --------------------------------------------------------------------------- YAML 1.2 scalars
_PLAIN = "!stackci/plain"
_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(inf|Inf|INF)$")
_NAN = re.compile(r"^\.(nan|NaN|NAN)$")


def plain_scalar(text: str) -> Any:
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT10.match(text):
        return int(text, 10)
    if _INT16.match(text):
        return int(text[2:], 16)
    if _INT8.match(text):
        return int(text[2:], 8)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


class _PlainTags:
    """Composes nodes only; plain scalars get a marker tag so that we type them ourselves."""

    def resolve(self, kind, value, implicit):  # noqa: D401 - pyyaml hook
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


class _Loader(_PlainTags, yaml.SafeLoader):
    pass


# libyaml's parser when PyYAML has it (about ten times faster: a deploy that changes nothing
# spends most of its own time reading YAML otherwise); the same nodes, marks and errors
_FastLoader = type("_FastLoader", (_PlainTags, yaml.CSafeLoader), {}) if getattr(yaml, "__with_libyaml__", False) \
    else _Loader


def _loc(mark, file: str) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


_ANCHOR = re.compile(r"(?:![^\s]*\s+)?&")


def _has_anchor(node: yaml.Node, text: str | None) -> bool:
    """Whether the node was written with an anchor: its start mark points at the ``&name``
    (after a tag, if any). Composed nodes keep no anchor name, but their marks do."""
    if text is None:
        return False
    return _ANCHOR.match(text, node.start_mark.index) is not None


def _convert(node: yaml.Node, file: str, shown: str, active: set[int], text: str | None = None) -> Node:
    out_node = _convert_node(node, file, shown, active, text)
    if _has_anchor(node, text):
        out_node.anchored = True
    return out_node


def _convert_node(node: yaml.Node, file: str, shown: str, active: set[int], text: str | None) -> Node:
    loc = _loc(node.start_mark, file)
    if isinstance(node, yaml.ScalarNode):
        tag = node.tag
        if tag == _PLAIN:
            return Node(plain_scalar(node.value), loc)
        if tag in ("tag:yaml.org,2002:str", "!"):
            return Node(node.value, loc)
        if tag == "tag:yaml.org,2002:null":
            return Node(None, loc)
        typed = plain_scalar(node.value)
        expected = {"tag:yaml.org,2002:int": int, "tag:yaml.org,2002:float": (int, float),
                    "tag:yaml.org,2002:bool": bool}.get(tag)
        if expected is None:
            raise ConfigError(f"unsupported YAML tag {tag!r}",
                              hint="remove the tag; bundle files use plain YAML values",
                              file=shown, line=loc.line)
        if not isinstance(typed, expected) or (expected is int and isinstance(typed, bool)):
            raise ConfigError(f"{node.value!r} is not a valid {tag.rsplit(':', 1)[-1]}",
                              hint="fix the value or remove the tag", file=shown, line=loc.line)
        return Node(float(typed) if tag.endswith("float") else typed, loc)
    if id(node) in active:
        raise ConfigError("a YAML alias refers to itself",
                          hint="remove the recursive alias", file=shown, line=loc.line)
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            return Node([_convert(item, file, shown, active, text) for item in node.value], loc)
        out: dict[str, Node] = {}
        merged: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key_loc = _loc(key_node.start_mark, file)
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and key_node.tag in (
                    _PLAIN, "tag:yaml.org,2002:merge"):
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    converted = _convert(source, file, shown, active, text)
                    if not converted.is_map:
                        raise ConfigError("'<<' merges mappings only",
                                          hint="point '<<' at an anchored mapping", file=shown, line=key_loc.line)
                    for k, v in converted.value.items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("mapping keys must be plain strings",
                                  hint="write the key as a string", file=shown, line=key_loc.line)
            key = key_node.value
            if key in out:
                raise ConfigError(f"key {key!r} is defined twice in the same mapping "
                                  f"(first at line {out[key].key_loc.line})",
                                  hint="remove one of the two", file=shown, line=key_loc.line)
            value = _convert(value_node, file, shown, active, text)
            value.key_loc = key_loc
            out[key] = value
        for k, v in merged.items():
            out.setdefault(k, v)
        return Node(out, loc)
    finally:
        active.discard(id(node))


def load_file(path: Path, shown: str) -> Node:
    """Read one YAML file into nodes; ``shown`` is the path used in messages (relative to the root).

    An empty file is an empty mapping. Malformed YAML is a :class:`ConfigError` at its line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", hint="save the file as UTF-8", file=shown) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}",
                          hint="check the file exists and is readable", file=shown) from None
    try:
        try:
            docs = list(yaml.compose_all(text, Loader=_FastLoader))
        except yaml.YAMLError:
            if _FastLoader is _Loader:
                raise
            docs = list(yaml.compose_all(text, Loader=_Loader))   # its messages name more (the alias, the character)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(exc.problem or exc.context or "malformed YAML").split())
        raise ConfigError(f"invalid YAML: {problem}",
                          hint="fix the YAML syntax at that line (indentation, quotes, a missing ':')",
                          file=shown, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {' '.join(str(exc).split())}",
                          hint="fix the YAML syntax", file=shown) from None
    file = str(path)
    if len(docs) > 1:
        raise ConfigError("more than one YAML document ('---')",
                          hint="keep one document per file", file=shown, line=docs[1].start_mark.line + 1)
    if not docs or docs[0] is None:
        return Node({}, Location(file, 1))
    root = _convert(docs[0], file, shown, set(), text)
    if root.value is None:
        return Node({}, root.loc)
    if not root.is_map:
        raise ConfigError("the file must hold a mapping (keys like 'bundle:', "
                          "'resources:')", hint="make the top level of the file a YAML mapping",
                          file=shown, line=root.loc.line)
    return root

"""Resolving ``${...}`` references in place over the configuration tree.

Values are resolved on demand with a stack, so a chain of references resolves in
any order and a cycle is reported with its members. ``${var.x}`` is
``${variables.x.value}``. ``${resources.*}`` references are checked to name a
declared resource and then left for the deploy (ids exist only after creation).
A string that is exactly one reference takes the referenced value with its
type (a number stays a number, a mapping stays a mapping).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from . import refs
from .model import Deferred, Diagnostic
from .nodes import Node, path_text, walk

RESOLVED_PREFIXES = ("bundle", "workspace", "variables", "var", "artifacts")
DEFERRED_PREFIXES = ("resources",)

_HINTS = {
    "bundle": "known: ${bundle.name}, ${bundle.target}, ${bundle.git.branch}, ${bundle.git.commit}, "
              "${bundle.git.origin_url}",
    "workspace": "known: ${workspace.host}, ${workspace.root_path}, ${workspace.file_path}, "
                 "${workspace.state_path}, ${workspace.artifact_path}, ${workspace.current_user.userName}, "
                 "${workspace.current_user.short_name}",
}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Resolver:
    def __init__(self, tree: Node, warnings: list[Diagnostic]) -> None:
        self.tree = tree
        self.warnings = warnings
        self.deferred: list[Deferred] = []
        self._done: set[int] = set()
        self._stack: list[tuple[int, str]] = []
        self._paths: dict[int, tuple] = {}
        self.unavailable: dict[tuple, str] = {}   # path prefix -> why it cannot be used (yet)
        self.blank: dict[tuple, str] = {}         # path -> why its value is empty (a warning when used)

    # -- public -----------------------------------------------------------------
    def resolve_all(self) -> None:
        self._resolve_node(self.tree, ())

    def resolve_path(self, path: tuple) -> Node | None:
        node = self.tree
        for part in path:
            node = self._child(node, part)
            if node is None:
                return None
        self._resolve_node(node, path)
        return node

    # -- internals ----------------------------------------------------------------
    @staticmethod
    def _child(node: Node, part: Any) -> Node | None:
        if isinstance(node.value, dict) and isinstance(part, str):
            return node.value.get(part)
        if isinstance(node.value, list) and isinstance(part, int) and 0 <= part < len(node.value):
            return node.value[part]
        return None

    def _resolve_node(self, node: Node, path: tuple) -> None:
        if id(node) in self._done:
            return
        if isinstance(node.value, dict):
            for k, v in node.value.items():
                self._resolve_node(v, path + (k,))
        elif isinstance(node.value, list):
            for i, v in enumerate(node.value):
                self._resolve_node(v, path + (i,))
        elif isinstance(node.value, str) and "${" in node.value:
            self._resolve_string(node, path)
        self._done.add(id(node))

    def _resolve_string(self, node: Node, path: tuple) -> None:
        text = node.value
        found = refs.find(text)
        if not found:
            return
        key = id(node)
        if any(k == key for k, _ in self._stack):
            chain = [t for _, t in self._stack[[k for k, _ in self._stack].index(key):]]
            raise ConfigError(f"reference cycle: {' -> '.join(chain + [chain[0]])}",
                              hint="break the cycle: one of these values must not refer back to the others",
                              file=node.loc.file if node.loc else None, line=node.loc.line if node.loc else None)
        label = path_text(path) or text
        self._stack.append((key, label))
        try:
            pure = refs.pure(text)
            if pure is not None:
                target = self._lookup(pure, node, path)
                if target is not None:
                    node.value = target.copy().value
            else:
                out, last = [], 0
                for ref in found:
                    out.append(text[last:ref.start])
                    last = ref.end
                    target = self._lookup(ref, node, path)
                    if target is None:
                        out.append(ref.text)
                        continue
                    if isinstance(target.value, (dict, list)):
                        kind = "mapping" if isinstance(target.value, dict) else "list"
                        raise ConfigError(f"{ref.text} in {label} is a {kind} and cannot be part of a longer string",
                                          hint=f"use {ref.text} alone as the whole value, or refer to one of its "
                                               "fields", file=node.loc.file if node.loc else None,
                                          line=node.loc.line if node.loc else None)
                    out.append(_fmt(target.value))
                out.append(text[last:])
                node.value = "".join(out)
            self._note_deferred(node, path)
        finally:
            self._stack.pop()

    def _note_deferred(self, node: Node, path: tuple) -> None:
        """Record every value under ``node`` that still holds ``${resources...}`` references."""
        for sub, n in walk(node, path):
            if isinstance(n.value, str) and "${" in n.value:
                names = tuple(r.dotted for r in refs.find(n.value) if r.path[0] in DEFERRED_PREFIXES)
                if names:
                    self.deferred.append(Deferred(sub, n.value, names, n.loc or node.loc))

    def _lookup(self, ref: refs.Ref, origin: Node, path: tuple) -> Node | None:
        """The resolved node a reference points at, or None when it stays in the text."""
        head = ref.path[0]
        where = dict(file=origin.loc.file if origin.loc else None, line=origin.loc.line if origin.loc else None)
        if head in DEFERRED_PREFIXES:
            self._check_resource(ref, where)
            return None
        if head not in RESOLVED_PREFIXES:
            self.warnings.append(Diagnostic(f"{ref.text} in {path_text(path)} is not a bundle reference "
                                            f"(unknown prefix {head!r}); it is left as written",
                                            where["file"], where["line"]))
            return None
        target_path = ref.path
        if head == "var":
            if len(ref.path) < 2 or not isinstance(ref.path[1], str):
                raise ConfigError(f"{ref.text} names no variable", hint="write ${var.<name>}", **where)
            target_path = ("variables", ref.path[1], "value") + ref.path[2:]
        if head in ("var", "variables"):
            variables = self.tree.get("variables")
            name = target_path[1] if len(target_path) > 1 else None
            if variables is None or not isinstance(name, str) or name not in (variables.value or {}):
                declared = ", ".join(sorted((variables.value or {}) if variables is not None else {})) or "(none)"
                raise ConfigError(f"{ref.text} refers to undefined variable {name!r}",
                                  hint=f"declare it under 'variables:' in databricks.yml (declared: {declared})",
                                  **where)
        node = self.tree
        for i, part in enumerate(target_path):
            self._resolve_shallow(node, target_path[:i])
            child = self._child(node, part)
            if child is None:
                why = self.unavailable.get(tuple(target_path[:i + 1])) or self.unavailable.get(tuple(target_path[:i]))
                hint = why or _HINTS.get(head, "check the spelling against the configuration")
                raise ConfigError(f"{ref.text} does not exist (no {path_text(target_path[:i + 1])} in the configuration)",
                                  hint=hint, **where)
            node = child
        self._resolve_node(node, target_path)
        why = self.blank.pop(tuple(target_path), None)
        if why is not None:   # once per reference target
            self.warnings.append(Diagnostic(why, where["file"], where["line"]))
        return node

    def _resolve_shallow(self, node: Node, path: tuple) -> None:
        """A string on the way to a field (``${var.cluster.x}`` where var.cluster is ``${var.base}``)."""
        if isinstance(node.value, str) and "${" in node.value:
            self._resolve_node(node, path)

    def _check_resource(self, ref: refs.Ref, where: dict) -> None:
        if len(ref.path) < 3:
            raise ConfigError(f"{ref.text} must name a resource, e.g. ${{resources.jobs.<key>.id}}",
                              hint="write ${resources.<kind>.<key>.<field>}", **where)
        kind, key = ref.path[1], ref.path[2]
        resources = self.tree.get("resources")
        items = resources.get(kind) if resources is not None else None
        if items is None or not items.is_map or key not in items.value:
            known = ", ".join(sorted(items.value)) if items is not None and items.is_map else "(none)"
            raise ConfigError(f"{ref.text} refers to {kind} {key!r}, which the bundle does not define",
                              hint=f"defined {kind}: {known}; fix the key or define the resource", **where)

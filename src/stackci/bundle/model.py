"""What :func:`stackci.bundle.load_bundle` returns: the resolved bundle, ready to plan and deploy."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .nodes import Location, Node, path_text, to_plain


class UserUnknown(ConfigError):
    """Raised by a current-user source of :func:`stackci.bundle.load_bundle` that cannot tell who the
    user is; the load carries on, and this is the reason given if the configuration needs the user.
    Any other error of the source (an unreachable workspace, rejected credentials) ends the load."""


def short_name(user_name: str, display_name: str | None = None) -> str:
    """``first.last@example.com`` → ``first_last``: the part before ``@`` with anything other
    than letters, digits and ``_`` replaced by ``_``. A service principal (whose userName is an
    application id) uses its display name when one is known."""
    name = user_name
    if display_name and re.fullmatch(r"[0-9a-fA-F-]{36}", user_name or ""):
        name = display_name
    local = name.split("@", 1)[0]
    return re.sub(r"[^A-Za-z0-9_]", "_", local)


@dataclass(frozen=True)
class CurrentUser:
    """The identity that deploys: ``${workspace.current_user.*}`` and the ``~`` in workspace paths."""

    user_name: str
    display_name: str | None = None
    extra: dict = field(default_factory=dict)   # other SCIM Me fields (id, active, ...) when fetched
    source: str = "option"                      # "option" | "environment" | "workspace"

    @property
    def short_name(self) -> str:
        return short_name(self.user_name, self.display_name)

    def as_config(self) -> dict:
        out = {k: v for k, v in self.extra.items() if isinstance(v, (str, int, float, bool))}
        out["userName"] = self.user_name
        out["short_name"] = self.short_name
        if self.display_name:
            out["displayName"] = self.display_name
        return out


@dataclass(frozen=True)
class Diagnostic:
    """A warning found while loading (unknown field, unknown reference prefix, missing wheel, ...)."""

    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else (f"{self.file}: " if self.file else "")
        return where + self.message


@dataclass(frozen=True)
class Deferred:
    """A value holding ``${resources...}`` references that only the deploy can resolve (ids exist
    after creation). ``path`` locates the value in :attr:`Bundle.settings`."""

    path: tuple
    text: str
    references: tuple[str, ...]      # e.g. ("resources.jobs.train.id",)
    location: Location | None = None

    @property
    def where(self) -> str:
        return path_text(self.path)


@dataclass
class Resource:
    kind: str                    # "jobs", "experiments", "registered_models", ...
    key: str                     # the key under resources.<kind>
    settings: dict               # final settings (prefixes, presets, translated paths applied)
    location: Location | None    # where the resource is declared

    @property
    def name(self) -> str | None:
        value = self.settings.get("name")
        return value if isinstance(value, str) else None

    @property
    def full_name(self) -> str | None:
        """Unity Catalog objects: ``catalog.schema.name``; others: the name."""
        if self.kind == "registered_models" and self.name:
            parts = [self.settings.get("catalog_name"), self.settings.get("schema_name"), self.name]
            if all(isinstance(p, str) and p for p in parts):
                return ".".join(parts)  # type: ignore[arg-type]
        return self.name


@dataclass(frozen=True)
class TranslatedPath:
    """A local path in a resource rewritten to its workspace location."""

    config_path: tuple           # where in the settings, e.g. ("resources","jobs","x","tasks",0,"notebook_task","notebook_path")
    local: Path                  # absolute local path (may be a glob for libraries)
    remote: str                  # the workspace path written into the settings
    kind: str                    # "notebook" | "file" | "directory" | "library"


NOTEBOOK_HEADERS = {".py": "# Databricks notebook source", ".r": "# Databricks notebook source",
                    ".scala": "// Databricks notebook source", ".sql": "-- Databricks notebook source"}


def _notebook_start(suffix: str, first: bytes) -> bool:
    """Whether a file with this suffix that begins with ``first`` is a notebook: any ``.ipynb``, or a
    Databricks source file whose first line is the header."""
    header = NOTEBOOK_HEADERS.get(suffix)
    if suffix == ".ipynb":
        return True
    return header is not None and first[:200].split(b"\n", 1)[0].decode("utf-8", "replace").strip() == header


def is_notebook(path: Path) -> bool:
    """A Databricks source notebook (its first line is the header) or any ``.ipynb``."""
    suffix = path.suffix.lower()
    if suffix != ".ipynb" and suffix not in NOTEBOOK_HEADERS:
        return False
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return _notebook_start(suffix, first)


@dataclass
class SyncFile:
    """One file to upload: ``rel`` (POSIX, relative to the bundle root) → ``path`` (local, absolute)."""

    rel: str
    path: Path

    @property
    def sha256(self) -> str:
        return self._scan()[0]

    @property
    def notebook(self) -> bool:
        return self._scan()[1]

    def _scan(self) -> tuple[str, bool]:
        """Hash and notebook header from one read of the file (a plan reads every file once)."""
        scanned = self.__dict__.get("_scanned")
        if scanned is None:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                first = os.read(fd, 1 << 20)
                digest = hashlib.sha256(first)
                chunk = first
                while chunk:                           # to the end (a read may return less than asked)
                    chunk = os.read(fd, 1 << 20)
                    digest.update(chunk)
            finally:
                os.close(fd)
            notebook = _notebook_start(self.path.suffix.lower(), first)
            scanned = self.__dict__["_scanned"] = (digest.hexdigest(), notebook)
        return scanned

    def remote_path(self, file_path: str) -> str:
        """Where the file lives in the workspace; notebooks lose their extension."""
        rel = self.rel
        if self.notebook:
            rel = rel[: -len(Path(rel).suffix)]
        return file_path.rstrip("/") + "/" + rel


@dataclass
class Bundle:
    root: Path                               # the bundle root folder (absolute)
    config_file: Path                        # databricks.yml (or one of its alternatives)
    files: list[Path]                        # every configuration file read, root first
    name: str
    target: str
    mode: str | None                         # "development" | "production" | None
    tree: Node                               # the final configuration, with locations
    current_user: CurrentUser
    variables: dict[str, Any]                # final variable values
    variable_sources: dict[str, str]         # name -> "--var", "BUNDLE_VAR_x", "variable-overrides.json", ...
    resources: dict[str, dict[str, Resource]]
    deferred: list[Deferred]
    warnings: list[Diagnostic]
    translated_paths: list[TranslatedPath]
    lock_enabled: bool
    targets: list[str]                       # every target the configuration declares
    _sync_files: dict[str, SyncFile] | None = None
    _sync_loader: Any = None

    # -- settings --------------------------------------------------------------
    @cached_property
    def settings(self) -> dict:
        """The whole resolved configuration as plain data (what ``bundle validate --output json`` shows)."""
        return to_plain(self.tree)

    @property
    def workspace(self) -> dict:
        return self.settings.get("workspace", {})

    @property
    def host(self) -> str | None:
        return self.workspace.get("host")

    @property
    def root_path(self) -> str:
        return self.workspace["root_path"]

    @property
    def file_path(self) -> str:
        return self.workspace["file_path"]

    @property
    def state_path(self) -> str:
        return self.workspace["state_path"]

    @property
    def artifact_path(self) -> str:
        return self.workspace["artifact_path"]

    @property
    def resource_path(self) -> str:
        return self.workspace["resource_path"]

    @property
    def presets(self) -> dict:
        return self.settings.get("presets", {}) or {}

    @property
    def run_as(self) -> dict | None:
        return self.settings.get("run_as")

    def resource(self, kind: str, key: str) -> Resource:
        return self.resources[kind][key]

    def all_resources(self) -> list[Resource]:
        return [r for kind in sorted(self.resources) for _, r in sorted(self.resources[kind].items())]

    def location(self, path: tuple, key: bool = False) -> Location | None:
        """Where the value at ``path`` (keys and indexes) was written (with ``key``: the line of its
        key), or its closest parent."""
        node, best = self.tree, self.tree.loc
        for part in path:
            if isinstance(node.value, dict) and part in node.value:
                node = node.value[part]
            elif isinstance(node.value, list) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
            else:
                break
            best = (node.key_loc if key else None) or node.loc or best
        return best

    # -- files -----------------------------------------------------------------
    @property
    def sync_files(self) -> dict[str, SyncFile]:
        """Files to upload to ``file_path``: relative POSIX path → :class:`SyncFile` (sorted).

        ``.gitignore`` files (of the repository and below), ``sync.exclude`` and
        ``sync.include`` applied; computed on first use.
        """
        if self._sync_files is None:
            self._sync_files = self._sync_loader()
        return self._sync_files

    def to_json(self) -> dict:
        """A summary for machines (``stackci validate --output json``)."""
        return {
            "name": self.name,
            "target": self.target,
            "mode": self.mode,
            "root": str(self.root),
            "workspace": {k: self.workspace.get(k) for k in
                          ("host", "root_path", "file_path", "state_path", "artifact_path", "resource_path")},
            "current_user": {"userName": self.current_user.user_name, "short_name": self.current_user.short_name,
                             "source": self.current_user.source} if self.current_user.user_name else None,
            "lock_enabled": self.lock_enabled,
            "variables": {k: {"value": v, "source": self.variable_sources.get(k)} for k, v in self.variables.items()},
            "resources": {kind: {key: {"name": r.full_name, "location": str(r.location) if r.location else None}
                                 for key, r in sorted(items.items())}
                          for kind, items in sorted(self.resources.items())},
            "deferred": [{"path": d.where, "value": d.text, "references": list(d.references)} for d in self.deferred],
            "warnings": [{"message": w.message, "file": w.file, "line": w.line} for w in self.warnings],
            "settings": self.settings,
        }

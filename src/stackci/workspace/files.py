"""The workspace tree: directories, notebooks and files (Workspace API 2.0).

Paths. A real workspace answers to both ``/Users/a@b.c/x`` and
``/Workspace/Users/a@b.c/x``; the tree only has the top-level folders ``Users``,
``Shared`` and ``Repos``. Objects are stored under their canonical path (without
``/Workspace``) and answers use the prefix style of the request. Relative paths
and ``.``/``..`` segments are 400 INVALID_PARAMETER_VALUE; creating anything
outside the three top-level folders is 403 PERMISSION_DENIED; reading it is 404.

Import rules (as the real service): the parent folder must exist (404
RESOURCE_DOES_NOT_EXIST otherwise; the Databricks CLI creates it and retries);
an existing object without ``overwrite`` is 400 RESOURCE_ALREADY_EXISTS
(409 for workspace files through ``workspace-files/import-file``). ``format``
defaults to SOURCE, which needs a ``language`` and keeps the path as given;
AUTO turns a ``.py``/``.sql``/``.scala``/``.r`` file whose first line is the
``Databricks notebook source`` header into a notebook without its extension
and anything else into a workspace file; RAW always makes a workspace file.
JUPYTER, HTML, DBC and R_MARKDOWN conversions are not implemented here and are
refused with 400 rather than stored wrongly.
"""

from __future__ import annotations

import base64
import io
import posixpath
import zipfile
from pathlib import Path

from stackci.workspace.api import ApiError, already_exists, invalid, not_found
from stackci.workspace.store import Store, now_ms

TOP_LEVEL = ("Users", "Shared", "Repos")
WORKSPACE_PREFIX = "/Workspace"

LANG_EXT = {"PYTHON": ".py", "SQL": ".sql", "SCALA": ".scala", "R": ".r"}
EXT_LANG = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R", ".R": "R"}
HEADERS = {
    "PYTHON": "# Databricks notebook source",
    "SQL": "-- Databricks notebook source",
    "SCALA": "// Databricks notebook source",
    "R": "# Databricks notebook source",
}
UNSUPPORTED_FORMATS = ("JUPYTER", "HTML", "DBC", "R_MARKDOWN")
KNOWN_FORMATS = ("SOURCE", "AUTO", "RAW") + UNSUPPORTED_FORMATS


class WsPath:
    """A checked workspace path: ``canonical`` (no /Workspace) and the style to answer in."""

    __slots__ = ("canonical", "prefixed")

    def __init__(self, canonical: str, prefixed: bool) -> None:
        self.canonical = canonical
        self.prefixed = prefixed

    def show(self, canonical: str | None = None) -> str:
        c = self.canonical if canonical is None else canonical
        if not self.prefixed:
            return c
        return WORKSPACE_PREFIX if c == "/" else WORKSPACE_PREFIX + c

    @property
    def parent(self) -> str:
        return posixpath.dirname(self.canonical) or "/"

    @property
    def top(self) -> str | None:
        parts = self.canonical.strip("/").split("/")
        return parts[0] if parts and parts[0] else None


def parse_path(raw, *, name: str = "path") -> WsPath:
    if raw is None or raw == "":
        raise invalid(f"Missing required field: {name}")
    if not isinstance(raw, str):
        raise ApiError(400, "MALFORMED_REQUEST",
                       f"Invalid JSON given in the body of the request - expected a string for field '{name}'")
    if not raw.startswith("/"):
        raise invalid(f"Path ({raw}) must be absolute: it should start with /Workspace/ (or /Users/, /Shared/, /Repos/)")
    if "\x00" in raw:
        raise invalid(f"Path ({raw!r}) contains a NUL character")
    parts = [p for p in raw.split("/") if p != ""]
    if any(p in (".", "..") for p in parts):
        raise invalid(f"Path ({raw}) must not contain '.' or '..' segments")
    prefixed = bool(parts) and parts[0] == "Workspace"
    if prefixed:
        parts = parts[1:]
    canonical = "/" + "/".join(parts)
    return WsPath(canonical, prefixed)


def canonical_of(raw: str) -> str:
    """The canonical form of a workspace path given by a job (no checks beyond shape)."""
    return parse_path(raw).canonical


class WorkspaceTree:
    def __init__(self, store: Store) -> None:
        self.store = store
        with store.transaction():
            for top in ("/",) + tuple("/" + t for t in TOP_LEVEL):
                if not self._get(top):
                    self._insert(top, "DIRECTORY", None, None)

    # ---- low level ---------------------------------------------------------

    def _get(self, canonical: str):
        rows = self.store.query(
            "SELECT path, object_id, object_type, language, length(content), created_at, modified_at "
            "FROM objects WHERE path = ?", (canonical,))
        return rows[0] if rows else None

    def _insert(self, canonical: str, object_type: str, language: str | None, content: bytes | None,
                *, replace_id: int | None = None) -> None:
        ts = now_ms()
        object_id = replace_id or self.store.next_id("object", 1_000_000_000_000_000 + 17)
        parent = "" if canonical == "/" else (posixpath.dirname(canonical) or "/")
        self.store.execute(
            "INSERT OR REPLACE INTO objects (path, parent, object_id, object_type, language, content, "
            "created_at, modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (canonical, parent, object_id, object_type, language, content, ts, ts))

    def _info(self, row, wp: WsPath) -> dict:
        path, object_id, object_type, language, size, created_at, modified_at = tuple(row)
        info = {"object_type": object_type, "path": wp.show(path), "object_id": object_id}
        if object_type == "NOTEBOOK" and language:
            info["language"] = language
        if object_type != "DIRECTORY":
            info["size"] = size or 0
            info["created_at"] = created_at
            info["modified_at"] = modified_at
        info["resource_id"] = str(object_id)
        return info

    def _check_writable(self, wp: WsPath) -> None:
        if wp.canonical == "/" or wp.top not in TOP_LEVEL:
            raise ApiError(403, "PERMISSION_DENIED",
                           f"Cannot create {wp.show()}: only /Workspace/Users, /Workspace/Shared and "
                           "/Workspace/Repos can hold objects in this workspace")

    def _require_parent_dir(self, wp: WsPath) -> None:
        parent = self._get(wp.parent)
        if parent is None:
            raise not_found(f"The parent folder ({wp.show(wp.parent)}) does not exist.")
        if parent[2] != "DIRECTORY":
            raise invalid(f"The parent path ({wp.show(wp.parent)}) is not a folder.")

    # ---- API operations ----------------------------------------------------

    def mkdirs(self, wp: WsPath) -> None:
        self._check_writable(wp)
        with self.store.transaction():
            parts = wp.canonical.strip("/").split("/")
            current = ""
            for part in parts:
                current += "/" + part
                row = self._get(current)
                if row is None:
                    self._insert(current, "DIRECTORY", None, None)
                elif row[2] != "DIRECTORY":
                    raise already_exists(f"Path ({wp.show(current)}) already exists and is not a folder.")

    def import_object(self, wp: WsPath, content: bytes, fmt: str | None, language: str | None,
                      overwrite: bool) -> None:
        fmt = (fmt or "SOURCE").upper()
        if fmt not in KNOWN_FORMATS:
            raise invalid(f"Invalid format: {fmt}. Use one of SOURCE, AUTO, RAW")
        if fmt in UNSUPPORTED_FORMATS:
            raise invalid(f"Import format {fmt} is not supported by the local workspace; use SOURCE, AUTO or RAW")
        if language is not None:
            language = language.upper()
            if language not in LANG_EXT:
                raise invalid(f"Invalid language: {language}. Use one of PYTHON, SQL, SCALA, R")
        target = wp
        object_type = "FILE"
        if fmt == "SOURCE":
            if language is None:
                raise invalid("The language field is required to import a single object in SOURCE format; "
                              "use format AUTO to import a workspace file")
            object_type = "NOTEBOOK"
        elif fmt == "AUTO":
            ext = posixpath.splitext(wp.canonical)[1]
            lang = EXT_LANG.get(ext)
            first = content.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
            if lang and first == HEADERS[lang]:
                object_type = "NOTEBOOK"
                language = lang
                target = WsPath(wp.canonical[: -len(ext)], wp.prefixed)
            else:
                language = None
        else:  # RAW
            language = None
        if object_type == "FILE":
            language = None
        self._write(target, object_type, language, content, overwrite, conflict_status=400)

    def import_file(self, wp: WsPath, content: bytes, overwrite: bool) -> None:
        existing = self._get(wp.canonical)
        if existing is not None and existing[2] == "FILE" and not overwrite:
            raise already_exists(f"Path ({wp.show()}) already exists.", status=409)
        self._write(wp, "FILE", None, content, overwrite, conflict_status=400)

    def _write(self, wp: WsPath, object_type: str, language: str | None, content: bytes,
               overwrite: bool, *, conflict_status: int) -> None:
        self._check_writable(wp)
        if posixpath.basename(wp.canonical) in ("", ):
            raise invalid(f"Path ({wp.show()}) has no name")
        with self.store.transaction():
            self._require_parent_dir(wp)
            existing = self._get(wp.canonical)
            replace_id = None
            if existing is not None:
                if existing[2] == "DIRECTORY":
                    raise already_exists(f"Path ({wp.show()}) already exists.", status=conflict_status)
                if not overwrite:
                    raise already_exists(f"Path ({wp.show()}) already exists.", status=conflict_status)
                replace_id = existing[1]
            self._insert(wp.canonical, object_type, language, content, replace_id=replace_id)

    def get_status(self, wp: WsPath) -> dict:
        row = self._get(wp.canonical)
        if row is None:
            raise not_found(f"Path ({wp.show()}) doesn't exist.")
        return self._info(row, wp)

    def list(self, wp: WsPath) -> list[dict]:
        row = self._get(wp.canonical)
        if row is None:
            raise not_found(f"Path ({wp.show()}) doesn't exist.")
        if row[2] != "DIRECTORY":
            return [self._info(row, wp)]
        rows = self.store.query(
            "SELECT path, object_id, object_type, language, length(content), created_at, modified_at "
            "FROM objects WHERE parent = ? ORDER BY path", (wp.canonical,))
        return [self._info(r, wp) for r in rows]

    def delete(self, wp: WsPath, recursive: bool) -> None:
        if wp.canonical == "/" or (wp.top in TOP_LEVEL and wp.canonical.count("/") == 1):
            raise ApiError(403, "PERMISSION_DENIED", f"Cannot delete the top-level folder {wp.show()}")
        with self.store.transaction():
            row = self._get(wp.canonical)
            if row is None:
                raise not_found(f"Path ({wp.show()}) doesn't exist.")
            if row[2] == "DIRECTORY":
                children = self.store.query("SELECT 1 FROM objects WHERE parent = ? LIMIT 1", (wp.canonical,))
                if children and not recursive:
                    raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"Folder ({wp.show()}) is not empty.")
                like = wp.canonical.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
                self.store.execute("DELETE FROM objects WHERE path LIKE ? ESCAPE '\\'", (like,))
            self.store.execute("DELETE FROM objects WHERE path = ?", (wp.canonical,))

    def export(self, wp: WsPath, fmt: str | None) -> tuple[bytes, str]:
        """(content, file_type) of an object."""
        fmt = (fmt or "SOURCE").upper()
        if fmt not in KNOWN_FORMATS:
            raise invalid(f"Invalid format: {fmt}")
        rows = self.store.query("SELECT object_type, language, content FROM objects WHERE path = ?",
                                (wp.canonical,))
        if not rows:
            raise not_found(f"Path ({wp.show()}) doesn't exist.")
        object_type, language, content = rows[0]
        if fmt in UNSUPPORTED_FORMATS:
            raise invalid(f"Export format {fmt} is not supported by the local workspace; use SOURCE, AUTO or RAW")
        if object_type == "DIRECTORY":
            if fmt == "RAW":
                raise invalid(f"Exporting a folder ({wp.show()}) is only supported with SOURCE or AUTO")
            return self._export_dir(wp, fmt), "zip"
        if object_type == "NOTEBOOK":
            return notebook_source(content or b"", language), LANG_EXT.get(language or "PYTHON", ".py")[1:]
        ext = posixpath.splitext(wp.canonical)[1]
        return bytes(content or b""), ext[1:] if ext else ""

    def _export_dir(self, wp: WsPath, fmt: str) -> bytes:
        base = wp.canonical.rstrip("/")
        like = base.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
        rows = self.store.query("SELECT path, object_type, language, content FROM objects "
                                "WHERE path LIKE ? ESCAPE '\\' ORDER BY path", (like,))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, object_type, language, content in rows:
                rel = posixpath.relpath(path, base)
                if object_type == "NOTEBOOK":
                    zf.writestr(rel + LANG_EXT.get(language or "PYTHON", ".py"),
                                notebook_source(content or b"", language))
                elif object_type == "FILE" and fmt == "AUTO":
                    zf.writestr(rel, bytes(content or b""))
        return buf.getvalue()

    # ---- per-run copies ----------------------------------------------------

    def materialise(self, dest: Path) -> dict[str, Path]:
        """Write every notebook and file under ``dest``; return {canonical path: local file}.

        Notebooks keep an extension for their language (``train`` → ``train.py``) so
        that interpreters and the task executor can run them; their text always
        starts with the notebook header.
        """
        index: dict[str, Path] = {}
        rows = self.store.query("SELECT path, object_type, language, content FROM objects "
                                "WHERE object_type != 'DIRECTORY'")
        for path, object_type, language, content in rows:
            local = dest / path.lstrip("/")
            if object_type == "NOTEBOOK":
                local = local.with_name(local.name + LANG_EXT.get(language or "PYTHON", ".py"))
                data = notebook_source(content or b"", language)
            else:
                data = bytes(content or b"")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
            index[path] = local
        return index


def notebook_source(content: bytes, language: str | None) -> bytes:
    header = HEADERS.get(language or "PYTHON", HEADERS["PYTHON"]).encode()
    text = bytes(content)
    if text.lstrip().startswith(header):
        return text
    return header + b"\n" + text


def b64decode_field(value: str, name: str = "content") -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise invalid(f"The {name} field is not valid base64") from None

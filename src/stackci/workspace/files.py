"""The workspace tree: folders, notebooks and files (Workspace API 2.0 and workspace-files).

Paths. A real workspace answers to both ``/Users/a@b.c/x`` and
``/Workspace/Users/a@b.c/x``; the tree has the top-level folders ``Users``,
``Shared`` and ``Repos`` and a home folder ``/Users/<principal>`` for every
principal that calls the API (created on its first call, as a real workspace has
one for every user and service principal). Objects are stored under their
canonical path (without ``/Workspace``) and answers use the prefix style of the
request. Relative paths, ``.``/``..`` segments and NUL characters are 400
INVALID_PARAMETER_VALUE; creating anything outside the three top-level folders,
or deleting them or a home folder, is 403 PERMISSION_DENIED; reading it is 404.

Import rules (as the real service): ``format`` (case-sensitive) defaults to
SOURCE, which needs a ``language`` and keeps the path as given; AUTO turns a
``.py``/``.sql``/``.scala``/``.r`` file whose first line is the notebook header of
that language, or a ``.ipynb`` Jupyter notebook, into a notebook without its
extension and anything else into a workspace file; RAW always makes a workspace
file; JUPYTER makes a notebook from an ``.ipynb`` document at the path as given.
The parent folder must exist (404 RESOURCE_DOES_NOT_EXIST otherwise); an
existing object without ``overwrite`` is 400 RESOURCE_ALREADY_EXISTS
("Path (<p>) already exists."), except that ``workspace-files/import-file``
answers 409 for an existing workspace file. ``import-file`` recognises notebooks
like AUTO does (the Databricks CLI's sync relies on it). HTML, DBC and
R_MARKDOWN conversions are not implemented here and are refused with 400 rather
than stored wrongly.

Notebooks are stored either as source (always starting with the header of their
language) or, when they came from Jupyter, as the ``.ipynb`` document itself;
either exports as SOURCE or JUPYTER. Jupyter notebooks have language PYTHON, as
the API reference says.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import posixpath
import re
import zipfile
from pathlib import Path

from stackci.workspace.api import ApiError, RawResponse, Request, already_exists, invalid, not_found, typed
from stackci.workspace.store import Store, now_ms

log = logging.getLogger(__name__)

TOP_LEVEL = ("Users", "Shared", "Repos")
WORKSPACE_PREFIX = "/Workspace"
MAX_SEGMENT_BYTES = 255

LANG_EXT = {"PYTHON": ".py", "SQL": ".sql", "SCALA": ".scala", "R": ".r"}
EXT_LANG = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R", ".R": "R"}
COMMENT = {"PYTHON": "#", "SQL": "--", "SCALA": "//", "R": "#"}
HEADERS = {lang: f"{c} Databricks notebook source" for lang, c in COMMENT.items()}
IMPORT_FORMATS = ("SOURCE", "AUTO", "RAW", "JUPYTER")
EXPORT_FORMATS = ("SOURCE", "AUTO", "RAW", "JUPYTER")
UNSUPPORTED_FORMATS = ("HTML", "DBC", "R_MARKDOWN")


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

    def with_canonical(self, canonical: str) -> WsPath:
        return WsPath(canonical, self.prefixed)

    @property
    def parent(self) -> str:
        return posixpath.dirname(self.canonical) or "/"

    @property
    def name(self) -> str:
        return posixpath.basename(self.canonical)

    @property
    def top(self) -> str | None:
        parts = self.canonical.strip("/").split("/")
        return parts[0] if parts and parts[0] else None

    @property
    def depth(self) -> int:
        return 0 if self.canonical == "/" else self.canonical.count("/")


def parse_path(raw, *, name: str = "path") -> WsPath:
    """Check a workspace path given by a client; 400 INVALID_PARAMETER_VALUE for anything unsafe."""
    if raw is None or raw == "":
        raise invalid(f"Missing required field: {name}")
    if not isinstance(raw, str):
        raise ApiError(400, "MALFORMED_REQUEST",
                       f"Invalid JSON given in the body of the request - expected a string for field '{name}'")
    if "\x00" in raw:
        raise invalid(f"Path ({raw!r}) contains a NUL character")
    if not raw.startswith("/"):
        raise invalid(f"Path ({raw}) must be absolute: it should start with /Workspace/ "
                      "(or /Users/, /Shared/, /Repos/)")
    parts = [p for p in raw.split("/") if p != ""]
    if any(p in (".", "..") for p in parts):
        raise invalid(f"Path ({raw}) must not contain '.' or '..' segments")
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for p in parts):
        raise invalid(f"Path ({raw}) has a name longer than {MAX_SEGMENT_BYTES} bytes")
    prefixed = bool(parts) and parts[0] == "Workspace"
    if prefixed:
        parts = parts[1:]
    return WsPath("/" + "/".join(parts), prefixed)


def _like_prefix(canonical: str) -> str:
    """A LIKE pattern for everything below ``canonical`` (wildcards in names escaped)."""
    base = canonical.rstrip("/")
    return base.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


class WorkspaceTree:
    """The tree in the store, with the semantics of the Workspace API."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._homes: set[str] = set()
        with store.transaction():
            for top in ("/",) + tuple("/" + t for t in TOP_LEVEL):
                if not self._get(top):
                    self._insert(top, "DIRECTORY", None, None)

    # ---- low level ---------------------------------------------------------

    _COLUMNS = ("path, object_id, object_type, language, length(content), created_at, modified_at, "
                "substr(content, 1, 64)")

    def _get(self, canonical: str):
        rows = self.store.query(f"SELECT {self._COLUMNS} FROM objects WHERE path = ?", (canonical,))
        return rows[0] if rows else None

    def _insert(self, canonical: str, object_type: str, language: str | None, content: bytes | None,
                *, replace: tuple | None = None) -> None:
        ts = now_ms()
        if replace is not None:
            object_id, created_at = replace
        else:
            object_id, created_at = self.store.next_id("object", 1_000_000_000_000_000 + 17), ts
        parent = "" if canonical == "/" else (posixpath.dirname(canonical) or "/")
        self.store.execute(
            "INSERT OR REPLACE INTO objects (path, parent, object_id, object_type, language, content, "
            "created_at, modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (canonical, parent, object_id, object_type, language, content, created_at, ts))

    def _info(self, row, wp: WsPath, *, export_info: bool = False) -> dict:
        path, object_id, object_type, language, size, created_at, modified_at, head = tuple(row)
        info = {"object_type": object_type, "path": wp.show(path), "object_id": object_id,
                "resource_id": str(object_id)}
        if object_type == "NOTEBOOK":
            info["language"] = language or "PYTHON"
            if export_info:
                info["repos_export_format"] = "JUPYTER" if _is_jupyter(head) else "SOURCE"
        if object_type == "FILE":
            info["size"] = size or 0
        if object_type != "DIRECTORY":
            info["created_at"] = created_at
            info["modified_at"] = modified_at
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
            raise not_found(f"The parent path ({wp.show(wp.parent)}) is not a folder.")

    def object_type(self, canonical: str) -> str | None:
        """DIRECTORY, NOTEBOOK or FILE for an object at ``canonical``; None when there is none."""
        row = self._get(canonical)
        return row[2] if row is not None else None

    def ensure_home(self, principal: str | None) -> None:
        """Create ``/Users/<principal>`` the first time a principal is seen."""
        if not principal or principal in self._homes:
            return
        if "/" in principal or principal in (".", "..") or "\x00" in principal \
                or len(principal.encode()) > MAX_SEGMENT_BYTES:
            return
        home = f"/Users/{principal}"
        with self.store.transaction():
            if self._get(home) is None:
                self._insert(home, "DIRECTORY", None, None)
        self._homes.add(principal)

    # ---- operations --------------------------------------------------------

    def mkdirs(self, wp: WsPath) -> None:
        with self.store.transaction():
            row = self._get(wp.canonical)
            if row is not None and row[2] == "DIRECTORY":
                return
            self._check_writable(wp)
            current = ""
            for part in wp.canonical.strip("/").split("/"):
                current += "/" + part
                row = self._get(current)
                if row is None:
                    self._insert(current, "DIRECTORY", None, None)
                elif row[2] != "DIRECTORY":
                    raise already_exists(f"Path ({wp.show(current)}) already exists.")

    def import_object(self, wp: WsPath, content: bytes, fmt: str | None, language: str | None,
                      overwrite: bool) -> None:
        """``workspace/import``: see the module documentation for the rules."""
        fmt = "SOURCE" if fmt is None else fmt
        if fmt in UNSUPPORTED_FORMATS:
            raise invalid(f"Import format {fmt} is not supported by the local workspace; "
                          "use SOURCE, AUTO, RAW or JUPYTER")
        if fmt not in IMPORT_FORMATS:
            raise invalid(f"Invalid format: {fmt}. Use one of SOURCE, AUTO, RAW, JUPYTER, HTML, DBC, R_MARKDOWN")
        if language is not None and language not in LANG_EXT:
            raise invalid(f"Invalid language: {language}. Use one of PYTHON, SQL, SCALA, R")
        if fmt == "SOURCE":
            if language is None:
                raise invalid("The language field is required to import a single object in SOURCE format; "
                              "use format AUTO to import a workspace file")
            self._write(wp, "NOTEBOOK", language, with_header(content, language), overwrite)
        elif fmt == "JUPYTER":
            self._write(wp, "NOTEBOOK", "PYTHON", parse_ipynb(content, strict=True), overwrite)
        elif fmt == "AUTO":
            self._write(*detect(wp, content), overwrite)
        else:  # RAW
            self._write(wp, "FILE", None, content, overwrite)

    def import_file(self, wp: WsPath, content: bytes, overwrite: bool) -> None:
        """``workspace-files/import-file``: notebooks detected as AUTO does; 409 for an existing file."""
        target, object_type, language, data = detect(wp, content)
        existing = self._get(target.canonical)
        if existing is not None and existing[2] == "FILE" and not overwrite:
            raise already_exists(f"Path ({target.show()}) already exists.", status=409)
        self._write(target, object_type, language, data, overwrite)

    def _write(self, wp: WsPath, object_type: str, language: str | None, content: bytes,
               overwrite: bool) -> None:
        self._check_writable(wp)
        with self.store.transaction():
            self._require_parent_dir(wp)
            existing = self._get(wp.canonical)
            replace = None
            if existing is not None:
                if existing[2] == "DIRECTORY" or not overwrite:
                    raise already_exists(f"Path ({wp.show()}) already exists.")
                replace = (existing[1], existing[5])
            self._insert(wp.canonical, object_type, language, bytes(content), replace=replace)

    def get_status(self, wp: WsPath, *, export_info: bool = False) -> dict:
        row = self._get(wp.canonical)
        if row is None:
            raise not_found(f"Path ({wp.show()}) doesn't exist.")
        return self._info(row, wp, export_info=export_info)

    def list(self, wp: WsPath) -> list[dict]:
        row = self._get(wp.canonical)
        if row is None:
            raise not_found(f"Path ({wp.show()}) doesn't exist.")
        if row[2] != "DIRECTORY":
            return [self._info(row, wp)]
        rows = self.store.query(f"SELECT {self._COLUMNS} FROM objects WHERE parent = ? ORDER BY path",
                                (wp.canonical,))
        return [self._info(r, wp) for r in rows]

    def delete(self, wp: WsPath, recursive: bool) -> None:
        if wp.canonical == "/" or (wp.top in TOP_LEVEL and wp.depth == 1):
            raise ApiError(403, "PERMISSION_DENIED", f"Cannot delete the top-level folder {wp.show()}")
        if wp.top == "Users" and wp.depth == 2:
            raise ApiError(403, "PERMISSION_DENIED", f"Cannot delete the home folder {wp.show()}")
        with self.store.transaction():
            row = self._get(wp.canonical)
            if row is None:
                raise not_found(f"Path ({wp.show()}) doesn't exist.")
            if row[2] == "DIRECTORY":
                children = self.store.query("SELECT 1 FROM objects WHERE parent = ? LIMIT 1", (wp.canonical,))
                if children and not recursive:
                    raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"Folder ({wp.show()}) is not empty.")
                self.store.execute("DELETE FROM objects WHERE path LIKE ? ESCAPE '\\'",
                                   (_like_prefix(wp.canonical),))
            self.store.execute("DELETE FROM objects WHERE path = ?", (wp.canonical,))

    def export(self, wp: WsPath, fmt: str | None) -> tuple[bytes, str]:
        """(content, file_type) of an object."""
        fmt = "SOURCE" if fmt is None else fmt
        if fmt in UNSUPPORTED_FORMATS:
            raise invalid(f"Export format {fmt} is not supported by the local workspace; "
                          "use SOURCE, AUTO, RAW or JUPYTER")
        if fmt not in EXPORT_FORMATS:
            raise invalid(f"Invalid format: {fmt}. Use one of SOURCE, AUTO, RAW, JUPYTER, HTML, DBC, R_MARKDOWN")
        rows = self.store.query("SELECT object_type, language, content FROM objects WHERE path = ?",
                                (wp.canonical,))
        if not rows:
            raise not_found(f"Path ({wp.show()}) doesn't exist.")
        object_type, language, content = rows[0]
        content = bytes(content or b"")
        if object_type == "DIRECTORY":
            if fmt in ("RAW", "JUPYTER"):
                raise invalid(f"Exporting a folder ({wp.show()}) is only supported with SOURCE or AUTO")
            return self._export_dir(wp, fmt), "zip"
        if object_type == "NOTEBOOK":
            if fmt == "JUPYTER":
                return notebook_ipynb(content, language, wp.name), "ipynb"
            if fmt == "AUTO" and _is_jupyter(content):
                return content, "ipynb"
            return notebook_source(content, language), LANG_EXT.get(language or "PYTHON", ".py")[1:]
        if fmt == "JUPYTER":
            raise invalid(f"{wp.show()} is a file, not a notebook: export it with SOURCE, AUTO or RAW")
        ext = posixpath.splitext(wp.canonical)[1]
        return content, ext[1:]

    def _export_dir(self, wp: WsPath, fmt: str) -> bytes:
        base = wp.canonical.rstrip("/") or "/"
        rows = self.store.query("SELECT path, object_type, language, content FROM objects "
                                "WHERE path LIKE ? ESCAPE '\\' ORDER BY path", (_like_prefix(base),))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, object_type, language, content in rows:
                rel = posixpath.relpath(path, base)
                if object_type == "NOTEBOOK":
                    zf.writestr(rel + LANG_EXT.get(language or "PYTHON", ".py"),
                                notebook_source(bytes(content or b""), language))
                elif object_type == "FILE" and fmt == "AUTO":
                    zf.writestr(rel, bytes(content or b""))
        return buf.getvalue()

    # ---- per-run copies ----------------------------------------------------

    def materialise(self, dest: Path) -> dict[str, Path]:
        """Write every notebook and file under ``dest``; return {canonical path: local file}.

        Notebooks keep an extension for their language (``train`` → ``train.py``) so
        that interpreters and the task executor can run them; their text is the
        source format (Jupyter notebooks are converted), starting with the header.
        An object that cannot be written (a name clash with a folder) is left out.
        """
        index: dict[str, Path] = {}
        rows = self.store.query("SELECT path, object_type, language, content FROM objects "
                                "WHERE object_type != 'DIRECTORY' ORDER BY path")
        for path, object_type, language, content in rows:
            local = dest / path.lstrip("/")
            if object_type == "NOTEBOOK":
                local = local.with_name(local.name + LANG_EXT.get(language or "PYTHON", ".py"))
                data = notebook_source(bytes(content or b""), language)
            else:
                data = bytes(content or b"")
            try:
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(data)
            except OSError as exc:
                log.warning("local workspace: cannot copy %s for the run: %s", path, exc)
                continue
            index[path] = local
        return index


# ---- notebook formats -------------------------------------------------------


def _is_jupyter(content: bytes | None) -> bool:
    return bool(content) and bytes(content).lstrip()[:1] == b"{"


def with_header(content: bytes, language: str) -> bytes:
    """Source-notebook text that starts with the header of ``language``."""
    header = HEADERS[language].encode()
    text = bytes(content)
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:]
    if text.split(b"\n", 1)[0].rstrip(b"\r").strip() == header:
        return text
    return header + b"\n" + text


def notebook_source(content: bytes, language: str | None) -> bytes:
    """The SOURCE export of a stored notebook."""
    language = language if language in LANG_EXT else "PYTHON"
    if _is_jupyter(content):
        try:
            return ipynb_to_source(json.loads(bytes(content)), language)
        except ValueError:
            pass
    return with_header(content, language)


def detect(wp: WsPath, content: bytes) -> tuple[WsPath, str, str | None, bytes]:
    """AUTO: (target path, object type, language, stored content) for an uploaded file."""
    stem, ext = posixpath.splitext(wp.canonical)
    if ext == ".ipynb" and posixpath.basename(stem):
        try:
            return wp.with_canonical(stem), "NOTEBOOK", "PYTHON", parse_ipynb(content, strict=False)
        except ApiError:
            pass
    lang = EXT_LANG.get(ext)
    if lang and posixpath.basename(stem):
        text = bytes(content)
        if text.startswith(b"\xef\xbb\xbf"):
            text = text[3:]
        first = text.split(b"\n", 1)[0].rstrip(b"\r").strip()
        if first == HEADERS[lang].encode():
            return wp.with_canonical(stem), "NOTEBOOK", lang, text
    return wp, "FILE", None, bytes(content)


def _cell_text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def parse_ipynb(content: bytes, *, strict: bool) -> bytes:
    """Check that ``content`` is a Jupyter notebook (nbformat 4 shape); return it unchanged."""
    try:
        doc = json.loads(bytes(content).decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        raise invalid("The content is not a valid Jupyter notebook: it is not JSON") from None
    cells = doc.get("cells") if isinstance(doc, dict) else None
    if not isinstance(cells, list):
        raise invalid("The content is not a valid Jupyter notebook: it has no list of cells")
    for cell in cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise invalid("The content is not a valid Jupyter notebook: a cell has no cell_type")
        source = cell.get("source", "")
        if not (isinstance(source, str) or (isinstance(source, list) and all(isinstance(s, str) for s in source))):
            raise invalid("The content is not a valid Jupyter notebook: a cell source is not text")
    return bytes(content)


def ipynb_to_source(doc: dict, language: str = "PYTHON") -> bytes:
    """A Jupyter notebook as Databricks source: code cells as they are, markdown as ``%md`` MAGIC cells."""
    c = COMMENT[language]
    cells: list[str] = []
    for cell in doc.get("cells") or []:
        text = _cell_text(cell.get("source", "")).rstrip("\n")
        kind = cell.get("cell_type")
        if kind == "markdown":
            text = "%md\n" + text if text else "%md"
        elif kind != "code":
            continue
        if text.startswith("%"):
            text = "\n".join(f"{c} MAGIC {line}" if line else f"{c} MAGIC" for line in text.split("\n"))
        cells.append(text)
    sep = f"\n\n{c} COMMAND ----------\n\n"
    return (HEADERS[language] + "\n" + sep.join(cells)).encode()


def _source_cells(text: str, language: str) -> list[str]:
    c = re.escape(COMMENT[language])
    lines = text.split("\n")
    if lines and lines[0].strip() == HEADERS[language]:
        lines = lines[1:]
    cells, current = [], []
    separator = re.compile(rf"^{c} COMMAND -+\s*$")
    for line in lines:
        if separator.match(line):
            cells.append("\n".join(current).strip("\n"))
            current = []
        else:
            current.append(line)
    cells.append("\n".join(current).strip("\n"))
    return [cell for cell in cells if cell.strip()]


def notebook_ipynb(content: bytes, language: str | None, name: str) -> bytes:
    """The JUPYTER export of a stored notebook."""
    if _is_jupyter(content):
        return bytes(content)
    language = language if language in LANG_EXT else "PYTHON"
    magic = re.compile(rf"^{re.escape(COMMENT[language])} MAGIC ?")
    cells = []
    for text in _source_cells(bytes(content).decode("utf-8", "replace"), language):
        lines = text.split("\n")
        if all(magic.match(line) for line in lines):
            text = "\n".join(magic.sub("", line, count=1) for line in lines)
        if text.startswith("%md"):
            body = text[3:].lstrip(" ").removeprefix("\n")
            cells.append({"cell_type": "markdown", "metadata": {}, "source": body.splitlines(keepends=True)})
        else:
            cells.append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                          "source": text.splitlines(keepends=True)})
    lang = language.lower()
    doc = {"cells": cells, "metadata": {
        "application/vnd.databricks.v1+notebook": {"language": lang, "notebookName": name},
        "language_info": {"name": lang}}, "nbformat": 4, "nbformat_minor": 0}
    return json.dumps(doc, indent=1).encode()


def b64decode_field(value: str, name: str = "content") -> bytes:
    try:
        return base64.b64decode(re.sub(rb"\s+", b"", value.encode("ascii")), validate=True)
    except (ValueError, TypeError, UnicodeEncodeError, binascii.Error):
        raise invalid(f"The {name} field is not valid base64") from None


# ---- multipart/form-data ------------------------------------------------------

_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_FIELD_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))', re.IGNORECASE)


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body (RFC 7578), values as bytes, byte-exact."""
    m = _BOUNDARY.search(content_type)
    if not m:
        raise invalid("The multipart body of the request has no boundary")
    delimiter = b"\r\n--" + (m.group(1) or m.group(2)).encode("latin-1", "replace")
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2:
        raise invalid("The multipart body of the request could not be parsed")
    fields: dict[str, bytes] = {}
    closed = False
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            closed = True
            break
        line_end = chunk.find(b"\r\n")
        if line_end < 0 or chunk[:line_end].strip(b" \t"):
            raise invalid("The multipart body of the request could not be parsed")
        head, sep, value = chunk[line_end + 2:].partition(b"\r\n\r\n")
        if not sep:
            if chunk[line_end + 2:line_end + 4] == b"\r\n":  # a part with no headers
                head, value = b"", chunk[line_end + 4:]
            else:
                raise invalid("The multipart body of the request could not be parsed")
        name = None
        for header in head.decode("latin-1").split("\r\n"):
            key, _, rest = header.partition(":")
            if key.strip().lower() == "content-disposition":
                found = _FIELD_NAME.search(rest.split(";", 1)[1] if ";" in rest else "")
                if found:
                    name = found.group(1) if found.group(1) is not None else found.group(2)
                    name = re.sub(r"\\(.)", r"\1", name)
        if name:
            fields[name] = value
    if not closed:
        raise invalid("The multipart body of the request is truncated (no closing boundary)")
    return fields


# ---- HTTP handlers -------------------------------------------------------------


class WorkspaceApi:
    """The handlers of ``/api/2.0/workspace/*`` and ``/api/2.0/workspace-files/import-file``."""

    def __init__(self, tree: WorkspaceTree) -> None:
        self.tree = tree

    def mkdirs(self, req: Request) -> dict:
        self.tree.ensure_home(req.principal)
        self.tree.mkdirs(parse_path(req.json().get("path")))
        return {}

    def import_(self, req: Request) -> dict:
        self.tree.ensure_home(req.principal)
        ctype = req.headers.get("content-type", "")
        if ctype.lower().startswith("multipart/form-data"):
            form = parse_multipart(ctype, req.body)
            if "content" not in form:
                raise invalid("Missing required field: content (the file part of the form)")
            content = form.pop("content")
            try:
                doc = {k: v.decode("utf-8") for k, v in form.items()}
            except UnicodeDecodeError:
                raise invalid("The form fields of the request are not UTF-8") from None
        else:
            doc = req.json()
            content = b64decode_field(typed(doc, "content", str, default=""))
        path = parse_path(doc.get("path"))
        fmt = typed(doc, "format", str)
        language = typed(doc, "language", str)
        overwrite = typed(doc, "overwrite", bool, default=False)
        self.tree.import_object(path, content, fmt, language, overwrite)
        return {}

    def export(self, req: Request):
        self.tree.ensure_home(req.principal)
        path = parse_path(req.arg("path"))
        direct = req.bool_arg("direct_download")
        content, file_type = self.tree.export(path, req.arg("format"))
        if direct:
            return RawResponse(content)
        return {"content": base64.b64encode(content).decode(), "file_type": file_type}

    def get_status(self, req: Request) -> dict:
        self.tree.ensure_home(req.principal)
        path = parse_path(req.arg("path"))
        return self.tree.get_status(path, export_info=req.bool_arg("return_export_info"))

    def list(self, req: Request) -> dict:
        self.tree.ensure_home(req.principal)
        path = parse_path(req.arg("path"))
        req.int_arg("notebooks_modified_after")  # accepted and checked; every object is listed
        objects = self.tree.list(path)
        return {"objects": objects} if objects else {}

    def delete(self, req: Request) -> dict:
        self.tree.ensure_home(req.principal)
        doc = req.json()
        path = parse_path(doc.get("path"))
        self.tree.delete(path, typed(doc, "recursive", bool, default=False))
        return {}

    def import_file(self, req: Request) -> dict:
        """``POST /api/2.0/workspace-files/import-file/<path>?overwrite=``; the body is the file.

        The server has already percent-decoded the path once (``%2F`` as sent by the
        Databricks CLI becomes ``/``); it is not decoded again.
        """
        self.tree.ensure_home(req.principal)
        raw = "/" + req.match["path"].lstrip("/")
        overwrite = req.bool_arg("overwrite")
        self.tree.import_file(parse_path(raw), req.body, overwrite)
        return {}

"""Child-process side of the local task executor.

This file is executed by a one-line bootstrap (``python -u -c BOOT _runtime.py
SPEC.json``, never imported) inside the process that executes one job task,
so that its own folder never lands on ``sys.path``. It so it must only use the standard library
and must not import anything from stackci: the task's interpreter may be a
different environment than the server's.

The parent (``stackci.workspace.tasks``) writes a JSON spec; this module runs
the task and writes a JSON result file (status, error, trace, notebook exit
value, task values). Everything the user's code prints goes to the inherited
stdout/stderr, which the parent captures into a log file.

What the notebook shim offers (and what it deliberately does not):

* ``dbutils.widgets``: text/dropdown/combobox/multiselect, get, getArgument,
  getAll, remove, removeAll. Values passed by the job (base_parameters with
  job parameters on top) win over widget defaults.
* ``dbutils.notebook.exit(value)``: stops the notebook successfully and records
  ``str(value)``. ``dbutils.notebook.run`` is not available locally.
* ``dbutils.jobs.taskValues.set/get``: JSON values of at most 48 KiB; ``get``
  reads the values of upstream tasks of the same run.
* ``dbutils.fs``: local-file semantics only (``file:`` or plain paths); DBFS,
  Volumes and cloud storage are not available.
* ``dbutils.secrets``: not available (raises a clear error).
* ``dbutils.library.restartPython()``: a no-op (the interpreter keeps its
  state; newly installed packages are importable after ``%pip``).
* No ``spark``/``sc``/``sqlContext`` globals: Spark is not available here, and
  a notebook that uses it fails honestly with a NameError that says so.
"""

from __future__ import annotations

import os
import posixpath
import sys

# Everything else is imported where it is needed: a task process starts for every task run, and
# json/re/subprocess/traceback/runpy cost tens of milliseconds of start-up together.

_THIS_FILE = os.path.abspath(__file__)
TASK_VALUE_MAX_BYTES = 48 * 1024
_SPARK_NAMES = ("spark", "sc", "sqlContext", "sqlc", "table", "sql", "udf")
_NOOP_MAGICS = ("load_ext", "reload_ext", "unload_ext", "autoreload", "aimport", "matplotlib", "config",
                "env_note")
_UNSUPPORTED_LANGS = {
    "sql": "%sql cells need Spark SQL",
    "scala": "%scala cells need a Scala REPL on a Spark driver",
    "r": "%r cells need an R REPL on a Spark driver",
    "fs": "%fs cells need DBFS",
}


# --------------------------------------------------------------------------- results

class _Result:
    """Accumulates what the parent needs and writes it atomically as JSON."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict = {"status": "running", "task_values": {}}

    def write(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(to_json(self.data))
        os.replace(tmp, self.path)

    def fail(self, exc: BaseException, tb, *, where: str | None = None, code: str | None = None) -> None:
        self.data["status"] = "failed"
        self.data["error"] = one_line_error(exc)
        trace = _format_exception(exc, tb)
        if where:
            trace = where + "\n" + trace
        self.data["error_trace"] = trace
        if code:
            self.data["error_code"] = code
        sys.stderr.write(trace)
        sys.stderr.flush()


_JSON_ESCAPES = {i: "\\u%04x" % i for i in range(0x20)}
_JSON_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t"})


def to_json(value) -> str:
    """JSON text of plain data (dict, list, str, int, float, bool, None) without importing json.

    Lone surrogates (undecodable bytes in messages) are left to the file's ``backslashreplace``
    error handler, which writes them as the ``\\udXXX`` escapes JSON expects.
    """
    if isinstance(value, str):
        return '"' + value.translate(_JSON_ESCAPES) + '"'
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinities are not JSON")
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(to_json(str(k)) + ": " + to_json(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _format_exception(exc: BaseException, tb) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, _user_tb(tb)))


def one_line_error(exc: BaseException) -> str:
    name = type(exc).__name__
    message = str(exc)
    if isinstance(exc, NameError) and getattr(exc, "name", None) in _SPARK_NAMES:
        message += " (Spark is not available in the stackci local workspace)"
    message = " ".join(message.split())
    text = f"{name}: {message}" if message else name
    return text if len(text) <= 4000 else text[:3997] + "..."


def _user_tb(tb):
    """Drop the leading frames that belong to this runtime (and runpy, should it be involved)."""
    runpy = sys.modules.get("runpy")
    skip = {_THIS_FILE, "<frozen runpy>"}
    if runpy is not None and getattr(runpy, "__file__", None):
        skip.add(os.path.abspath(runpy.__file__))

    def ours(filename: str) -> bool:
        return filename in skip or (not filename.startswith("<") and os.path.abspath(filename) in skip)

    while tb is not None and ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


class UserFailure(Exception):
    """An error raised by the shim on behalf of the platform (shown like a user error)."""


class InputWidgetNotDefined(Exception):
    """Raised by ``dbutils.widgets.get`` for a name that is neither defined nor passed."""


class NotAvailableLocally(Exception):
    """A Databricks feature that the local workspace cannot provide."""


class UnsupportedCell(NotAvailableLocally):
    """A notebook cell in a language the local workspace cannot run (%sql, %scala, %r, %fs)."""


class _NotebookExit(BaseException):
    """Raised by dbutils.notebook.exit(); a BaseException so ``except Exception`` cannot swallow it."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


# --------------------------------------------------------------------------- dbutils shim

class _Widgets:
    def __init__(self, passed: dict) -> None:
        self._passed = {str(k): str(v) for k, v in passed.items()}
        self._defaults: dict[str, str] = {}

    def _define(self, name, default, choices=None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("widget name must be a non-empty string")
        default = "" if default is None else str(default)
        if choices is not None:
            choices = [str(c) for c in choices]
            values = default.split(",") if default else []
            if values and any(v not in choices for v in values):
                raise ValueError(f"Default value {default!r} of widget {name!r} is not one of its choices {choices}")
        self._defaults[name] = default

    def text(self, name, defaultValue="", label=None):
        self._define(name, defaultValue)

    def dropdown(self, name, defaultValue, choices, label=None):
        self._define(name, defaultValue, choices)

    def combobox(self, name, defaultValue, choices, label=None):
        self._define(name, defaultValue)

    def multiselect(self, name, defaultValue, choices, label=None):
        self._define(name, defaultValue, choices)

    def get(self, name):
        if name in self._passed:
            return self._passed[name]
        if name in self._defaults:
            return self._defaults[name]
        raise InputWidgetNotDefined(f"No input widget named {name} is defined")

    def getArgument(self, name, defaultValue=None):
        try:
            return self.get(name)
        except InputWidgetNotDefined:
            return defaultValue

    def getAll(self):
        merged = dict(self._defaults)
        merged.update(self._passed)
        return merged

    def remove(self, name):
        self._defaults.pop(name, None)

    def removeAll(self):
        self._defaults.clear()

    def help(self, *args):
        print("dbutils.widgets (stackci local workspace): text, dropdown, combobox, multiselect, get, "
              "getArgument, getAll, remove, removeAll")


class _TaskValues:
    def __init__(self, result: _Result, upstream: dict, task_key: str) -> None:
        self._result = result
        self._upstream = upstream
        self._task_key = task_key

    def set(self, key, value):
        if not isinstance(key, str) or not key:
            raise ValueError("task value key must be a non-empty string")
        import json

        try:
            encoded = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"task value {key!r} is not JSON-serialisable: {exc}") from None
        if len(encoded.encode("utf-8")) > TASK_VALUE_MAX_BYTES:
            raise ValueError(f"task value {key!r} is too large: the JSON representation of a task value "
                             f"cannot exceed 48 KiB ({len(encoded.encode('utf-8'))} bytes given)")
        self._result.data["task_values"][key] = json.loads(encoded)
        self._result.write()

    def get(self, taskKey, key, default=None, debugValue=None):
        values = self._upstream.get(taskKey)
        if taskKey == self._task_key:
            values = self._result.data["task_values"]
        if values is not None and key in values:
            return values[key]
        if default is not None:
            return default
        if values is None:
            raise ValueError(f"Could not find task values for task {taskKey!r}: it is not an upstream task of "
                             f"this task in the current run, or it set no values")
        raise ValueError(f"Could not find the task value with key {key!r} for task {taskKey!r}, "
                         f"and no default was given")

    def help(self, *args):
        print("dbutils.jobs.taskValues: set(key, value), get(taskKey, key, default=None, debugValue=None)")


class _Jobs:
    def __init__(self, task_values: _TaskValues) -> None:
        self.taskValues = task_values


class _Some:
    """Mimics a Scala Option as seen through py4j (``.get()``, ``.isDefined()``)."""

    def __init__(self, value) -> None:
        self._value = value

    def get(self):
        return self._value

    def isDefined(self):
        return self._value is not None

    def getOrElse(self, other):
        return self._value if self._value is not None else other


class _Context:
    def __init__(self, notebook_path: str, tags: dict) -> None:
        self._notebook_path = notebook_path
        self._tags = tags

    def notebookPath(self):
        return _Some(self._notebook_path)

    def tags(self):
        return dict(self._tags)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *a, **k: _Some(None)


class _EntryPoint:
    def __init__(self, context: _Context) -> None:
        self._context = context

    def getDbutils(self):
        ep = self

        class _DbutilsJava:
            def notebook(self_inner):
                class _NB:
                    def getContext(self2):
                        return ep._context
                return _NB()
        return _DbutilsJava()


class _NotebookUtils:
    def __init__(self, context: _Context) -> None:
        self.entry_point = _EntryPoint(context)

    def exit(self, value):
        raise _NotebookExit("" if value is None else str(value))

    def run(self, path, timeout_seconds=0, arguments=None):
        raise NotAvailableLocally("dbutils.notebook.run is not available in the stackci local workspace; "
                                  "use %run or a multi-task job instead")

    def getContext(self):
        return self.entry_point.getDbutils().notebook().getContext()


class _Library:
    def restartPython(self):
        print("dbutils.library.restartPython(): no-op in the stackci local workspace "
              "(the interpreter keeps its state)")


class _Secrets:
    def _unavailable(self, *args, **kwargs):
        raise NotAvailableLocally("dbutils.secrets is not available in the stackci local workspace")

    get = getBytes = list = listScopes = _unavailable


def _local_path(path: str) -> str:
    if path.startswith("file:"):
        path = path[len("file:"):]
        if path.startswith("//"):
            path = path[2:]
        return path
    import re

    if re.match(r"^(dbfs|s3a?|abfss?|gs|wasbs?):", path) or path.startswith("/Volumes/") or path.startswith("/dbfs/"):
        raise NotAvailableLocally(f"{path}: DBFS, Volumes and cloud storage are not available in the stackci "
                                  f"local workspace; dbutils.fs only works on local files here")
    return path


class _FileInfo(tuple):
    __slots__ = ()

    def __new__(cls, path, name, size, modificationTime):
        return tuple.__new__(cls, (path, name, size, modificationTime))

    path = property(lambda self: self[0])
    name = property(lambda self: self[1])
    size = property(lambda self: self[2])
    modificationTime = property(lambda self: self[3])

    def isDir(self):
        return self.name.endswith("/")

    def isFile(self):
        return not self.isDir()

    def __repr__(self):
        return (f"FileInfo(path={self.path!r}, name={self.name!r}, size={self.size}, "
                f"modificationTime={self.modificationTime})")


class _Fs:
    """dbutils.fs with local-file semantics only."""

    def ls(self, dir):
        local = _local_path(dir)
        out = []
        for entry in sorted(os.scandir(local), key=lambda e: e.name):
            is_dir = entry.is_dir()
            st = entry.stat()
            name = entry.name + ("/" if is_dir else "")
            out.append(_FileInfo("file:" + os.path.join(os.path.abspath(local), name), name,
                                 0 if is_dir else st.st_size, int(st.st_mtime * 1000)))
        return out

    def head(self, file, maxBytes=65536):
        with open(_local_path(file), "rb") as fh:
            return fh.read(maxBytes).decode("utf-8", errors="replace")

    def put(self, file, contents, overwrite=False):
        local = _local_path(file)
        if os.path.exists(local) and not overwrite:
            raise FileExistsError(f"{file} already exists; pass overwrite=True")
        os.makedirs(os.path.dirname(os.path.abspath(local)), exist_ok=True)
        with open(local, "w", encoding="utf-8") as fh:
            fh.write(contents)
        return True

    def mkdirs(self, dir):
        os.makedirs(_local_path(dir), exist_ok=True)
        return True

    def rm(self, dir, recurse=False):
        import shutil

        local = _local_path(dir)
        if not os.path.exists(local):
            return False
        if os.path.isdir(local):
            if recurse:
                shutil.rmtree(local)
            else:
                os.rmdir(local)
        else:
            os.remove(local)
        return True

    def cp(self, from_, to, recurse=False):
        import shutil

        src, dst = _local_path(from_), _local_path(to)
        if os.path.isdir(src):
            if not recurse:
                raise IsADirectoryError(f"{from_} is a directory; pass recurse=True")
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dst)
        return True

    def mv(self, from_, to, recurse=False):
        import shutil

        shutil.move(_local_path(from_), _local_path(to))
        return True


class DBUtils:
    def __init__(self, *, widgets, task_values, context) -> None:
        self.widgets = widgets
        self.jobs = _Jobs(task_values)
        self.notebook = _NotebookUtils(context)
        self.library = _Library()
        self.secrets = _Secrets()
        self.fs = _Fs()

    def help(self, *args):
        print("dbutils (stackci local workspace): widgets, jobs.taskValues, notebook.exit, fs (local files "
              "only), library.restartPython (no-op)")


def _display(*args, **kwargs):
    for value in args:
        print(value)


def _display_html(html):
    print(html)


# --------------------------------------------------------------------------- notebook source

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"


def split_cells(text: str) -> list[str]:
    """Split a source-format notebook into cell sources (header removed)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[0].strip() == HEADER:
        lines = lines[1:]
    cells, current = [], []
    for line in lines:
        if line.rstrip() == SEPARATOR:
            cells.append("\n".join(current))
            current = []
        else:
            current.append(line)
    cells.append("\n".join(current))
    return cells


def classify_cell(source: str):
    """Return (kind, body): kind in python, md, magic; body = code or the magic text."""
    lines = source.split("\n")
    # drop a cell title line and surrounding blank lines
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and lines[0].startswith("# DBTITLE"):
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return "empty", ""
    if all(ln.startswith("# MAGIC") for ln in lines if ln.strip()):
        body = []
        for ln in lines:
            if ln.startswith("# MAGIC "):
                body.append(ln[len("# MAGIC "):])
            elif ln.startswith("# MAGIC"):
                body.append(ln[len("# MAGIC"):])
            else:
                body.append(ln)
        text = "\n".join(body)
        first = text.lstrip().split(None, 1)[0] if text.strip() else ""
        if first in ("%md", "%md-sandbox"):
            return "md", text
        if first == "%python":
            return "python", text.lstrip()[len("%python"):].lstrip("\n")
        return "magic", text
    return "python", "\n".join(lines)


def run_targets(text: str) -> list[str]:
    """The paths named by %run in a notebook (for the parent to resolve in advance)."""
    import re

    out = []
    for cell in split_cells(text):
        kind, body = classify_cell(cell)
        if kind not in ("magic", "python"):
            continue
        for line in body.split("\n"):
            m = re.match(r"^\s*%run\s+(\S+)", line)
            if m:
                out.append(_strip_quotes(m.group(1)))
    return out


def has_pip(text: str) -> bool:
    import re

    for cell in split_cells(text):
        kind, body = classify_cell(cell)
        if kind in ("magic", "python") and re.search(r"^\s*%pip\s", body + "\n", re.M):
            return True
    return False


def _strip_quotes(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def canonical_ws(path: str) -> str:
    path = posixpath.normpath(path)
    if path == "/Workspace":
        return "/"
    if path.startswith("/Workspace/"):
        path = path[len("/Workspace"):]
    return path


# --------------------------------------------------------------------------- notebook runner

class _NotebookRunner:
    def __init__(self, spec: dict, result: _Result) -> None:
        self.spec = spec
        self.result = result
        self.widgets = _Widgets(spec.get("widgets") or {})
        self.task_values = _TaskValues(result, spec.get("upstream_values") or {}, spec.get("task_key", ""))
        self.context = _Context(spec["notebook_path"], {"jobId": spec.get("job_id"), "runId": spec.get("run_id")})
        self.dbutils = DBUtils(widgets=self.widgets, task_values=self.task_values, context=self.context)
        self.notebooks = spec.get("notebooks") or {}
        self.path_map = spec.get("path_map") or []
        self.pip_online = bool(spec.get("pip_online"))
        self.depth = 0
        module = type(sys)("__main__")
        module.__dict__.update({
            "__builtins__": __builtins__,
            "dbutils": self.dbutils,
            "display": _display,
            "displayHTML": _display_html,
            "getArgument": self.widgets.getArgument,
            "__stackci_magic__": self._line_magic,
            "__stackci_shell__": self._shell_line,
        })
        sys.modules["__main__"] = module
        self.ns = module.__dict__

    # -- paths
    def to_local(self, path: str) -> str:
        if not path.startswith("/"):
            return path
        canon = canonical_ws(path)
        for ws_root, local_root in self.path_map:
            if canon == ws_root or canon.startswith(ws_root.rstrip("/") + "/"):
                rest = canon[len(ws_root.rstrip("/")):].lstrip("/")
                return os.path.join(local_root, rest) if rest else local_root
        return path

    # -- execution
    def run(self) -> None:
        ws_path = self.spec["notebook_path"]
        local = self.spec["local_path"]
        self.run_notebook(ws_path, local)

    def run_notebook(self, ws_path: str, local: str) -> None:
        with open(local, encoding="utf-8") as fh:
            text = fh.read()
        for index, cell in enumerate(split_cells(text), start=1):
            kind, body = classify_cell(cell)
            self.current = (ws_path, index)
            if kind in ("empty", "md"):
                continue
            if kind == "magic":
                self.run_magic_cell(body, ws_path)
            else:
                self.run_python(body, ws_path, index)

    def run_python(self, source: str, ws_path: str, index: int) -> None:
        filename = f"<notebook {ws_path}, cell {index}>"
        try:
            code = compile(source + "\n", filename, "exec")
        except SyntaxError as first_error:
            transformed = _transform_magics(source)
            if transformed == source:
                raise
            try:
                code = compile(transformed + "\n", filename, "exec")
            except SyntaxError:
                raise first_error from None
            source = transformed
        import linecache

        linecache.cache[filename] = (len(source), None, [ln + "\n" for ln in source.split("\n")], filename)
        exec(code, self.ns)

    def run_magic_cell(self, text: str, ws_path: str) -> None:
        stripped = text.lstrip()
        first_line, _, rest = stripped.partition("\n")
        name = first_line.split(None, 1)[0][1:] if first_line.startswith("%") else ""
        if name == "sh":
            script = first_line[len("%sh"):].strip()
            script = (script + "\n" + rest) if script else rest
            self._shell(script, check=True)
            return
        if name in _UNSUPPORTED_LANGS:
            raise UnsupportedCell(f"{_UNSUPPORTED_LANGS[name]}, which the stackci local workspace does not "
                                  f"have (cell language %{name})")
        # a cell of IPython line magics (%pip, %run, %load_ext, ...), one per line
        for line in stripped.split("\n"):
            line = line.strip()
            if not line:
                continue
            if line.startswith("%"):
                magic, _, arg = line[1:].partition(" ")
                self._line_magic(magic, arg.strip())
            elif line.startswith("!"):
                self._shell(line[1:], check=False)
            else:
                raise NotAvailableLocally(f"cannot run magic cell line {line!r} locally")

    # -- magics
    def _expand(self, arg: str) -> str:
        import re

        def repl(m):
            name = m.group(1) or m.group(2)
            if name in self.ns:
                return str(self.ns[name])
            return m.group(0)
        return re.sub(r"\$(?:\{(\w+)\}|(\w+))", repl, arg)

    def _line_magic(self, name: str, arg: str = "") -> None:
        arg = self._expand(arg)
        if name in _NOOP_MAGICS:
            return
        if name == "pip":
            self._pip(arg)
        elif name == "cd":
            target = self.to_local(_strip_quotes(arg.strip()) or os.path.expanduser("~"))
            os.chdir(target)
        elif name == "pwd":
            print(os.getcwd())
        elif name == "run":
            self._run(arg)
        elif name == "sh":
            self._shell(arg, check=True)
        elif name in _UNSUPPORTED_LANGS:
            raise UnsupportedCell(f"{_UNSUPPORTED_LANGS[name]}, which the stackci local workspace does not have")
        else:
            raise NotAvailableLocally(f"the magic %{name} is not supported by the stackci local workspace")

    def _pip(self, arg: str) -> None:
        import shlex
        import subprocess

        args = shlex.split(arg)
        cmd = [sys.executable, "-m", "pip"] + args
        if args and args[0] == "install":
            cmd[4:4] = ["--disable-pip-version-check", "--no-input"]
            index_opts = {"-i", "--index-url", "--extra-index-url", "--no-index"}
            if not self.pip_online and not any(a.split("=", 1)[0] in index_opts for a in args):
                cmd.insert(4, "--no-index")
        print("%pip " + arg, flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        rc = subprocess.call(cmd)
        if rc != 0:
            hint = "" if self.pip_online else (" (the local workspace installs offline: --no-index; packages must "
                                               "already be installed or be given as local wheel files)")
            raise UserFailure(f"%pip {arg} failed with exit code {rc}{hint}")
        import importlib

        importlib.invalidate_caches()
        import site

        for path in site.getsitepackages():
            if path not in sys.path and os.path.isdir(path):
                sys.path.append(path)

    def _shell(self, script: str, *, check: bool) -> None:
        import subprocess

        sys.stdout.flush()
        sys.stderr.flush()
        rc = subprocess.call(["/bin/bash", "-c", script] if os.path.exists("/bin/bash") else ["/bin/sh", "-c", script])
        if check and rc != 0:
            raise UserFailure(f"%sh command exited with non-zero status {rc}")

    def _shell_line(self, cmd: str) -> None:
        self._shell(self._expand(cmd), check=False)

    def _run(self, arg: str) -> None:
        import shlex

        parts = shlex.split(arg)
        if not parts:
            raise UserFailure("%run needs a notebook path")
        target = parts[0]
        base_ws = self.current[0]
        ws_target = target if target.startswith("/") else posixpath.normpath(
            posixpath.join(posixpath.dirname(base_ws), target))
        local = self.notebooks.get(canonical_ws(ws_target))
        if local is None or not os.path.isfile(local):
            raise UserFailure(f"Notebook not found: {ws_target}")
        overrides = {}
        for extra in parts[1:]:
            if extra.startswith("$") and "=" in extra:
                key, _, value = extra[1:].partition("=")
                overrides[key] = _strip_quotes(value)
        if self.depth >= 16:
            raise UserFailure("%run nesting is too deep (more than 16 levels)")
        saved_passed = dict(self.widgets._passed)
        saved_current = self.current
        self.widgets._passed.update(overrides)
        self.depth += 1
        try:
            self.run_notebook(ws_target, local)
        finally:
            self.depth -= 1
            self.widgets._passed = saved_passed
            self.current = saved_current


def _transform_magics(source: str) -> str:
    """Turn IPython line magics / shell escapes inside a python cell into shim calls."""
    import re

    _MAGIC_LINE = re.compile(r"^(\s*)%(\w+)(?:[ \t]+(.*))?$")
    _SHELL_LINE = re.compile(r"^(\s*)!(.+)$")
    out = []
    for line in source.split("\n"):
        m = _MAGIC_LINE.match(line)
        if m:
            out.append(f"{m.group(1)}__stackci_magic__({m.group(2)!r}, {(m.group(3) or '').strip()!r})")
            continue
        m = _SHELL_LINE.match(line)
        if m:
            out.append(f"{m.group(1)}__stackci_shell__({m.group(2).strip()!r})")
            continue
        out.append(line)
    return "\n".join(out)


# --------------------------------------------------------------------------- entry points

def _run_python_file(spec: dict, result: _Result) -> int:
    path = spec["local_path"]
    sys.argv = [path] + list(spec.get("parameters") or [])
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        # what runpy.run_path does for a plain file, without importing runpy and pkgutil
        with open(path, "rb") as fh:
            source = fh.read()
        code = compile(source, path, "exec", dont_inherit=True)
        module = type(sys)("__main__")
        module.__dict__.update(__file__=path, __cached__=None, __loader__=None, __package__=None, __spec__=None,
                               __builtins__=__builtins__)
        sys.modules["__main__"] = module
        exec(code, module.__dict__)
    except SystemExit as exc:
        return _system_exit(exc, result, sys.exc_info()[2])
    except BaseException as exc:  # noqa: BLE001 - everything the user's code raises is a task failure
        result.fail(exc, sys.exc_info()[2])
        return 1
    result.data["status"] = "success"
    return 0


def _system_exit(exc: SystemExit, result: _Result, tb) -> int:
    code = exc.code
    if code is None or code == 0:
        result.data["status"] = "success"
        return 0
    if isinstance(code, int):
        result.data["status"] = "failed"
        result.data["error"] = f"SystemExit: {code}"
        result.data["error_trace"] = _format_exception(exc, tb)
        return code if 0 < code < 256 else 1
    sys.stderr.write(str(code) + "\n")
    result.data["status"] = "failed"
    result.data["error"] = one_line_error(exc)
    result.data["error_trace"] = _format_exception(exc, tb)
    return 1


def _run_wheel(spec: dict, result: _Result) -> int:
    import importlib
    from importlib import metadata

    package, entry = spec["package_name"], spec["entry_point"]
    sys.argv = [package] + list(spec.get("parameters") or [])
    sys.path.insert(0, os.getcwd())
    try:
        func = None
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            dist = None
        if dist is not None:
            eps = [ep for ep in dist.entry_points if ep.name == entry]
            eps.sort(key=lambda ep: ep.group != "console_scripts")
            if eps:
                func = eps[0].load()
        if func is None:
            module_name = package.replace("-", "_")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise UserFailure(f"python_wheel_task: package {package!r} is not installed and module "
                                  f"{module_name!r} cannot be imported ({exc})") from None
            func = getattr(module, entry, None)
            if func is None:
                raise UserFailure(f"python_wheel_task: entry point {entry!r} is neither declared in the metadata "
                                  f"of package {package!r} nor a function of module {module_name!r}")
        func()
    except SystemExit as exc:
        return _system_exit(exc, result, sys.exc_info()[2])
    except BaseException as exc:  # noqa: BLE001
        result.fail(exc, sys.exc_info()[2])
        return 1
    result.data["status"] = "success"
    return 0


def _run_notebook(spec: dict, result: _Result) -> int:
    sys.argv = [spec["local_path"]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(spec["local_path"])))
    runner = _NotebookRunner(spec, result)
    runner.current = (spec["notebook_path"], 0)
    try:
        runner.run()
    except _NotebookExit as exc:
        result.data["notebook_result"] = exc.value
    except SystemExit as exc:
        return _system_exit(exc, result, sys.exc_info()[2])
    except BaseException as exc:  # noqa: BLE001
        ws_path, index = runner.current
        code = "INVALID_RUN_CONFIGURATION" if isinstance(exc, UnsupportedCell) else None
        result.fail(exc, sys.exc_info()[2], where=f"Notebook {ws_path}, cell {index}:", code=code)
        return 1
    result.data["status"] = "success"
    return 0


def main(argv: list[str]) -> int:
    import marshal

    # the spec comes from the parent (plain data, marshal format 4: any Python 3.4+ reads it)
    with open(argv[1], "rb") as fh:
        spec = marshal.loads(fh.read())
    result = _Result(spec["result_path"])
    kind = spec["kind"]
    runner = {"python_file": _run_python_file, "notebook": _run_notebook, "wheel": _run_wheel}[kind]
    try:
        rc = runner(spec, result)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        result.write()
    return rc


if __name__ == "__main__":
    # argv: [this file, spec]; the bootstrap already removed the '' entry of ``-c`` from sys.path and
    # each runner puts the folder the user's code expects first.
    sys.exit(main(sys.argv))

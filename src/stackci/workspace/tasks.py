"""Execute ONE job task of the local workspace as a local process.

The run orchestrator calls :func:`run_task` from a worker thread for every task
run (and every retry). This module knows nothing about DAGs, retries or the REST
API: it turns one task's settings into a child process, supervises it (timeout,
cancellation, whole process tree), and reports a :class:`TaskOutcome`.

How a task runs
---------------
* Every task runs in a fresh child process started in its own session, so that
  a timeout or a cancellation can kill the whole process tree (``os.killpg``:
  SIGTERM, then SIGKILL after a short grace). Processes the user's code leaves
  behind are killed when the task ends, as a job cluster would.
* The child executes ``_runtime.py`` (stdlib only) with a spec (plain data in
  marshal format 4); it reports the error, traceback, notebook exit value and
  task values through a JSON file under ``work_dir`` -- never by parsing stdout. stdout and stderr go,
  interleaved, to ``work_dir/output.log``; the last 5 MB become ``logs``.
* ``spark_python_task``: ``python <file> <parameters...>`` semantics (argv,
  ``__name__ == "__main__"``, cwd and ``sys.path[0]`` = the file's folder).
  Job parameters reach it only through the parameters (as on Databricks).
* ``notebook_task`` on source-format notebooks: cells split on
  ``# COMMAND ----------``, executed in one ``__main__`` namespace with cwd =
  the notebook's folder and a ``dbutils`` shim (see ``_runtime``). Widgets get
  ``base_parameters`` with job parameters of the same name on top (job
  parameters win, as on Databricks). ``%md`` cells are skipped; ``%pip``
  installs into a per-task environment (offline unless
  ``STACKCI_WORKSPACE_PIP_ONLINE=1``); ``%sh`` runs bash; ``%run`` runs another
  workspace notebook in the same namespace; ``%load_ext``/``%autoreload`` are
  ignored; ``%sql``/``%scala``/``%r``/``%fs`` fail the task with
  INVALID_RUN_CONFIGURATION (there is no Spark here).
* ``python_wheel_task``: the task's ``libraries`` (``whl``, ``pypi``,
  ``requirements``) -- or an inlined environment spec, see below -- are installed
  into a per-task venv (``python -m venv --system-site-packages`` under
  ``work_dir``, which also sees everything importable by ``python``); then the
  entry point is looked up in the package metadata (console_scripts first),
  falling back to ``<package>.<entry_point>()`` as Databricks does.
  ``named_parameters`` become ``--key=value`` (job parameters of the same name
  win). Installation is offline (``--no-index`` plus ``--find-links`` of the
  wheels' folders) unless ``STACKCI_WORKSPACE_PIP_ONLINE=1`` is in ``env`` or
  the server's environment. A library that cannot be installed ->
  FAILED / LIBRARY_INSTALLATION_ERROR.
* Serverless environments: the Jobs API puts ``environments`` on the job, not
  on the task, so the orchestrator may inline the matching entry as
  ``task["environment"]`` (``{"environment_key": ..., "spec": {"dependencies":
  [...]}}``); its dependencies are installed like ``libraries``. A task with an
  ``environment_key`` and no inlined spec runs with ``python`` as is.

``DATABRICKS_RUNTIME_VERSION`` is deliberately NOT set in the child: the
databricks-sdk switches on it (its ``runtime`` credential strategies try to
import Databricks-runtime-only modules, and the user agent changes), and so
does mlflow (``is_in_databricks_runtime()`` then expects a notebook context,
dbutils and Spark). Setting it would make libraries take code paths that only
work on a real cluster.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import posixpath
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from stackci.workspace import _runtime

log = logging.getLogger(__name__)

#: Databricks returns the last 5 MB of a task's logs (runs/get-output ``logs``).
LOG_TAIL_BYTES = 5 * 1024 * 1024
#: ... and the first 5 MB of the value given to dbutils.notebook.exit().
NOTEBOOK_RESULT_MAX_BYTES = 5 * 1024 * 1024
#: error_trace keeps the end of a (pathologically) long traceback.
ERROR_TRACE_MAX_CHARS = 1024 * 1024
#: Seconds between SIGTERM and SIGKILL when a task is cancelled or times out.
KILL_GRACE_SECONDS = 0.5
#: How often the supervisor looks at the cancel event and the deadline.
POLL_SECONDS = 0.05
#: Termination code for a notebook / python file / library file that does not exist. The SDK's
#: TerminationCodeCode documents RESOURCE_NOT_FOUND as "a resource necessary for run execution does
#: not exist"; the real service's state message for a missing notebook reads "Unable to access the
#: notebook ...".
MISSING_FILE_CODE = "RESOURCE_NOT_FOUND"

RUNTIME_FILE = Path(_runtime.__file__).resolve()
SUPPORTED_TASK_TYPES = ("spark_python_task", "notebook_task", "python_wheel_task")
#: Runs the runtime by path without putting its folder on sys.path (``-c`` adds '' instead, removed here).
#: argv: runtime file, code cache prefix ("" = none), spec. The compiled runtime is cached per
#: interpreter (cache_tag + exact version) with marshal, because compiling its source costs more than
#: starting the interpreter; the prefix names a private folder and a hash of the runtime's source.
_BOOTSTRAP = """\
import sys, marshal
if sys.path and sys.path[0] == '': del sys.path[0]
f, k = sys.argv[1], sys.argv[2]
sys.argv = [f] + sys.argv[3:]
c = None
if k:
    k += '-%s-%x.bin' % (sys.implementation.cache_tag, sys.hexversion)
    try:
        with open(k, 'rb') as h:
            c = marshal.loads(h.read())
    except Exception:
        c = None
if c is None:
    with open(f, encoding='utf-8') as h:
        c = compile(h.read(), f, 'exec', dont_inherit=True)
    if k:
        import os
        t = '%s.%d.tmp' % (k, os.getpid())
        try:
            with open(t, 'wb') as h:
                h.write(marshal.dumps(c))
            os.replace(t, k)
        except Exception:
            pass
exec(c, {'__name__': '__main__', '__file__': f, '__builtins__': __builtins__})
"""
_code_cache_prefix: str | None = None


def _runtime_cache_prefix() -> str:
    """Prefix of the runtime's code cache files: a private folder, plus a hash of the source and its path.

    "" (no cache) when no such folder can be had: a cache others could write would run their code.
    """
    global _code_cache_prefix
    if _code_cache_prefix is None:
        import hashlib
        import stat
        import tempfile

        prefix = ""
        try:
            folder = Path(tempfile.gettempdir()) / f"stackci-runtime-{os.getuid()}"
            folder.mkdir(mode=0o700, exist_ok=True)
            info = os.lstat(folder)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
                # the compiled code names its file (tracebacks, and the frames the runtime hides
                # from users), so the key is the path as well as the content
                digest = hashlib.sha256(str(RUNTIME_FILE).encode() + b"\0" + RUNTIME_FILE.read_bytes()).hexdigest()[:16]
                prefix = str(folder / f"runtime-{digest}")
            else:
                log.warning("not caching the task runtime's code: %s is not a private folder", folder)
        except OSError as exc:
            log.debug("no code cache for the task runtime: %s", exc)
        _code_cache_prefix = prefix
    return _code_cache_prefix


@dataclass
class TaskOutcome:
    """What one task run produced. States and codes are values the databricks-sdk knows."""

    result_state: str  # SUCCESS | FAILED | TIMEDOUT | CANCELED
    termination_code: str  # a jobs.TerminationCodeCode value
    error: str | None = None
    error_trace: str | None = None
    logs: str = ""
    logs_truncated: bool = False
    notebook_result: str | None = None
    notebook_truncated: bool = False
    task_values: dict = field(default_factory=dict)


class _Reject(Exception):
    """The task cannot start: becomes FAILED with the given termination code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Plan:
    spec: dict
    cwd: Path | None
    wheels: list = field(default_factory=list)  # local wheel files
    requirements: list = field(default_factory=list)  # pip args: specs and "-r", file
    needs_env: bool = False


# --------------------------------------------------------------------------- public entry point

def run_task(task: dict, *, resolve_path: Callable[[str], Path], work_dir: Path, job_parameters: dict[str, str],
             upstream_values: dict[str, dict], python: str, timeout: float | None, cancel: threading.Event,
             env: dict[str, str] | None = None) -> TaskOutcome:
    """Run one task to completion, timeout or cancellation and report what happened.

    ``timeout`` of ``None`` or ``<= 0`` means no timeout (``timeout_seconds: 0`` on Databricks). It covers
    library installation too. Never raises: a problem of the task is a FAILED outcome, and a bug of the
    executor itself is logged and reported as FAILED / INTERNAL_ERROR so that the orchestrator never hangs.
    """
    try:
        return _run_task(task, resolve_path=resolve_path, work_dir=work_dir, job_parameters=job_parameters,
                         upstream_values=upstream_values, python=python, timeout=timeout, cancel=cancel, env=env)
    except Exception as exc:  # noqa: BLE001 - the boundary between the executor and the orchestrator
        log.exception("local task executor failed on task %s", task.get("task_key") if isinstance(task, dict) else "?")
        return TaskOutcome("FAILED", "INTERNAL_ERROR",
                           error=f"The stackci local workspace could not run the task: {type(exc).__name__}: {exc}")


def _run_task(task, *, resolve_path, work_dir, job_parameters, upstream_values, python, timeout, cancel,
              env) -> TaskOutcome:
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    task_key = str(task.get("task_key") or "task")
    deadline = time.monotonic() + timeout if timeout and timeout > 0 else None
    if cancel.is_set():
        return _canceled("", False, {})
    log_path = work_dir / "output.log"
    result_path = work_dir / "result.json"
    spec_path = work_dir / "spec.json"
    for stale in (result_path, spec_path):
        stale.unlink(missing_ok=True)

    try:
        plan = _plan(task, task_key, resolve_path, dict(job_parameters or {}), dict(upstream_values or {}))
    except _Reject as rej:
        log.info("task %s rejected: %s", task_key, rej.message)
        return TaskOutcome("FAILED", rej.code, error=rej.message)

    extra_env = dict(env or {})
    child_env = dict(os.environ)
    child_env.update(extra_env)
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env.setdefault("PYTHONIOENCODING", "utf-8")
    online = (extra_env.get("STACKCI_WORKSPACE_PIP_ONLINE") or os.environ.get("STACKCI_WORKSPACE_PIP_ONLINE")) == "1"
    plan.spec.update(result_path=str(result_path), task_key=task_key, pip_online=online)

    interpreter = python
    if plan.needs_env or plan.wheels or plan.requirements:
        installed = _prepare_env(plan, python=python, work_dir=work_dir, child_env=child_env, online=online,
                                 cancel=cancel, deadline=deadline)
        if isinstance(installed, TaskOutcome):
            return installed
        interpreter = installed

    spec_path.write_bytes(marshal.dumps(plan.spec, 4))
    cmd = [interpreter, "-u", "-c", _BOOTSTRAP, str(RUNTIME_FILE), _runtime_cache_prefix(), str(spec_path)]
    with open(log_path, "wb") as log_fh:
        try:
            proc = subprocess.Popen(cmd, cwd=str(plan.cwd or work_dir), env=child_env, stdin=subprocess.DEVNULL,
                                    stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return TaskOutcome("FAILED", "INVALID_RUN_CONFIGURATION",
                               error=f"Cannot start the task's interpreter {interpreter}: {exc}")
        log.debug("task %s: started pid %s", task_key, proc.pid)
        how = _supervise(proc, cancel, deadline)
    return _outcome(how, proc.returncode, log_path, result_path, timeout, is_notebook="notebook_path" in plan.spec)


# --------------------------------------------------------------------------- planning

def _plan(task: dict, task_key: str, resolve_path, job_parameters: dict, upstream: dict) -> _Plan:
    if not isinstance(task, dict):
        raise _Reject("INVALID_RUN_CONFIGURATION", "Task settings must be an object")
    kinds = [k for k in task if k.endswith("_task") and task[k] is not None]
    if not kinds:
        raise _Reject("INVALID_RUN_CONFIGURATION",
                      f"Task {task_key} has no task type; one of {', '.join(SUPPORTED_TASK_TYPES)} is required")
    if len(kinds) > 1:
        raise _Reject("INVALID_RUN_CONFIGURATION",
                      f"Task {task_key} has more than one task type ({', '.join(sorted(kinds))}); "
                      f"exactly one is allowed")
    kind = kinds[0]
    if kind not in SUPPORTED_TASK_TYPES:
        raise _Reject("INVALID_RUN_CONFIGURATION",
                      f"Task {task_key}: {kind} is not supported by the stackci local workspace "
                      f"(it runs {', '.join(SUPPORTED_TASK_TYPES)} as local processes)")
    settings = task[kind]
    if not isinstance(settings, dict):
        raise _Reject("INVALID_RUN_CONFIGURATION", f"Task {task_key}: {kind} must be an object")
    if str(settings.get("source") or "WORKSPACE").upper() != "WORKSPACE":
        raise _Reject("INVALID_RUN_CONFIGURATION",
                      f"Task {task_key}: source {settings.get('source')!r} is not supported by the stackci local "
                      f"workspace; only WORKSPACE files can run")
    upstream = {str(k): dict(v or {}) for k, v in upstream.items()}

    if kind == "spark_python_task":
        ws_path = _required_str(settings, "python_file", task_key, kind)
        local = _resolve_file(resolve_path, ws_path, "Python file")
        params = _string_list(settings.get("parameters"), task_key, f"{kind}.parameters")
        plan = _Plan({"kind": "python_file", "local_path": str(local), "parameters": params}, cwd=local.parent)
    elif kind == "notebook_task":
        plan = _plan_notebook(settings, task_key, resolve_path, job_parameters, upstream)
    else:
        plan = _plan_wheel(settings, task_key, job_parameters)
    _plan_libraries(task, task_key, resolve_path, plan)
    return plan


def _plan_notebook(settings: dict, task_key: str, resolve_path, job_parameters: dict, upstream: dict) -> _Plan:
    ws_path = _required_str(settings, "notebook_path", task_key, "notebook_task")
    local = _resolve_file(resolve_path, ws_path, "notebook")
    text = _read_text(local, ws_path)
    if text.lstrip().startswith("{"):
        raise _Reject("INVALID_RUN_CONFIGURATION",
                      f"Notebook {ws_path} is not in source format (Jupyter notebooks are not supported by the "
                      f"stackci local workspace; export it as a source-format .py notebook)")
    base = settings.get("base_parameters") or {}
    if not isinstance(base, dict):
        raise _Reject("INVALID_RUN_CONFIGURATION", f"Task {task_key}: notebook_task.base_parameters must be an object")
    widgets = {str(k): _param_str(v) for k, v in base.items()}
    widgets.update({str(k): _param_str(v) for k, v in job_parameters.items()})

    # %run targets are resolved here (the child cannot call resolve_path); missing ones fail when reached.
    notebooks: dict[str, str] = {_runtime.canonical_ws(ws_path): str(local)}
    needs_pip = _runtime.has_pip(text)
    pending = [(ws_path, text, 0)]
    while pending:
        current, current_text, depth = pending.pop()
        if depth >= 16:
            continue
        for target in _runtime.run_targets(current_text):
            target_ws = target if target.startswith("/") else posixpath.normpath(
                posixpath.join(posixpath.dirname(current), target))
            canon = _runtime.canonical_ws(target_ws)
            if canon in notebooks:
                continue
            try:
                target_local = Path(resolve_path(target_ws))
            except Exception:  # noqa: BLE001 - reported by the child when the %run cell is reached
                continue
            if not target_local.is_file():
                continue
            notebooks[canon] = str(target_local)
            try:
                target_text = target_local.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            needs_pip = needs_pip or _runtime.has_pip(target_text)
            pending.append((target_ws, target_text, depth + 1))

    spec = {
        "kind": "notebook",
        "notebook_path": ws_path,
        "local_path": str(local),
        "widgets": widgets,
        "upstream_values": upstream,
        "notebooks": notebooks,
        "path_map": [_path_map(ws_path, local)],
    }
    return _Plan(spec, cwd=local.parent, needs_env=needs_pip)


def _plan_wheel(settings: dict, task_key: str, job_parameters: dict) -> _Plan:
    package = _required_str(settings, "package_name", task_key, "python_wheel_task")
    entry = _required_str(settings, "entry_point", task_key, "python_wheel_task")
    positional = settings.get("parameters")
    named = settings.get("named_parameters")
    if positional and named:
        raise _Reject("INVALID_RUN_CONFIGURATION",
                      f"Task {task_key}: python_wheel_task takes parameters or named_parameters, not both")
    if named is not None:
        if not isinstance(named, dict):
            raise _Reject("INVALID_RUN_CONFIGURATION",
                          f"Task {task_key}: python_wheel_task.named_parameters must be an object")
        merged = {str(k): _param_str(v) for k, v in named.items()}
        # job parameters are pushed down to tasks that take key-value parameters
        merged.update({str(k): _param_str(v) for k, v in job_parameters.items()})
        args = [f"--{k}={v}" for k, v in merged.items()]
    else:
        args = _string_list(positional, task_key, "python_wheel_task.parameters")
    spec = {"kind": "wheel", "package_name": package, "entry_point": entry, "parameters": args}
    return _Plan(spec, cwd=None)  # runs in work_dir; needs an environment only when it has libraries


def _plan_libraries(task: dict, task_key: str, resolve_path, plan: _Plan) -> None:
    libraries = task.get("libraries") or []
    if not isinstance(libraries, list):
        raise _Reject("INVALID_RUN_CONFIGURATION", f"Task {task_key}: libraries must be a list")
    for lib in libraries:
        if not isinstance(lib, dict) or len(lib) != 1:
            raise _Reject("INVALID_RUN_CONFIGURATION",
                          f"Task {task_key}: each library must name exactly one kind (whl, pypi, requirements, ...)")
        (lib_kind, value), = lib.items()
        if lib_kind == "whl":
            plan.wheels.append(_resolve_library(resolve_path, str(value), "whl"))
        elif lib_kind == "requirements":
            plan.requirements += ["-r", str(_resolve_library(resolve_path, str(value), "requirements"))]
        elif lib_kind == "pypi":
            package = value.get("package") if isinstance(value, dict) else None
            if not package:
                raise _Reject("INVALID_RUN_CONFIGURATION", f"Task {task_key}: pypi library needs a package")
            if isinstance(value, dict) and value.get("repo"):
                plan.requirements += ["--extra-index-url", str(value["repo"])]
            plan.requirements.append(str(package))
        else:
            raise _Reject("LIBRARY_INSTALLATION_ERROR",
                          f"Library installation failed for {lib_kind}: {value!r}: the stackci local workspace can "
                          f"only install Python libraries (whl, pypi, requirements)")

    environment = task.get("environment")
    if isinstance(environment, dict):
        spec = environment.get("spec", environment)
        deps = spec.get("dependencies") or [] if isinstance(spec, dict) else []
        for dep in deps:
            dep = str(dep).strip()
            if dep.startswith("-r ") or dep.startswith("--requirement "):
                path = dep.split(None, 1)[1].strip()
                plan.requirements += ["-r", str(_resolve_library(resolve_path, path, "requirements"))]
            elif dep.startswith("/") or dep.endswith(".whl"):
                local = _resolve_library(resolve_path, dep, "dependency")
                (plan.wheels if local.name.endswith(".whl") else plan.requirements).append(local)
            elif dep:
                plan.requirements.append(dep)
    elif task.get("environment_key"):
        log.debug("task %s: environment %s not inlined; running with the default interpreter",
                  task_key, task.get("environment_key"))


def _resolve_library(resolve_path, path: str, what: str) -> Path:
    try:
        local = Path(resolve_path(path))
    except Exception as exc:  # noqa: BLE001
        raise _Reject("LIBRARY_INSTALLATION_ERROR",
                      f"Library installation failed for {what}: {path}: the file does not exist or cannot be read "
                      f"by the local workspace ({exc})") from None
    if not local.is_file():
        raise _Reject("LIBRARY_INSTALLATION_ERROR",
                      f"Library installation failed for {what}: {path}: the file does not exist")
    return local


def _resolve_file(resolve_path, ws_path: str, what: str) -> Path:
    try:
        local = Path(resolve_path(ws_path))
    except Exception as exc:  # noqa: BLE001 - any failure to map the path means the file is not there
        log.debug("resolve_path(%r) failed: %r", ws_path, exc)
        local = None
    if local is None or not local.is_file():
        if what == "notebook":
            message = (f"Unable to access the notebook \"{ws_path}\". Either it does not exist, or it is not a "
                       f"file in the workspace files of this run")
        else:
            message = f"Cannot read the {what} {ws_path}: it does not exist in the workspace files of this run"
        raise _Reject(MISSING_FILE_CODE, message)
    return local


def _read_text(local: Path, ws_path: str) -> str:
    try:
        return local.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Reject("INVALID_RUN_CONFIGURATION", f"Cannot read notebook {ws_path}: {exc}") from None


def _required_str(settings: dict, key: str, task_key: str, kind: str) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Reject("INVALID_RUN_CONFIGURATION", f"Task {task_key}: {kind}.{key} is required")
    return value


def _string_list(value, task_key: str, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Reject("INVALID_RUN_CONFIGURATION", f"Task {task_key}: {what} must be a list of strings")
    return [_param_str(v) for v in value]


def _param_str(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


def _path_map(ws_path: str, local: Path) -> list[str]:
    """Pair the workspace folder and the local folder that hold the same files (longest common suffix)."""
    ws_parts = [p for p in _runtime.canonical_ws(ws_path).split("/") if p]
    local_parts = list(local.resolve().parts)
    n = 0
    while n < len(ws_parts) and n < len(local_parts) - 1 and ws_parts[-1 - n] == local_parts[-1 - n]:
        n += 1
    if n == 0:  # different names: map the notebook's folder to the local folder
        return ["/" + "/".join(ws_parts[:-1]), str(local.resolve().parent)]
    ws_root = "/" + "/".join(ws_parts[: len(ws_parts) - n])
    local_root = str(Path(*local_parts[: len(local_parts) - n]))
    return [ws_root, local_root]


# --------------------------------------------------------------------------- per-task environment

def _prepare_env(plan: _Plan, *, python: str, work_dir: Path, child_env: dict, online: bool,
                 cancel: threading.Event, deadline: float | None):
    """Create ``work_dir/env`` and install the libraries; return its interpreter or a failed outcome."""
    env_dir = work_dir / "env"
    install_log = work_dir / "install.log"
    shutil.rmtree(env_dir, ignore_errors=True)
    steps: list[tuple[str, list[str]]] = []
    probe = ("import json, os, sys\n"
             "from importlib import metadata\n"
             "def have(name):\n"
             "    try:\n"
             "        metadata.distribution(name)\n"
             "        return True\n"
             "    except Exception:\n"
             "        return False\n"
             "print(json.dumps({'version': '%d.%d' % sys.version_info[:2],\n"
             "                  'path': [p for p in sys.path if p and os.path.isdir(p)],\n"
             "                  'installed': [n for n in sys.argv[1:] if have(n)]}))\n")
    wheel_names = [Path(w).name.split("-", 1)[0] for w in plan.wheels]
    try:
        info = json.loads(subprocess.run([python, "-c", probe, *wheel_names], capture_output=True, text=True,
                                         timeout=60, env=child_env, check=True).stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return TaskOutcome("FAILED", "INVALID_RUN_CONFIGURATION",
                           error=f"Cannot start the task's interpreter {python}: {exc}")
    env_python = env_dir / "bin" / "python"
    pip = [str(env_python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--no-warn-script-location"]
    if not online:
        pip.append("--no-index")
    for folder in sorted({str(Path(w).parent) for w in plan.wheels}):
        pip += ["--find-links", folder]
    steps.append(("create the task environment",
                  [python, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)]))
    shadowed = [w for w, n in zip(plan.wheels, wheel_names) if n in info.get("installed", [])]
    if shadowed:
        # a distribution of the same name is importable from the server's environment: force the wheel
        # itself into the task environment first (pip leaves the outside copy alone), then resolve the
        # dependencies normally
        steps.append(("install wheels", pip + ["--no-deps", "--force-reinstall"] + [str(w) for w in shadowed]))
    if plan.wheels or plan.requirements:
        steps.append(("install libraries", pip + [str(w) for w in plan.wheels] + [str(r) for r in plan.requirements]))

    with open(install_log, "wb") as log_fh:
        for index, (title, cmd) in enumerate(steps):
            log_fh.write(f"$ {' '.join(cmd)}\n".encode())
            log_fh.flush()
            try:
                proc = subprocess.Popen(cmd, cwd=str(work_dir), env=child_env, stdin=subprocess.DEVNULL,
                                        stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                return TaskOutcome("FAILED", "LIBRARY_INSTALLATION_ERROR",
                                   error=f"Library installation failed: cannot {title}: {exc}")
            how = _supervise(proc, cancel, deadline)
            if how == "canceled":
                return _canceled(*_tail(install_log, LOG_TAIL_BYTES), {})
            if how == "timedout":
                return _timed_out(None, *_tail(install_log, LOG_TAIL_BYTES), {})
            if proc.returncode != 0:
                logs, truncated = _tail(install_log, LOG_TAIL_BYTES)
                detail = _last_error_line(logs)
                hint = ("" if online else "; the local workspace installs offline (--no-index): dependencies must "
                        "already be importable by the server's Python or be given as wheel files "
                        "(set STACKCI_WORKSPACE_PIP_ONLINE=1 to allow an index)")
                return TaskOutcome("FAILED", "LIBRARY_INSTALLATION_ERROR",
                                   error=f"Library installation failed: {title}: {detail}{hint}",
                                   error_trace=logs[-65536:], logs=logs, logs_truncated=truncated)
            if index == 0:
                purelib = env_dir / "lib" / f"python{info['version']}" / "site-packages"
                purelib.mkdir(parents=True, exist_ok=True)
                (purelib / "_stackci_base_env.pth").write_text("\n".join(info["path"]) + "\n", encoding="utf-8")
    child_env["VIRTUAL_ENV"] = str(env_dir)
    child_env["PATH"] = str(env_dir / "bin") + os.pathsep + child_env.get("PATH", "")
    return str(env_python)


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("$ ")]
    for ln in reversed(lines):
        if ln.startswith("ERROR:"):
            return ln
    return lines[-1] if lines else "no output"


# --------------------------------------------------------------------------- supervision

def _supervise(proc: subprocess.Popen, cancel: threading.Event, deadline: float | None) -> str:
    """Wait for ``proc``; kill its process group on cancel or timeout. Returns exited|canceled|timedout.

    On Linux the exit is awaited on a pidfd (one wake-up per POLL_SECONDS to look at the cancel event
    and the deadline); ``Popen.wait(timeout)`` instead sleeps in growing steps from 0.5 ms on every
    call, which with tens of tasks at once costs thousands of wake-ups a second.
    """
    pidfd = _pidfd(proc.pid)
    try:
        while True:
            wait = POLL_SECONDS
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            if pidfd is not None:
                try:
                    select.select([pidfd], [], [], wait)
                except InterruptedError:
                    pass
                exited = proc.poll() is not None
            else:
                try:
                    proc.wait(timeout=wait)
                    exited = True
                except subprocess.TimeoutExpired:
                    exited = False
            if exited:
                _kill_group(proc.pid, signal.SIGKILL)  # whatever the task left running
                return "exited"
            if cancel.is_set():
                _kill_tree(proc)
                return "canceled"
            if deadline is not None and time.monotonic() >= deadline:
                _kill_tree(proc)
                return "timedout"
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:  # kernel without pidfd (before 5.3), or seccomp
        return None


def _kill_tree(proc: subprocess.Popen) -> None:
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- outcome

def _outcome(how: str, returncode: int, log_path: Path, result_path: Path, timeout, *,
             is_notebook: bool) -> TaskOutcome:
    logs, truncated = _tail(log_path, LOG_TAIL_BYTES)
    result = _read_result(result_path)
    values = result.get("task_values") if isinstance(result.get("task_values"), dict) else {}
    if how == "canceled":
        return _canceled(logs, truncated, values)
    if how == "timedout":
        return _timed_out(timeout, logs, truncated, values)
    if returncode == 0 and result.get("status") != "failed":
        notebook_result, nb_truncated = None, False
        if is_notebook and isinstance(result.get("notebook_result"), str):
            notebook_result, nb_truncated = _head(result["notebook_result"], NOTEBOOK_RESULT_MAX_BYTES)
        return TaskOutcome("SUCCESS", "SUCCESS", logs=logs, logs_truncated=truncated,
                           notebook_result=notebook_result, notebook_truncated=nb_truncated, task_values=values)
    error = result.get("error")
    trace = result.get("error_trace")
    if isinstance(trace, str) and len(trace) > ERROR_TRACE_MAX_CHARS:
        trace = "...\n" + trace[-ERROR_TRACE_MAX_CHARS:]
    if not error:
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = str(-returncode)
            error = f"The task's process was killed by signal {name}"
        else:
            error = f"The task's process exited with code {returncode}"
    code = result.get("error_code") if result.get("error_code") in ("INVALID_RUN_CONFIGURATION",) else None
    return TaskOutcome("FAILED", code or "RUN_EXECUTION_ERROR", error=error, error_trace=trace, logs=logs,
                       logs_truncated=truncated, task_values=values)


def _canceled(logs: str, truncated: bool, values: dict) -> TaskOutcome:
    return TaskOutcome("CANCELED", "USER_CANCELED", error="The task run was canceled", logs=logs,
                       logs_truncated=truncated, task_values=values)


def _timed_out(timeout, logs: str, truncated: bool, values: dict) -> TaskOutcome:
    after = f" after {timeout:g} seconds" if timeout else ""
    # TerminationCodeCode has no TIMEOUT; CANCELED is documented as "canceled by the platform, for
    # example if the maximum run duration was exceeded".
    return TaskOutcome("TIMEDOUT", "CANCELED", error=f"The task run timed out{after}", logs=logs,
                       logs_truncated=truncated, task_values=values)


def _read_result(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _tail(path: Path, limit: int) -> tuple[str, bool]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if size > limit:
                fh.seek(size - limit)
            data = fh.read(limit)
    except OSError:
        return "", False
    truncated = size > limit
    if truncated:  # do not start in the middle of a UTF-8 sequence
        start = 0
        while start < min(4, len(data)) and (data[start] & 0xC0) == 0x80:
            start += 1
        data = data[start:]
    return data.decode("utf-8", errors="replace"), truncated


def _head(text: str, limit: int) -> tuple[str, bool]:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode("utf-8", errors="ignore"), True

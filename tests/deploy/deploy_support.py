"""Fixtures for deploy tests: a local workspace per test, a copy of the example project
(or a small generated bundle), the CLI in-process or as a subprocess, and views of what
the workspace holds, read back through databricks-sdk."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workspace_views import tree  # noqa: F401 - re-exported to the tests of this folder

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "project"
USER = "local-user@stackci.local"
NOTEBOOK = "# Databricks notebook source\n"


@pytest.fixture
def env(ws):
    return {"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": ws.token, "DATABRICKS_AUTH_TYPE": "pat",
            "STACKCI_HOST": ws.url}


@pytest.fixture
def project(tmp_path):
    """A copy of examples/project outside any git repository (the tests edit it)."""
    root = tmp_path / "project"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".databricks"))
    return root


@pytest.fixture
def deploy(run_cli, env, project):
    """``stackci <command> -t TARGET --project <copy>`` in-process, as a GitHub step."""
    def run(*args, command="deploy", target="staging", root=None, extra_env=None, platform="github"):
        argv = [command, "-t", target, "--project", str(root or project), *args]
        return run_cli(argv, env={**env, **(extra_env or {})}, platform=platform)
    return run


def write_bundle(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


SMALL_BUNDLE = {
    "databricks.yml": """
        bundle:
          name: small
        include:
          - resources/*.yml
        variables:
          greeting:
            default: hello
        targets:
          staging:
            default: true
            workspace:
              host: https://adb-2222222222222222.12.azuredatabricks.net
    """,
    "resources/jobs.yml": """
        resources:
          experiments:
            exp:
              name: /Shared/small-${bundle.target}-exp
          jobs:
            a:
              name: small-a
              tasks:
                - task_key: main
                  notebook_task:
                    notebook_path: ../src/nb_a.py
                    base_parameters:
                      greeting: ${var.greeting}
            b:
              name: small-b
              tasks:
                - task_key: main
                  spark_python_task:
                    python_file: ../src/tool.py
            c:
              name: small-c
              tasks:
                - task_key: call_a
                  run_job_task:
                    job_id: ${resources.jobs.a.id}
    """,
    "src/nb_a.py": NOTEBOOK + "print('a')\n",
    "src/nb_b.py": NOTEBOOK + "print('b')\n",
    "src/tool.py": "print('tool')\n",
    "src/util.py": "X = 1\n",
    "README.md": "small bundle\n",
}


@pytest.fixture
def small(tmp_path):
    return write_bundle(tmp_path / "small", SMALL_BUNDLE)


# --------------------------------------------------------------------------- workspace views
def jobs_by_name(w) -> dict[str, list]:
    """Every job in the workspace: name → [full job], read through the SDK."""
    out: dict[str, list] = {}
    for job in w.jobs.list():
        full = w.jobs.get(job.job_id)
        out.setdefault(full.settings.name, []).append(full)
    return out


def remote_text(w, path: str) -> str:
    from databricks.sdk.service.workspace import ExportFormat

    return base64.b64decode(w.workspace.export(path, format=ExportFormat.SOURCE).content).decode()


def read_state(w, root_path: str) -> dict | None:
    from databricks.sdk import errors
    try:
        return json.loads(remote_text(w, f"{root_path}/state/deployment.json"))
    except (errors.NotFound, errors.ResourceDoesNotExist):
        return None


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class RequestCounter:
    """Counts the /api/ requests the local workspace answers (server side), through its fault
    injector: a plan whose only fault is a zero-millisecond delay that practically never fires,
    so ``matched`` counts every request whose path matches ``path_regex``."""

    def __init__(self, ws) -> None:
        self.ws = ws

    def start(self, path_regex: str = r"^/api/") -> None:
        self.ws.set_faults({"rate": 1e-12, "kinds": ["latency"], "latency_ms": 0, "seed": 1,
                            "path_regex": path_regex})

    @property
    def count(self) -> int:
        return self.ws.faults.status()["matched"]

    def stop(self) -> int:
        n = self.count
        self.ws.set_faults(None)
        return n


@pytest.fixture
def requests_counter(ws):
    return RequestCounter(ws)


def cli_subprocess(args: list[str], env: dict, **kwargs) -> subprocess.Popen:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8"}
    return subprocess.Popen([sys.executable, "-m", "stackci", *args], env={**base, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)

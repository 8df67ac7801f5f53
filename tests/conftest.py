from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grammar import parse_azure_log, parse_github_env_file, parse_github_log  # noqa: E402


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    outputs: dict
    summary: str
    commands: list

    def errors(self):
        return [c for c in self.commands if c.name == "error"]


@pytest.fixture
def run_cli(tmp_path, capsys):
    """Run ``stackci`` in-process as a GitHub Actions step would, and read what it left."""
    from stackci.__main__ import main
    from stackci.ci import AzurePlatform, GitHubPlatform, LocalPlatform
    from stackci.context import App

    def run(args, *, platform="github", env=None, cwd=None):
        out_file, summary_file = tmp_path / "github_output", tmp_path / "step_summary"
        for f in (out_file, summary_file):
            f.write_text("")
        environ = dict(os.environ)
        for key in ("GITHUB_ACTIONS", "TF_BUILD", "RUNNER_TEMP", "AGENT_TEMPDIRECTORY", "GITHUB_WORKSPACE"):
            environ.pop(key, None)
        if platform == "github":
            environ.update(GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(out_file),
                           GITHUB_STEP_SUMMARY=str(summary_file), RUNNER_TEMP=str(tmp_path / "runner-temp"))
            plat = GitHubPlatform(environ)
        elif platform == "azure":
            environ.update(TF_BUILD="True", AGENT_TEMPDIRECTORY=str(tmp_path / "agent-temp"))
            plat = AzurePlatform(environ)
        else:
            plat = LocalPlatform(environ)
        environ.update(env or {})
        plat.environ = environ
        app = App(platform=plat, environ=environ)
        old, saved = os.getcwd(), dict(os.environ)
        os.environ.clear()
        os.environ.update(environ)   # click reads STACKCI_* from the process environment
        if cwd:
            os.chdir(cwd)
        try:
            code = main(list(args), app=app)
        finally:
            os.chdir(old)
            os.environ.clear()
            os.environ.update(saved)
        captured = capsys.readouterr()
        if platform == "github":
            outputs = parse_github_env_file(open(out_file, newline="").read())
            commands = parse_github_log(captured.out + "\n" + captured.err)
            summary = summary_file.read_text()
        elif platform == "azure":
            commands = parse_azure_log(captured.out + "\n" + captured.err)
            outputs = {c.properties["variable"]: c.data for c in commands if c.name == "task.setvariable"}
            uploads = [c.data for c in commands if c.name == "task.uploadsummary"]
            summary = "".join(Path(u).read_text() for u in uploads)
        else:
            outputs, commands, summary = {}, [], ""
        return CliResult(code, captured.out, captured.err, outputs, summary, commands)

    return run


@pytest.fixture
def ws(tmp_path):
    """A local workspace of its own for the test (folders may override it, e.g. with OAuth)."""
    from stackci.workspace import LocalWorkspace

    with LocalWorkspace(tmp_path / "data") as server:
        yield server


@pytest.fixture
def w(ws):
    """databricks-sdk on ``ws``."""
    from workspace_views import sdk_client

    return sdk_client(ws)


@pytest.fixture
def make_project(tmp_path):
    """A tiny pytest project; ``files`` maps relative paths to contents."""
    def make(files: dict[str, str], name="proj") -> Path:
        root = tmp_path / name
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        root.mkdir(exist_ok=True)
        return root
    return make

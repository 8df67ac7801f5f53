"""The release flow as GitHub runs it, under act: examples/github/workflows/release.yml cuts the
release (version, branch and tag pushed to a bare origin, the GitHub Release, the dispatch of
cd-prod.yml), then cd-prod.yml runs on the dispatched ref and deploys prod to a local workspace
and smoke-runs a job. GitHub's REST endpoints are a loopback fake that records every call."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from e2e_support import CHECKOUT, ROOT, SETUP_PYTHON, ActRun, _act

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "project"
WORKFLOWS = ROOT / "examples" / "github" / "workflows"
TOKEN = "ghs_loopbackReleaseFlowToken0000000001"
REPOSITORY = "acme/churn"


# --------------------------------------------------------------------------- a loopback GitHub
@dataclass
class FakeGitHub:
    """Repository, releases and workflow dispatch, answered as GitHub does (404 for the rest)."""

    url: str = ""
    releases: dict[str, dict] = field(default_factory=dict)       # tag -> release
    dispatches: list[tuple[str, dict]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def answer(self, method: str, path: str, authorization: str, body: dict | None):
        self.calls.append((method, path))
        if authorization != f"Bearer {TOKEN}":
            return 401, {"message": "Bad credentials"}
        repo = f"/repos/{REPOSITORY}"
        if method == "GET" and path == repo:       # an installation token: no permissions key
            return 200, {"full_name": REPOSITORY, "default_branch": "main", "private": True}
        m = re.fullmatch(rf"{repo}/releases/tags/(.+)", path)
        if method == "GET" and m:
            release = self.releases.get(unquote(m.group(1)))
            return (200, release) if release else (404, {"message": "Not Found"})
        if method == "POST" and path == f"{repo}/releases":
            if body["tag_name"] in self.releases:
                return 422, {"message": "Validation Failed", "errors": [{"code": "already_exists"}]}
            release = {"id": 7001 + len(self.releases), "tag_name": body["tag_name"], "name": body["name"],
                       "body": body["body"], "prerelease": body["prerelease"], "draft": body["draft"],
                       "html_url": f"https://github.com/{REPOSITORY}/releases/tag/{body['tag_name']}"}
            self.releases[body["tag_name"]] = release
            return 201, release
        m = re.fullmatch(rf"{repo}/actions/workflows/([^/]+)/dispatches", path)
        if method == "POST" and m:
            self.dispatches.append((unquote(m.group(1)), body))
            return 204, None
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}

    def __enter__(self) -> "FakeGitHub":
        fake, lock = self, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with lock:
                    status, doc = fake.answer(self.command, urlsplit(self.path).path,
                                              self.headers.get("Authorization", ""), json.loads(raw) if raw else None)
                data = b"" if doc is None else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _serve

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- repositories and act
def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=dev@example.invalid", "-c", "user.name=Dev", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repos(tmp_path):
    """A bare origin holding the project and its workflows on main, and a developer clone."""
    origin, dev = tmp_path / "origin.git", tmp_path / "dev"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    shutil.copytree(EXAMPLE, dev, ignore=shutil.ignore_patterns(".stackci", "__pycache__", ".pytest_cache"))
    for name in ("release.yml", "cd-prod.yml"):
        (dev / ".github" / "workflows").mkdir(parents=True, exist_ok=True)
        shutil.copy2(WORKFLOWS / name, dev / ".github" / "workflows" / name)
    git(dev, "init", "-q", "-b", "main")
    git(dev, "add", "-A")
    git(dev, "commit", "-qm", "feat: churn model project")
    git(dev, "commit", "-q", "--allow-empty", "-m", "fix: validation threshold")
    git(dev, "remote", "add", "origin", str(origin))
    git(dev, "push", "-q", "origin", "main")
    return origin, dev


def run_act(act_env, tmp_path, cwd: Path, workflow: str, event: str, payload: dict, *, checkout_from: Path,
            env: dict, secrets: dict, variables: dict | None = None) -> ActRun:
    """act in host mode in ``cwd`` (its branch is github.ref); the checkout stand-in clones
    ``checkout_from`` (a bare origin: the default branch; a clone: its current branch)."""
    event_file = tmp_path / f"event-{workflow}.json"
    event_file.write_text(json.dumps(payload))
    argv = [_act(), event, "-W", str(cwd / ".github" / "workflows" / workflow), "-e", str(event_file),
            "-P", "ubuntu-latest=-self-hosted", "--no-cache-server", "--action-offline-mode",
            "--action-cache-path", str(tmp_path / "act-cache"),
            "--local-repository", f"OWNER/stackci@v1={act_env['lib']}",
            "--local-repository", f"{SETUP_PYTHON}={act_env['stub']}",
            "--local-repository", f"{CHECKOUT}={act_env['checkout']}",
            "--env", f"STACKCI_TEST_REPO={checkout_from}",
            "--env", f"STACKCI_TOOLKIT_DIR={act_env['toolkit']}",
            "--env", f"STACKCI_TEST_PYTHON_BIN={act_env['python_bin']}"]
    for name, value in env.items():
        argv += ["--env", f"{name}={value}"]
    for name, value in secrets.items():
        argv += ["-s", f"{name}={value}"]
    for name, value in (variables or {}).items():
        argv += ["--var", f"{name}={value}"]
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("GITHUB_", "RUNNER_", "STACKCI_", "DATABRICKS_", "BUILD_", "SYSTEM_"))}
    clean.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")   # no identity: cut-release sets the bot's
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=clean)
    return ActRun(proc.returncode, proc.stdout + proc.stderr, tmp_path / "act-cache")




def test_release_then_cd_prod_cuts_publishes_dispatches_and_deploys(act_env, tmp_path, repos, ws):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    origin, dev = repos
    main = git(dev, "rev-parse", "HEAD")
    with FakeGitHub() as github:
        env = {"GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": REPOSITORY, "STACKCI_HOST": ws.url}
        secrets = {"GITHUB_TOKEN": TOKEN, "DATABRICKS_TOKEN": ws.token}

        # Actions > Release > Run workflow on main, bump minor
        released = run_act(act_env, tmp_path, dev, "release.yml", "workflow_dispatch",
                           {"ref": "refs/heads/main", "inputs": {"bump": "minor", "prerelease": ""}},
                           checkout_from=origin, env=env, secrets=secrets)
        assert released.code == 0 and released.job_succeeded, released.log[-5000:]
        assert "Run Main OWNER/stackci/actions/cut-release@v1" in released.log
        out = released.step_outputs()
        assert (out["version"], out["tag"], out["branch"], out["sha"]) == ("0.1.0", "v0.1.0", "release/v0.1.0", main)
        assert out["release-url"] == f"https://github.com/{REPOSITORY}/releases/tag/v0.1.0"
        assert f"released 0.1.0 as v0.1.0 on release/v0.1.0 - {out['release-url']}" in released.log
        assert TOKEN not in released.log

        # the bare origin got the branch and the annotated tag at main, never a force-push
        assert git(origin, "rev-parse", "refs/heads/release/v0.1.0") == main
        assert git(origin, "rev-parse", "refs/tags/v0.1.0^{commit}") == main
        assert git(origin, "cat-file", "-t", "refs/tags/v0.1.0") == "tag"
        assert git(origin, "rev-parse", "refs/heads/main") == main
        # the GitHub Release carries the notes, grouped by conventional-commit type
        release = github.releases["v0.1.0"]
        assert release["name"] == "v0.1.0" and release["prerelease"] is False
        notes = release["body"]
        assert notes.index("### Features") < notes.index("churn model project") < notes.index("### Bug fixes") \
            < notes.index("validation threshold"), notes
        # and cd-prod.yml was dispatched on the release branch (GITHUB_TOKEN pushes start no workflow)
        assert github.dispatches == [("cd-prod.yml", {"ref": "release/v0.1.0"})]
        repo = f"/repos/{REPOSITORY}"
        assert github.calls == [("GET", repo), ("GET", f"{repo}/releases/tags/v0.1.0"), ("POST", f"{repo}/releases"),
                                ("POST", f"{repo}/actions/workflows/cd-prod.yml/dispatches")]

        # GitHub runs the dispatched workflow on that ref: check it out as the runner would
        git(dev, "fetch", "-q", "--tags", "origin")
        git(dev, "checkout", "-q", "-b", "release/v0.1.0", "origin/release/v0.1.0")
        deployed = run_act(act_env, tmp_path, dev, "cd-prod.yml", "workflow_dispatch",
                           {"ref": "refs/heads/release/v0.1.0", "inputs": {}}, checkout_from=dev,
                           env=env, secrets=secrets, variables={"PROD_SMOKE_JOB": "model_training_job"})
        assert deployed.code == 0 and deployed.job_succeeded, deployed.log[-5000:]
        assert "Run Main Smoke test" in deployed.log
        assert ws.token not in deployed.log

    out = deployed.step_outputs()
    assert (out["created"], out["changed"], out["deleted"]) == ("4", "0", "0")
    assert out["result"] == "success"
    w = WorkspaceClient(config=Config(host=ws.url, token=ws.token, auth_type="pat"))
    jobs = {j.settings.name: w.jobs.get(j.job_id) for j in w.jobs.list()}
    assert sorted(jobs) == ["prod-churn_model-batch-inference-job", "prod-churn_model-model-training-job"]
    training = jobs["prod-churn_model-model-training-job"]
    assert training.settings.tags["stackci-version-tag"] == "v0.1.0", "the release tag is in the deployment record"
    assert training.settings.tags["stackci-branch"] == "release/v0.1.0"
    assert training.settings.tags["stackci-commit"] == main
    [run] = w.jobs.list_runs(job_id=training.job_id)
    assert run.state.result_state.value == "SUCCESS" and str(run.run_id) == out["run-id"]


def test_release_refuses_to_run_from_another_branch(act_env, tmp_path, repos, ws):
    """Run from a feature branch, the release job fails at once and says why; nothing is cut."""
    origin, dev = repos
    git(dev, "checkout", "-q", "-b", "feature")
    with FakeGitHub() as github:
        run = run_act(act_env, tmp_path, dev, "release.yml", "workflow_dispatch",
                      {"ref": "refs/heads/feature", "inputs": {"bump": "minor", "prerelease": ""}},
                      checkout_from=dev, env={"GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": REPOSITORY},
                      secrets={"GITHUB_TOKEN": TOKEN})
        assert run.code != 0 and not run.job_succeeded, run.log[-3000:]
        assert [e.data for e in run.annotations()] == [
            "releases are cut from main; run this workflow with 'Use workflow from: main'"]
        assert "Main OWNER/stackci/actions/cut-release@v1" not in run.log
        assert github.calls == [] and github.dispatches == []
    assert "refs/heads/release/v0.1.0" not in git(origin, "for-each-ref", "--format=%(refname)")


def test_a_prerelease_is_cut_but_not_dispatched_to_prod(act_env, tmp_path, repos):
    origin, dev = repos
    main = git(dev, "rev-parse", "HEAD")
    with FakeGitHub() as github:
        run = run_act(act_env, tmp_path, dev, "release.yml", "workflow_dispatch",
                      {"ref": "refs/heads/main", "inputs": {"bump": "minor", "prerelease": "rc"}},
                      checkout_from=origin, env={"GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": REPOSITORY},
                      secrets={"GITHUB_TOKEN": TOKEN})
        assert run.code == 0 and run.job_succeeded, run.log[-5000:]
        out = run.step_outputs()
        assert (out["version"], out["branch"], out["tag"]) == ("0.1.0-rc.1", "release/v0.1.0-rc.1", "v0.1.0-rc.1")
        assert github.releases["v0.1.0-rc.1"]["prerelease"] is True
        assert github.dispatches == [], "a prerelease does not start the prod deploy"
        assert ("POST", f"/repos/{REPOSITORY}/actions/workflows/cd-prod.yml/dispatches") not in github.calls
    assert git(origin, "rev-parse", "refs/heads/release/v0.1.0-rc.1") == main

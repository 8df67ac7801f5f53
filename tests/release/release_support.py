"""Real git repositories: a bare ``origin`` and a clone, both in tmp_path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

IDENTITY = ["-c", "user.name=Dev", "-c", "user.email=dev@example.invalid"]


def git(cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *IDENTITY, *args], cwd=cwd, capture_output=True, text=True, env=_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args}: {proc.stderr}")
    return proc.stdout.strip()


def _env():
    env = dict(os.environ)
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    return env


class Repo:
    def __init__(self, root: Path, origin: Path) -> None:
        self.root, self.origin = root, origin

    def commit(self, message: str, name: str | None = None) -> str:
        path = self.root / (name or f"f{len(list(self.root.glob('f*')))}.txt")
        path.write_text(message + "\n")
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", message)
        return self.head()

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD")

    def push(self, *refs: str) -> None:
        git(self.root, "push", "-q", "origin", *(refs or ("HEAD:refs/heads/main",)))

    def remote_refs(self) -> dict[str, str]:
        """refs on origin → commit (annotated tags peeled)."""
        out = git(self.origin, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)")
        refs = {}
        for line in out.splitlines():
            parts = line.split()
            refs[parts[0]] = parts[2] if len(parts) > 2 else parts[1]
        return refs

    def tag_message(self, tag: str) -> str:
        return git(self.origin, "tag", "-l", "--format=%(contents)", tag)

    def tag(self, name: str, rev: str = "HEAD", push: bool = True) -> None:
        git(self.root, "tag", "-a", "-m", name, name, rev)
        if push:
            git(self.root, "push", "-q", "origin", f"refs/tags/{name}")


@pytest.fixture
def repo(tmp_path) -> Repo:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(origin), str(work))
    git(work, "checkout", "-q", "-b", "main")
    r = Repo(work, origin)
    r.commit("initial commit")
    r.push()
    git(work, "branch", "-q", "--set-upstream-to=origin/main")
    return r


@pytest.fixture
def release(run_cli, repo, tmp_path):
    """Run ``stackci cut-release`` in the clone (GitHub platform for outputs, git-only hosting)."""
    base_env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}

    def run(*args: str, platform="github", env=None, hosting="none", cwd=None):
        argv = ["cut-release", *args]
        if hosting is not None:
            argv += ["--hosting", hosting]
        return run_cli(argv, platform=platform, env={**base_env, **(env or {})}, cwd=cwd or repo.root)
    return run

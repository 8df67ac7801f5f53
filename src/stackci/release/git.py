"""git through subprocess, with errors that say what to do.

Every command runs with a fixed locale, no pager and no prompt (a CI job must never
wait for a password), and its stderr goes into the error message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError, RunFailed


class GitError(RunFailed):
    title = "stackci: git"


@dataclass(frozen=True)
class RemoteRef:
    name: str          # refs/heads/x, refs/tags/y
    object_id: str     # what the ref points at (a tag object for annotated tags)
    commit: str        # the commit (peeled)


class Git:
    def __init__(self, cwd: Path, environ: Mapping[str, str] | None = None) -> None:
        exe = shutil.which("git")
        if exe is None:
            raise ConfigError("git is not installed", hint="install git (apt-get install git)")
        self.exe = exe
        self.cwd = Path(cwd)
        base = dict(os.environ if environ is None else environ)
        base.update(LC_ALL="C", LANG="C", GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", GIT_ASKPASS="",
                    SSH_ASKPASS="", GIT_SSH_COMMAND=base.get("GIT_SSH_COMMAND") or "ssh -o BatchMode=yes")
        base.pop("GIT_DIR", None)
        self.env = base
        self.identity: list[str] = []

    def run(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.exe, *self.identity, *args], cwd=self.cwd, env=self.env, input=input,
                              capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise GitError(f"git {' '.join(args[:3])} failed: {' '.join(proc.stderr.split())[:500]}")
        return proc

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    def ok(self, *args: str) -> bool:
        return self.run(*args, check=False).returncode == 0

    # -- facts ---------------------------------------------------------------------
    def toplevel(self) -> Path:
        proc = self.run("rev-parse", "--show-toplevel", check=False)
        if proc.returncode != 0:
            raise ConfigError(f"{self.cwd} is not inside a git repository",
                              hint="run in the checkout of your project (or pass --repo)")
        return Path(proc.stdout.strip())

    def is_shallow(self) -> bool:
        return self.out("rev-parse", "--is-shallow-repository") == "true"

    def dirty_files(self) -> list[str]:
        """Tracked files with changes, staged or not (untracked files are ignored: they are not released)."""
        entries = self.run("status", "--porcelain=v1", "-z", "--untracked-files=no").stdout.split("\0")
        files, skip = [], False
        for entry in entries:
            if skip or len(entry) < 4:     # the second path of a rename, or the trailing empty entry
                skip = False
                continue
            files.append(entry[3:])
            skip = entry[0] in "RC"
        return files

    def current_branch(self) -> str | None:
        proc = self.run("symbolic-ref", "-q", "--short", "HEAD", check=False)
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    def resolve(self, ref: str) -> str | None:
        """The commit ``ref`` names, or None."""
        if not ref or ref.startswith("-"):
            return None
        proc = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    def has_commit(self, sha: str) -> bool:
        return self.ok("cat-file", "-e", f"{sha}^{{commit}}")

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.ok("merge-base", "--is-ancestor", older, newer)

    def remote_branches_containing(self, sha: str, remote: str) -> list[str]:
        lines = self.out("branch", "-r", "--contains", sha, "--format=%(refname:short)").splitlines()
        return [b for b in lines if b.startswith(remote + "/")]

    def remote_url(self, remote: str) -> str:
        proc = self.run("remote", "get-url", remote, check=False)
        if proc.returncode != 0:
            known = self.out("remote") or "none"
            raise ConfigError(f"git remote {remote!r} does not exist (remotes: {', '.join(known.split())})",
                              hint="pass --remote with one of them")
        return proc.stdout.strip()

    def local_tags(self) -> dict[str, str]:
        """tag name → commit, for every local tag."""
        out = self.out("for-each-ref", "refs/tags", "--format=%(refname:strip=2) %(objectname) %(*objectname)")
        tags = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                tags[parts[0]] = parts[2] if len(parts) > 2 else parts[1]
        return tags

    def ls_remote(self, remote: str) -> dict[str, RemoteRef]:
        """Branches and tags of ``remote`` (annotated tags peeled), read-only."""
        proc = self.run("ls-remote", "--heads", "--tags", remote, check=False)
        if proc.returncode != 0:
            raise push_error(remote, proc.stderr, reading=True)
        raw: dict[str, str] = {}
        peeled: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            sha, _, name = line.partition("\t")
            if name.endswith("^{}"):
                peeled[name[:-3]] = sha
            elif name:
                raw[name] = sha
        return {name: RemoteRef(name, sha, peeled.get(name, sha)) for name, sha in raw.items()}

    def log(self, rev_range: str) -> list[tuple[str, str, str]]:
        """``(sha, subject, body)`` of the commits in ``rev_range``, newest first, merges excluded."""
        out = self.run("log", "--no-merges", "--format=%H%x1f%s%x1f%b%x1e", rev_range).stdout
        commits = []
        for record in out.split("\x1e"):
            record = record.strip("\n")
            if record:
                sha, subject, body = (record.split("\x1f") + ["", ""])[:3]
                commits.append((sha, subject, body.strip()))
        return commits

    def has_identity(self) -> bool:
        return bool(self.run("config", "user.email", check=False).stdout.strip())

    def push(self, remote: str, refspecs: list[str]) -> None:
        """Push atomically (all refs or none), never forced."""
        proc = self.run("push", "--atomic", "--porcelain", remote, *refspecs, check=False)
        if proc.returncode != 0:
            raise push_error(remote, proc.stderr + proc.stdout)


def push_error(remote: str, stderr: str, reading: bool = False) -> Exception:
    """A failed push or ls-remote, with the likely cause and the fix."""
    from ..hosting.http import AuthenticationFailed, PermissionDenied

    text = " ".join(stderr.split())[:400]
    lower = text.lower()
    verb = "read" if reading else "push to"
    if "403" in lower or "permission to" in lower or "denied" in lower and "permission" in lower:
        return PermissionDenied(f"no permission to {verb} {remote}: {text}",
                                hint="on GitHub give the job permissions: contents: write and keep actions/checkout's "
                                     "persist-credentials (or check out with an App/personal token); on Azure Repos "
                                     "grant the build service Contribute, Create branch and Create tag, and check out "
                                     "with persistCredentials: true")
    if ("could not read username" in lower or "authentication failed" in lower or "401" in lower
            or "terminal prompts disabled" in lower):
        return AuthenticationFailed(f"git could not authenticate to {remote}: {text}",
                                    hint="check out with credentials (actions/checkout persist-credentials: true; "
                                         "Azure checkout persistCredentials: true)")
    if "non-fast-forward" in lower or "fetch first" in lower or "stale info" in lower:
        return GitError(f"{remote} refused the update (not a fast-forward): {text}",
                        hint="the branch moved on the remote; fetch and re-run")
    if "already exists" in lower:
        return GitError(f"{remote} already has one of the refs: {text}",
                        hint="someone cut the same release concurrently; re-run to check it")
    return GitError(f"git could not {verb} {remote}: {text}")

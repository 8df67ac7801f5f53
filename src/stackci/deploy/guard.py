"""Where a deploy comes from (branch, tag, commit, actor, CI run) and the production guard.

The current ref is taken from the CI platform first, because a CI checkout is often
a detached HEAD: GitHub ``GITHUB_REF`` (``refs/heads/…``, ``refs/tags/…``,
``refs/pull/…``), Azure ``BUILD_SOURCEBRANCH`` (same forms); otherwise the git
checkout of the bundle.
"""

from __future__ import annotations

import fnmatch
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .. import __version__
from ..errors import ConfigError


@dataclass(frozen=True)
class Ref:
    kind: str          # "branch" | "tag" | "pull" | "detached" | "unknown"
    name: str          # branch or tag name, PR number, commit
    source: str        # where it was read: GITHUB_REF, BUILD_SOURCEBRANCH, git checkout

    def describe(self) -> str:
        what = {"branch": "branch", "tag": "tag", "pull": "pull request", "detached": "detached HEAD at",
                "unknown": "unknown ref"}[self.kind]
        return f"{what} {self.name!r} (from {self.source})" if self.name else f"{what} (from {self.source})"


def _from_full_ref(full: str, source: str) -> Ref | None:
    if full.startswith("refs/heads/"):
        return Ref("branch", full[len("refs/heads/"):], source)
    if full.startswith("refs/tags/"):
        return Ref("tag", full[len("refs/tags/"):], source)
    if full.startswith("refs/pull/"):
        return Ref("pull", full[len("refs/pull/"):].split("/")[0], source)
    return None


def current_ref(environ: Mapping[str, str], git_info: dict) -> Ref:
    if environ.get("GITHUB_ACTIONS") == "true" and environ.get("GITHUB_REF"):
        ref = _from_full_ref(environ["GITHUB_REF"], "GITHUB_REF")
        if ref is not None:
            return ref
    if environ.get("TF_BUILD", "").lower() == "true" and environ.get("BUILD_SOURCEBRANCH"):
        ref = _from_full_ref(environ["BUILD_SOURCEBRANCH"], "BUILD_SOURCEBRANCH")
        if ref is not None:
            return ref
    branch = git_info.get("actual_branch") or git_info.get("branch")
    if branch:
        return Ref("branch", branch, "git checkout")
    if git_info.get("commit"):
        return Ref("detached", git_info["commit"][:12], "git checkout")
    return Ref("unknown", "", "no CI variables and no git checkout")


def require_branch(patterns: list[str], ref: Ref, target: str) -> None:
    """Refuse unless ``ref`` is a branch matching one of the fnmatch ``patterns``. Patterns given that
    are all empty (``--require-branch ''``) are bad input: they must not turn the guard off silently."""
    given = list(patterns)
    patterns = [p.strip() for p in given if p and p.strip()]
    if given and not patterns:
        raise ConfigError(f"--require-branch is empty (target {target!r}): an empty pattern would turn the branch "
                          "guard off", hint="give the branches that may deploy, e.g. --require-branch 'release/*', or "
                                            "leave the option out")
    if not patterns:
        return
    shown = ", ".join(repr(p) for p in patterns)
    if ref.kind != "branch":
        raise ConfigError(f"refusing to deploy target {target!r} from {ref.describe()}: --require-branch {shown} "
                          "only allows deploys from a matching branch",
                          hint="run the deploy on a push to a matching branch (not a tag, pull request or "
                               "detached checkout)")
    if not any(fnmatch.fnmatchcase(ref.name, p) for p in patterns):
        raise ConfigError(f"refusing to deploy target {target!r} from {ref.describe()}: it does not match "
                          f"--require-branch {shown}",
                          hint="deploy this target from a matching branch, e.g. a release branch, or change "
                               "--require-branch")


def head_tag(root: Path, environ: Mapping[str, str], ref: Ref) -> str | None:
    """The version tag of this deploy: the CI tag ref, else a tag on the checked-out commit."""
    from ..bundle import git as gitinfo

    if ref.kind == "tag":
        return ref.name
    if not environ.get("GIT_DIR") and not gitinfo.may_have_tags(root):
        return None                   # no tag at all (or no checkout): no git process to ask
    try:
        out = subprocess.run(["git", "tag", "--points-at", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    tags = sorted(t.strip() for t in out.stdout.splitlines() if t.strip()) if out.returncode == 0 else []
    versions = [t for t in tags if t[:1] == "v" and t[1:2].isdigit()]
    return (versions or tags or [None])[-1]


def ci_run_url(environ: Mapping[str, str]) -> str | None:
    if environ.get("GITHUB_ACTIONS") == "true" and environ.get("GITHUB_RUN_ID") and environ.get("GITHUB_REPOSITORY"):
        server = environ.get("GITHUB_SERVER_URL") or "https://github.com"
        return f"{server}/{environ['GITHUB_REPOSITORY']}/actions/runs/{environ['GITHUB_RUN_ID']}"
    if environ.get("TF_BUILD", "").lower() == "true" and environ.get("BUILD_BUILDID"):
        base = environ.get("SYSTEM_COLLECTIONURI", "")
        project = environ.get("SYSTEM_TEAMPROJECT", "")
        if base and project:
            return f"{base.rstrip('/')}/{project}/_build/results?buildId={environ['BUILD_BUILDID']}"
    return None


def actor(environ: Mapping[str, str], user_name: str | None) -> str:
    for name in ("GITHUB_ACTOR", "BUILD_REQUESTEDFOREMAIL", "BUILD_REQUESTEDFOR"):
        if environ.get(name):
            return environ[name]
    if user_name:
        return user_name
    import getpass
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"


def deployment_record(bundle, environ: Mapping[str, str], ref: Ref) -> dict:
    git = (bundle.settings.get("bundle") or {}).get("git") or {}
    commit = git.get("commit") or environ.get("GITHUB_SHA") or environ.get("BUILD_SOURCEVERSION")
    now = time.time()
    return {
        "commit": commit,
        "branch": ref.name if ref.kind == "branch" else git.get("branch") or None,
        "ref": ref.describe(),
        "tag": head_tag(bundle.root, environ, ref),
        "actor": actor(environ, bundle.current_user.user_name),
        "user": bundle.current_user.user_name or None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "run_url": ci_run_url(environ),
        "stackci_version": __version__,
    }

"""Isolated copies of a bundle for integration tests: one per pull request and CI run.

A copy lives next to the target's own deployment, ``<root_path>-ci/<id>``, its
resources are named ``[ci <id>] <name>``, tagged as a CI copy with their creation
time, and every schedule and trigger is paused, so two pull requests never touch
each other's jobs or files and ``stackci gc`` can find what a cancelled run left.
"""

from __future__ import annotations

import json
import re
import time
from typing import Mapping

from ..errors import ConfigError

TAG_COPY = "stackci-ci-copy"
TAG_CREATED = "stackci-ci-created"
_SAFE = re.compile(r"[^a-z0-9-]+")


def _clean(text: str) -> str:
    return _SAFE.sub("-", text.lower()).strip("-")[:40]


def _github_pr(environ: Mapping[str, str]) -> str | None:
    ref = environ.get("GITHUB_REF", "")
    m = re.match(r"^refs/pull/(\d+)/", ref)
    if m:
        return m.group(1)
    path = environ.get("GITHUB_EVENT_PATH")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                number = (json.load(fh).get("pull_request") or {}).get("number")
            return str(number) if number else None
        except (OSError, ValueError):
            return None
    return None


def isolation_id(environ: Mapping[str, str], explicit: str | None = None) -> str:
    """``pr<N>-<run>`` for a pull request, ``run<run>`` otherwise; ``--isolation-id`` locally."""
    if explicit:
        value = _clean(explicit)
        if not value:
            raise ConfigError(f"--isolation-id {explicit!r} has no letters or digits",
                              hint="use something like pr-42 or my-branch")
        return value
    if environ.get("GITHUB_ACTIONS") == "true" and environ.get("GITHUB_RUN_ID"):
        run = environ["GITHUB_RUN_ID"] + (f"-{environ['GITHUB_RUN_ATTEMPT']}"
                                          if environ.get("GITHUB_RUN_ATTEMPT", "1") != "1" else "")
        pr = _github_pr(environ)
        return _clean(f"pr{pr}-{run}" if pr else f"run{run}")
    if environ.get("TF_BUILD", "").lower() == "true" and environ.get("BUILD_BUILDID"):
        run = environ["BUILD_BUILDID"] + (f"-{environ['SYSTEM_JOBATTEMPT']}"
                                          if environ.get("SYSTEM_JOBATTEMPT", "1") != "1" else "")
        pr = environ.get("SYSTEM_PULLREQUEST_PULLREQUESTNUMBER") or environ.get("SYSTEM_PULLREQUEST_PULLREQUESTID")
        return _clean(f"pr{pr}-{run}" if pr else f"run{run}")
    raise ConfigError("no isolation id: not in GitHub Actions or Azure Pipelines",
                      hint="pass --isolation-id (e.g. your initials and branch) to name the isolated copy")


def copy_root(target_root_path: str, ident: str) -> str:
    return f"{target_root_path.rstrip('/')}-ci/{ident}"


def overrides(target_root_path: str, ident: str, now: float | None = None) -> dict:
    """Settings layered over the target (``load_bundle(overrides=...)``) for the copy ``ident``."""
    created = str(int(now if now is not None else time.time()))
    return {
        "workspace": {"root_path": copy_root(target_root_path, ident)},
        "presets": {"name_prefix": f"[ci {ident}] ", "trigger_pause_status": "PAUSED",
                    "tags": {TAG_COPY: ident, TAG_CREATED: created}},
    }

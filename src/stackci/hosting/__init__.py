"""Clients for the services that host the repository: GitHub and Azure Repos.

``upsert_pr_comment(environ, marker, markdown)`` keeps one comment per marker on the
current pull request: the first call creates it, later calls (new pushes) update it.
The marker is a hidden HTML comment in the body, so people see only the Markdown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping

from ..errors import ConfigError
from .azure import AzureRepos
from .github import GitHub
from .http import (AlreadyExists, AuthenticationFailed, HostingError, NotFound, PermissionDenied, RateLimited,
                   Transport)

__all__ = ["GitHub", "AzureRepos", "Transport", "HostingError", "AlreadyExists", "NotFound", "PermissionDenied",
           "AuthenticationFailed", "RateLimited", "CommentResult", "upsert_pr_comment", "marker_tag",
           "detect_hosting", "pull_request_number"]

_MARKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")
#: GitHub's limit on a comment body is 65536 characters; Azure's is larger
MAX_BODY = 65000


@dataclass(frozen=True)
class CommentResult:
    platform: str       # "github" or "azure"
    id: int             # comment id (GitHub) or thread id (Azure)
    url: str
    created: bool       # False when an existing comment was updated


def marker_tag(marker: str) -> str:
    if not _MARKER.match(marker or ""):
        raise ConfigError(f"comment marker {marker!r} is not valid",
                          hint="use letters, digits and . _ : / - (e.g. 'plan' or 'plan:prod')")
    return f"<!-- stackci:{marker} -->"


def detect_hosting(environ: Mapping[str, str]) -> str | None:
    """``github`` in GitHub Actions, ``azure`` in Azure Pipelines on an Azure Repos repository, else None."""
    if environ.get("GITHUB_ACTIONS", "").lower() == "true":
        return "github"
    if environ.get("TF_BUILD", "").lower() == "true":
        provider = environ.get("BUILD_REPOSITORY_PROVIDER", "TfsGit")
        return "azure" if provider == "TfsGit" else None
    return None


def pull_request_number(environ: Mapping[str, str]) -> int | None:
    """The pull request this CI job runs for, or None."""
    if environ.get("TF_BUILD", "").lower() == "true":
        value = environ.get("SYSTEM_PULLREQUEST_PULLREQUESTID", "")
        return int(value) if value.isdigit() else None
    path = environ.get("GITHUB_EVENT_PATH")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                event = json.load(fh)
        except (OSError, ValueError):
            event = {}
        for candidate in ((event.get("pull_request") or {}).get("number"), (event.get("issue") or {}).get("number")
                          if (event.get("issue") or {}).get("pull_request") else None):
            if isinstance(candidate, int):
                return candidate
    match = re.match(r"^refs/pull/(\d+)/", environ.get("GITHUB_REF", ""))
    return int(match.group(1)) if match else None


def _body(tag: str, markdown: str) -> str:
    text = markdown.rstrip()
    room = MAX_BODY - len(tag) - 100
    if len(text) > room:
        text = text[:room].rstrip() + f"\n\n… (cut: {len(markdown) - room} more characters; see the job log)"
    return f"{tag}\n{text}\n"


def upsert_pr_comment(platform_env: Mapping[str, str], marker: str, markdown: str, *,
                      pr: int | None = None, token: str | None = None,
                      transport: Transport | None = None) -> CommentResult:
    """Post ``markdown`` on the current pull request as the one comment for ``marker``; update it if it exists.

    ``platform_env`` is the job's environment (``GITHUB_*`` or ``SYSTEM_*``/``BUILD_*``). Raises
    ``ConfigError`` outside a pull request, ``PermissionDenied`` when the token may not comment
    (GitHub: ``pull-requests: write``; Azure: 'Contribute to pull requests').
    """
    tag = marker_tag(marker)
    hosting = detect_hosting(platform_env)
    if hosting is None:
        raise ConfigError("PR comments need GitHub Actions or Azure Pipelines on Azure Repos",
                          hint="run this in a pull-request job, or leave the comment option off")
    number = pr if pr is not None else pull_request_number(platform_env)
    if number is None:
        raise ConfigError("this job does not run for a pull request, so there is nothing to comment on",
                          hint="trigger it with on: pull_request (GitHub) or a PR build validation (Azure)")
    body = _body(tag, markdown)
    if hosting == "github":
        gh = GitHub.from_environ(platform_env, token=token, transport=transport)
        for comment in gh.list_issue_comments(number):
            if tag in (comment.get("body") or ""):
                updated = gh.update_issue_comment(comment["id"], body)
                return CommentResult("github", int(comment["id"]), updated.get("html_url", ""), False)
        created = gh.create_issue_comment(number, body)
        return CommentResult("github", int(created["id"]), created.get("html_url", ""), True)
    az = AzureRepos.from_environ(platform_env, token=token, transport=transport)
    url = az.web_url("pullrequest", str(number))
    for thread in az.list_threads(number):
        if thread.get("isDeleted"):
            continue
        for comment in thread.get("comments") or []:
            if not comment.get("isDeleted") and tag in (comment.get("content") or ""):
                az.update_comment(number, thread["id"], comment["id"], body)
                return CommentResult("azure", int(thread["id"]), f"{url}?discussionId={thread['id']}", False)
    created = az.create_thread(number, body)
    return CommentResult("azure", int(created["id"]), f"{url}?discussionId={created['id']}", True)

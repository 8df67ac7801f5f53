"""Clients for the services that host the repository: GitHub and Azure Repos.

``upsert_pr_comment(environ, marker, markdown)`` keeps one comment per marker on the
current pull request: the first call creates it, later calls (new pushes) update it.
``merge_pr_comment(environ, marker, compose, accepted)`` does the same for a comment that
several jobs write parts of (read, merge, write, read back, retry). The marker is a hidden
HTML comment in the body, so people see only the Markdown.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from ..errors import ConfigError
from .azure import AzureRepos
from .github import GitHub
from .http import (AlreadyExists, AuthenticationFailed, HostingError, NotFound, PermissionDenied, RateLimited,
                   Transport)

__all__ = ["GitHub", "AzureRepos", "Transport", "HostingError", "AlreadyExists", "NotFound", "PermissionDenied",
           "AuthenticationFailed", "RateLimited", "CommentResult", "MergeResult", "upsert_pr_comment",
           "merge_pr_comment", "marker_tag",
           "detect_hosting", "pull_request_number"]

_MARKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")
#: GitHub's limit on a comment body is 65536 characters; Azure's is larger
MAX_BODY = 65000
#: seconds between writing a shared comment and reading it back (merge_pr_comment)
SETTLE_SECONDS = 1.5


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


@dataclass(frozen=True)
class _Item:
    """One comment of ours: ``id`` (GitHub comment id; Azure thread id), ``comment`` (Azure comment id)."""

    id: int
    body: str
    url: str
    comment: int = 0


class _GitHubComments:
    def __init__(self, gh: GitHub, number: int) -> None:
        self.gh, self.number = gh, number
        self.client = gh

    def list(self, tag: str) -> list[_Item]:
        items = [_Item(int(c["id"]), c.get("body") or "", c.get("html_url", ""))
                 for c in self.gh.list_issue_comments(self.number) if tag in (c.get("body") or "")]
        return sorted(items, key=lambda i: i.id)

    def create(self, body: str) -> _Item:
        created = self.gh.create_issue_comment(self.number, body)
        return _Item(int(created["id"]), body, created.get("html_url", ""))

    def update(self, item: _Item, body: str) -> _Item:
        updated = self.gh.update_issue_comment(item.id, body)
        return _Item(item.id, body, updated.get("html_url", "") or item.url)

    def delete(self, item: _Item) -> None:
        self.gh.delete_issue_comment(item.id)


class _AzureThreads:
    def __init__(self, az: AzureRepos, number: int) -> None:
        self.az, self.number = az, number
        self.client = az
        self.base = az.web_url("pullrequest", str(number))

    def _url(self, thread_id: int) -> str:
        return f"{self.base}?discussionId={thread_id}"

    def list(self, tag: str) -> list[_Item]:
        out = []
        for thread in self.az.list_threads(self.number):
            if thread.get("isDeleted"):
                continue
            for comment in thread.get("comments") or []:
                if not comment.get("isDeleted") and tag in (comment.get("content") or ""):
                    out.append(_Item(int(thread["id"]), comment.get("content") or "", self._url(int(thread["id"])),
                                     int(comment["id"])))
                    break
        return sorted(out, key=lambda i: i.id)

    def create(self, body: str) -> _Item:
        created = self.az.create_thread(self.number, body)
        first = (created.get("comments") or [{}])[0]
        return _Item(int(created["id"]), body, self._url(int(created["id"])), int(first.get("id") or 1))

    def update(self, item: _Item, body: str) -> _Item:
        self.az.update_comment(self.number, item.id, item.comment, body)
        return _Item(item.id, body, item.url, item.comment)

    def delete(self, item: _Item) -> None:
        self.az.delete_comment(self.number, item.id, item.comment)


def _comments(platform_env: Mapping[str, str], pr: int | None, token: str | None,
              transport: Transport | None):
    hosting = detect_hosting(platform_env)
    if hosting is None:
        raise ConfigError("PR comments need GitHub Actions or Azure Pipelines on Azure Repos",
                          hint="run this in a pull-request job, or leave the comment option off")
    number = pr if pr is not None else pull_request_number(platform_env)
    if number is None:
        raise ConfigError("this job does not run for a pull request, so there is nothing to comment on",
                          hint="trigger it with on: pull_request (GitHub) or a PR build validation (Azure)")
    if hosting == "github":
        return hosting, _GitHubComments(GitHub.from_environ(platform_env, token=token, transport=transport), number)
    return hosting, _AzureThreads(AzureRepos.from_environ(platform_env, token=token, transport=transport), number)


def upsert_pr_comment(platform_env: Mapping[str, str], marker: str, markdown: str, *,
                      pr: int | None = None, token: str | None = None,
                      transport: Transport | None = None) -> CommentResult:
    """Post ``markdown`` on the current pull request as the one comment for ``marker``; update it if it exists.

    ``platform_env`` is the job's environment (``GITHUB_*`` or ``SYSTEM_*``/``BUILD_*``). Raises
    ``ConfigError`` outside a pull request, ``PermissionDenied`` when the token may not comment
    (GitHub: ``pull-requests: write``; Azure: 'Contribute to pull requests').
    """
    tag = marker_tag(marker)
    hosting, comments = _comments(platform_env, pr, token, transport)
    body = _body(tag, markdown)
    found = comments.list(tag)
    if found:
        item = comments.update(found[0], body)
        return CommentResult(hosting, item.id, item.url, False)
    item = comments.create(body)
    return CommentResult(hosting, item.id, item.url, True)


@dataclass(frozen=True)
class MergeResult(CommentResult):
    #: False when other writers kept dropping our content and the attempts ran out
    complete: bool = True
    attempts: int = 1


def merge_pr_comment(platform_env: Mapping[str, str], marker: str,
                     compose: Callable[[list[str]], str], accepted: Callable[[str], bool], *,
                     pr: int | None = None, token: str | None = None, transport: Transport | None = None,
                     attempts: int = 5, settle: float | None = None, rng: random.Random | None = None) -> MergeResult:
    """Keep one comment for ``marker`` whose text several jobs build together.

    ``compose(bodies)`` returns the new Markdown from the bodies of the comments carrying the marker
    (oldest first; usually one, more when jobs created theirs at the same time); ``accepted(body)``
    says whether a body still holds what this job wrote. The comment is written to the oldest of
    them (created when there is none) and the others are deleted. Issue comments have no
    compare-and-swap, so after ``settle`` seconds (time for a job that read the old text to land
    its write) the comment is read back; when another job's write dropped ours, the read, merge and
    write are repeated, at most ``attempts`` times (``complete`` is False when they ran out).
    """
    tag = marker_tag(marker)
    hosting, comments = _comments(platform_env, pr, token, transport)
    sleep = comments.client.transport.sleep
    rng = rng or random.Random()
    settle = SETTLE_SECONDS if settle is None else settle
    created: set[int] = set()
    item: _Item | None = None
    for attempt in range(1, max(1, attempts) + 1):
        found = comments.list(tag)
        body = _body(tag, compose([f.body for f in found]))
        if not found:
            item = comments.create(body)
            created.add(item.id)
        else:
            item = found[0]
            if item.body != body:
                item = comments.update(item, body)
            for duplicate in found[1:]:
                try:
                    comments.delete(duplicate)
                except NotFound:
                    pass        # another job removed it first
        sleep(settle * (1 + rng.random()) if attempt > 1 else settle)
        now = comments.list(tag)
        if now and accepted(now[0].body):
            return MergeResult(hosting, now[0].id, now[0].url, now[0].id in created, True, attempt)
    assert item is not None
    return MergeResult(hosting, item.id, item.url, item.id in created, False, max(1, attempts))

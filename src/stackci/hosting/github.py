"""GitHub REST v3: PR comments, releases, workflow dispatch, repository permissions.

``GITHUB_API_URL`` points at GitHub Enterprise Server (``https://ghes.example/api/v3``);
the token is ``GITHUB_TOKEN`` or one given explicitly. What each call needs from the
token is part of every permission error, together with the header GitHub sends
(``x-accepted-github-permissions``) naming what it wanted.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

import requests

from .http import (AlreadyExists, AuthenticationFailed, Client, HostingError, NotFound, PermissionDenied,
                   Transport, paginate)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class GitHub(Client):
    service = "GitHub API"

    def __init__(self, repository: str, token: str, *, api_url: str | None = None,
                 transport: Transport | None = None) -> None:
        if not _REPO.match(repository or ""):
            from ..errors import ConfigError
            raise ConfigError(f"GitHub repository {repository!r} is not owner/name",
                              hint="set GITHUB_REPOSITORY (GitHub Actions sets it) or pass the repository")
        if not token:
            raise AuthenticationFailed("no GitHub token",
                                       hint="set GITHUB_TOKEN (env: GITHUB_TOKEN: ${{ github.token }}) "
                                            "or pass a token")
        super().__init__(api_url or DEFAULT_API_URL, {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "stackci",
        }, transport)
        self.repository = repository
        #: what the next call needs, for the permission message
        self._needs = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, token: str | None = None, repository: str | None = None,
                     transport: Transport | None = None) -> "GitHub":
        return cls(repository or environ.get("GITHUB_REPOSITORY", ""),
                   token or environ.get("GITHUB_TOKEN", ""),
                   api_url=environ.get("GITHUB_API_URL") or DEFAULT_API_URL, transport=transport)

    @property
    def repo_path(self) -> str:
        return f"repos/{self.repository}"

    def _call(self, needs: str, method: str, path: str, **kwargs) -> requests.Response:
        self._needs = needs
        return self.request(method, path, **kwargs)

    # -- errors ------------------------------------------------------------------------
    def fail(self, method: str, url: str, response: requests.Response):
        body = self.body(response)
        message = body.get("message", "") if isinstance(body, dict) else ""
        detail = f" ({' '.join(str(message).split())[:200]})" if message else ""
        status = response.status_code
        if status == 401:
            raise AuthenticationFailed(f"GitHub rejected the token (401) for {method} {url}",
                                       hint="pass a valid token: GITHUB_TOKEN: ${{ github.token }}, an App "
                                            "installation token or a fine-grained personal token")
        if status == 403:
            wanted = response.headers.get("x-accepted-github-permissions")
            needs = self._needs or "more permissions"
            raise PermissionDenied(
                f"GitHub refused {method} {url} (403){detail}",
                hint=f"the token needs {needs}" + (f" (GitHub asked for: {wanted})" if wanted else "")
                     + "; set it in the job's permissions: block, or use an App/personal token that has it",
                status=status)
        if status == 404:
            raise NotFound(f"GitHub: {method} {url} not found (404){detail}", status=status,
                           hint=f"check the repository {self.repository}; a token without access to a "
                                f"private repository also sees 404")
        if status == 422:
            errors = body.get("errors", []) if isinstance(body, dict) else []
            codes = [e.get("code") for e in errors if isinstance(e, dict)]
            if "already_exists" in codes:
                raise AlreadyExists(f"GitHub: already exists{detail}", status=status, payload=body)
            raise HostingError(f"GitHub rejected {method} {url} (422){detail}: "
                               + "; ".join(str(e.get("message") or e.get("code")) for e in errors
                                           if isinstance(e, dict)),
                               status=status, payload=body)
        raise HostingError(f"GitHub: {method} {url} answered {status}{detail}", status=status, payload=body)

    # -- repository ---------------------------------------------------------------------
    def repository_info(self) -> dict:
        return self.body(self._call("read access to the repository (contents: read)", "GET", self.repo_path))

    def can_push(self) -> bool | None:
        """True/False from the repository's ``permissions`` (user tokens); None when GitHub does not say
        (installation tokens such as ``GITHUB_TOKEN`` carry no ``permissions`` key)."""
        perms = (self.repository_info() or {}).get("permissions")
        if not isinstance(perms, dict) or "push" not in perms:
            return None
        return bool(perms.get("push") or perms.get("admin") or perms.get("maintain"))

    # -- issue / PR comments ---------------------------------------------------------------
    def list_issue_comments(self, number: int) -> Iterator[dict]:
        self._needs = "pull-requests: read"
        return paginate(self, f"{self.repo_path}/issues/{int(number)}/comments", {"per_page": 100})

    def create_issue_comment(self, number: int, body: str) -> dict:
        return self.body(self._call("pull-requests: write (or issues: write)", "POST",
                                    f"{self.repo_path}/issues/{int(number)}/comments", json={"body": body}))

    def update_issue_comment(self, comment_id: int, body: str) -> dict:
        return self.body(self._call("pull-requests: write (or issues: write)", "PATCH",
                                    f"{self.repo_path}/issues/comments/{int(comment_id)}", json={"body": body}))

    def delete_issue_comment(self, comment_id: int) -> None:
        """204; a comment that is already gone is :class:`NotFound`."""
        self._call("pull-requests: write (or issues: write)", "DELETE",
                   f"{self.repo_path}/issues/comments/{int(comment_id)}")

    # -- releases --------------------------------------------------------------------------
    def get_release_by_tag(self, tag: str) -> dict | None:
        try:
            return self.body(self._call("contents: read", "GET",
                                        f"{self.repo_path}/releases/tags/{requests.utils.quote(tag, safe='')}"))
        except NotFound:
            return None

    def create_release(self, tag: str, *, name: str, body: str, prerelease: bool = False,
                       target: str | None = None, draft: bool = False) -> dict:
        payload: dict[str, Any] = {"tag_name": tag, "name": name, "body": body, "prerelease": prerelease,
                                   "draft": draft}
        if target:
            payload["target_commitish"] = target
        return self.body(self._call("contents: write", "POST", f"{self.repo_path}/releases", json=payload))

    def ensure_release(self, tag: str, **kwargs) -> tuple[dict, bool]:
        """The release for ``tag``, created if missing: ``(release, created)``. A concurrent creation
        (422 already_exists) counts as existing."""
        found = self.get_release_by_tag(tag)
        if found is not None:
            return found, False
        try:
            return self.create_release(tag, **kwargs), True
        except AlreadyExists:
            found = self.get_release_by_tag(tag)
            if found is None:
                raise
            return found, False

    # -- refs --------------------------------------------------------------------------------
    def create_ref(self, ref: str, sha: str) -> dict:
        """``POST /git/refs`` (``refs/heads/x`` or ``refs/tags/x``); 422 already exists → AlreadyExists."""
        try:
            return self.body(self._call("contents: write", "POST", f"{self.repo_path}/git/refs",
                                        json={"ref": ref, "sha": sha}))
        except HostingError as exc:
            # GitHub answers 422 "Reference already exists" without an errors[] code here.
            if exc.status == 422 and not isinstance(exc, AlreadyExists):
                raise AlreadyExists(f"GitHub: {ref} already exists", status=422, payload=exc.payload) from None
            raise

    # -- actions -------------------------------------------------------------------------------
    def dispatch_workflow(self, workflow: str, ref: str, inputs: Mapping[str, str] | None = None) -> None:
        """``workflow_dispatch`` of ``workflow`` (file name such as ``cd-prod.yml``, or id) on ``ref``."""
        path = f"{self.repo_path}/actions/workflows/{requests.utils.quote(str(workflow), safe='')}/dispatches"
        payload: dict[str, Any] = {"ref": ref}
        if inputs:
            payload["inputs"] = dict(inputs)
        try:
            self._call("actions: write", "POST", path, json=payload)
        except NotFound:
            raise NotFound(f"GitHub: no workflow {workflow!r} in {self.repository}", status=404,
                           hint="give the file name under .github/workflows (e.g. cd-prod.yml) of a workflow "
                                "with an on: workflow_dispatch trigger, on the default branch") from None
        except HostingError as exc:
            if exc.status == 422:
                raise HostingError(f"GitHub refused to dispatch {workflow} on {ref} (422): {exc.message}",
                                   status=422,
                                   hint="the workflow needs an on: workflow_dispatch trigger, and its "
                                        "inputs must match") from None
            raise

    def web_url(self, *parts: str) -> str:
        """A page of the repository on the web (github.com, or the GHES host of the API URL)."""
        return "/".join([self.web_root(), self.repository, *parts])

    def web_root(self) -> str:
        if self.base_url.rstrip("/") == DEFAULT_API_URL:
            return "https://github.com"
        return re.sub(r"/api/v3/?$", "", self.base_url)

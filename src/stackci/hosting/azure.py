"""Azure Repos REST 7.1: pull-request threads, refs, annotated tags.

The organisation, project and repository come from the pipeline's variables
(``SYSTEM_COLLECTIONURI``, ``SYSTEM_TEAMPROJECT``, ``BUILD_REPOSITORY_ID``); the token
is the job's ``System.AccessToken``, which a step only sees when it is mapped:
``env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)``. Errors are told apart by their
``typeKey`` and the ref-update ``updateStatus``, never by message text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import requests

from ..errors import ConfigError
from .http import (AlreadyExists, AuthenticationFailed, Client, HostingError, NotFound, PermissionDenied,
                   Transport)

API_VERSION = "7.1"
TAGS_API_VERSION = "7.1-preview.1"
ZERO_SHA = "0" * 40

TOKEN_HINT = ("map the job token into the step: env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)")
BUILD_SERVICE = "the '<project> Build Service (<organization>)' identity"

#: updateStatus values of a refs update that mean "this identity may not do that"
PERMISSION_STATUSES = {
    "createBranchPermissionRequired": "Create branch",
    "createTagPermissionRequired": "Create tag",
    "writePermissionRequired": "Contribute",
    "manageNotePermissionRequired": "Manage notes",
    "forcePushRequired": "Force push (stackci never force-pushes: the ref moved to a commit that is not a "
                         "descendant)",
    "lockedPermissionRequired": "Manage permissions (the branch is locked)",
    "createRepositoryPermissionRequired": "Create repository",
}


@dataclass(frozen=True)
class Ref:
    name: str
    object_id: str
    #: the commit an annotated tag points at (None for branches and lightweight tags)
    peeled: str | None = None

    @property
    def commit(self) -> str:
        return self.peeled or self.object_id


class AzureRepos(Client):
    service = "Azure Repos API"

    def __init__(self, collection_uri: str, project: str, repository: str, token: str, *,
                 transport: Transport | None = None) -> None:
        missing = [name for name, value in (("SYSTEM_COLLECTIONURI", collection_uri),
                                            ("SYSTEM_TEAMPROJECT", project),
                                            ("BUILD_REPOSITORY_ID", repository)) if not value]
        if missing:
            raise ConfigError(f"Azure Repos: {', '.join(missing)} not set",
                              hint="run inside an Azure Pipelines job on an Azure Repos repository")
        if not token:
            raise AuthenticationFailed("Azure Repos: no access token (SYSTEM_ACCESSTOKEN is empty)",
                                       hint=TOKEN_HINT)
        base = f"{collection_uri.rstrip('/')}/{requests.utils.quote(project, safe='')}/_apis/git/repositories/" \
               f"{requests.utils.quote(repository, safe='')}"
        super().__init__(base, {"Authorization": f"Bearer {token}", "Accept": "application/json",
                                "User-Agent": "stackci"}, transport)
        self.collection_uri = collection_uri.rstrip("/")
        self.project = project
        self.repository = repository
        self._needs = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, token: str | None = None,
                     transport: Transport | None = None) -> "AzureRepos":
        return cls(environ.get("SYSTEM_COLLECTIONURI", ""), environ.get("SYSTEM_TEAMPROJECT", ""),
                   environ.get("BUILD_REPOSITORY_ID", ""), token or environ.get("SYSTEM_ACCESSTOKEN", ""),
                   transport=transport)

    def _call(self, needs: str, method: str, path: str, *, api_version: str = API_VERSION,
              params: Mapping | None = None, **kwargs) -> requests.Response:
        self._needs = needs
        return self.request(method, path, params={**(params or {}), "api-version": api_version}, **kwargs)

    def request(self, method, path, *, ok=(200, 201, 204), **kwargs):
        response = super().request(method, path, ok=(*ok, 203), **kwargs)
        # A rejected or missing token gets 203 and the HTML sign-in page instead of 401.
        if response.status_code == 203 or "json" not in response.headers.get("content-type", "json"):
            raise AuthenticationFailed(f"Azure Repos answered {method} {self.url(path)} with a sign-in page "
                                       f"({response.status_code}): the token was not accepted", hint=TOKEN_HINT)
        return response

    def fail(self, method: str, url: str, response: requests.Response):
        body = self.body(response)
        body = body if isinstance(body, dict) else {}
        type_key = body.get("typeKey") or ""
        message = " ".join(str(body.get("message", "")).split())[:300]
        detail = f" ({message})" if message else ""
        status = response.status_code
        if status == 401:
            raise AuthenticationFailed(f"Azure Repos rejected the token (401) for {method} {url}", hint=TOKEN_HINT)
        if status == 403 or type_key in ("GitNeedsPermissionException", "UnauthorizedRequestException"):
            raise PermissionDenied(f"Azure Repos refused {method} {url} ({status}){detail}",
                                   hint=f"grant {BUILD_SERVICE} '{self._needs or 'Contribute'}' on the "
                                        f"repository (Project settings > Repositories > Security)",
                                   status=status)
        if status == 404:
            raise NotFound(f"Azure Repos: {method} {url} not found (404){detail}", status=status,
                           hint="check SYSTEM_COLLECTIONURI, SYSTEM_TEAMPROJECT and BUILD_REPOSITORY_ID")
        if status == 409 or type_key.endswith("AlreadyExistsException"):
            raise AlreadyExists(f"Azure Repos: already exists{detail}", status=status, payload=body)
        raise HostingError(f"Azure Repos: {method} {url} answered {status}{detail}", status=status, payload=body)

    def _list(self, needs: str, path: str, params: Mapping | None = None) -> Iterator[dict]:
        """Items of a list answer (``{"value": [...]}``), following ``x-ms-continuationtoken``."""
        query = dict(params or {})
        for _ in range(100):
            response = self._call(needs, "GET", path, params=query)
            yield from (self.body(response) or {}).get("value") or []
            token = response.headers.get("x-ms-continuationtoken")
            if not token:
                return
            query["continuationToken"] = token

    # -- pull-request threads ---------------------------------------------------------------
    def list_threads(self, pr: int) -> Iterator[dict]:
        return self._list("Read", f"pullRequests/{int(pr)}/threads")

    def create_thread(self, pr: int, content: str, *, status: str = "closed") -> dict:
        """A new thread with one comment. ``closed`` so a report never blocks a "resolve all comments" policy."""
        return self.body(self._call("Contribute to pull requests", "POST", f"pullRequests/{int(pr)}/threads",
                                    json={"comments": [{"parentCommentId": 0, "content": content,
                                                        "commentType": "text"}],
                                          "status": status}))

    def update_comment(self, pr: int, thread_id: int, comment_id: int, content: str) -> dict:
        return self.body(self._call("Contribute to pull requests", "PATCH",
                                    f"pullRequests/{int(pr)}/threads/{int(thread_id)}/comments/{int(comment_id)}",
                                    json={"content": content}))

    def delete_comment(self, pr: int, thread_id: int, comment_id: int) -> None:
        self._call("Contribute to pull requests", "DELETE",
                   f"pullRequests/{int(pr)}/threads/{int(thread_id)}/comments/{int(comment_id)}")

    # -- refs and tags -----------------------------------------------------------------------------
    def get_refs(self, prefix: str) -> list[Ref]:
        """Refs whose name starts with ``refs/<prefix>`` (e.g. ``heads/release``, ``tags/v``)."""
        return [Ref(r["name"], r["objectId"], r.get("peeledObjectId"))
                for r in self._list("Read", "refs", {"filter": prefix, "peelTags": "true"})]

    def update_refs(self, updates: list[tuple[str, str, str]]) -> list[dict]:
        """Create or move refs: ``[(name, old_sha or ZERO_SHA, new_sha)]``. Azure answers 200 even when
        an update is refused; each result's ``updateStatus`` is checked here."""
        needs = "Create branch" if any(old == ZERO_SHA for _n, old, _new in updates) else "Contribute"
        response = self._call(needs, "POST", "refs", json=[{"name": n, "oldObjectId": o, "newObjectId": new}
                                                           for n, o, new in updates])
        results = (self.body(response) or {}).get("value") or []
        for result in results:
            if result.get("success"):
                continue
            status = str(result.get("updateStatus") or "unknown")
            name = result.get("name", "?")
            if status in PERMISSION_STATUSES:
                raise PermissionDenied(f"Azure Repos refused to update {name}: {status}",
                                       hint=f"grant {BUILD_SERVICE} '{PERMISSION_STATUSES[status]}' on the "
                                            f"repository (Project settings > Repositories > Security)")
            if status == "staleOldObjectId":
                raise HostingError(f"Azure Repos: {name} moved while this step ran (staleOldObjectId)",
                                   hint="re-run the step")
            extra = result.get("customMessage")
            raise HostingError(f"Azure Repos refused to update {name}: {status}" + (f" ({extra})" if extra else ""),
                               hint="check branch policies and the ref name")
        return results

    def create_annotated_tag(self, name: str, commit: str, message: str) -> dict:
        return self.body(self._call("Create tag", "POST", "annotatedtags", api_version=TAGS_API_VERSION,
                                    json={"name": name, "taggedObject": {"objectId": commit},
                                          "message": message}))

    def web_url(self, *parts: str) -> str:
        return "/".join([self.collection_uri, requests.utils.quote(self.project, safe=""), "_git",
                         requests.utils.quote(self.repository, safe=""), *parts])

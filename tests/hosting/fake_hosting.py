"""A loopback stand-in for the GitHub REST API and Azure Repos pull-request threads.

Enough of both for PR comments, answering as the real services do in the cases stackci meets:

- GitHub (``GITHUB_API_URL`` = :attr:`FakeHosting.github_url`): ``GET/POST
  /repos/{o}/{r}/issues/{n}/comments`` (pages of ``per_page``, default 30, with a ``Link:
  rel="next"`` header), ``PATCH`` and ``DELETE /repos/{o}/{r}/issues/comments/{id}``; bearer token checked
  (401); ``deny_write`` answers 403 "Resource not accessible by integration" with
  ``x-accepted-github-permissions``; a body over 65536 characters is 422 "body is too long".
- Azure Repos (``SYSTEM_COLLECTIONURI`` = :attr:`FakeHosting.azure_url`):
  ``GET/POST {org}/{project}/_apis/git/repositories/{repo}/pullRequests/{n}/threads`` (pages of
  ``azure_page`` threads with ``x-ms-continuationtoken``), ``PATCH`` and ``DELETE .../threads/{t}/comments/{c}``
  (a thread whose comments are all deleted is deleted);
  ``api-version`` required; a wrong token gets 203 and an HTML sign-in page, as Azure does.

State is in memory: :attr:`comments` (GitHub, per PR) and :attr:`threads` (Azure, per PR);
:attr:`requests` lists ``(method, path)`` of every call. Usable from pytest in-process or by a
workflow under ``act`` (everything stays on 127.0.0.1).

For races between jobs: :meth:`hold_lists` makes the next ``n`` comment listings wait for each
other (so ``n`` writers all read the same old text), and :attr:`after_write` (``callable(kind,
number, comment)``, kind ``"github"`` or ``"azure"``) runs in the server after each stored write,
before the answer goes out, e.g. to land another job's stale write just after ours.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GITHUB_LIMIT = 65536


class FakeHosting:
    def __init__(self, *, token: str = "ghs_fake_token", azure_token: str = "azure_fake_token",
                 repository: str = "acme/churn", per_page_default: int = 30, azure_page: int = 100) -> None:
        self.token = token
        self.azure_token = azure_token
        self.repository = repository
        self.per_page_default = per_page_default
        self.azure_page = azure_page
        self.deny_write = False
        self.comments: dict[int, list[dict]] = {}
        self.threads: dict[int, list[dict]] = {}
        self.requests: list[tuple[str, str]] = []
        self.after_write = None
        self._barrier: threading.Barrier | None = None
        self._next_id = 1000
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_GET(self):
                fake._handle(self)

            do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.github_url = f"{self.url}/github"
        self.azure_url = f"{self.url}/azure/acme/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-hosting")
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ environments
    def github_env(self, event_path: str | None = None, ref: str = "refs/pull/7/merge") -> dict:
        env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": self.repository, "GITHUB_API_URL": self.github_url,
               "GITHUB_TOKEN": self.token, "GITHUB_REF": ref, "GITHUB_SERVER_URL": "https://github.com",
               "GITHUB_RUN_ID": "4242", "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567"}
        env["GITHUB_EVENT_PATH"] = event_path or ""
        return env

    def azure_env(self, pr: int | None = 42) -> dict:
        return {"TF_BUILD": "True", "SYSTEM_COLLECTIONURI": self.azure_url, "SYSTEM_TEAMPROJECT": "ML Ops",
                "BUILD_REPOSITORY_ID": "repo-id", "BUILD_REPOSITORY_PROVIDER": "TfsGit",
                "SYSTEM_ACCESSTOKEN": self.azure_token,
                "SYSTEM_PULLREQUEST_PULLREQUESTID": "" if pr is None else str(pr)}

    def hold_lists(self, n: int, timeout: float = 30.0) -> None:
        """The next ``n`` comment listings (GitHub or Azure) are answered only once all ``n`` have arrived."""
        self._barrier = threading.Barrier(n, timeout=timeout)
        self._barrier_left = n

    def _hold(self) -> None:
        with self._lock:
            barrier = self._barrier
            if barrier is None:
                return
            self._barrier_left -= 1
            if self._barrier_left <= 0:
                self._barrier = None
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass

    def _wrote(self, kind: str, number: int, comment: dict) -> None:
        if self.after_write is not None:
            self.after_write(kind, number, comment)

    def new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    # ------------------------------------------------------------------ HTTP
    def _send(self, h, status: int, doc=None, headers: dict | None = None, content_type="application/json") -> None:
        body = b"" if doc is None else (doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        path = urllib.parse.unquote(parts.path)
        with self._lock:
            self.requests.append((h.command, path))
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            return self._send(h, 400, {"message": "Problems parsing JSON"})
        if path.startswith("/github/"):
            return self._github(h, path[len("/github"):], query, doc)
        if path.startswith("/azure/"):
            return self._azure(h, path[len("/azure"):], query, doc)
        return self._send(h, 404, {"message": "Not Found"})

    # ------------------------------------------------------------------ GitHub
    def _github(self, h, path: str, query: dict, doc) -> None:
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, {"message": "Bad credentials"})
        repo = f"/repos/{self.repository}"
        m = re.fullmatch(re.escape(repo) + r"/issues/(\d+)/comments", path)
        if m:
            number = int(m.group(1))
            items = self.comments.setdefault(number, [])
            if h.command == "GET":
                if "page" not in query:
                    self._hold()
                per_page = int(query.get("per_page") or self.per_page_default)
                page = int(query.get("page") or 1)
                chunk = items[(page - 1) * per_page: page * per_page]
                headers = {}
                if page * per_page < len(items):
                    nxt = f"{self.github_url}{path}?per_page={per_page}&page={page + 1}"
                    headers["Link"] = f'<{nxt}>; rel="next"'
                return self._send(h, 200, chunk, headers)
            if h.command == "POST":
                return self._github_write(h, doc, create=number)
        m = re.fullmatch(re.escape(repo) + r"/issues/comments/(\d+)", path)
        if m and h.command == "PATCH":
            return self._github_write(h, doc, update=int(m.group(1)))
        if m and h.command == "DELETE":
            if self.deny_write:
                return self._send(h, 403, {"message": "Resource not accessible by integration"})
            for items in self.comments.values():
                for comment in list(items):
                    if comment["id"] == int(m.group(1)):
                        items.remove(comment)
                        return self._send(h, 204)
            return self._send(h, 404, {"message": "Not Found"})
        return self._send(h, 404, {"message": "Not Found"})

    def _github_write(self, h, doc, *, create: int | None = None, update: int | None = None) -> None:
        if self.deny_write:
            return self._send(h, 403, {"message": "Resource not accessible by integration"},
                              {"x-accepted-github-permissions": "issues=write; pull_requests=write"})
        body = (doc or {}).get("body")
        if not isinstance(body, str) or not body:
            return self._send(h, 422, {"message": "Validation Failed",
                                       "errors": [{"resource": "IssueComment", "code": "missing_field",
                                                   "field": "body"}]})
        if len(body) > GITHUB_LIMIT:
            return self._send(h, 422, {"message": "Validation Failed",
                                       "errors": [{"resource": "IssueComment", "code": "custom", "field": "body",
                                                   "message": "body is too long (maximum is 65536 characters)"}]})
        if create is not None:
            cid = self.new_id()
            comment = {"id": cid, "body": body, "user": {"login": "github-actions[bot]"},
                       "html_url": f"https://github.com/{self.repository}/pull/{create}#issuecomment-{cid}"}
            self.comments.setdefault(create, []).append(comment)
            self._wrote("github", create, comment)
            return self._send(h, 201, comment)
        for number, items in self.comments.items():
            for comment in items:
                if comment["id"] == update:
                    comment["body"] = body
                    reply = dict(comment)
                    self._wrote("github", number, comment)
                    return self._send(h, 200, reply)
        return self._send(h, 404, {"message": "Not Found"})

    def add_github_comment(self, number: int, body: str) -> dict:
        cid = self.new_id()
        comment = {"id": cid, "body": body, "user": {"login": "someone"},
                   "html_url": f"https://github.com/{self.repository}/pull/{number}#issuecomment-{cid}"}
        self.comments.setdefault(number, []).append(comment)
        return comment

    # ------------------------------------------------------------------ Azure Repos
    def _azure(self, h, path: str, query: dict, doc) -> None:
        if h.headers.get("Authorization") != f"Bearer {self.azure_token}":
            return self._send(h, 203, b"<html><body>Sign in</body></html>", content_type="text/html")
        if "api-version" not in query:
            return self._send(h, 400, {"typeKey": "VssVersionNotSpecifiedException",
                                       "message": "No api-version was supplied"})
        m = re.fullmatch(r"/acme/ML Ops/_apis/git/repositories/repo-id/pullRequests/(\d+)/threads", path)
        if m:
            number = int(m.group(1))
            threads = self.threads.setdefault(number, [])
            if h.command == "GET":
                if "continuationToken" not in query:
                    self._hold()
                start = int(query.get("continuationToken") or 0)
                chunk = threads[start:start + self.azure_page]
                headers = {}
                if start + self.azure_page < len(threads):
                    headers["x-ms-continuationtoken"] = str(start + self.azure_page)
                return self._send(h, 200, {"value": chunk, "count": len(chunk)}, headers)
            if h.command == "POST":
                if self.deny_write:
                    return self._azure_denied(h)
                comments = [{"id": i + 1, "content": c.get("content"), "commentType": c.get("commentType"),
                             "isDeleted": False} for i, c in enumerate((doc or {}).get("comments") or [])]
                thread = {"id": self.new_id(), "comments": comments, "status": (doc or {}).get("status"),
                          "isDeleted": False}
                threads.append(thread)
                reply = json.loads(json.dumps(thread))
                self._wrote("azure", number, thread["comments"][0] if comments else {})
                return self._send(h, 200, reply)
        m = re.fullmatch(r"/acme/ML Ops/_apis/git/repositories/repo-id/pullRequests/(\d+)/threads/(\d+)"
                         r"/comments/(\d+)", path)
        if m and h.command in ("PATCH", "DELETE"):
            if self.deny_write:
                return self._azure_denied(h)
            for thread in self.threads.get(int(m.group(1)), []):
                if thread["id"] == int(m.group(2)):
                    for comment in thread["comments"]:
                        if comment["id"] == int(m.group(3)) and not comment.get("isDeleted"):
                            if h.command == "DELETE":     # Azure answers 200 with an empty body
                                comment["isDeleted"] = True
                                thread["isDeleted"] = all(c.get("isDeleted") for c in thread["comments"])
                                h.send_response(200)
                                h.send_header("Content-Length", "0")
                                h.end_headers()
                                return None
                            comment["content"] = (doc or {}).get("content")
                            reply = dict(comment)
                            self._wrote("azure", int(m.group(1)), comment)
                            return self._send(h, 200, reply)
        return self._send(h, 404, {"typeKey": "NotFoundException", "message": "not found"})

    def _azure_denied(self, h) -> None:
        return self._send(h, 403, {"typeKey": "UnauthorizedRequestException",
                                   "message": "TF401027: You need the Git 'PullRequestContribute' permission "
                                              "to perform this action."})

    def add_azure_thread(self, number: int, content: str, deleted: bool = False) -> dict:
        thread = {"id": self.new_id(), "comments": [{"id": 1, "content": content, "isDeleted": False}],
                  "isDeleted": deleted, "status": "active"}
        self.threads.setdefault(number, []).append(thread)
        return thread

"""A loopback stand-in for the GitHub REST endpoints of pull-request comments.

Workflows under act reach it through ``GITHUB_API_URL``. It keeps the comments of each
issue in memory, answers like GitHub does (201 on create, the comment object with
``id``/``body``/``html_url``, ``Link: rel="next"`` pages of at most ``per_page``), checks
the bearer token, and records every request so a test can see what was called.
Anything it does not implement is a 404, which fails the caller loudly.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_LIST = re.compile(r"^/repos/([^/]+/[^/]+)/issues/(\d+)/comments$")
_ONE = re.compile(r"^/repos/([^/]+/[^/]+)/issues/comments/(\d+)$")


@dataclass
class Request:
    method: str
    path: str
    authorization: str
    body: dict | None


@dataclass
class FakeGitHub:
    token: str
    repository: str = "acme/churn"
    comments: dict[int, list[dict]] = field(default_factory=dict)   # issue number -> comments
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    _next_id: int = 1001

    def __post_init__(self):
        self._lock = threading.Lock()

    def all_comments(self) -> list[dict]:
        return [c for number in sorted(self.comments) for c in self.comments[number]]

    def handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, dict | list, dict]:
        parts = urlsplit(raw_path)
        data = json.loads(body) if body else None
        with self._lock:
            self.requests.append(Request(method, parts.path, headers.get("Authorization", ""), data))
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"message": "Bad credentials"}, {}
            m = _LIST.match(parts.path)
            if m and m.group(1) == self.repository:
                number = int(m.group(2))
                items = self.comments.setdefault(number, [])
                if method == "GET":
                    query = parse_qs(parts.query)
                    per_page = int(query.get("per_page", ["30"])[0])
                    page = int(query.get("page", ["1"])[0])
                    chunk = items[(page - 1) * per_page: page * per_page]
                    extra = {}
                    if page * per_page < len(items):
                        nxt = f"{self.url}{parts.path}?per_page={per_page}&page={page + 1}"
                        extra["Link"] = f'<{nxt}>; rel="next"'
                    return 200, chunk, extra
                if method == "POST":
                    comment = self._comment(number, data["body"])
                    items.append(comment)
                    return 201, comment, {}
            m = _ONE.match(parts.path)
            if m and m.group(1) == self.repository and method == "PATCH":
                for comment in self.all_comments():
                    if comment["id"] == int(m.group(2)):
                        comment["body"] = data["body"]
                        comment["updated_at"] = "2026-12-01T12:00:01Z"
                        return 200, comment, {}
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, {}

    def _comment(self, number: int, body: str) -> dict:
        cid, self._next_id = self._next_id, self._next_id + 1
        return {"id": cid, "body": body, "user": {"login": "github-actions[bot]", "type": "Bot"},
                "html_url": f"https://github.com/{self.repository}/pull/{number}#issuecomment-{cid}",
                "created_at": "2026-12-01T12:00:00Z", "updated_at": "2026-12-01T12:00:00Z"}

    # --- server ---------------------------------------------------------------------------
    def __enter__(self) -> "FakeGitHub":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                status, payload, extra = fake.handle(self.command, self.path, self.headers, self.rfile.read(length))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
